"""`bench invert`, step 2: optimise one edit-space latent per aligned photo, so that the backbone renders it.

The latent is z for the DCGAN, W+ for StyleGAN2; the loss is a perceptual term (LPIPS-style distance on
the embedded ST-LPIPS VGG16 trunk) plus a pixel term, with the StyleGAN2 projector's schedule (lr
ramp-up/ramp-down, decaying latent noise) and, for StyleGAN2 with ``noise="optimise"``, per-photo noise
maps with its noise regulariser.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latent_edit_bench.errors import BenchError


@dataclass
class InvertConfig:
    steps: int = 300
    lr: float | None = None            # None: 0.1 for W+ (StyleGAN2 projector), 0.03 for z (0.1 overshoots there)
    lr_rampup: float = 0.05            # fraction of steps
    lr_rampdown: float = 0.25
    pixel_weight: float = 1.0          # MSE on [-1, 1] pixels, next to the perceptual distance
    init_samples: int = 1024           # DCGAN: start from the nearest of this many seeded z; StyleGAN2: w_avg from 10k
    starts: int = 3                    # DCGAN: optimise from the ``starts`` nearest candidates, keep the best
    latent_noise: float = 0.05         # StyleGAN2 projector: initial latent noise (x w_std), ramped down
    noise_ramp: float = 0.75
    noise: str = "const"               # StyleGAN2: "const" (the backbone's maps, as every edit renders) or "optimise"
    noise_weight: float = 1e5          # StyleGAN2 projector's noise regularisation weight
    prior_weight: float = 0.1          # DCGAN: keep |z| / sqrt(d) near 1, where N(0, I) puts its mass
    seed: int = 0

    def check(self):
        if self.steps < 1:
            raise BenchError(f"--steps must be at least 1, got {self.steps}")
        if self.starts < 1:
            raise BenchError(f"--starts must be at least 1, got {self.starts}")
        if self.noise not in ("const", "optimise"):
            raise BenchError(f"--noise must be const or optimise, got {self.noise!r}")


def perceptual_distance(vgg, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """LPIPS-style distance per image [B]: channel-unit-normalised conv_1..conv_4 maps of the ST-LPIPS
    VGG16 trunk, mean squared difference per layer, summed (uniform layer weights: the trunk ships
    without LPIPS's learnt linear heads, so the values are not LPIPS numbers)."""
    return _distance(_unit_features(vgg, x), _unit_features(vgg, y))


def _unit_features(vgg, x: torch.Tensor) -> list[torch.Tensor]:
    return [f / (f.norm(dim=1, keepdim=True) + 1e-10) for f in vgg(x).values()]


def _distance(fa: list, fb: list) -> torch.Tensor:
    """perceptual_distance from unit feature maps: the projection computes the targets' maps once."""
    d = 0
    for a, b in zip(fa, fb):
        d = d + (a - b).pow(2).sum(1).mean((1, 2))
    return d


def _pairwise(fa: list, fb: list) -> torch.Tensor:
    """perceptual_distance between every a and every b: [A, B] (|u - v|^2 = 2 - 2 u.v for unit vectors)."""
    d = 0
    for a, b in zip(fa, fb):
        na, nb = a.pow(2).sum(1).mean((1, 2)), b.pow(2).sum(1).mean((1, 2))
        d = d + na[:, None] + nb[None, :] - 2 * torch.einsum("nchw,mchw->nm", a, b) / (a.shape[2] * a.shape[3])
    return d


def _lr_at(t: float, cfg: InvertConfig, lr: float) -> float:
    ramp = min(1.0, (1.0 - t) / cfg.lr_rampdown)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    return lr * ramp * min(1.0, t / cfg.lr_rampup)


def _noise_reg(noises: list[torch.Tensor]) -> torch.Tensor:
    """StyleGAN2 projector's regulariser: squared autocorrelation at shifts 1 over a pyramid, per image."""
    loss = 0
    for n in noises:
        while True:
            loss = loss + (n * torch.roll(n, 1, 3)).mean((1, 2, 3)) ** 2 + (n * torch.roll(n, 1, 2)).mean((1, 2, 3)) ** 2
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, 2)
    return loss


