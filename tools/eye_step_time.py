"""Seconds per training step of EYE (``baseline``) and HFLD (``hfld``) on the embedded DCGAN with the probe as R.

    python tools/eye_step_time.py [--steps 30] [--reps 3] [--threads 2] [--ref HEAD~1]

Quick-preset options (lr 3e-3, max_strength 3.0). Each cell: one short warm-up fit, then ``--reps``
fits of ``--steps`` steps. "step" is the median interval between consecutive calls of ``losses``
(one whole step: forward, backward, Adam, logging); "fit/step" is the median fit time / steps
(adds per-fit set-up and the end-of-fit log flush). ``--ref REV`` also times methods/eye.py as it
was at git revision REV, interleaved with the working tree's version so both see the same CPU load.
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
sys.path.insert(0, str(ROOT))

from bench.contracts.method import FitContext  # noqa: E402
from bench.plugins import get_plugins  # noqa: E402

ATTRS = (("Male",), ("Bald",), ("Male", "Bald"))
OPTIONS = {"lr": 3e-3, "max_strength": 3.0}   # the quick preset's EYE/HFLD schedule


def eye_at(rev: str):
    """methods/eye.py as of git revision ``rev``, imported as a separate module."""
    src = subprocess.run(["git", "show", f"{rev}:methods/eye.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "eye_ref.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("eye_ref", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_fit(cls, bb, R, attrs, steps):
    """(median seconds between consecutive steps, total fit seconds) of one fresh fit."""
    ed = cls(steps=steps, **OPTIONS)
    stamps = []
    losses = ed.losses

    def timed(*a, **k):   # a step starts with its losses call: intervals between them are whole steps
        stamps.append(time.perf_counter())
        return losses(*a, **k)

    ed.losses = timed
    ctx = FitContext(bb, {"probe": R}, attributes=attrs, seed=0, attribute_instrument="probe",
                     load_instrument=get_plugins().instruments.create)
    t0 = time.perf_counter()
    ed.fit(ctx)
    total = time.perf_counter() - t0
    return statistics.median(b - a for a, b in zip(stamps, stamps[1:])), total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref", default=None, help="also time methods/eye.py at this git revision")
    ap.add_argument("--methods", default="baseline,hfld")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.disable(logging.WARNING)   # the DCGAN has no D: every fit would warn so

    pl = get_plugins()
    bb = pl.backbones.create("dcgan").eval()
    R = pl.instruments.create("probe").eval()
    cur = {m: type(pl.methods.create(m)) for m in args.methods.split(",")}
    versions = {"now": cur}
    if args.ref:
        ref = eye_at(args.ref)
        versions = {args.ref: {m: getattr(ref, c.__name__) for m, c in cur.items()}, "now": cur}

    cells = [(m, attrs) for m in cur for attrs in ATTRS]
    for m, attrs in cells:        # warm-up: loads the content/landmark nets, first-call allocations
        for v in versions.values():
            time_fit(v[m], bb, R, attrs, 3)
    res = {(v, c): [] for v in versions for c in cells}
    for _ in range(args.reps):    # interleaved: every version of every cell once per repetition
        for c in cells:
            for v, classes in versions.items():
                res[v, c].append(time_fit(classes[c[0]], bb, R, c[1], args.steps))

    print(f"{args.steps} steps x {args.reps} reps, batch 4, {args.threads} threads; seconds")
    print(f"{'method':9} {'attributes':10} " + " ".join(f"{v + ' step':>14} {v + ' fit/step':>14}" for v in versions))
    for c in cells:
        row = []
        for v in versions:
            r = res[v, c]
            row.append(f"{statistics.median(s for s, _ in r):14.4f} {statistics.median(t for _, t in r) / args.steps:14.4f}")
        print(f"{c[0]:9} {'+'.join(c[1]):10} " + " ".join(row))


if __name__ == "__main__":
    main()
