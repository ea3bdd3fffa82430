"""Distil a small StyleGAN2 from the embedded DCGAN: GAN training on DCGAN samples made on the fly.

    train_stylegan2("runs/sg2-64", steps=20000, batch_size=32, device="cuda")   # a TrainConfig's fields
    export_stylegan2("runs/sg2-64/checkpoint.pt", "sg2-64.safetensors")        # .stylegan2_export
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
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from latent_edit_bench.backbones.formats import SAFETENSORS_FORMAT
from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator
from latent_edit_bench.errors import BenchError
from latent_edit_bench.trainers.stylegan2_config import TrainConfig, check_resumable
# export_stylegan2 is a re-export: `bench zoo train-stylegan2` imports it with train_stylegan2 from here
from latent_edit_bench.trainers.stylegan2_export import export_stylegan2  # noqa: F401
from latent_edit_bench.trainers.stylegan2_files import (CHECKPOINT, LOG_FIELDS, QUALITY_FIELDS, append_rows, atomic_save,
                                                        load_checkpoint, truncate_csv)
from latent_edit_bench.trainers.stylegan2_losses import (d_logistic_loss, ema_beta, g_nonsaturating_loss, make_latents,
                                                         paired_loss, path_length_penalty, r1_penalty, update_ema)

SAMPLE_SEED = 123_456     # fixed latents of the sample grids


@dataclass
class TrainResult:
    out_dir: Path
    step: int                               # steps done in all (all calls)
    checkpoint: Path
    log: list[dict] = field(default_factory=list)        # log rows written by this call
    quality: list[dict] = field(default_factory=list)    # quality rows written by this call
    stopped_early: bool = False             # the deadline came before ``steps``


class StepLosses(NamedTuple):
    """What one training step leaves for its log row."""

    d_loss: torch.Tensor
    g_loss: torch.Tensor
    real_pred: torch.Tensor
    fake_pred: torch.Tensor
    distil: bool


def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed for one (run seed, step, stream); SeedSequence decorrelates neighbouring inputs."""
    return int(np.random.SeedSequence([int(seed), int(step), int(stream)]).generate_state(2, np.uint64)[0] >> 1)


def train_stylegan2(out_dir, steps: int, **settings) -> TrainResult:
    """Train a StyleGAN2 on the teacher's samples up to step ``steps`` (in all, over resumed calls);
    ``settings``: the other fields of :class:`TrainConfig`, which documents them."""
    return StyleGAN2Trainer(out_dir, TrainConfig(steps=steps, **settings)).run()


