"""Seconds per training step of EYE (``baseline``) and HFLD (``hfld``) on the embedded DCGAN with the probe as R.

    python tools/measure/eye_step_time.py [--steps 30] [--reps 3] [--threads 2] [--ref 5acf877] [--attrs Male,Bald]

Quick-preset options (lr 3e-3, max_strength 3.0). Each cell: one short warm-up fit, then ``--reps``
fits of ``--steps`` steps. "step" is the median interval between consecutive calls of ``losses``
(one whole step: forward, backward, Adam, logging); "fit/step" is the median fit time / steps
(adds per-fit set-up and the end-of-fit log flush).

``--ref REV`` also times the whole tree as it was at git revision REV (methods, instruments and
backbone: ``git archive`` into a temporary folder), in a second worker process. The driver asks the
two workers for one fit at a time, alternating, so both see the same CPU load; only one computes at
any moment. 5acf877 is the tree issue #10 measured ("EYE 0.5 s/step" under load).
"""

from __future__ import annotations

import argparse
import inspect
import io
import json
import logging
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OPTIONS = {"lr": 3e-3, "max_strength": 3.0}   # the quick preset's EYE/HFLD schedule


# -- the worker: one tree, one process -----------------------------------------------------------

def importable(tree: Path) -> str:
    """Make ``tree``'s code what this process imports; returns its package name.

    ROOT is the installed (editable) package. Another tree gets a scratch folder first on sys.path:
    since the one namespace, a ``latent_edit_bench`` of links to its folders (as tools/gpu/checkout_env.sh
    makes); before it, the tree itself on the path (top-level ``bench``) plus a dist-info carrying its
    ``bench`` entry points, which the installed package no longer declares."""
    if tree.resolve() == ROOT:
        return "latent_edit_bench"
    site = Path(tempfile.mkdtemp(prefix="eye-ref-site-"))
    sys.path.insert(0, str(site))
    pyproject = (tree / "pyproject.toml").read_text()
    if (tree / "bench" / "latent_edit_bench").is_dir():   # path = import path: the four roots, nothing generated
        sys.path[:0] = [str(tree / f) for f in ("bench", "methods", "metrics", "reports")]
        return "latent_edit_bench"
    if "[tool.setuptools.package-dir]" in pyproject:
        ns = site / "latent_edit_bench"
        ns.mkdir()
        for entry in (tree / "bench").iterdir():
            (ns / entry.name).symlink_to(entry)
        for sub in ("methods", "metrics", "reports"):
            (ns / sub).symlink_to(tree / sub)
        return "latent_edit_bench"
    sys.path.insert(1, str(tree))
    import re

    points = re.search(r"^\[project\.entry-points\.bench\]\n(.*?)(?=^\[|\Z)", pyproject, re.M | re.S).group(1)
    dist = site / "eye_ref-0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: eye-ref\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[bench]\n" + points.replace('"', ""))
    return "bench"


