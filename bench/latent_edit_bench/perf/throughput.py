"""`bench perf`: throughput of the benchmark's three hot paths, beside the GPU goals.

(a) G forward: ``backbone.synthesize`` on a batch of edit-space latents, no grad (images/s).
(b) the evaluation path: render + every default instrument of ``bench run`` (probe, fer-emotion,
    faceapi-landmarks, faceapi-descriptor), timed through ``Session.measure``, the run's own path,
    outputs copied to the host as a run does (images/s); goal on a GPU: (b) >= 0.7 x (a), i.e. the
    instruments cost less than the generator.
(c) one HFLD training step (methods/latent_edit_bench/methods/eye.py, timed inside a real ``fit``) against the official EYE
    loop's structure on the same nets (latent_edit_bench.perf.reference) (steps/s); goal on a GPU: >= 10x.

Every number is the median of ``iters`` timed iterations after a warm-up, with the device synchronised
around each timed region on CUDA. ``--dtype fp16|bf16`` (CUDA only) runs (a) and (b) under autocast, as
``bench run --dtype`` does; (c) trains in fp32, as the fits do.
"""

from __future__ import annotations

import csv
import logging
import math
import statistics
import time
from pathlib import Path

import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import atomic
from latent_edit_bench.perf.backbones import BACKBONES, check_backbone, make_backbone
from latent_edit_bench.perf.reference import ReferenceEYE

GOALS = {"b": 0.7, "c": 10.0}          # GPU goals: (b)/(a) in images/s, (c) ours/reference in steps/s
EVAL_ROLES = {"attributes": "probe", "emotion": "fer-emotion", "landmarks": "faceapi-landmarks",
              "descriptor": "faceapi-descriptor", "judge": "judge", "judge_emotion": "judge"}
# ^ the roles bench run loads by default (DEFAULT_INSTRUMENTS for DEFAULT_METRICS), emotion resolved to fer
FIT_ATTRS = ("Male",)                  # one attribute; a joint EYE step scores each of the run's (docs/methods.md)
FIT_OPTIONS = {"lr": 3e-3}
COLUMNS = ("backbone", "device", "dtype", "part", "measure", "batch", "iters", "rate", "unit", "seconds",
           "baseline", "baseline_rate", "ratio", "goal", "meets_goal")


# -- timing ------------------------------------------------------------------------------------------

def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timed(fn, dev, warmup: int, iters: int) -> float:
    """Median seconds of ``fn()`` over ``iters`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def time_generator(bb, session, warmup: int, iters: int) -> float:
    with torch.no_grad():
        w = bb.to_edit(bb.sample_z(session.batch_size, seed=0))

        def forward():
            with torch.no_grad(), session.autocast():
                bb.synthesize(w)

        return timed(forward, session.device, warmup, iters)


def time_measure(bb, session, warmup: int, iters: int) -> float:
    """Seconds per batch of ``Session.measure`` (what ``bench run`` renders and measures with), results
    copied to the host as a run does when it writes them."""
    with torch.no_grad():
        lat = bb.to_edit(bb.sample_z(session.batch_size, seed=0)).cpu()   # runs keep latents on the host

    def measure():
        return {k: v.cpu() for k, v in session.measure(bb, lat, EVAL_ROLES).items()}

    return timed(measure, session.device, warmup, iters)


def time_ours(ctx, plugins, dev, warmup: int, iters: int):
    """Median seconds between consecutive steps of a real HFLD fit (forward, backward, Adam, its logging)."""
    ed = plugins.methods.create("hfld", steps=warmup + iters + 1, **FIT_OPTIONS)
    stamps, losses = [], ed.losses

    def stamped(*a, **k):   # a step starts with its losses call
        _sync(dev)
        stamps.append(time.perf_counter())
        return losses(*a, **k)

    ed.losses = stamped
    ed.fit(ctx)
    steps = [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.median(steps[warmup:]), ed


def time_reference(editor, ctx, dev, warmup: int, iters: int) -> float:
    with ReferenceEYE.from_editor(editor, ctx) as ref:
        return timed(ref.step, dev, warmup, iters)


# -- the table ---------------------------------------------------------------------------------------

def load_eval_instruments(session) -> list[str]:
    """Load every instrument of the evaluation path (EVAL_ROLES) into the session's pool; their names."""
    names = list(dict.fromkeys(EVAL_ROLES.values()))
    for name in names:   # the judge composite takes its nets from the pool
        session.instrument(name, **({"create": session.instrument} if name == "judge" else {}))
    return names


