"""InterFaceGAN (Shen et al., CVPR 2020): the normal of a linear SVM boundary in latent space.

Score ``n_samples`` seeded latents with R, keep the top and bottom ``ratio`` (2%) for attribute k,
fit a linear SVM (squared hinge, primal, L-BFGS; the intercept is fitted, unpenalised, and kept in
the artifact — the official code drops it), and use the unit normal, oriented towards the attribute,
as the direction. Edit: w_l + strength · n on ``layers`` (None: all); strength is a latent distance.

``interfacegan-cond`` is the conditional manipulation: the direction projected orthogonal to the
normals of the ``condition_on`` attributes (default: the gesture attributes Smiling,
Mouth_Slightly_Open, Narrow_Eyes), i.e. n - Nᵀ(NNᵀ)⁻¹N n for stacked normals N.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import minimize

from latent_edit_bench.attributes import GESTURE_ATTRIBUTES
from latent_edit_bench.options import DIRECTIONS, Range, at_least, attribute_names, non_negative, positive
from latent_edit_bench.contracts.method import DirectionEditor, FitContext, TrainableEditor, add_direction, layer_mask


def linear_svm(x: np.ndarray, y: np.ndarray, C: float = 1.0) -> tuple[np.ndarray, float]:
    """Primal L2-regularised squared-hinge linear SVM (LinearSVC's loss): (w, b), y in {-1, +1}."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    d = x.shape[1]

    def loss(theta):
        w, b = theta[:d], theta[d]
        margin = np.maximum(0.0, 1.0 - y * (x @ w + b))
        g = -2.0 * C * y * margin
        return 0.5 * w @ w + C * margin @ margin, np.concatenate([w + x.T @ g, [g.sum()]])

    res = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                   options={"maxiter": 5000, "gtol": 1e-10, "ftol": 1e-15})
    return res.x[:d], float(res.x[d])


def boundary(ctx: FitContext, attr: str, n: int, ratio: float, C: float) -> dict:
    """The unit SVM normal separating the top from the bottom ``ratio`` of n samples by R_attr."""
    x = ctx.latents(n)[:, 0].double().numpy()
    scores = ctx.base_scores(n, attr).numpy()
    k = max(1, int(round(ratio * n)))
    order = np.argsort(-scores, kind="stable")
    pos, neg = order[:k], order[-k:]
    xs, ys = np.concatenate([x[pos], x[neg]]), np.concatenate([np.ones(k), -np.ones(k)])
    w, b = linear_svm(xs, ys, C)
    norm = np.linalg.norm(w)
    acc = float(((xs @ w + b > 0) == (ys > 0)).mean())
    return {"normal": torch.from_numpy(w / norm), "intercept": float(b / norm), "accuracy": acc,
            "n_per_side": k, "score_top": float(scores[pos].mean()), "score_bottom": float(scores[neg].mean()),
            "sigma": float((x @ (w / norm)).std())}


