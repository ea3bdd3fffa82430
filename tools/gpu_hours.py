"""Device-hours of a `bench run`, from the rates `bench perf --out perf.csv` measured on one device.

    bench perf --device cuda --backbones stylegan2-256 --out perf.csv     # on one cluster GPU
    python tools/gpu_hours.py perf.csv --backbone stylegan2-256 --preset paper \\
        --methods baseline,hfld,sefa,ganspace,interfacegan --attrs Male,Bald,Black_Hair --fit-seeds 3

What is counted (docs/cluster.md): an EYE/HFLD fit is ``steps`` training steps at perf's (c) rate (an
HFLD step; baseline's has no landmark term, so this bounds it from above), one fit per fit seed for all
``--attrs`` (``--fit joint``, the default, as `bench run`; its step scores every attribute, so perf's
one-attribute rate bounds it from below) or one per attribute; a closed-form fit renders
and scores its probe samples (SeFa, GANSpace: 2 * top_k * n_samples; InterFaceGAN: n_samples); the
originals are N renders + instruments; an edit unit is the ladder's search, at most
(1 + 2 * grid + steps * L) * N renders scored by R (L = 2 * levels), then L * N renders + instruments.
Renders scored by R alone cost between perf's (a) (G only) and (b) (G + every instrument): the two
columns are those bounds. Model loading, job start and queue waits are not counted.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EYE_METHODS = ("baseline", "hfld")


def rates(perf_csv: Path, backbone: str) -> dict[str, float]:
    """{"a": images/s, "b": images/s, "c": steps/s} of ``backbone`` in a `bench perf --out` CSV."""
    rows = [r for r in csv.DictReader(open(perf_csv)) if r["backbone"] == backbone]
    got = {r["part"]: float(r["rate"]) for r in rows}
    missing = [p for p in "abc" if p not in got]
    if missing:
        raise SystemExit(f"{perf_csv}: no part(s) {', '.join(missing)} for backbone {backbone!r}; "
                         f"backbones there: {', '.join(sorted({r['backbone'] for r in csv.DictReader(open(perf_csv))}))}")
    return got


def work(methods, attrs, fit_seeds: int, n: int, levels: int, preset: str, fit: str = "joint") -> dict:
    """Counts: EYE steps, R-scored renders (search + closed-form fits), renders + instruments."""
    from latent_edit_bench.plugins import get_plugins
    from latent_edit_bench.presets import method_config
    from latent_edit_bench.pipeline.protocol import LADDER_GRID

    plugins = get_plugins()
    search_steps = 4                                    # RunConfig.search_steps
    L = 2 * levels
    units = len(methods) * len(attrs) * fit_seeds
    out = {"eye_steps": 0, "scored": 0, "measured": n, "fits": 0, "edit_units": units}
    for m in methods:
        editor = plugins.methods.create(m, **method_config(preset, m))
        cfg = editor.config
        fits = len(attrs) * fit_seeds
        if m in EYE_METHODS:
            if fit == "joint" and editor.joint_fit:   # one T per fit seed for all attrs, as `bench run --fit joint`
                fits = fit_seeds
            out["eye_steps"] += fits * int(cfg["steps"])
            out["fits"] += fits
        elif "top_k" in cfg:                            # sefa, ganspace: central differences per component
            out["scored"] += fits * 2 * int(cfg["top_k"]) * int(cfg["n_samples"])
        elif "n_samples" in cfg:                        # interfacegan(-cond): one scored set
            out["scored"] += fits * int(cfg["n_samples"])
    out["scored"] += units * (1 + 2 * LADDER_GRID + search_steps * L) * n
    out["measured"] += units * L * n
    return out


def hours(counts: dict, r: dict) -> dict:
    """(low, high) device-hours per part: R-scored renders at rate (a) or (b)."""
    fit = counts["eye_steps"] / r["c"]
    low = fit + counts["scored"] / r["a"] + counts["measured"] / r["b"]
    high = fit + counts["scored"] / r["b"] + counts["measured"] / r["b"]
    return {"eye_fits": fit / 3600, "low": low / 3600, "high": high / 3600}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("perf_csv", type=Path)
    p.add_argument("--backbone", default="stylegan2-256")
    p.add_argument("--methods", default="baseline,hfld,sefa,ganspace,interfacegan")
    p.add_argument("--attrs", default="Male,Bald,Black_Hair")
    p.add_argument("--fit-seeds", type=int, default=3)
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--levels", type=int, default=3, help="levels a side (default 0.1,0.2,0.3: 3)")
    p.add_argument("--preset", default="paper")
    p.add_argument("--fit", choices=("joint", "per-attribute"), default="joint", help="as `bench run --fit`")
    a = p.parse_args(argv)
    methods = [m for m in a.methods.split(",") if m]
    attrs = [x for x in a.attrs.split(",") if x]
    r = rates(a.perf_csv, a.backbone)
    c = work(methods, attrs, a.fit_seeds, a.n, a.levels, a.preset, a.fit)
    h = hours(c, r)
    dev = next(csv.DictReader(open(a.perf_csv)))["device"]
    print(f"rates on {dev} ({a.backbone}): (a) {r['a']:.4g} images/s, (b) {r['b']:.4g} images/s, "
          f"(c) {r['c']:.4g} steps/s")
    print(f"work: {c['fits']} EYE/HFLD fits ({c['eye_steps']:,} steps), {c['edit_units']} edit units, "
          f"{c['scored']:,} R-scored renders, {c['measured']:,} renders + instruments")
    print(f"device-hours: EYE/HFLD fits {h['eye_fits']:,.1f}; whole run {h['low']:,.1f} to {h['high']:,.1f}")


if __name__ == "__main__":
    main()
