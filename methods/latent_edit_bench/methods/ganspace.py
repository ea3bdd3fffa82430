"""GANSpace (Härkönen et al., NeurIPS 2020): principal components of the latent distribution.

With a W space: PCA of sampled w. Without one (edit space z, e.g. the DCGAN): PCA of an early
activation (``backbone.early_activation``) and each component regressed back to z by least
squares (coefficients of the samples on the components -> z), as GANSpace does for BigGAN.
Directions are unit-normalised; ``stdev`` is the standard deviation of the sampled latents'
projections on each direction. Edit: w_l += strength · stdev_c · v_c on a layer range, strength in
stdevs. The official tool leaves component choice to the user; we choose, per attribute, the
component among the top ``top_k`` (with sign) and the layer range whose edit moves R_k most per
unit strength (central difference at ±``probe_sigmas``), and record it.
"""

from __future__ import annotations

import torch

from latent_edit_bench.batched import map_batches
from latent_edit_bench.options import DIRECTIONS, at_least, each, layer_range, optional
from latent_edit_bench.contracts.method import FitContext, PerAttributeEditor, add_direction, finite_difference, layer_mask


def pca(x: torch.Tensor, n_components: int) -> dict:
    """PCA of rows of x: mean, orthonormal components [C, F] (rows), variances, variance ratios.

    From the eigen-decomposition of the smaller of the Gram matrix [N, N] and the covariance [F, F]
    (float64): the DCGAN's 1024 activations of 8192 values took 2.8 s as an SVD and take 0.2 s so, equal
    to 5e-15. Each component's sign is fixed (its largest entry positive), so the result does not
    depend on the solver's sign choice."""
    x = x.double()
    mean = x.mean(0)
    xc = x - mean
    n, f = xc.shape
    c = min(n_components, n, f)
    if n <= f:
        evals, u = torch.linalg.eigh(xc @ xc.T)                    # ascending
        top = evals.flip(0)[:c].clamp_min(0)
        vh = (u.flip(1)[:, :c].T @ xc) / top.sqrt().clamp_min(1e-300)[:, None]
    else:
        evals, v = torch.linalg.eigh(xc.T @ xc)
        top, vh = evals.flip(0)[:c].clamp_min(0), v.flip(1)[:, :c].T
    vh = vh * torch.sign(vh.gather(1, vh.abs().argmax(1, keepdim=True)))
    var = top / (n - 1)
    total = evals.clamp_min(0).sum() / (n - 1)
    return {"mean": mean, "components": vh, "variance": var, "variance_ratio": var / total}


def default_layer_ranges(n_layers: int) -> list[list[int]]:
    """All layers, then coarse/middle/fine thirds (the ranges GANSpace's examples edit)."""
    if n_layers == 1:
        return [[0, 1]]
    a, b = max(1, n_layers // 3), max(2, 2 * n_layers // 3)
    return [[0, n_layers], [0, a], [a, b], [b, n_layers]]


class GANSpace(PerAttributeEditor):
    name = "ganspace"
    # quick: ±4 sigma instead of ±3 (beyond it DCGAN faces wash out, darken or break up: SeFa's Male
    # component at +4); components chosen on 64 samples among the top 10 (16 and 5 picked weaker ones)
    presets = {"quick": {"n_samples": 64, "top_k": 10, "n_pca_samples": 1024, "max_sigmas": 4.0}}
    limits = {**DIRECTIONS, "n_components": at_least(1), "n_pca_samples": at_least(2),
              "layer_ranges": optional(each(layer_range))}
    config = {"n_components": 20, "n_pca_samples": 1024, "top_k": 10, "n_samples": 256,
              "probe_sigmas": 1.0, "max_sigmas": 3.0, "layer_ranges": None}

    def check_backbone(self, backbone) -> None:
        for r in self.config["layer_ranges"] or []:
            layer_mask(backbone.n_layers, r)

    def fit_shared(self, ctx: FitContext) -> dict:
        bb, cfg = ctx.backbone, self.config
        lat = ctx.latents(cfg["n_pca_samples"], seed=ctx.seed + 1)   # PCA set apart from the choice set
        x = lat[:, 0].double()
        if bb.edit_space == "z":
            y = map_batches(bb.early_activation, lat, 256, device=ctx.dev, out="cpu")
            p = pca(y, cfg["n_components"])
            coeff = (y.double() - p["mean"]) @ p["components"].T                    # [N, C]
            back = torch.linalg.lstsq(coeff, x - x.mean(0)).solution                # [C, z_dim]
            dirs, space = back / back.norm(dim=1, keepdim=True), "activation"
        else:
            p = pca(x, cfg["n_components"])
            dirs, space = p["components"], "w"
        stdev = ((x - x.mean(0)) @ dirs.T).std(0)
        return {"space": space, "components": p["components"].float(), "variance": p["variance"].float(),
                "variance_ratio": p["variance_ratio"].float(), "directions": dirs.float(),
                "stdev": stdev.float(), "latent_mean": x.mean(0).float()}

    def fit_attribute(self, ctx: FitContext, attr: str, shared: dict) -> dict:
        cfg = self.config
        n_layers = ctx.backbone.n_layers
        ranges = cfg["layer_ranges"] or default_layer_ranges(n_layers)
        lat = ctx.latents(cfg["n_samples"])
        k = min(int(cfg["top_k"]), shared["directions"].shape[0])
        effects = []   # [component][range], per stdev of strength
        for c in range(k):
            v = shared["directions"][c] * shared["stdev"][c]
            effects.append([finite_difference(ctx, lat, attr,
                                              lambda l, s, v=v, m=layer_mask(n_layers, r): add_direction(l, v, s, m),
                                              cfg["probe_sigmas"]) for r in ranges])
        c, j = max(((c, j) for c in range(k) for j in range(len(ranges))), key=lambda t: abs(effects[t[0]][t[1]]))
        sign = 1.0 if effects[c][j] >= 0 else -1.0
        return {"component": c, "sign": sign, "layer_range": list(ranges[j]),
                "direction": sign * shared["directions"][c], "stdev": float(shared["stdev"][c]),
                "layers": layer_mask(n_layers, ranges[j]), "effect": abs(effects[c][j]), "effects": effects}

    def edit(self, latents, attr, strength):
        self.check_attr(attr)
        a = self.per_attr[attr]
        return add_direction(latents, a["direction"] * a["stdev"], strength, a["layers"])

    def strength_range(self, attr):
        self.check_attr(attr)
        return (-self.config["max_sigmas"], self.config["max_sigmas"])
