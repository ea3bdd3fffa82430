"""Distil a small StyleGAN2 from the embedded DCGAN: GAN training on DCGAN samples made on the fly.

    train_stylegan2("runs/sg2-64", steps=20000, batch_size=32, device="cuda")
    export_stylegan2("runs/sg2-64/checkpoint.pt", "sg2-64.safetensors")
    backbone = load_stylegan2("sg2-64.safetensors")   # latent_edit_bench.backbones.formats

Why: no StyleGAN2 face weights can be had offline here, but methods that edit W+ need one. The
student learns the DCGAN's image distribution (DigiFace-1M faces, 64 px) and gives the benchmark a
real W+ backbone with a discriminator.

Training follows StyleGAN2 (Karras et al. 2020) as in rosinality/stylegan2-pytorch train.py and
NVlabs/stylegan2-ada-pytorch: non-saturating logistic loss, lazy R1 on reals every ``r1_every``
D steps, optional lazy path-length regularisation every ``pl_every`` G steps, style mixing, Adam
(betas (0, 0.99)) with the lazy-regularisation correction lr * c, beta ** c, c = k / (k + 1), and
G_ema with StyleGAN2-ADA's half-life (``ema_kimg`` thousand images, ramped up over the first
``ema_rampup`` of the images seen). Noise inputs are random during training. ADA is not implemented
(the data stream is unlimited, so the discriminator has nothing to overfit to).

Warm start (``distil_steps``): the first steps train G on pairs instead, G(z) = DCGAN(z) for the
DCGAN's own z (the student's z is then the DCGAN's 100-D z), while D trains as usual; a short GPU
budget (tools/gpu/train_stylegan2_gpu.sh) starts its adversarial steps from a G that already draws faces.
``deadline`` stops a call gracefully at a wall-clock time (outputs written; a later call resumes).

Data: every step draws ``batch_size`` fresh DCGAN samples from seeds that are a function of
(seed, step) only, and so are the student's latents and its noise inputs (the global RNG is
re-seeded per step). A resumed run therefore makes exactly the steps the uninterrupted run would
have: on the CPU its G_ema is bit-identical.

Output folder: ``checkpoint.pt`` (every ``snapshot_every`` steps and at the end of a call; atomic;
rosinality's key names g / d / g_ema / g_optim / d_optim, so ``bench sample --backbone stylegan2
--weights DIR/checkpoint.pt`` reads it too), ``log.csv`` (losses every ``log_every`` steps),
``samples_<step>.png`` (fixed seeds) and, with ``eval_every``, ``quality.csv`` (KID/FID against the
DCGAN, see :mod:`latent_edit_bench.trainers.kid`).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import math
import os
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import autograd

from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone
from latent_edit_bench.errors import BenchError

from latent_edit_bench.backbones.formats import SAFETENSORS_FORMAT as FORMAT  # noqa: E402  (the export format)
CHECKPOINT = "checkpoint.pt"
# g_loss is the paired (distillation) loss while phase is "distil", the non-saturating loss after
LOG_FIELDS = ["step", "kimg", "d_loss", "g_loss", "r1", "pl", "real_score", "fake_score", "sec_per_step", "phase"]
QUALITY_FIELDS = ["step", "kid", "kid_std", "fid", "floor"]
SAMPLE_SEED = 123_456     # fixed latents of the sample grids

# settings that define a run: a resumed call must agree on all of them
_RUN_KEYS = ("size", "batch_size", "max_channels", "channels", "style_dim", "z_dim", "n_mlp", "lr", "r1_gamma",
             "r1_every", "pl_weight", "pl_every", "mixing_prob", "ema_kimg", "ema_rampup", "mixed_precision", "seed",
             "teacher", "distil_steps", "distil_perceptual")
# values of keys added later, as runs that predate them had them
_KEY_DEFAULTS = {"channels": None, "z_dim": None, "distil_steps": 0, "distil_perceptual": 0.0}


@dataclass
class TrainResult:
    out_dir: Path
    step: int                               # steps done in all (all calls)
    checkpoint: Path
    log: list[dict] = field(default_factory=list)        # log rows written by this call
    quality: list[dict] = field(default_factory=list)    # quality rows written by this call
    stopped_early: bool = False             # the deadline came before ``steps``


# -- pieces --------------------------------------------------------------------------------------

def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for one (run seed, step, stream); SeedSequence decorrelates neighbouring inputs."""
    return int(np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(2, np.uint64)[0] >> 1)


