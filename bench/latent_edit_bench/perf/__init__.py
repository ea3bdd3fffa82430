"""`bench perf`: the throughput benchmark and its two side questions, one module each.

throughput.py   the three hot paths (G forward, render + instruments, an HFLD step) beside the GPU goals
precision.py    ``--precision``: how far half-precision autocast moves what a run measures
estimate.py     ``--estimate``: a run's device-hours from a perf CSV
reference.py    the official EYE loop's structure, the baseline of (c)
backbones.py    the backbones timed: the embedded DCGAN, a seeded random StyleGAN2
"""

from latent_edit_bench.perf.backbones import BACKBONES, make_backbone, random_stylegan2, write_random_stylegan2
from latent_edit_bench.perf.estimate import hours, rates, run_estimate, work
from latent_edit_bench.perf.precision import run_precision
from latent_edit_bench.perf.throughput import run_perf

__all__ = ["BACKBONES", "hours", "make_backbone", "random_stylegan2", "rates", "run_estimate", "run_perf",
           "run_precision", "work", "write_random_stylegan2"]
