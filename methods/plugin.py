"""Built-in editing methods, registered through the ``bench`` entry-point group like any plugin.

Factories are "module:Class" strings (imported on first use); ``factory(**config) -> Editor``.
"""

from __future__ import annotations

from bench import Entry, hookimpl


@hookimpl
def register_methods():
    return [
        Entry("sefa", "methods.sefa:SeFa",
              "SeFa: eigenvectors of AᵀA of the first latent-to-feature weights; component chosen by effect on R_k"),
        Entry("ganspace", "methods.ganspace:GANSpace",
              "GANSpace: PCA of W (or of an early activation, regressed to z); component + layers chosen by effect"),
        Entry("interfacegan", "methods.interfacegan:InterFaceGAN",
              "InterFaceGAN: unit normal of a linear SVM on the top/bottom 2% of samples by R_k"),
        Entry("interfacegan-cond", "methods.interfacegan:InterFaceGANCond",
              "InterFaceGAN conditioned: direction orthogonal to the gesture attributes' normals"),
        Entry("baseline", "methods.eye:EYE",
              "Enjoy-Your-Editing: direction matrix T [A, L, D] trained against R (+ content, D terms)"),
        Entry("hfld", "methods.eye:HFLD",
              "HFLD: EYE plus a facial-landmark loss (expression-preserving edits); = baseline+hfld"),
        Entry("latent-transformer", "methods.latent_transformer:LatentTransformer",
              "Latent Transformer: a per-attribute network predicts the latent shift (classifier, preservation, identity terms)"),
        Entry("adatrans", "methods.adatrans:AdaTrans",
              "AdaTrans: adaptive non-linear multi-step edit; strength = number of steps"),
    ]


@hookimpl
def register_regularisers():
    return [
        Entry("hfld", "methods.regularisers:LandmarkLoss",
              "HFLD's landmark loss l4 * mean |H(G(w)) - H(G(w'))| (options landmark_weight, landmark_instrument)"),
    ]