def perf_rows(backbone: str, session, iters: int, warmup: int, log=print) -> list[dict]:
    from latent_edit_bench.contracts.method import FitContext

    t0 = time.perf_counter()
    dev, batch = session.device, session.batch_size
    bb = make_backbone(backbone, session.plugins).to(dev).eval()
    load_eval_instruments(session)
    on_gpu = dev.type == "cuda"

    def row(part, measure, b, seconds, per, unit, baseline="", baseline_rate=float("nan"), goal=float("nan")):
        rate = per / seconds
        ratio = rate / baseline_rate if baseline_rate == baseline_rate else float("nan")
        meets = ("yes" if ratio >= goal else "no") if on_gpu and goal == goal else ("" if goal != goal else "n/a (CPU)")
        return dict(backbone=backbone, device=str(dev), dtype=session.dtype_name if part != "c" else "fp32",
                    part=part, measure=measure, batch=b, iters=iters, rate=rate,
                    unit=unit, seconds=seconds, baseline=baseline, baseline_rate=baseline_rate, ratio=ratio,
                    goal=goal, meets_goal=meets)

    log(f"[{backbone} {time.perf_counter() - t0:.0f} s] (a) G forward, batch {batch}")
    a = row("a", "G forward (synthesize, no grad)", batch, time_generator(bb, session, warmup, iters), batch,
            "images/s")
    log(f"[{backbone} {time.perf_counter() - t0:.0f} s] (b) render + instruments, batch {batch}")
    b = row("b", "render + " + ", ".join(dict.fromkeys(EVAL_ROLES.values())), batch,
            time_measure(bb, session, warmup, iters), batch, "images/s", "a", a["rate"], GOALS["b"])
    log(f"[{backbone} {time.perf_counter() - t0:.0f} s] (c) hfld step: ours, then the official loop structure")
    ctx = FitContext(bb, session.pool, attributes=FIT_ATTRS, seed=0, device=dev, attribute_instrument="probe",
                     load_instrument=session.instrument)
    logging.getLogger("latent_edit_bench.methods.eye").setLevel(logging.ERROR)   # "no discriminator": both loops skip D here
    ours, ed = time_ours(ctx, session.plugins, dev, warmup, iters)
    ref = time_reference(ed, ctx, dev, warmup, iters)
    c = row("c", "hfld step: ours vs official loop", int(ed.config["batch_size"]), ours, 1, "steps/s",
            "reference", 1 / ref, GOALS["c"])
    return [a, b, c]


def format_table(rows: list[dict]) -> str:
    head = f"{'backbone':14} {'dtype':5} {'part':4} {'measure':52} {'batch':>5} {'rate':>12} {'unit':8} {'s/iter':>9}  ratio"
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = ""
        if r["ratio"] == r["ratio"]:
            goal = f">= {r['goal']:g}x (GPU goal)"
            ratio = f"{r['ratio']:.3g}x {r['baseline']} ({r['baseline_rate']:.4g} {r['unit']}); goal {goal}"
            if r["meets_goal"]:
                ratio += f": {r['meets_goal']}"
        lines.append(f"{r['backbone']:14} {r['dtype']:5} {r['part']:4} {r['measure'][:52]:52} {r['batch']:>5} {r['rate']:12.4g} "
                     f"{r['unit']:8} {r['seconds']:9.4f}  {ratio}")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: Path) -> Path:
    with atomic(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path


def run_perf(device, backbones=BACKBONES, batch_size: int | None = None, iters: int | None = None,
             quick: bool = False, out: Path | None = None, log=print, plugins=None, dtype: str = "fp32") -> list[dict]:
    from latent_edit_bench.pipeline.session import Session

    session = Session(plugins, device=device, dtype=dtype, batch_size=batch_size or (8 if quick else None))
    dev = session.device
    iters = iters or (2 if quick else 10)
    warmup = 1 if quick else 2
    for name in backbones:   # a bad name fails before any work
        check_backbone(name)
    threads = f", {torch.get_num_threads()} CPU threads" if dev.type == "cpu" else f" ({torch.cuda.get_device_name(dev)})"
    log(f"bench perf: {dev}{threads}, {dtype} (the fit step: fp32), torch {torch.__version__}; "
        f"median of {iters} after {warmup} warm-up")
    rows = []
    for name in backbones:
        rows += perf_rows(name, session, iters, warmup, log=log)
    bad = [r for r in rows if not (math.isfinite(r["rate"]) and r["rate"] > 0)]
    if bad:
        raise BenchError(f"bench perf: non-positive or non-finite rates: {bad}")
    log("")
    log(format_table(rows))
    if dev.type != "cuda":
        log("\nThe goals are GPU goals ((b) >= 0.7 x (a), (c) >= 10 x the reference); on the CPU the ratios are "
            "reported, not judged.")
    if out is not None:
        log(f"wrote {write_csv(rows, Path(out))}")
    return rows
