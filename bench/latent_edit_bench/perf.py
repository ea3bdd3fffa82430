"""`bench perf`: throughput of the benchmark's three hot paths, beside the GPU goals; with ``--precision``,
how far half precision moves what a run measures; with ``--estimate``, the device-hours of a run.

(a) G forward: ``backbone.synthesize`` on a batch of edit-space latents, no grad (images/s).
(b) the evaluation path: render + every default instrument of ``bench run`` (probe, fer-emotion,
    faceapi-landmarks, faceapi-descriptor), timed through ``Session.measure``, the run's own path,
    outputs copied to the host as a run does (images/s); goal on a GPU: (b) >= 0.7 x (a), i.e. the
    instruments cost less than the generator.
(c) one HFLD training step (methods/latent_edit_bench/methods/eye.py, timed inside a real ``fit``) against the official EYE
    loop's structure on the same nets (latent_edit_bench.perf_reference) (steps/s); goal on a GPU: >= 10x.

Every number is the median of ``iters`` timed iterations after a warm-up, with the device synchronised
around each timed region on CUDA. ``--dtype fp16|bf16`` (CUDA only) runs (a) and (b) under autocast, as
``bench run --dtype`` does; (c) trains in fp32, as the fits do.

``--precision`` (:func:`run_precision`): renders n seeded samples once in fp32, then runs every instrument
of the evaluation path (the roles (b) times) on the same images under each half dtype's autocast, as
``bench run --dtype`` does, and prints per output the max, 95th percentile and mean absolute difference to
fp32; the attribute scores per attribute, with the share of samples moved by more than the ladder's tol
(an edit is "reached" when R_k is within tol of its target, so a score moved by more can flip that
verdict). On a CPU autocast is allowed here although ``bench run`` refuses it (slow without bf16
hardware): the differences are mostly the dtype's, but a GPU's own numbers come from running it there.

``--estimate PERF_CSV`` (:func:`run_estimate`): device-hours of a ``bench run`` from the rates a
``bench perf --out PERF_CSV`` measured on one device (docs/cluster.md). An EYE/HFLD fit is ``steps``
training steps at (c)'s rate (an HFLD step; baseline's has no landmark term, so this bounds it from
above), one fit per fit seed for all attributes (``--fit joint``, as ``bench run``; its step scores every
attribute, so (c)'s one-attribute rate bounds it from below) or one per attribute; a closed-form fit
renders and scores its probe samples (SeFa, GANSpace: 2 * top_k * n_samples; InterFaceGAN: n_samples);
the originals are N renders + instruments; an edit unit is the ladder's search, at most
(1 + 2 * grid + search_steps * L) * N renders scored by R (L = 2 * levels), then L * N renders +
instruments. Renders scored by R alone cost between (a) (G only) and (b) (G + every instrument): the two
bounds of the estimate. Model loading, job start and queue waits are not counted.
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
from latent_edit_bench.perf_reference import ReferenceEYE

GOALS = {"b": 0.7, "c": 10.0}          # GPU goals: (b)/(a) in images/s, (c) ours/reference in steps/s
EVAL_ROLES = {"attributes": "probe", "emotion": "fer-emotion", "landmarks": "faceapi-landmarks",
              "descriptor": "faceapi-descriptor", "judge": "judge", "judge_emotion": "judge"}
# ^ the roles bench run loads by default (DEFAULT_INSTRUMENTS for DEFAULT_METRICS), emotion resolved to fer
FIT_ATTRS = ("Male",)                  # one attribute; a joint EYE step scores each of the run's (docs/methods.md)
FIT_OPTIONS = {"lr": 3e-3}
BACKBONES = ("dcgan", "stylegan2-256")
COLUMNS = ("backbone", "device", "dtype", "part", "measure", "batch", "iters", "rate", "unit", "seconds",
           "baseline", "baseline_rate", "ratio", "goal", "meets_goal")


# -- backbones ---------------------------------------------------------------------------------------

def random_stylegan2(size: int = 256, channel_multiplier: int = 2, seed: int = 0, discriminator: bool = False):
    """A seeded random-weight StyleGAN2 of the paper's shape (256 px, config F widths: 14 W+ layers)."""
    from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = Generator(size, channel_multiplier=channel_multiplier)
        d = Discriminator(size, channels=dict(g.channels)) if discriminator else None
    return StyleGAN2Backbone(g.eval(), d, name=f"stylegan2-{size}-random")


def write_random_stylegan2(path, size: int = 256, channel_multiplier: int = 2, seed: int = 0) -> Path:
    """The random StyleGAN2 (with a random D) as a safetensors file, for ``bench run --backbone stylegan2
    --weights PATH``: no random backbone is registered, and a file goes through the real loading path."""
    from latent_edit_bench.backbones.formats import write_safetensors

    bb = random_stylegan2(size, channel_multiplier, seed, discriminator=True)
    return write_safetensors(path, bb.generator, d=bb.discriminator)