def worker(tree: str, threads: int) -> None:
    """Serve fits of ``tree``'s code: one JSON request per stdin line, one JSON answer per stdout line."""
    import importlib

    pkg = importlib.import_module(importable(Path(tree)))
    import torch

    get_plugins = importlib.import_module(f"{pkg.__name__}.plugins").get_plugins
    try:
        FitContext = importlib.import_module(f"{pkg.__name__}.contracts.method").FitContext
    except ImportError:        # trees before the bench/contracts layout
        FitContext = importlib.import_module(f"{pkg.__name__}.method").FitContext

    torch.set_num_threads(threads)
    try:   # as a run's Session does, in trees that have it
        importlib.import_module(f"{pkg.__name__}.pipeline.session").keep_freed_cpu_memory()
    except (ImportError, AttributeError):
        pass
    logging.disable(logging.WARNING)   # the DCGAN has no D: every fit would warn so
    pl = get_plugins()
    bb = pl.backbones.create("dcgan").eval()
    R = pl.instruments.create("probe").eval()
    # trees since the run session pass the instrument loader explicitly; older ones fell back to the plugins
    extra = ({"load_instrument": pl.instruments.create}
             if "load_instrument" in inspect.signature(FitContext).parameters else {})
    out = sys.stdout
    sys.stdout = sys.stderr    # anything the tree prints stays off the answer channel
    out.write(json.dumps({"ready": str(Path(pkg.__file__).resolve().parent)}) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        ed = pl.methods.create(req["method"], steps=req["steps"], **OPTIONS)
        stamps = []
        losses = ed.losses

        def timed(*a, _losses=losses, **k):   # a step starts with its losses call
            stamps.append(time.perf_counter())
            return _losses(*a, **k)

        ed.losses = timed
        ctx = FitContext(bb, {"probe": R}, attributes=tuple(req["attrs"]), seed=0,
                         attribute_instrument="probe", **extra)
        t0 = time.perf_counter()
        ed.fit(ctx)
        total = time.perf_counter() - t0
        step = statistics.median(b - a for a, b in zip(stamps, stamps[1:]))
        out.write(json.dumps({"step": step, "total": total}) + "\n")
        out.flush()


class Worker:
    def __init__(self, tree: Path, threads: int):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker", str(tree), "--threads", str(threads)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.where = self._read()["ready"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker exited (code {self.proc.wait()})")
        return json.loads(line)

    def fit(self, method: str, attrs, steps: int) -> tuple[float, float]:
        self.proc.stdin.write(json.dumps({"method": method, "attrs": list(attrs), "steps": steps}) + "\n")
        self.proc.stdin.flush()
        r = self._read()
        return r["step"], r["total"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def tree_at(rev: str) -> Path:
    """The repository's files at ``rev`` (git archive), extracted into a temporary folder."""
    tar = subprocess.run(["git", "archive", rev], cwd=ROOT, check=True, capture_output=True).stdout
    dest = Path(tempfile.mkdtemp(prefix=f"eye-ref-{rev}-"))
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(dest, filter="data")
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ref", default=None, help="also time the whole tree at this git revision")
    ap.add_argument("--methods", default="baseline,hfld")
    ap.add_argument("--attrs", default="Male,Bald,Male+Bald",
                    help="comma-separated cells; '+' joins attributes fitted together")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.threads)

    versions = {}
    if args.ref:
        versions[args.ref] = Worker(tree_at(args.ref), args.threads)
    versions["now"] = Worker(ROOT, args.threads)
    for v, w in versions.items():
        print(f"{v}: {w.where}", file=sys.stderr)
    cells = [(m, tuple(a.split("+"))) for m in args.methods.split(",") for a in args.attrs.split(",")]
    for m, attrs in cells:        # warm-up: loads the content/landmark nets, first-call allocations
        for w in versions.values():
            w.fit(m, attrs, 3)
    res = {(v, c): [] for v in versions for c in cells}
    for _ in range(args.reps):    # interleaved: every version of every cell once per repetition
        for c in cells:
            for v, w in versions.items():
                res[v, c].append(w.fit(c[0], c[1], args.steps))
    for w in versions.values():
        w.close()

    print(f"{args.steps} steps x {args.reps} reps, batch 4, {args.threads} threads; seconds")
    head = " ".join(f"{v + ' step':>14} {v + ' fit/step':>14}" for v in versions)
    print(f"{'method':9} {'attributes':10} {head}" + (f" {'speed-up':>9}" if args.ref else ""))
    for c in cells:
        row, steps = [], []
        for v in versions:
            r = res[v, c]
            steps.append(statistics.median(s for s, _ in r))
            row.append(f"{steps[-1]:14.4f} {statistics.median(t for _, t in r) / args.steps:14.4f}")
        ratio = f" {steps[0] / steps[-1]:8.2f}x" if args.ref else ""
        print(f"{c[0]:9} {'+'.join(c[1]):10} " + " ".join(row) + ratio)


if __name__ == "__main__":
    main()
