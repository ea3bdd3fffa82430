"""The first screen of a run folder as markdown tables, for docs written from runs (tools/docs/demo_docs.py,
tools/docs/study.py). Reads only the run folder, like the HTML report; the same rules: a rank only where the
comparison is resolved, power and plans from power.csv."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from latent_edit_bench.pipeline import power

from .first_screen import block_verdicts, rank_label
from .run_folder import holm_for_older_ranking
from .tables import DIRECTIONS


def _f(v, nd=2) -> str:
    return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{nd}f}"


def _pct(v) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:+.1f}%"


def first_screen(run: Path) -> str:
    """ranking.csv as a table: rank only for resolved comparisons (and the reference beside one)."""
    rk = holm_for_older_ranking(pd.read_csv(Path(run) / "ranking.csv"))
    lines = ["| attribute | direction | compared at ΔR_k | rank | method | emotion disturbance, pp [95% CI] "
             "| vs reference [95% CI], p (Holm over the screen) | n | reach |", "|---|---|---|---|---|---|---|---|---|"]
    for _, g in rk.groupby(["attr", "direction"], sort=False):
        judged, any_resolved = block_verdicts(g[g.status == "ranked"])
        for r in g.itertuples(index=False):
            where = DIRECTIONS.get(r.direction, r.direction)
            if r.status == "no common level":
                lines.append(f"| {r.attr} | {where} | no common level | | | | | | |")
                continue
            rank = rank_label(r, judged, any_resolved) if r.status in ("ranked", "reference") else ""
            if rank == "not validated":
                rank += f" (trainer: {r.trainer_validity})"
            elif rank == "not resolved":
                rank += f" at N = {int(r.n)}"
            val = "could not reach" if r.status == "could not reach" else f"{_f(r.value)} [{_f(r.lo)}, {_f(r.hi)}]"
            rel = ("reference" if r.status == "reference" else "–" if not np.isfinite(r.rel) else
                   f"{_pct(r.rel)} [{_pct(r.rel_lo)}, {_pct(r.rel_hi)}], p = {r.p_value:.3f} ({r.p_holm:.3f})")
            n = "" if not np.isfinite(r.n) else str(int(r.n))
            lines.append(f"| {r.attr}{' (heuristic)' if r.kind == 'heuristic' else ''} | {where} | {r.level:+.1f} | "
                         f"{rank} | {r.method} | {val} | {rel} | {n} | {_f(r.reach)} |")
    return "\n".join(lines)


def power_table(run: Path, effect: float = 0.10) -> str:
    """Per first-screen comparison: detectable difference, power, and the N, K (time here) that would
    resolve the observed difference and ``effect``."""
    rows = power.plan_run(Path(run), effect)
    if not rows:
        return "(no comparisons on the first screen)"
    lines = [f"| attribute | direction | method vs reference | observed | detectable at N, K (80% power) "
             f"| power for the observed | resolves the observed | resolves {100 * effect:g}% |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['attr']} | {DIRECTIONS.get(r['direction'], r['direction'])} | {r['method']} vs "
                     f"{r['reference']} | {_pct(r['rel'])} | {100 * r['mde_rel']:.0f}% at N = {r['n']}, K = {r['k']} "
                     f"| {100 * r['power_observed']:.0f}% | {power.describe_plan(r['observed'])} "
                     f"| {power.describe_plan(r['effect'])} |")
    return "\n".join(lines)


def csv_table(path: Path, columns: list[str] | None = None, nd: int = 2) -> str:
    """Any small CSV of the run folder (e.g. validity.csv) as a markdown table."""
    frame = pd.read_csv(path)
    cols = [c for c in (columns or list(frame.columns)) if c in frame.columns]
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in frame[cols].itertuples(index=False):
        out.append("| " + " | ".join(_f(v, nd) if isinstance(v, float) and not math.isnan(v) else
                                     ("" if isinstance(v, float) else str(v)) for v in r) + " |")
    return "\n".join(out)
