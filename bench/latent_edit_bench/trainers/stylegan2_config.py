"""The settings of one StyleGAN2 training call (:class:`TrainConfig`): their defaults, checks, and what a resume must match."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from latent_edit_bench.errors import BenchError

# settings that define a run: a resumed call must agree on all of them
RUN_KEYS = ("size", "batch_size", "max_channels", "channels", "style_dim", "z_dim", "n_mlp", "lr", "r1_gamma",
            "r1_every", "pl_weight", "pl_every", "mixing_prob", "ema_kimg", "ema_rampup", "mixed_precision", "seed",
            "teacher", "distil_steps", "distil_perceptual")
# values of keys added later, as runs that predate them had them
_KEY_DEFAULTS = {"channels": None, "z_dim": None, "distil_steps": 0, "distil_perceptual": 0.0}


def default_r1_gamma(size: int, batch_size: int) -> float:
    """StyleGAN2-ADA's 'auto' heuristic: 0.0002 * size^2 / batch."""
    return 0.0002 * size ** 2 / batch_size


@dataclass
class TrainConfig:
    """Everything a ``train_stylegan2`` call takes besides its output folder; checked on construction,
    with ``device``, ``r1_gamma`` and ``channels`` resolved (a torch.device, a float, {int: int}).

    steps: train up to this step (in all, over resumed calls). r1_gamma: R1 weight (default:
    StyleGAN2-ADA's 0.0002 size^2 / batch). pl_weight: path-length weight (0 = off; StyleGAN2 used 2).
    mixed_precision: None, "bf16" or "fp16" autocast of the main G/D passes, CUDA only (regularisers stay
    in float32). eval_every: call ``eval_fn(G_ema, step)`` every that many steps and at the end; its dict
    (kid, kid_std, fid, floor) goes to quality.csv. The default eval_fn is KID/FID on face-api descriptors
    against the DCGAN (``eval_n`` samples). teacher: the data source (default: the embedded DCGAN backbone).
    channels: {resolution: width} overriding the max_channels table (see ``stylegan2_channels``).
    z_dim: width of the student's z (default style_dim). distil_steps: the first that many steps are a
    warm start: G learns G(z) = teacher(z) for the teacher's own z (L1 + ``distil_perceptual`` x the
    vgg16-stlpips content distance; z_dim must equal the teacher's) while D trains as usual, so the
    adversarial steps after them start from a G that already draws faces and a D that has seen them.
    deadline: a ``time.monotonic()`` value; the call stops after the step during which it passed and
    still writes the checkpoint, samples and (with eval_every) a last quality row. A later call resumes.
    """

    steps: int
    batch_size: int = 16
    size: int = 64
    max_channels: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    lr: float = 0.002
    r1_gamma: float | None = None
    r1_every: int = 16
    pl_weight: float = 0.0
    pl_every: int = 4
    mixing_prob: float = 0.9
    ema_kimg: float = 10.0
    ema_rampup: float | None = 0.05
    ada: bool = False
    mixed_precision: str | None = None
    device: Any = None                 # None: CUDA if there is one, else the CPU
    seed: int = 0
    log_every: int = 50
    snapshot_every: int = 1000
    n_sample: int = 32
    eval_every: int | None = None
    eval_fn: Callable[[Any, int], dict] | None = field(default=None, repr=False)
    eval_n: int = 1000
    progress: bool = True
    resume: bool = True
    teacher: Any = field(default=None, repr=False)
    channels: dict | None = None
    z_dim: int | None = None
    distil_steps: int = 0
    distil_perceptual: float = 0.0
    deadline: float | None = None

    def __post_init__(self):
        self.device = torch.device(self.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        for name in ("steps", "batch_size", "r1_every", "pl_every", "log_every", "snapshot_every"):
            if int(getattr(self, name)) < 1:
                raise BenchError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.eval_every is not None and self.eval_every < 1:
            raise BenchError(f"eval_every must be at least 1, got {self.eval_every}")
        if self.ada:
            raise BenchError("ada=True: adaptive discriminator augmentation is not implemented (the DCGAN gives "
                             "unlimited fresh data, so D cannot overfit a finite set)")
        if self.mixed_precision not in (None, "bf16", "fp16"):
            raise BenchError(f"mixed_precision must be None, 'bf16' or 'fp16', got {self.mixed_precision!r}")
        if self.mixed_precision and self.device.type != "cuda":
            raise BenchError(f"mixed_precision={self.mixed_precision!r} needs a CUDA GPU (on this {self.device.type} "
                             "bf16/fp16 are emulated and 20-280x slower); train in float32 here")
        if self.size < 8 or self.size & (self.size - 1):
            raise BenchError(f"size must be a power of 2 >= 8, got {self.size}")
        if self.distil_steps < 0 or self.distil_perceptual < 0:
            raise BenchError(f"distil_steps and distil_perceptual must be >= 0, got {self.distil_steps} and "
                             f"{self.distil_perceptual}")
        if self.batch_size % min(self.batch_size, 4):
            raise BenchError(f"batch_size must be a multiple of 4 (the discriminator's minibatch-stddev group), "
                             f"got {self.batch_size}")
        if self.channels is not None:
            self.channels = {int(r): int(c) for r, c in self.channels.items()}
        self.r1_gamma = default_r1_gamma(self.size, self.batch_size) if self.r1_gamma is None else float(self.r1_gamma)

    def check_teacher(self, teacher) -> None:
        """BenchError if ``teacher`` cannot supply this run's images (or, for a warm start, its z)."""
        if self.size > teacher.resolution:
            raise BenchError(f"size {self.size} is above the teacher's resolution {teacher.resolution}")
        z_dim = self.z_dim or self.style_dim
        if self.distil_steps and z_dim != teacher.z_dim:
            raise BenchError(f"distil_steps needs the student's z to be the teacher's: z_dim {z_dim} "
                             f"!= the teacher's {teacher.z_dim} (pass z_dim={teacher.z_dim})")

    def run_settings(self, teacher_name: str) -> dict:
        """The settings stored in the checkpoint as ``config`` (plain values; :data:`RUN_KEYS` must match on resume)."""
        return dict(size=int(self.size), batch_size=int(self.batch_size), max_channels=int(self.max_channels),
                    style_dim=int(self.style_dim), n_mlp=int(self.n_mlp), lr=float(self.lr), r1_gamma=self.r1_gamma,
                    r1_every=int(self.r1_every), pl_weight=float(self.pl_weight), pl_every=int(self.pl_every),
                    mixing_prob=float(self.mixing_prob), ema_kimg=float(self.ema_kimg),
                    ema_rampup=None if self.ema_rampup is None else float(self.ema_rampup),
                    mixed_precision=self.mixed_precision, seed=int(self.seed), teacher=teacher_name,
                    steps=int(self.steps), channels=self.channels, z_dim=None if self.z_dim is None else int(self.z_dim),
                    distil_steps=int(self.distil_steps), distil_perceptual=float(self.distil_perceptual))

    @property
    def g_kwargs(self) -> dict:
        """Generator(**g_kwargs) of the student."""
        kw = dict(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp, channel_multiplier=2,
                  max_channels=self.max_channels)
        if self.channels is not None:
            kw["channels"] = self.channels
        if self.z_dim is not None:
            kw["z_dim"] = int(self.z_dim)
        return kw

    @property
    def d_kwargs(self) -> dict:
        """Discriminator(**d_kwargs) of the run."""
        kw = dict(size=self.size, channel_multiplier=2, max_channels=self.max_channels)
        if self.channels is not None:
            kw["channels"] = self.channels
        return kw


def check_resumable(path: Path, old: dict, new: dict) -> None:
    """BenchError unless the run settings ``old`` stored in checkpoint ``path`` agree with ``new`` on :data:`RUN_KEYS`."""
    differ = {k: (old.get(k, _KEY_DEFAULTS.get(k)), new[k]) for k in RUN_KEYS
              if old.get(k, _KEY_DEFAULTS.get(k)) != new[k]}
    if differ:
        listing = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in differ.items())
        raise BenchError(f"{path} belongs to a run with other settings ({listing}); "
                         "use another output folder or pass resume=False to start over")
