"""The run session: the one owner of device, dtype, batch size, the plugins and the instrument pool.

Everything below the CLI gets these from a :class:`Session` instead of choosing its own: a fit's
extra nets (EYE's content net, HFLD's landmarks) and a run's measuring instruments come from one
pool, each loaded once, on the session's device; every batched render -> measure uses the session's
batch size and precision (:func:`latent_edit_bench.batched.map_batches`). Only the CLI (the top of the house)
builds the plugin manager; a session made without one uses the installed plugins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from collections import Counter

import torch

from latent_edit_bench.batched import autocast, map_batches
from latent_edit_bench.errors import BenchError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# What a half-precision run measures is not fp32's numbers: said once at the start of such a run.
# `bench perf --precision` measures by how much, per instrument output, on any device (docs/perf.md).
PRECISION_NOTES = {
    "fp16": "fp16 autocast: every score differs a little from fp32's; compare only with runs of the same --dtype "
            "(bench perf --precision --device cuda measures by how much)",
    "bf16": "bf16 autocast keeps 8 significant bits: attribute scores can move by more than the ladder's tol, so "
            "'reached' and the equal-edit comparison are coarser than in fp32/fp16; prefer --dtype fp16 "
            "(bench perf --precision --device cuda measures by how much)",
}


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)


def keep_freed_cpu_memory() -> bool:
    """Let glibc's malloc keep the memory torch frees, for the next batch to reuse.

    By default glibc serves blocks above a moving threshold with fresh mmaps and returns freed heap tops
    to the system, so every batch of activations is faulted in page by page again. A one-seed GANSpace
    `bench run` on the 2-core CPU: 24.3 s wall with sys 10.5 s by default, 18.4 s with sys 0.5 s with
    the settings below (medians of 3, tools/measure/malloc_cpu.py). Fixed thresholds instead:
    blocks up to 32 MiB (glibc's most) come from the heap, and up to 1 GiB of free heap is kept. Numbers
    are unchanged; only allocation is. Skipped off glibc, where the user set any MALLOC_* variable, and
    with BENCH_MALLOC=default (to compare). Returns whether the settings were made."""
    if (not sys.platform.startswith("linux") or os.environ.get("BENCH_MALLOC") == "default"
            or any(k.startswith("MALLOC_") for k in os.environ)):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        libc.gnu_get_libc_version   # glibc only (musl has no mallopt)
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def default_batch_size(device: torch.device) -> int:
    """Images per batch when ``--batch-size`` is not given: 16 on a CPU, 64 elsewhere. On the 2-core CPU
    larger batches fall out of cache: the probe takes 1.6x as long per image in batches of 64 as in
    batches of 16 (tools/measure/batch_size_cpu.py; 13.1 against 8.2 ms in its last run here)."""
    return 16 if torch.device(device).type == "cpu" else 64


def resolve_device(name: str) -> torch.device:
    """``--device`` -> torch device ("auto": the GPU if there is one); BenchError for a bad name."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise BenchError(f"unknown device {name!r}; valid: auto, cpu, cuda, cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError(f"device {name!r} asked for, but no CUDA GPU is available; use --device cpu")
    return device


def parse_dtype(name: str, device: torch.device) -> torch.dtype:
    """``--dtype`` -> torch dtype; half precision on a CPU is refused: emulated on CPUs without bf16 units
    (20-280x slower), and where it is fast (AMX) bf16 still moves scores by more than the ladder's tol
    (bench perf --precision)."""
    if name not in DTYPES:
        raise BenchError(f"unknown --dtype {name!r}; valid: {', '.join(DTYPES)}")
    if name != "fp32" and torch.device(device).type == "cpu":
        raise BenchError(f"--dtype {name} on a CPU is refused: half precision is emulated on most CPUs (20-280x "
                         f"slower than fp32); use --dtype fp32 (the default), or --device cuda for {name}")
    return DTYPES[name]


class Session:
    """Device, precision, batch size, plugins and one instrument pool, shared by everything in a run.

    ``dtype`` is the precision of rendering and measuring (autocast); parameters stay float32 and every
    stored number is float32. ``loads`` counts instrument loads by name (each should be 1).
    """

    def __init__(self, plugins, device: str | torch.device = "cpu", dtype: str = "fp32",
                 batch_size: int | None = None, progress: bool = False):
        # ``plugins``: the registries (``latent_edit_bench.plugins.get_plugins()``), built by the entry points
        # (cli, api, a job's worker), never here: the pipeline only uses what it is given
        self.plugins = plugins
        self.device = torch.device(device)
        keep_freed_cpu_memory()   # the CPU side of every device: inputs, outputs, and all the work on a CPU
        batch_size = default_batch_size(self.device) if batch_size is None else batch_size
        if batch_size < 1:
            raise BenchError(f"--batch-size must be at least 1, got {batch_size}")
        self.dtype_name, self.dtype = dtype, parse_dtype(dtype, self.device)
        self.batch_size, self.progress = int(batch_size), progress
        self.pool: dict[str, torch.nn.Module] = {}
        self.loads: Counter = Counter()

    # -- models ------------------------------------------------------------------------------------
    def instrument(self, name: str, **options) -> torch.nn.Module:
        """The instrument ``name``: loaded on first use (with ``options``), on the session's device, frozen,
        then shared."""
        if name not in self.pool:
            self.loads[name] += 1
            inst = self.plugins.instruments.create(name, **options)
            self.pool[name] = inst.to(self.device).eval().requires_grad_(False)
        return self.pool[name]

    def backbone(self, name: str, **options):
        return self.plugins.backbones.create(name, **options).to(self.device).eval()

    # -- the batched paths ---------------------------------------------------------------------------
    def autocast(self):
        return autocast(self.device, self.dtype)

    def map(self, fn, x: torch.Tensor, out=None, desc: str | None = None):
        """:func:`map_batches` with the session's device, batch size and precision."""
        return map_batches(fn, x, self.batch_size, device=self.device, out=out, dtype=self.dtype,
                           progress=self.progress and desc is not None, desc=desc)

    def measure(self, backbone, latents: torch.Tensor, roles: dict[str, str], out=None) -> dict[str, torch.Tensor]:
        """Render ``latents`` and run each role's instrument once per batch: {role: [N, ...] float32}.

        Results stay on the device (``out=None``) until the caller writes them."""
        names = list(dict.fromkeys(roles.values()))

        def render_measure(lat):
            x = backbone.synthesize(lat)
            outs = {name: self.instrument(name)(x) for name in names}
            return {role: outs[name][role].float() for role, name in roles.items()}

        return self.map(render_measure, latents, out=out)

    def render(self, backbone, latents: torch.Tensor, out="cpu") -> torch.Tensor:
        """Images [N, 3, H, W] float32 (on the CPU unless ``out`` says otherwise)."""
        return self.map(backbone.synthesize, latents, out=out).float()