class StyleGAN2Trainer:
    """One training call: the teacher, G, G_ema, D and their optimisers (resumed from the folder's
    checkpoint), and the loop in named steps: :meth:`d_step`, :meth:`r1_step`, :meth:`g_step`,
    :meth:`pl_step`, then G_ema, the log row, the quality row and the snapshot."""

    def __init__(self, out_dir, cfg: TrainConfig):
        self.out_dir, self.cfg, self.device = Path(out_dir), cfg, cfg.device
        self.teacher = self._load_teacher()
        self.settings = cfg.run_settings(getattr(self.teacher, "name", "dcgan"))
        self._build()
        self.ckpt_path = self.out_dir / CHECKPOINT
        self.step, self.mean_path_length = 0, 0.0
        self._resume_or_clear()
        self.saved, self.evaluated = self.step, None     # the steps of the last checkpoint and quality row
        self.sample_z = torch.randn(cfg.n_sample, self.G.z_dim,
                                    generator=torch.Generator().manual_seed(SAMPLE_SEED)).to(self.device)
        self.eval_fn = cfg.eval_fn
        if cfg.eval_every and self.eval_fn is None:
            self.eval_fn = default_eval_fn(self.teacher, cfg.size, n=cfg.eval_n, device=self.device)
        self.perceptual = None
        if cfg.distil_steps and cfg.distil_perceptual > 0:
            from latent_edit_bench.instruments.vgg import vgg16_stlpips   # a fixed part of the loss, not a plugin choice
            self.perceptual = vgg16_stlpips().to(self.device).eval().requires_grad_(False)
        self.cast = _autocast(self.device, cfg.mixed_precision)
        self.log_rows: list[dict] = []
        self.quality_rows: list[dict] = []
        self.r1_last = self.pl_last = float("nan")

    # -- set-up ------------------------------------------------------------------------------------

    def _load_teacher(self):
        teacher = self.cfg.teacher
        if teacher is None:
            from latent_edit_bench.backbones.plugin import dcgan_digiface
            teacher = dcgan_digiface()
        teacher = teacher.to(self.device).eval().requires_grad_(False)
        self.cfg.check_teacher(teacher)
        return teacher

    def _build(self) -> None:
        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed)   # initial weights
        self.G = Generator(**cfg.g_kwargs).to(device)
        self.D = Discriminator(**cfg.d_kwargs).to(device)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # lazy regularisation: the regulariser runs every k steps with weight k, and Adam's lr and betas
        # are corrected so one regularised interval moves the weights as k + 1 plain steps would
        d_c = cfg.r1_every / (cfg.r1_every + 1)
        g_c = cfg.pl_every / (cfg.pl_every + 1) if cfg.pl_weight > 0 else 1.0
        self.g_optim = torch.optim.Adam(self.G.parameters(), lr=cfg.lr * g_c, betas=(0.0, 0.99 ** g_c))
        self.d_optim = torch.optim.Adam(self.D.parameters(), lr=cfg.lr * d_c, betas=(0.0, 0.99 ** d_c))
        self.scaler_g = self.scaler_d = None
        if cfg.mixed_precision == "fp16":
            self.scaler_g, self.scaler_d = torch.amp.GradScaler("cuda"), torch.amp.GradScaler("cuda")

    def _resume_or_clear(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.cfg.resume and self.ckpt_path.is_file():
            state = load_checkpoint(self.ckpt_path)
            check_resumable(self.ckpt_path, state.get("config", {}), self.settings)
            self.G.load_state_dict(state["g"])
            self.G_ema.load_state_dict(state["g_ema"])
            self.D.load_state_dict(state["d"])
            self.g_optim.load_state_dict(state["g_optim"])
            self.d_optim.load_state_dict(state["d_optim"])
            if self.scaler_g is not None and "scaler_g" in state:
                self.scaler_g.load_state_dict(state["scaler_g"])
                self.scaler_d.load_state_dict(state["scaler_d"])
            self.step, self.mean_path_length = int(state["step"]), float(state["mean_path_length"])
            torch.set_rng_state(state["rng_cpu"])
            if self.device.type == "cuda" and "rng_cuda" in state:
                torch.cuda.set_rng_state(state["rng_cuda"], self.device)
            for name in ("log.csv", "quality.csv"):
                truncate_csv(self.out_dir / name, self.step)
        elif not self.cfg.resume:
            for name in (CHECKPOINT, "log.csv", "quality.csv"):
                (self.out_dir / name).unlink(missing_ok=True)

    # -- the data of step k: a function of (seed, k) only -----------------------------------------

    def real_batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's images of step k and the z they came from (the distillation pairs)."""
        cfg, teacher = self.cfg, self.teacher
        with torch.no_grad():
            z = teacher.sample_z(cfg.batch_size, step_seed(cfg.seed, k, 0))
            x = teacher.synthesize(teacher.to_edit(z)).float()
            if x.shape[-1] != cfg.size:
                x = F.interpolate(x, size=(cfg.size, cfg.size), mode="area")
        return x.contiguous(memory_format=torch.channels_last), z

    def fake_latents(self, k: int, stream: int) -> torch.Tensor:
        """The student's W+ latents of step k, style-mixed with probability ``mixing_prob``."""
        cfg, G = self.cfg, self.G
        g = torch.Generator().manual_seed(step_seed(cfg.seed, k, stream))
        z = torch.randn(2, cfg.batch_size, G.z_dim, generator=g)
        mix = torch.rand((), generator=g).item() < cfg.mixing_prob
        cutoff = int(torch.randint(1, G.n_latent, (), generator=g)) if mix else G.n_latent
        return make_latents(G, z[0].to(self.device), z[1].to(self.device), cutoff)

    # -- the steps ---------------------------------------------------------------------------------

    def d_step(self, real: torch.Tensor):
        """D: logistic loss on fresh fakes and the reals; returns (d_loss, real_pred, fake_pred)."""
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with self.cast:
            fake = self.G.synthesis(self.fake_latents(self.step, 2), noise_mode="random")
            fake_pred, real_pred = self.D(fake), self.D(real)
            d_loss = d_logistic_loss(real_pred.float(), fake_pred.float())
        _optimizer_step(d_loss, self.d_optim, self.scaler_d)
        return d_loss, real_pred, fake_pred

    def r1_step(self, real: torch.Tensor) -> None:
        """Lazy R1 on the reals, in float32 (double backward through autocast is not worth it)."""
        real_r = real.detach().requires_grad_(True)
        pred = self.D(real_r)
        r1 = r1_penalty(pred, real_r)
        self.d_optim.zero_grad(set_to_none=True)
        (self.cfg.r1_gamma / 2 * r1 * self.cfg.r1_every + 0 * pred[0, 0]).backward()
        self.d_optim.step()
        self.r1_last = r1.detach()

    def g_step(self, real: torch.Tensor, real_z: torch.Tensor, distil: bool) -> torch.Tensor:
        """G: the non-saturating loss; during the warm start, the paired loss against the teacher instead."""
        G = self.G
        G.requires_grad_(True)
        self.D.requires_grad_(False)
        with self.cast:
            if distil:
                fake = G.synthesis(G.mapping(real_z), noise_mode="random")
                g_loss = paired_loss(fake.float(), real, self.perceptual, self.cfg.distil_perceptual)
            else:
                fake = G.synthesis(self.fake_latents(self.step, 3), noise_mode="random")
                g_loss = g_nonsaturating_loss(self.D(fake).float())
        _optimizer_step(g_loss, self.g_optim, self.scaler_g)
        return g_loss

    def pl_step(self) -> None:
        """Lazy path-length regularisation of G on half a batch (rosinality's path_batch_shrink = 2)."""
        cfg = self.cfg
        w = self.fake_latents(self.step, 4)[:max(1, cfg.batch_size // 2)].detach().requires_grad_(True)
        img = self.G.synthesis(w, noise_mode="random")
        pl, mean_path_length = path_length_penalty(img, w, self.mean_path_length)
        self.g_optim.zero_grad(set_to_none=True)
        (cfg.pl_weight * cfg.pl_every * pl + 0 * img[0, 0, 0, 0]).backward()
        self.g_optim.step()
        self.mean_path_length = float(mean_path_length)
        self.pl_last = pl.detach()

    def train_step(self) -> StepLosses:
        """One step: D, lazy R1, G, lazy path length, G_ema; the global RNG is re-seeded for it."""
        cfg, step = self.cfg, self.step
        torch.manual_seed(step_seed(cfg.seed, step, 1))   # noise inputs, path-length y: a function of the step
        real, real_z = self.real_batch(step)
        distil = step < cfg.distil_steps
        d_loss, real_pred, fake_pred = self.d_step(real)
        if step % cfg.r1_every == 0:
            self.r1_step(real)
        g_loss = self.g_step(real, real_z, distil)
        if cfg.pl_weight > 0 and step % cfg.pl_every == 0 and not distil:
            self.pl_step()
        update_ema(self.G_ema, self.G, ema_beta(cfg.batch_size, step * cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup))
        self.step += 1
        return StepLosses(d_loss, g_loss, real_pred, fake_pred, distil)

    # -- outputs -----------------------------------------------------------------------------------

    def log_row(self, losses: StepLosses, sec_per_step: float) -> dict:
        """Append the log row of the step just made; BenchError if its losses are not finite."""
        row = {"step": self.step, "kimg": self.step * self.cfg.batch_size / 1000, "d_loss": losses.d_loss.item(),
               "g_loss": losses.g_loss.item(), "r1": float(self.r1_last), "pl": float(self.pl_last),
               "real_score": losses.real_pred.float().mean().item(),
               "fake_score": losses.fake_pred.float().mean().item(),
               "sec_per_step": sec_per_step, "phase": "distil" if losses.distil else "gan"}
        if not (math.isfinite(row["d_loss"]) and math.isfinite(row["g_loss"])):
            raise BenchError(f"training diverged at step {self.step} (d_loss {row['d_loss']}, g_loss "
                             f"{row['g_loss']}); try a larger r1_gamma or a lower lr")
        append_rows(self.out_dir / "log.csv", LOG_FIELDS, [row])
        self.log_rows.append(row)
        return row

    def evaluate(self) -> None:
        q = dict(self.eval_fn(self.G_ema, self.step))
        qrow = {"step": self.step, **{k: q.get(k) for k in QUALITY_FIELDS[1:]}}
        append_rows(self.out_dir / "quality.csv", QUALITY_FIELDS, [qrow])
        self.quality_rows.append(qrow)
        self.evaluated = self.step

    def snapshot(self) -> None:
        """The checkpoint (atomic) and the sample grid of the current step."""
        state = {"g": self.G.state_dict(), "g_ema": self.G_ema.state_dict(), "d": self.D.state_dict(),
                 "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(), "step": self.step,
                 "mean_path_length": self.mean_path_length, "config": self.settings, "g_kwargs": self.cfg.g_kwargs,
                 "d_kwargs": self.cfg.d_kwargs, "format": SAFETENSORS_FORMAT, "rng_cpu": torch.get_rng_state(),
                 "torch": str(torch.__version__)}
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        if self.scaler_g is not None:
            state["scaler_g"], state["scaler_d"] = self.scaler_g.state_dict(), self.scaler_d.state_dict()
        state = {k: ({n: t.detach().cpu() for n, t in v.items()} if k in ("g", "g_ema", "d") else v)
                 for k, v in state.items()}
        atomic_save(state, self.ckpt_path)
        self.saved = self.step

        from latent_edit_bench.images import make_grid, save_png

        with torch.no_grad():
            x = self.G_ema.synthesis(self.G_ema.mapping(self.sample_z), noise_mode="const")
        save_png(make_grid(x), self.out_dir / f"samples_{self.step:07d}.png", scale=max(1, 128 // self.cfg.size))

    # -- the loop ----------------------------------------------------------------------------------

    def run(self) -> TrainResult:
        cfg, steps = self.cfg, self.cfg.steps
        bar = None
        if cfg.progress:
            from tqdm import tqdm
            bar = tqdm(total=steps, initial=min(self.step, steps), desc="train-stylegan2", unit="step")
        self.G.train()
        self.D.train()
        t_last, step_last = time.perf_counter(), self.step
        stopped_early, losses = False, None
        while self.step < steps:
            if cfg.deadline is not None and time.monotonic() >= cfg.deadline:
                stopped_early = True
                break
            losses = self.train_step()
            step = self.step
            if step % cfg.log_every == 0 or step == steps:
                now = time.perf_counter()
                row = self.log_row(losses, (now - t_last) / max(step - step_last, 1))
                t_last, step_last = now, step
                if bar is not None:
                    bar.set_postfix(d=f"{row['d_loss']:.3f}", g=f"{row['g_loss']:.3f}")
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == steps):
                self.evaluate()
            if step % cfg.snapshot_every == 0 or step == steps:
                self.snapshot()
            if bar is not None:
                bar.update(1)
        if stopped_early:   # the outputs of the step reached, as at the end of a run
            if losses is not None and not all(math.isfinite(v.item()) for v in (losses.d_loss, losses.g_loss)):
                raise BenchError(f"training diverged by step {self.step} (d_loss {losses.d_loss.item()}, g_loss "
                                 f"{losses.g_loss.item()}); try a larger r1_gamma or a lower lr")
            if cfg.eval_every and self.evaluated != self.step:
                self.evaluate()
            if self.saved != self.step:
                self.snapshot()
        if bar is not None:
            bar.close()
        return TrainResult(self.out_dir, self.step, self.ckpt_path, self.log_rows, self.quality_rows, stopped_early)


def _optimizer_step(loss: torch.Tensor, optim: torch.optim.Optimizer, scaler) -> None:
    optim.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        optim.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(optim)
        scaler.update()


def _autocast(device: torch.device, mixed_precision: str | None):
    if mixed_precision is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


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