def make_backbone(name: str, plugins):
    if name == "stylegan2-256":
        return random_stylegan2()
    if name == "dcgan":
        return plugins.backbones.create("dcgan")
    raise BenchError(f"bench perf: unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")


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
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
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
        if name not in BACKBONES:
            raise BenchError(f"bench perf: unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")
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


# -- --precision: how far fp16 / bf16 autocast move the evaluation path's outputs ---------------------

HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_DEFAULTS = {"backbone": "dcgan", "n": 256, "batch": 32, "seed": 5}


def measure_all(session, images: torch.Tensor, dtype, batch: int) -> dict[str, torch.Tensor]:
    """{role: [n, ...] float32 on the CPU} for every evaluation role, under ``dtype``'s autocast (None: fp32)."""
    from latent_edit_bench.pipeline.session import autocast

    names = load_eval_instruments(session)
    parts: dict[str, list] = {}
    with torch.no_grad(), autocast(session.device, dtype):
        for i in range(0, len(images), batch):
            x = images[i:i + batch].to(session.device)
            outs = {name: session.instrument(name)(x) for name in names}
            for role, name in EVAL_ROLES.items():
                parts.setdefault(role, []).append(outs[name][role].float().cpu())
    return {role: torch.cat(v) for role, v in parts.items()}


def differences(ref: dict, half: dict, dtype: str, attrs) -> list[dict]:
    """|half - fp32| per output (per attribute for the attribute scores): max, p95, mean, share beyond tol."""
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.pipeline.protocol import LADDER_TOL

    rows = []

    def row(output, column, d):
        d = d[torch.isfinite(d)].double()
        if len(d):
            rows.append({"dtype": dtype, "output": output, "column": column, "max": float(d.max()),
                         "p95": float(d.quantile(0.95)), "mean": float(d.mean()),
                         "beyond_tol": float((d > LADDER_TOL).double().mean()) if output == "attributes" else float("nan")})

    for role in EVAL_ROLES:
        d = (half[role] - ref[role]).abs()
        if role == "attributes":
            for a in attrs:
                row(role, a, d[:, CELEBA_ATTRIBUTES.index(a)])
        else:
            row(role, "all", d.reshape(-1))
    return rows


