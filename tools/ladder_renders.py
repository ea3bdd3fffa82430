"""Renders and seconds of the ladder search per edit unit: this tree's ``ladder_edit`` against the one at a git revision.

    python tools/ladder_renders.py [--ref 9b85053] [--methods ganspace,sefa] [--exact]

Fits each method (quick preset, fit seed 0; cached under a temporary folder) for Male and Bald on the
embedded DCGAN with ``probe``, then runs both versions of ``latent_edit_bench.pipeline.protocol.ladder_edit``
on the same 32 held-out samples at the run's levels (±0.1, ±0.2, ±0.3), twice each, alternating, and
prints the renders scored, the median seconds, the reached fraction, how many strengths are equal,
and the mean |achieved − target| of reached pairs. ``--exact`` sets tol to 1e-12, which turns off
refining early, so what is left to differ is the scan: equal strengths then mean the scan's early stop
changes no bracket.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
LEVELS = (-0.3, -0.2, -0.1, 0.1, 0.2, 0.3)


def protocol_at(rev: str):
    """bench/latent_edit_bench/pipeline/protocol.py as it was at ``rev``, imported as a module of its own."""
    src = subprocess.run(["git", "show", f"{rev}:bench/latent_edit_bench/pipeline/protocol.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / f"protocol_{rev}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ref", default="9b85053")
    ap.add_argument("--methods", default="ganspace,sefa")
    ap.add_argument("--exact", action="store_true")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    from latent_edit_bench.contracts.method import FitContext, fit_or_load
    from latent_edit_bench.pipeline import protocol
    from latent_edit_bench.pipeline.session import keep_freed_cpu_memory
    from latent_edit_bench.plugins import get_plugins
    from latent_edit_bench.presets import method_config

    keep_freed_cpu_memory()
    versions = {args.ref: protocol_at(args.ref), "now": protocol}
    plugins = get_plugins()
    counted = [0]

    class Counting(FitContext):
        def score_latents(self, latents, attr, batch_size=None):
            counted[0] += latents.shape[0]
            return super().score_latents(latents, attr, batch_size)

    ctx = Counting(plugins.backbones.create("dcgan"), {"probe": plugins.instruments.create("probe")}, seed=0,
                   device=torch.device("cpu"), cache_dir=tempfile.mkdtemp(), attribute_instrument="probe",
                   load_instrument=plugins.instruments.create)
    lat = ctx.latents(32, seed=1000)
    tol = {"tol": 1e-12} if args.exact else {}
    print(f"{'method':9} {'attr':5} {'renders':>13} {'seconds':>13} {'reached':>13} {'same s':>7} {'|ach-t|':>15}")
    for name in args.methods.split(","):
        for attr in ("Male", "Bald"):
            fctx = Counting(**{**ctx.__dict__, "attributes": (attr,)})
            editor = fit_or_load(plugins.methods.create(name, **method_config("quick", name)), fctx)
            res = {v: [] for v in versions}
            for _ in range(2):
                for v, mod in versions.items():
                    counted[0] = 0
                    t0 = time.perf_counter()
                    lad = mod.ladder_edit(editor, ctx, lat, attr, LEVELS, batch_size=16, **tol)
                    res[v].append((lad, counted[0], time.perf_counter() - t0))
            (old, n_old, _), (new, n_new, _) = res[args.ref][0], res["now"][0]
            secs = [statistics.median(t for *_, t in res[v]) for v in versions]

            def err(lad):
                return float((lad.achieved - lad.target).abs()[lad.reached].mean()) if lad.reached.any() else float("nan")

            print(f"{name:9} {attr:5} {n_old:>6} → {n_new:<4} {secs[0]:>5.2f} → {secs[1]:<5.2f} "
                  f"{old.reached.float().mean():>5.3f} → {new.reached.float().mean():<5.3f} "
                  f"{(old.strength == new.strength).float().mean():>7.3f} {err(old):>6.4f} → {err(new):<6.4f}")
    print(f"(left of each arrow: {args.ref}; right: this tree; batch 16, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    sys.exit(main())
