"""AdaTrans-style adaptive multi-step editor (after Huang et al., ICCV 2023).

The edit is split into small steps whose direction and size are predicted from the current latent:

    w_{t+1} = w_t + c F_k(w_t, c, t/K)      c = +1 (towards the attribute) or -1, K = ``n_steps``

F_k a per-attribute MLP (``hidden`` wide, 2 leaky-ReLU layers, equalised learning rate) on the
flattened latent, the direction c and the progress t/K; the step is c times its output, so an
untrained F already steps in opposite directions for the two targets. Trained per attribute k: each
sample draws c (y = [c > 0]) and a number of steps t in 1..K, walks t steps, and pays, with
r_0 = R_k(G(w)),

    L = w_cls BCE(R_k(G(w_t)), r_0 + t/K (y - r_0))                     each step moves 1/K of the way
        + w_attr mean_j (R_j(G(w_t)) - R_j(G(w)))^2 + w_identity content(G(w), G(w_t))   [+ regularisers at w_t]
        + w_density mean_{i<=K} relu(nll(w_i) - nll(w_0))                  no step makes w less likely

(one render per sample and step of training whatever K: the walk itself is latent arithmetic).
nll: a Gaussian (mean, full covariance per layer) fitted to ``density_samples`` latents of the
context; on the DCGAN's z it is the N(0, I) prior. AdaTrans uses a RealNVP density of W and a
latent attribute classifier for the step network's attribute input and its losses; we have neither,
so the density is a fitted Gaussian, the step network is conditioned on (w_t, c, t/K) only, and the
classifier terms use R on renders.

Strength: signed number of steps, s in [-``max_strength``, ``max_strength``]: sign = c, |s| steps,
the last one scaled by the fractional part (continuous, so the equal-edit search can bisect it).
Its native edit is the full K steps (|s| = K). Fitted with EYE's loop (:mod:`latent_edit_bench.methods.netedit`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latent_edit_bench.contracts.method import as_strength
from latent_edit_bench.options import at_least

from .netedit import NetworkEditor, Packing, dense, xavier

PAPER_PRESET = {"steps": 10_000, "batch_size": 16, "lr": 1e-4, "hidden": 512, "n_steps": 10,   # AdaTrans: up to 10 steps
                "max_strength": 10.0}


def gaussian(latents: torch.Tensor, eps: float = 1e-4) -> dict:
    """Mean [L, D] and inverse Cholesky factor [L, D, D] of a Gaussian fitted to latents [N, L, D]."""
    x = latents.double()
    mu = x.mean(0)
    xc = (x - mu).transpose(0, 1)                                        # [L, N, D]
    cov = xc.transpose(1, 2) @ xc / (x.shape[0] - 1) + eps * torch.eye(x.shape[2], dtype=x.dtype)
    inv_chol = torch.linalg.inv(torch.linalg.cholesky(cov))
    return {"mu": mu.float(), "inv_chol": inv_chol.float()}


def nll(density: dict, w: torch.Tensor) -> torch.Tensor:
    """0.5 * Mahalanobis^2 per coordinate, mean over layers: [B] (the Gaussian's nll up to a constant)."""
    d = torch.einsum("lij,blj->bli", density["inv_chol"], w - density["mu"])
    return 0.5 * d.pow(2).mean((1, 2))


def density_loss(density: dict, path: list[torch.Tensor]) -> torch.Tensor:
    """mean over steps t >= 1 of relu(nll(w_t) - nll(w_0)): no step may make the latent less likely."""
    n0 = nll(density, path[0])
    return torch.stack([F.relu(nll(density, w) - n0) for w in path[1:]]).mean()


class AdaTrans(NetworkEditor):
    name = "adatrans"
    # quick: as latent-transformer's (docs/methods.md), 4 steps of the recurrence, strengths up to 6
    presets = {"quick": {"steps": 150, "batch_size": 4, "lr": 1e-2, "n_steps": 4, "preserve_attrs": [],
                         "max_strength": 6.0},
               "paper": PAPER_PRESET}
    limits = {"n_steps": at_least(1), "density_samples": at_least(2)}
    config = {
        "steps": 200,
        "batch_size": 4,
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "n_steps": 4,                 # K: training steps from the original to the attribute's end
        "hidden": 128,
        "weights": {"cls": 1.0, "attr": 1.0, "identity": 0.05, "density": 1.0},
        "preserve_attrs": None,       # None: every attribute R scores but the edited one
        "content_instrument": "vgg16-stlpips",
        "density_samples": 4096,
        "seed": 0,
        "max_strength": 4.0,          # in steps; > n_steps extrapolates
    }

    def packing(self, bb) -> Packing:
        n, h = bb.n_layers * bb.latent_dim, int(self.config["hidden"])
        return Packing({"w1": (h, n + 2), "b1": (h,), "w2": (h, h), "b2": (h,), "w3": (n, h), "b3": (n,)})

    def init_net(self, bb, g) -> dict:
        return {k: xavier(s, g) if len(s) == 2 else torch.zeros(s) for k, s in self.packing(bb).shapes.items()}

    def step(self, net: dict, w: torch.Tensor, c: torch.Tensor, t: float) -> torch.Tensor:
        """The step c * F_k(w_t, c, t/K) [B, L, D]; c [B] in {-1, +1} (the sign makes an untrained F
        already step in opposite directions for the two targets)."""
        b = w.shape[0]
        cond = torch.stack([c, torch.full_like(c, t / float(self.config["n_steps"]))], 1)
        h = torch.cat([w.reshape(b, -1), cond], 1)
        h = F.leaky_relu(dense(h, net["w1"], net["b1"]), 0.2)
        h = F.leaky_relu(dense(h, net["w2"], net["b2"]), 0.2)
        return c[:, None, None] * dense(h, net["w3"], net["b3"]).view_as(w)

    def walk(self, net: dict, w: torch.Tensor, c: torch.Tensor, sizes: list[torch.Tensor]) -> list[torch.Tensor]:
        """[w_0, w_1, ...]: w_{t+1} = w_t + sizes[t] * F_k(w_t, c, t/K); sizes [B] each (1 = a full step)."""
        path = [w]
        for t, size in enumerate(sizes):
            path.append(path[-1] + size[:, None, None] * self.step(net, path[-1], c, t))
        return path

    # -- training ---------------------------------------------------------------------------------
    def fit(self, ctx) -> None:
        lat = ctx.latents(int(self.config["density_samples"]), seed=ctx.seed + 2)   # apart from the ladder's
        self._density = {k: v.to(ctx.dev) for k, v in gaussian(lat).items()}
        try:
            super().fit(ctx)
        finally:
            self._density = None

    def attr_losses(self, ctx, net, ref, u, v):
        K, w, r0 = int(self.config["n_steps"]), ref["w"], ref["r"][:, 0]
        c = torch.where(u < 0.5, -1.0, 1.0).to(w)                       # direction per sample
        t = (v * K).floor().clamp(0, K - 1) + 1                           # steps taken per sample, 1..K
        path = self.walk(net, w, c, [(t > i).to(w) for i in range(K)])
        y = (c > 0).to(w)
        out = self.edited_terms(ctx, ref, path[-1], target=r0 + t / K * (y - r0))
        out["density"] = density_loss(self._density, path)
        return out

    # -- the edit ---------------------------------------------------------------------------------
    def edit(self, latents, attr, strength):
        self.check_attr(attr)
        net = {k: v.to(latents) for k, v in self.net(attr).items()}
        s = as_strength(strength, latents)[:, 0, 0]
        c = torch.where(s < 0, -1.0, 1.0).to(latents)
        n = s.abs()
        n_max = math.ceil(float(n.max())) if n.numel() else 0
        return self.walk(net, latents, c, [(n - t).clamp(0, 1) for t in range(n_max)])[-1]

    def native_strength(self, ctx, latents, attr, target):
        """The full K steps towards the target's side (AdaTrans' edit to the other end)."""
        K = float(self.config["n_steps"])
        return torch.full((latents.shape[0],), K if target >= 0.5 else -K)

