"""The terms of StyleGAN2's objective (Karras et al. 2020): losses, lazy regularisers, style mixing, G_ema's decay.

As in rosinality/stylegan2-pytorch train.py and NVlabs/stylegan2-ada-pytorch (training/loss.py); the
paired loss is this package's warm start (G(z) = teacher(z)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import autograd

from latent_edit_bench.backbones.stylegan2 import Generator


def ema_beta(batch_size: int, images_seen: int, ema_kimg: float, ema_rampup: float | None) -> float:
    """Per-step decay of G_ema: half-life of ``ema_kimg`` thousand images, shorter early on (rampup)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, images_seen * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(g_ema: torch.nn.Module, g: torch.nn.Module, beta: float) -> None:
    # one fused kernel per group of tensors, not one launch per parameter
    torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1 - beta)
    for b_ema, b in zip(g_ema.buffers(), g.buffers()):
        b_ema.copy_(b)


def d_logistic_loss(real_pred, fake_pred):
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred):
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred, real_img):
    """E ||grad_x D(x)||^2 over reals (the R1 of Mescheder et al. 2018)."""
    (grad,) = autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.square().reshape(grad.shape[0], -1).sum(1).mean()


def path_length_penalty(fake_img, latents, mean_path_length, decay: float = 0.01):
    """(|J_w^T y| - a)^2 with y ~ N(0, I) / sqrt(HW), a the running mean of the path lengths."""
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = autograd.grad((fake_img * noise).sum(), latents, create_graph=True)
    lengths = grad.square().sum(2).mean(1).sqrt()
    path_mean = mean_path_length + decay * (lengths.mean().detach() - mean_path_length)
    return (lengths - path_mean).square().mean(), path_mean


def paired_loss(student_img, teacher_img, perceptual=None, perceptual_weight: float = 0.0):
    """Distillation loss of a student image against the teacher's image of the same z: L1, plus the
    mean squared difference of ``perceptual``'s conv_1..conv_4 maps (EYE's content term) if weighted."""
    loss = (student_img - teacher_img).abs().mean()
    if perceptual is not None and perceptual_weight > 0:
        with torch.no_grad():
            f_t = perceptual(teacher_img)
        f_s = perceptual(student_img)
        loss = loss + perceptual_weight * sum(F.mse_loss(f_s[k].float(), f_t[k].float()) for k in f_t)
    return loss


def make_latents(G: Generator, z: torch.Tensor, z2: torch.Tensor, cutoff: int) -> torch.Tensor:
    """W+ from z, with layers >= cutoff taken from z2 (style mixing; cutoff = n_latent: none)."""
    w = G.mapping(z)[:, None].repeat(1, G.n_latent, 1)
    if cutoff < G.n_latent:
        w2 = G.mapping(z2)[:, None]
        keep = torch.arange(G.n_latent, device=w.device)[None, :, None] < cutoff
        w = torch.where(keep, w, w2)
    return w