@dataclass
class Projection:
    latents: torch.Tensor        # [B, L, D] edit-space latents (CPU)
    recon: torch.Tensor          # [B, 3, R, R] reconstructions in [-1, 1] (CPU)
    loss: torch.Tensor           # [B] final perceptual + pixel loss
    noises: list | None = None   # StyleGAN2 with noise="optimise": per-photo noise maps


def project(backbone, vgg, targets: torch.Tensor, cfg: InvertConfig, progress: bool = False) -> Projection:
    """Optimise one edit-space latent per target image [B, 3, R, R] in [-1, 1] (all at once, on the
    backbone's device). Each photo's loss is its own: the batch only shares the forward passes."""
    from tqdm.auto import tqdm

    cfg.check()
    dev = backbone.device
    stylegan = backbone.edit_space == "w+"
    starts = 1 if stylegan else cfg.starts
    n_photos = targets.shape[0]
    targets = targets.to(dev).repeat_interleave(starts, 0)       # [photo0 start0, photo0 start1, ...]
    b = targets.shape[0]
    lr = cfg.lr if cfg.lr is not None else (0.1 if stylegan else 0.03)
    g = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        if stylegan:
            z = torch.randn(10_000, backbone.z_dim, generator=g).to(dev)
            w = torch.cat([backbone.generator.mapping(c) for c in z.split(1000)])
            w_avg, w_std = w.mean(0), float((w - w.mean(0)).pow(2).sum(1).mean().sqrt())
            lat = w_avg[None, None].repeat(b, backbone.n_layers, 1)
        else:
            # z space is not convex around a face: start each photo from the nearest of many samples
            z = torch.randn(cfg.init_samples, backbone.z_dim, generator=g).to(dev)
            cands = backbone.to_edit(z)
            ft = _unit_features(vgg, targets[::starts])
            dist = torch.cat([_pairwise(_unit_features(vgg, backbone.synthesize(c)), ft) for c in cands.split(32)])
            lat = cands[dist.topk(starts, dim=0, largest=False).indices.T.reshape(-1)].clone()   # [b, 1, D]
            w_std = 1.0
    lat = lat.clone().requires_grad_(True)
    params = [lat]
    noises = None
    if stylegan and cfg.noise == "optimise":
        noises = [torch.randn(b, 1, n.shape[2], n.shape[3], generator=g).to(dev).requires_grad_(True)
                  for n in backbone.generator.constant_noise()]
        params += noises
    opt = torch.optim.Adam(params, betas=(0.9, 0.999), lr=lr)

    with torch.no_grad():
        target_features = _unit_features(vgg, targets)   # fixed: not recomputed at every step

    def render(latents):
        if noises is not None:
            return backbone.generator.synthesis(latents, noise=noises)
        return backbone.synthesize(latents)

    for step in tqdm(range(cfg.steps), desc="invert", disable=not progress, leave=False):
        t = step / cfg.steps
        for group in opt.param_groups:
            group["lr"] = _lr_at(t, cfg, lr)
        x_in = lat
        if stylegan:
            strength = w_std * cfg.latent_noise * max(0.0, 1 - t / cfg.noise_ramp) ** 2
            x_in = lat + torch.randn(lat.shape, generator=g).to(dev) * strength
        x = render(x_in)
        per = _distance(_unit_features(vgg, x), target_features) + cfg.pixel_weight * (x - targets).pow(2).mean((1, 2, 3))
        loss = per.sum()
        if noises is not None:
            loss = loss + cfg.noise_weight * _noise_reg(noises).sum()
        if not stylegan:
            r = lat.norm(dim=-1).mean(1) / math.sqrt(backbone.z_dim)
            loss = loss + cfg.prior_weight * ((r - 1) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if noises is not None:
            with torch.no_grad():
                for n in noises:
                    n -= n.mean((1, 2, 3), keepdim=True)
                    n /= n.pow(2).mean((1, 2, 3), keepdim=True).sqrt()
    with torch.no_grad():
        x = render(lat)
        per = _distance(_unit_features(vgg, x), target_features) + cfg.pixel_weight * (x - targets).pow(2).mean((1, 2, 3))
    if starts > 1:                                                   # the best start of each photo
        best = per.view(n_photos, starts).argmin(1) + torch.arange(n_photos, device=dev) * starts
        lat, x, per = lat[best], x[best], per[best]
    return Projection(lat.detach().cpu(), x.float().cpu(), per.float().cpu(),
                      None if noises is None else [n.detach().cpu() for n in noises])
