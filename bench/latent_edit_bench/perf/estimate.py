"""`bench perf --estimate PERF_CSV`: the device-hours of a `bench run` from the rates `bench perf --out` measured.

:func:`run_estimate` works from the rates one device gave (docs/cluster.md). An EYE/HFLD fit is ``steps``
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
from pathlib import Path

from latent_edit_bench.errors import BenchError

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

    L = len(cfg.signed_levels)
    units = len(cfg.methods) * len(cfg.attrs) * cfg.fit_seeds
    out = {"eye_steps": 0, "scored": 0, "measured": cfg.n, "fits": 0, "edit_units": units}
    for m in cfg.methods:
        editor = plugins.methods.create(m, **{**plugins.methods.preset_config(m, cfg.preset), **cfg.overrides.get(m, {})})
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
    from latent_edit_bench.pipeline.config import make_config, validate

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
