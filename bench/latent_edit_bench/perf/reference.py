"""The official EYE training loop's structure, re-implemented on our backbone and instrument objects.

`bench perf` times one step of this against one step of methods/latent_edit_bench/methods/eye.py, so the ratio measures only
what our loop does differently; the loss terms are ours (tests/test_perf.py checks them equal to
``HFLD.losses`` on the same z and targets). What the official loop (KelestZ/Latent2im, train.py and
graphs/stylegan_v2_real/transform_base.py) does per step, and this copy does too:

- z and the targets a* are drawn on the host and copied to the device every step (pageable copies);
- G's noise is drawn afresh on every call (rosinality's ``randomize_noise=True``);
- w is a list of per-layer tensors and the walk adds ``eps @ T[:, i]`` layer by layer;
- nothing runs under ``no_grad`` and G, R, VGG (and H) are never frozen: backward fills the .grad of
  every network parameter, not only T's, and reaches the original image through the undetached
  eps = a* - R(G(w)) (no gradient for T there, but the work is done);
- R's FULL output (all 40 attributes) is computed on G(w) and G(w') and the fitted columns picked;
- the loss reaches the host every step (the official code logs ``loss.item()``).

Not modelled (it would only make the reference slower): the official content loss rebuilds its VGG
prefix per call and runs the prefix again for each of conv_1..conv_4; here ``content(x)`` runs once.
The D term is left out as in ``bench perf`` (both loops skip it on a backbone without D).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES

CONTENT_LAYERS = ("conv_1", "conv_2", "conv_3", "conv_4")   # = latent_edit_bench.methods.eye.CONTENT_LAYERS


class ReferenceEYE:
    """``with ReferenceEYE(...) as ref: ref.step()``: one official-style EYE/HFLD step per call.

    Inside the ``with`` the networks' parameters require grad (as in the official code) when
    ``train_nets``; on exit their flags are restored and their .grad dropped. ``landmarks`` None: EYE
    (``baseline``), else HFLD's landmark term with weight ``weights["landmarks"]``.
    """

    def __init__(self, backbone, R, content, landmarks=None, attributes=("Male",), lr=1e-4, betas=(0.5, 0.99),
                 batch_size=4, weights=None, init_std=0.02, noise="random", train_nets=True, seed=0):
        self.bb, self.R, self.content, self.H = backbone, R, content, landmarks
        self.dev = backbone.device
        self.idx = [CELEBA_ATTRIBUTES.index(a) for a in attributes]
        self.batch_size, self.noise, self.train_nets = int(batch_size), noise, train_nets
        self.weights = dict(weights or {"reg": 10.0, "content": 0.05, "landmarks": 1e4})
        g = torch.Generator().manual_seed(int(seed))
        self.T = (init_std * torch.randn(len(self.idx), backbone.n_layers, backbone.latent_dim, generator=g)
                  ).to(self.dev).requires_grad_(True)
        self.opt = torch.optim.Adam([self.T], lr=lr, betas=tuple(betas))
        self._flags: list = []

    @classmethod
    def from_editor(cls, editor, ctx, **kw) -> "ReferenceEYE":
        """The reference with an EYE/HFLD editor's config and a FitContext's nets (same numbers in, same terms)."""
        cfg = editor.config
        weights = {k: v for k, v in editor.weights().items() if k != "d"}
        H = ctx.instrument(cfg["landmark_instrument"]).to(ctx.dev) if "landmark_instrument" in cfg else None
        return cls(ctx.backbone, ctx.scorer, ctx.instrument(cfg["content_instrument"]).to(ctx.dev), H,
                   attributes=ctx.attributes, lr=float(cfg["lr"]), betas=cfg["betas"], batch_size=cfg["batch_size"],
                   weights=weights, init_std=float(cfg["init_std"]), **kw)

    # -- the nets are trainable inside the with, as the official code leaves them ------------------
    def _nets(self):
        return [m for m in (self.bb, self.R, self.content, self.H) if m is not None]

    def __enter__(self):
        if self.train_nets:
            self._flags = [(p, p.requires_grad) for m in self._nets() for p in m.parameters()]
            for p, _ in self._flags:
                p.requires_grad_(True)
        return self

    def __exit__(self, *exc):
        for p, flag in self._flags:
            p.requires_grad_(flag)
            p.grad = None
        self._flags = []

    # -- one step -------------------------------------------------------------------------------
    def generate(self, ws: list) -> torch.Tensor:
        w = torch.stack(ws, 1)
        gen = getattr(self.bb, "generator", None)
        if self.noise == "random" and hasattr(gen, "synthesis"):   # StyleGAN2: fresh noise per call
            return gen.synthesis(w, noise_mode="random")
        return self.bb.synthesize(w)                                # DCGAN: no noise inputs

    def losses(self, z=None, target=None, T=None) -> dict:
        """The unweighted terms of one step; ``z`` [B, z_dim] and ``target`` [B, A] (CPU) may be given."""
        T = self.T if T is None else T
        B = self.batch_size
        z = torch.randn(B, self.bb.z_dim) if z is None else z
        target = torch.rand(B, len(self.idx)) if target is None else target
        z, target = z.to(self.dev), target.to(self.dev)               # host -> device every step
        ws = list(self.bb.to_edit(z).unbind(1))                       # one tensor per W+ layer
        x = self.generate(ws)
        eps = target - self.R(x)["attributes"][:, self.idx]           # full R output, not detached
        ws2 = [w + eps @ T[:, i] for i, w in enumerate(ws)]           # the walk, layer by layer
        x2 = self.generate(ws2)
        r2 = self.R(x2)["attributes"][:, self.idx].clamp(0, 1)
        out = {"reg": F.binary_cross_entropy(r2, target)}
        f, f2 = self.content(x), self.content(x2)
        out["content"] = sum(F.mse_loss(f2[k], f[k].detach()) for k in CONTENT_LAYERS)
        if self.H is not None:
            out["landmarks"] = (self.H(x2)["landmarks"] - self.H(x)["landmarks"].detach()).abs().mean()
        return out

    def step(self, z=None, target=None) -> float:
        terms = self.losses(z, target)
        loss = sum(self.weights[k] * v for k, v in terms.items())
        self.opt.zero_grad()
        loss.backward()                                               # also fills the nets' .grad when trainable
        self.opt.step()
        return loss.item()                                            # logged every step: a host sync