def default_r1_gamma(size: int, batch_size: int) -> float:
    """StyleGAN2-ADA's 'auto' heuristic: 0.0002 * size^2 / batch."""
    return 0.0002 * size ** 2 / batch_size


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


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _append_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows(rows)


def _truncate_csv(path: Path, max_step: int) -> None:
    """Drop rows written after the checkpoint a killed run is resumed from (they will be redone)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows and list(rows[0]) or None
    keep = [r for r in rows if int(r["step"]) <= max_step]
    if len(keep) != len(rows) and fields:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)
        os.replace(tmp, path)


def _load_checkpoint(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise BenchError(f"cannot read {path} ({e}); delete it or pass resume=False") from None


def _check_config(path: Path, old: dict, new: dict) -> None:
    differ = {k: (old.get(k, _KEY_DEFAULTS.get(k)), new[k]) for k in _RUN_KEYS
              if old.get(k, _KEY_DEFAULTS.get(k)) != new[k]}
    if differ:
        listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differ.items())
        raise BenchError(f"{path} belongs to a run with other settings ({listing}); "
                         "use another output folder or pass resume=False to start over")


def _autocast(device: torch.device, mixed_precision: str | None):
    if mixed_precision is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


# -- training ------------------------------------------------------------------------------------

def train_stylegan2(out_dir, steps: int, batch_size: int = 16, size: int = 64, max_channels: int = 256,
                    style_dim: int = 512, n_mlp: int = 8, lr: float = 0.002, r1_gamma: float | None = None,
                    r1_every: int = 16, pl_weight: float = 0.0, pl_every: int = 4, mixing_prob: float = 0.9,
                    ema_kimg: float = 10.0, ema_rampup: float | None = 0.05, ada: bool = False,
                    mixed_precision: str | None = None, device=None, seed: int = 0, log_every: int = 50,
                    snapshot_every: int = 1000, n_sample: int = 32, eval_every: int | None = None,
                    eval_fn: Callable[[Generator, int], dict] | None = None, eval_n: int = 1000,
                    progress: bool = True, resume: bool = True, teacher=None, channels: dict | None = None,
                    z_dim: int | None = None, distil_steps: int = 0, distil_perceptual: float = 0.0,
                    deadline: float | None = None) -> TrainResult:
    """Train a StyleGAN2 of ``size`` px on DCGAN samples up to step ``steps`` (in all, over resumed calls).

    r1_gamma: R1 weight (default: StyleGAN2-ADA's 0.0002 size^2 / batch). pl_weight: path-length
    weight (0 = off; StyleGAN2 used 2). mixed_precision: None, "bf16" or "fp16" autocast of the main
    G/D passes, CUDA only (regularisers stay in float32). eval_every: call ``eval_fn(G_ema, step)``
    every that many steps and at the end; its dict (kid, kid_std, fid, floor) goes to quality.csv.
    The default eval_fn is KID/FID on face-api descriptors against the DCGAN (``eval_n`` samples).
    teacher: the data source (default: the embedded DCGAN backbone).
    channels: {resolution: width} overriding the max_channels table (see ``stylegan2_channels``).
    z_dim: width of the student's z (default style_dim). distil_steps: the first that many steps are a
    warm start: G learns G(z) = teacher(z) for the teacher's own z (L1 + ``distil_perceptual`` x the
    vgg16-stlpips content distance; z_dim must equal the teacher's) while D trains as usual, so the
    adversarial steps after them start from a G that already draws faces and a D that has seen them.
    deadline: a ``time.monotonic()`` value; the call stops after the step during which it passed and
    still writes the checkpoint, samples and (with eval_every) a last quality row. A later call resumes.
    """
    out_dir = Path(out_dir)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for name, v in (("steps", steps), ("batch_size", batch_size), ("r1_every", r1_every), ("pl_every", pl_every),
                    ("log_every", log_every), ("snapshot_every", snapshot_every)):
        if int(v) < 1:
            raise BenchError(f"{name} must be at least 1, got {v}")
    if eval_every is not None and eval_every < 1:
        raise BenchError(f"eval_every must be at least 1, got {eval_every}")
    if ada:
        raise BenchError("ada=True: adaptive discriminator augmentation is not implemented (the DCGAN gives "
                         "unlimited fresh data, so D cannot overfit a finite set)")
    if mixed_precision not in (None, "bf16", "fp16"):
        raise BenchError(f"mixed_precision must be None, 'bf16' or 'fp16', got {mixed_precision!r}")
    if mixed_precision and device.type != "cuda":
        raise BenchError(f"mixed_precision={mixed_precision!r} needs a CUDA GPU (on this {device.type} "
                         "bf16/fp16 are emulated and 20-280x slower); train in float32 here")
    if size < 8 or size & (size - 1):
        raise BenchError(f"size must be a power of 2 >= 8, got {size}")
    if distil_steps < 0 or distil_perceptual < 0:
        raise BenchError(f"distil_steps and distil_perceptual must be >= 0, got {distil_steps} and {distil_perceptual}")
    group = min(batch_size, 4)
    if batch_size % group:
        raise BenchError(f"batch_size must be a multiple of 4 (the discriminator's minibatch-stddev group), "
                         f"got {batch_size}")
    if teacher is None:
        from latent_edit_bench.backbones.plugin import dcgan_digiface
        teacher = dcgan_digiface()
    teacher = teacher.to(device).eval().requires_grad_(False)
    if size > teacher.resolution:
        raise BenchError(f"size {size} is above the teacher's resolution {teacher.resolution}")
    if distil_steps and (z_dim or style_dim) != teacher.z_dim:
        raise BenchError(f"distil_steps needs the student's z to be the teacher's: z_dim {z_dim or style_dim} "
                         f"!= the teacher's {teacher.z_dim} (pass z_dim={teacher.z_dim})")
    if channels is not None:
        channels = {int(r): int(c) for r, c in channels.items()}
    r1_gamma = default_r1_gamma(size, batch_size) if r1_gamma is None else float(r1_gamma)

    config = dict(size=int(size), batch_size=int(batch_size), max_channels=int(max_channels),
                  style_dim=int(style_dim), n_mlp=int(n_mlp), lr=float(lr), r1_gamma=r1_gamma,
                  r1_every=int(r1_every), pl_weight=float(pl_weight), pl_every=int(pl_every),
                  mixing_prob=float(mixing_prob), ema_kimg=float(ema_kimg),
                  ema_rampup=None if ema_rampup is None else float(ema_rampup), mixed_precision=mixed_precision,
                  seed=int(seed), teacher=getattr(teacher, "name", "dcgan"), steps=int(steps), channels=channels,
                  z_dim=None if z_dim is None else int(z_dim), distil_steps=int(distil_steps),
                  distil_perceptual=float(distil_perceptual))
    g_kwargs = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=2, max_channels=max_channels)
    d_kwargs = dict(size=size, channel_multiplier=2, max_channels=max_channels)
    if channels is not None:
        g_kwargs["channels"] = d_kwargs["channels"] = channels
    if z_dim is not None:
        g_kwargs["z_dim"] = int(z_dim)

    torch.manual_seed(seed)   # initial weights
    G = Generator(**g_kwargs).to(device)
    D = Discriminator(**d_kwargs).to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)

    # lazy regularisation: the regulariser runs every k steps with weight k, and Adam's lr and betas
    # are corrected so one regularised interval moves the weights as k + 1 plain steps would
    d_c = r1_every / (r1_every + 1)
    g_c = pl_every / (pl_every + 1) if pl_weight > 0 else 1.0
    g_optim = torch.optim.Adam(G.parameters(), lr=lr * g_c, betas=(0.0, 0.99 ** g_c))
    d_optim = torch.optim.Adam(D.parameters(), lr=lr * d_c, betas=(0.0, 0.99 ** d_c))
    scaler_g = scaler_d = None
    if mixed_precision == "fp16":
        scaler_g, scaler_d = torch.amp.GradScaler("cuda"), torch.amp.GradScaler("cuda")

    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT
    step, mean_path_length = 0, 0.0
    if resume and ckpt_path.is_file():
        state = _load_checkpoint(ckpt_path)
        _check_config(ckpt_path, state.get("config", {}), config)
        G.load_state_dict(state["g"])
        G_ema.load_state_dict(state["g_ema"])
        D.load_state_dict(state["d"])
        g_optim.load_state_dict(state["g_optim"])
        d_optim.load_state_dict(state["d_optim"])
        if scaler_g is not None and "scaler_g" in state:
            scaler_g.load_state_dict(state["scaler_g"])
            scaler_d.load_state_dict(state["scaler_d"])
        step, mean_path_length = int(state["step"]), float(state["mean_path_length"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and "rng_cuda" in state:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        for name in ("log.csv", "quality.csv"):
            _truncate_csv(out_dir / name, step)
    elif not resume:
        for name in (CHECKPOINT, "log.csv", "quality.csv"):
            (out_dir / name).unlink(missing_ok=True)

    def save_checkpoint():
        state = {"g": G.state_dict(), "g_ema": G_ema.state_dict(), "d": D.state_dict(),
                 "g_optim": g_optim.state_dict(), "d_optim": d_optim.state_dict(), "step": step,
                 "mean_path_length": mean_path_length, "config": config, "g_kwargs": g_kwargs,
                 "d_kwargs": d_kwargs, "format": FORMAT, "rng_cpu": torch.get_rng_state(),
                 "torch": str(torch.__version__)}
        if device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(device)
        if scaler_g is not None:
            state["scaler_g"], state["scaler_d"] = scaler_g.state_dict(), scaler_d.state_dict()
        state = {k: ({n: t.detach().cpu() for n, t in v.items()} if k in ("g", "g_ema", "d") else v)
                 for k, v in state.items()}
        _atomic_save(state, ckpt_path)
        done["saved"] = step

    from latent_edit_bench.images import make_grid, save_png

    sample_z = torch.randn(n_sample, G.z_dim, generator=torch.Generator().manual_seed(SAMPLE_SEED)).to(device)

    def save_samples():
        with torch.no_grad():
            x = G_ema.synthesis(G_ema.mapping(sample_z), noise_mode="const")
        save_png(make_grid(x), out_dir / f"samples_{step:07d}.png", scale=max(1, 128 // size))

    if eval_every and eval_fn is None:
        eval_fn = default_eval_fn(teacher, size, n=eval_n, device=device)

    def real_batch(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's images of step k and the z they came from (the distillation pairs)."""
        with torch.no_grad():
            z = teacher.sample_z(batch_size, step_seed(seed, k, 0))
            x = teacher.synthesize(teacher.to_edit(z)).float()
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="area")
        return x.contiguous(memory_format=torch.channels_last), z

    perceptual = None
    if distil_steps and distil_perceptual > 0:
        from latent_edit_bench.instruments.vgg import vgg16_stlpips   # a fixed part of the loss, not a plugin choice
        perceptual = vgg16_stlpips().to(device).eval().requires_grad_(False)

    def fake_latents(k: int, stream: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(step_seed(seed, k, stream))
        z = torch.randn(2, batch_size, G.z_dim, generator=g)
        mix = torch.rand((), generator=g).item() < mixing_prob
        cutoff = int(torch.randint(1, G.n_latent, (), generator=g)) if mix else G.n_latent
        return make_latents(G, z[0].to(device), z[1].to(device), cutoff)

    def optimizer_step(loss, optim, scaler):
        optim.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optim.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optim)
            scaler.update()

    cast = _autocast(device, mixed_precision)
    log_rows, quality_rows = [], []

    done = {"saved": step, "evaluated": None}   # the steps of the last checkpoint and quality row

    def evaluate():
        q = dict(eval_fn(G_ema, step))
        qrow = {"step": step, **{k: q.get(k) for k in QUALITY_FIELDS[1:]}}
        _append_rows(out_dir / "quality.csv", QUALITY_FIELDS, [qrow])
        quality_rows.append(qrow)
        done["evaluated"] = step
    r1_last = pl_last = float("nan")
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=steps, initial=min(step, steps), desc="train-stylegan2", unit="step")
    G.train()
    D.train()
    t_last, step_last = time.perf_counter(), step
    stopped_early, losses = False, None
    while step < steps:
        if deadline is not None and time.monotonic() >= deadline:
            stopped_early = True
            break
        torch.manual_seed(step_seed(seed, step, 1))   # noise inputs, path-length y: a function of the step
        real, real_z = real_batch(step)
        distil = step < distil_steps

        # D: logistic loss on fresh fakes and reals
        G.requires_grad_(False)
        D.requires_grad_(True)
        with cast:
            fake = G.synthesis(fake_latents(step, 2), noise_mode="random")
            fake_pred, real_pred = D(fake), D(real)
            d_loss = d_logistic_loss(real_pred.float(), fake_pred.float())
        optimizer_step(d_loss, d_optim, scaler_d)

        if step % r1_every == 0:   # lazy R1, float32 (double backward through autocast is not worth it)
            real_r = real.detach().requires_grad_(True)
            pred = D(real_r)
            r1 = r1_penalty(pred, real_r)
            d_optim.zero_grad(set_to_none=True)
            (r1_gamma / 2 * r1 * r1_every + 0 * pred[0, 0]).backward()
            d_optim.step()
            r1_last = r1.detach()

        # G: non-saturating loss; during the warm start, the paired loss against the teacher instead
        G.requires_grad_(True)
        D.requires_grad_(False)
        with cast:
            if distil:
                fake = G.synthesis(G.mapping(real_z), noise_mode="random")
                g_loss = paired_loss(fake.float(), real, perceptual, distil_perceptual)
            else:
                fake = G.synthesis(fake_latents(step, 3), noise_mode="random")
                g_loss = g_nonsaturating_loss(D(fake).float())
        optimizer_step(g_loss, g_optim, scaler_g)
        losses = (d_loss, g_loss)

        if pl_weight > 0 and step % pl_every == 0 and not distil:
            pl_batch = max(1, batch_size // 2)   # rosinality's path_batch_shrink = 2
            w = fake_latents(step, 4)[:pl_batch].detach().requires_grad_(True)
            img = G.synthesis(w, noise_mode="random")
            pl, mean_path_length_t = path_length_penalty(img, w, mean_path_length)
            g_optim.zero_grad(set_to_none=True)
            (pl_weight * pl_every * pl + 0 * img[0, 0, 0, 0]).backward()
            g_optim.step()
            mean_path_length = float(mean_path_length_t)
            pl_last = pl.detach()

        update_ema(G_ema, G, ema_beta(batch_size, step * batch_size, ema_kimg, ema_rampup))
        step += 1

        if step % log_every == 0 or step == steps:
            now = time.perf_counter()
            row = {"step": step, "kimg": step * batch_size / 1000, "d_loss": d_loss.item(), "g_loss": g_loss.item(),
                   "r1": float(r1_last), "pl": float(pl_last), "real_score": real_pred.float().mean().item(),
                   "fake_score": fake_pred.float().mean().item(),
                   "sec_per_step": (now - t_last) / max(step - step_last, 1), "phase": "distil" if distil else "gan"}
            t_last, step_last = now, step
            if not (math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])):
                raise BenchError(f"training diverged at step {step} (d_loss {row['d_loss']}, g_loss "
                                 f"{row['g_loss']}); try a larger r1_gamma or a lower lr")
            _append_rows(out_dir / "log.csv", LOG_FIELDS, [row])
            log_rows.append(row)
            if bar is not None:
                bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}")
        if eval_every and (step % eval_every == 0 or step == steps):
            evaluate()
        if step % snapshot_every == 0 or step == steps:
            save_checkpoint()
            save_samples()
        if bar is not None:
            bar.update(1)
    if stopped_early:   # the outputs of the step reached, as at the end of a run
        if losses is not None and not all(math.isfinite(v.item()) for v in losses):
            raise BenchError(f"training diverged by step {step} (d_loss {losses[0].item()}, g_loss "
                             f"{losses[1].item()}); try a larger r1_gamma or a lower lr")
        if eval_every and done["evaluated"] != step:
            evaluate()
        if done["saved"] != step:
            save_checkpoint()
            save_samples()
    if bar is not None:
        bar.close()
    return TrainResult(out_dir, step, ckpt_path, log_rows, quality_rows, stopped_early)