class InterFaceGAN(TrainableEditor, DirectionEditor):
    name = "interfacegan"
    # quick: the boundary from 1024 samples (scored once: ~15 s), top/bottom 10% (102 a side: at 2% of
    # 128-512 samples, 3-10 points a side in 100 dimensions are separable along almost any direction)
    presets = {"quick": {"n_samples": 1024, "ratio": 0.1, "max_sigmas": 4.0}}
    limits = {**DIRECTIONS, "ratio": Range(lo=0, hi=0.5, lo_open=True), "C": positive, "refine_steps": at_least(0),
              "refine_lr": positive, "refine_batch": at_least(1), "fidelity": non_negative}
    config = {"n_samples": 512, "ratio": 0.02, "C": 1.0, "max_sigmas": 3.0, "layers": None}
    # A TrainableEditor only as <method>+<regulariser> (methods/latent_edit_bench/methods/regularisers.py): the
    # closed-form direction n is then refined by Adam on  fidelity * (1 - cos(d, n)) + the regularisers'
    # weighted terms  for edits w + s d of seeded samples, s ~ U(-max_sigmas, max_sigmas) * sigma_n: a soft,
    # loss-driven alternative to the conditional variant's hard projection. These options exist only in
    # regularised configs; the plain method keeps the hooks' defaults (no terms, no nets).
    regularised_config = {"refine_steps": 50, "refine_lr": 5e-3, "refine_batch": 8, "fidelity": 1.0}

    def refine(self, ctx: FitContext, attr: str, n: torch.Tensor, sigma: float) -> tuple[torch.Tensor, dict]:
        """The direction after ``refine_steps`` of Adam from n (see the class comment); seeded by
        (ctx.seed, attr's position-free hash, step), so a rerun is identical."""
        import zlib

        from .eye import step_generator

        cfg, bb, dev = self.config, ctx.backbone, ctx.dev
        weights = self.weights()
        mask = layer_mask(bb.n_layers, cfg["layers"]).to(dev)
        n = n.float().to(dev)
        d = n.clone().requires_grad_(True)
        opt = torch.optim.Adam([d], lr=float(cfg["refine_lr"]))
        log = []
        for step in range(int(cfg["refine_steps"])):
            g = step_generator(ctx.seed * 7919 + zlib.crc32(attr.encode()), step)
            z = torch.randn(int(cfg["refine_batch"]), bb.z_dim, generator=g).to(dev)
            s = ((2 * torch.rand(int(cfg["refine_batch"]), generator=g) - 1) * cfg["max_sigmas"] * sigma).to(dev)
            with torch.no_grad():
                w = bb.to_edit(z)
                x = bb.synthesize(w)
            x2 = bb.synthesize(add_direction(w, d / d.norm(), s, mask))
            terms = {"fidelity": 1 - torch.dot(d, n) / d.norm(), **self.extra_losses(ctx, x, x2)}
            loss = sum({"fidelity": float(cfg["fidelity"]), **weights}[k] * v for k, v in terms.items())
            opt.zero_grad(set_to_none=True)
            (d.grad,) = torch.autograd.grad(loss, [d])
            opt.step()
            log.append([float(loss.detach()), *(float(v.detach()) for v in terms.values())])
        d = (d.detach() / d.detach().norm()).cpu()
        return d, {"refine_terms": ["loss", *terms], "refine_log": torch.tensor(log, dtype=torch.float64),
                   "cos_to_unrefined": float(d @ n.cpu())}

    def direction(self, ctx: FitContext, attr: str) -> tuple[torch.Tensor, dict]:
        cfg = self.config
        b = boundary(ctx, attr, cfg["n_samples"], cfg["ratio"], cfg["C"])
        return b["normal"], {k: v for k, v in b.items() if k != "normal"}

    def fit_attribute(self, ctx: FitContext, attr: str, shared: dict) -> dict:
        d, info = self.direction(ctx, attr)
        x = ctx.latents(self.config["n_samples"])[:, 0].double()
        if self.weights():      # a regulariser with a non-zero weight: refine (weight 0: the plain fit)
            d, more = self.refine(ctx, attr, d, float((x @ d).std()))
            info = {**info, **more}
        return {**info, "direction": d.float(), "sigma": float((x @ d.double()).std()),
                "layers": layer_mask(ctx.backbone.n_layers, self.config["layers"])}


def project_out(n: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Unit part of n orthogonal to every row of ``normals`` (least squares on the stacked normals)."""
    n, N = n.double(), normals.double()
    coef = torch.linalg.lstsq(N @ N.T, (N @ n)[:, None]).solution[:, 0]
    r = n - N.T @ coef
    return r / r.norm()


class InterFaceGANCond(InterFaceGAN):
    name = "interfacegan-cond"
    limits = {"condition_on": attribute_names}
    config = {**InterFaceGAN.config, "condition_on": list(GESTURE_ATTRIBUTES)}

    def direction(self, ctx: FitContext, attr: str) -> tuple[torch.Tensor, dict]:
        n, info = super().direction(ctx, attr)
        cfg = self.config
        cond = [a for a in cfg["condition_on"] if a != attr]
        if not cond:
            return n, {**info, "condition_on": []}
        normals = torch.stack([boundary(ctx, a, cfg["n_samples"], cfg["ratio"], cfg["C"])["normal"] for a in cond])
        p = project_out(n, normals)
        return p, {**info, "condition_on": cond, "cos_to_unconditioned": float(p @ n),
                   "condition_normals": normals.float()}
