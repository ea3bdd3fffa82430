"""Built-in editing methods, registered like any plugin (a module of hookimpls).

Factories are "module:Class" strings (imported on first use); ``factory(**config) -> Editor``.
"""

from __future__ import annotations

from latent_edit_bench.hookspecs import hookimpl
from latent_edit_bench.registry import Entry


@hookimpl
def register_methods():
    return [
        Entry("sefa", "latent_edit_bench.methods.sefa:SeFa",
              "SeFa: eigenvectors of AᵀA of the first latent-to-feature weights; component chosen by effect on R_k"),
        Entry("ganspace", "latent_edit_bench.methods.ganspace:GANSpace",
              "GANSpace: PCA of W (or of an early activation, regressed to z); component + layers chosen by effect"),
        Entry("interfacegan", "latent_edit_bench.methods.interfacegan:InterFaceGAN",
              "InterFaceGAN: unit normal of a linear SVM on the top/bottom 2% of samples by R_k"),
        Entry("interfacegan-cond", "latent_edit_bench.methods.interfacegan:InterFaceGANCond",
              "InterFaceGAN conditioned: direction orthogonal to the gesture attributes' normals"),
        Entry("baseline", "latent_edit_bench.methods.eye:EYE",
              "Enjoy-Your-Editing: direction matrix T [A, L, D] trained against R (+ content, D terms)"),
        Entry("hfld", "latent_edit_bench.methods.eye:HFLD",
              "HFLD: EYE plus a facial-landmark loss (expression-preserving edits); = baseline+hfld"),
        Entry("latent-transformer", "latent_edit_bench.methods.latent_transformer:LatentTransformer",
              "Latent Transformer: a per-attribute network predicts the latent shift (classifier, preservation, identity terms)"),
        Entry("adatrans", "latent_edit_bench.methods.adatrans:AdaTrans",
              "AdaTrans: adaptive non-linear multi-step edit; strength = number of steps"),
    ]


@hookimpl
def register_regularisers():
    return [
        Entry("hfld", "latent_edit_bench.methods.regularisers:LandmarkLoss",
              "HFLD's landmark loss l4 * mean |H(G(w)) - H(G(w'))| (options landmark_weight, landmark_instrument)"),
    ]