def default_eval_fn(teacher, size: int, n: int = 1000, device=None) -> Callable[[Generator, int], dict]:
    """KID/FID of G_ema against the teacher on face-api descriptors; the reference sets are made once."""
    from latent_edit_bench.trainers.kid import QualityReference, descriptor_features

    state = {}

    def eval_fn(g_ema: Generator, step: int) -> dict:
        if "ref" not in state:
            state["ref"] = QualityReference(teacher, n=n, size=size, feature_fn=descriptor_features, device=device)
        return state["ref"].measure(g_ema, seed=0)

    # fail now rather than after hours of training when the descriptor's weights are not there
    from latent_edit_bench.instruments import faceapi

    faceapi.descriptor()
    return eval_fn


# -- export --------------------------------------------------------------------------------------

def export_stylegan2(checkpoint, out_path, n_latent_avg: int = 10000, dtype: torch.dtype | None = None,
                     d_path=None) -> Path:
    """Write G_ema and D of a training checkpoint as one safetensors file: tensors ``g_ema.*`` and
    ``d.*``; metadata ``format``, ``g_kwargs``, ``d_kwargs``, ``latent_avg`` (mean W of
    ``n_latent_avg`` samples, seed 0) and ``training`` (config, step), all JSON strings.

    dtype: store the tensors in this dtype (torch.float16 halves the files; the loader upcasts to
    float32). d_path: write D to this second file instead (same folder), named in the first file's
    metadata ``d_file`` with its ``d_sha256``, so that each file stays under a size limit."""
    from safetensors.torch import save_file

    from latent_edit_bench.assets import sha256_file

    checkpoint, out_path = Path(checkpoint), Path(out_path)
    state = _load_checkpoint(checkpoint)
    if state.get("format") != FORMAT:
        raise BenchError(f"{checkpoint} is not a train-stylegan2 checkpoint (format {state.get('format')!r})")
    G = Generator(**state["g_kwargs"])
    G.load_state_dict(state["g_ema"])
    latent_avg = G.mean_latent(n_latent_avg, seed=0)[0]
    # store widths explicitly: the file alone rebuilds the networks, whatever our defaults become
    g_kwargs = {k: v for k, v in state["g_kwargs"].items() if k != "max_channels"}
    g_kwargs["channels"] = {str(r): c for r, c in G.channels.items()}
    d_kwargs = {k: v for k, v in state["d_kwargs"].items() if k != "max_channels"}
    d_kwargs["channels"] = {str(r): c for r, c in Discriminator(**state["d_kwargs"]).channels.items()}

    def cast(t: torch.Tensor) -> torch.Tensor:
        return (t.to(dtype) if dtype is not None and t.is_floating_point() else t).contiguous()

    def write(tensors: dict, meta: dict, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)

    tensors = {f"g_ema.{k}": cast(v) for k, v in state["g_ema"].items()}
    d_tensors = {f"d.{k}": cast(v) for k, v in state["d"].items()}
    meta = {"format": FORMAT, "g_kwargs": json.dumps(g_kwargs), "d_kwargs": json.dumps(d_kwargs),
            "latent_avg": json.dumps([float(v) for v in latent_avg]),
            "training": json.dumps({"config": state["config"], "step": int(state["step"])})}
    if d_path is None:
        tensors.update(d_tensors)
    else:
        d_path = Path(d_path)
        if d_path.resolve().parent != out_path.resolve().parent or d_path.name == out_path.name:
            raise BenchError(f"d_path {d_path} must be another file in the folder of {out_path}")
        write(d_tensors, {"format": FORMAT, "part": "d", "d_kwargs": json.dumps(d_kwargs)}, d_path)
        meta.update(d_file=d_path.name, d_sha256=sha256_file(d_path))
    write(tensors, meta, out_path)
    return out_path


def load_safetensors_stylegan2(path, truncation: float = 1.0, name: str = "stylegan2",
                               map_location="cpu") -> StyleGAN2Backbone:
    """Load an exported file as a backbone (G_ema with constant noise, D attached)."""
    from latent_edit_bench.backbones.formats import load_stylegan2

    return load_stylegan2(path, truncation=truncation, name=name, map_location=map_location)