def run_precision(device, backbone: str | None = None, n: int | None = None, batch: int | None = None,
                  dtypes=tuple(HALF_DTYPES), seed: int | None = None, out: Path | None = None, log=print,
                  plugins=None):
    """``bench perf --precision``: the table of :func:`differences` for each of ``dtypes`` (a DataFrame)."""
    import pandas as pd

    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.contracts.instrument import supported_attributes
    from latent_edit_bench.pipeline.protocol import LADDER_TOL
    from latent_edit_bench.pipeline.session import Session

    d = PRECISION_DEFAULTS
    backbone, n, batch = backbone or d["backbone"], n or d["n"], batch or d["batch"]
    seed = d["seed"] if seed is None else seed
    unknown = [t for t in dtypes if t not in HALF_DTYPES]
    if unknown:
        raise BenchError(f"bench perf --precision compares half dtypes with fp32: {', '.join(unknown)} is not one "
                         f"({', '.join(HALF_DTYPES)})")
    session = Session(plugins, device=device)   # fp32: autocast is applied here, per dtype
    bb = make_backbone(backbone, session.plugins) if backbone in BACKBONES else session.backbone(backbone)
    bb = bb.to(session.device).eval()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with torch.no_grad():
            z = bb.to_edit(bb.sample_z(n, seed)).to(session.device)
            images = torch.cat([bb.synthesize(z[i:i + batch]) for i in range(0, n, batch)]).float()
        scored = supported_attributes(session.instrument(EVAL_ROLES["attributes"]))
        attrs = [a for a in CELEBA_ATTRIBUTES if a in scored]
        ref = measure_all(session, images, None, batch)
        rows = []
        for name in dtypes:
            rows += differences(ref, measure_all(session, images, HALF_DTYPES[name], batch), name, attrs)
    finally:
        logging.disable(previous)
    table = pd.DataFrame(rows)
    log(f"{backbone}, {n} samples (seed {seed}), {session.device}, batch {batch}; "
        f"|half - fp32|; beyond_tol: share of samples moved by more than the ladder's tol {LADDER_TOL}")
    log(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if out is not None:
        table.to_csv(out, index=False)
        log(f"wrote {out}")
    return table


# -- --estimate: device-hours of a run from a perf CSV ------------------------------------------------

EYE_METHODS = ("baseline", "hfld")
ESTIMATE_DEFAULTS = {"backbone": "stylegan2-256", "methods": "baseline,hfld,sefa,ganspace,interfacegan",
                     "attrs": "Male,Bald,Black_Hair", "preset": "paper"}


def rates(perf_csv: Path, backbone: str) -> dict[str, float]:
    """{"a": images/s, "b": images/s, "c": steps/s} of ``backbone`` in a `bench perf --out` CSV."""
    with open(perf_csv, newline="") as f:
        all_rows = list(csv.DictReader(f))
    got = {r["part"]: float(r["rate"]) for r in all_rows if r.get("backbone") == backbone}
    missing = [p for p in "abc" if p not in got]
    if missing:
        raise BenchError(f"{perf_csv}: no part(s) {', '.join(missing)} for backbone {backbone!r}; "
                         f"backbones there: {', '.join(sorted({r.get('backbone') or '' for r in all_rows}))}")
    return got


def work(cfg, plugins) -> dict:
    """Counts for a run of RunConfig ``cfg``: EYE steps, R-scored renders (search + closed-form fits),
    renders + instruments."""
    from latent_edit_bench.pipeline.protocol import LADDER_GRID
    from latent_edit_bench.presets import method_config

    L = len(cfg.signed_levels)
    units = len(cfg.methods) * len(cfg.attrs) * cfg.fit_seeds
    out = {"eye_steps": 0, "scored": 0, "measured": cfg.n, "fits": 0, "edit_units": units}
    for m in cfg.methods:
        editor = plugins.methods.create(m, **{**method_config(cfg.preset, m), **cfg.overrides.get(m, {})})
        c = editor.config
        fits = len(cfg.attrs) * cfg.fit_seeds
        if m in EYE_METHODS:
            if cfg.fit == "joint" and editor.joint_fit:   # one T per fit seed for all attrs, as `bench run --fit joint`
                fits = cfg.fit_seeds
            out["eye_steps"] += fits * int(c["steps"])
            out["fits"] += fits
        elif "top_k" in c:                                 # sefa, ganspace: central differences per component
            out["scored"] += fits * 2 * int(c["top_k"]) * int(c["n_samples"])
        elif "n_samples" in c:                             # interfacegan(-cond): one scored set
            out["scored"] += fits * int(c["n_samples"])
    out["scored"] += units * (1 + 2 * LADDER_GRID + cfg.search_steps * L) * cfg.n
    out["measured"] += units * L * cfg.n
    return out


def hours(counts: dict, r: dict) -> dict:
    """(low, high) device-hours per part: R-scored renders at rate (a) or (b)."""
    fit = counts["eye_steps"] / r["c"]
    low = fit + counts["scored"] / r["a"] + counts["measured"] / r["b"]
    high = fit + counts["scored"] / r["b"] + counts["measured"] / r["b"]
    return {"eye_fits": fit / 3600, "low": low / 3600, "high": high / 3600}


def run_estimate(perf_csv: Path, plugins, backbone: str | None = None, methods: str | None = None,
                 attrs: str | None = None, preset: str | None = None, n: int | None = None,
                 fit_seeds: int | None = None, levels: str | None = None, fit: str = "joint", log=print) -> dict:
    """``bench perf --estimate PERF_CSV``: the work of the run these options describe (as ``bench run``
    reads them; unset ones as in ESTIMATE_DEFAULTS, then the preset's) and its device-hours."""
    from latent_edit_bench.pipeline.run import make_config, validate

    d = ESTIMATE_DEFAULTS
    backbone = backbone or d["backbone"]
    cfg = make_config(methods or d["methods"], attrs or d["attrs"], preset or d["preset"], n=n, fit_seeds=fit_seeds,
                      levels=levels, fit=fit)
    validate(cfg, plugins)
    r = rates(perf_csv, backbone)
    c = work(cfg, plugins)
    h = hours(c, r)
    with open(perf_csv, newline="") as f:
        dev = next(row["device"] for row in csv.DictReader(f) if row.get("backbone") == backbone)
    log(f"rates on {dev} ({backbone}): (a) {r['a']:.4g} images/s, (b) {r['b']:.4g} images/s, "
        f"(c) {r['c']:.4g} steps/s")
    log(f"work: {c['fits']} EYE/HFLD fits ({c['eye_steps']:,} steps), {c['edit_units']} edit units, "
        f"{c['scored']:,} R-scored renders, {c['measured']:,} renders + instruments")
    log(f"device-hours: EYE/HFLD fits {h['eye_fits']:,.1f}; whole run {h['low']:,.1f} to {h['high']:,.1f}")
    return {"rates": r, "work": c, "hours": h}
