"""An attribute's figures: the curves against the achieved change, and the trajectory sheets the run saved."""

from __future__ import annotations

import base64
import textwrap

import pandas as pd

from latent_edit_bench.pipeline.analysis import HEADLINE

from . import plots
from .run_folder import Run, ordered
from .tables import finite, fmt_level, slug, text

LANDMARKS = ("landmarks", "displacement")      # the second curve panel


def png_uri(data: bytes) -> str:
    """A PNG as a data URI: the report is one self-contained file."""
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _ladder_text(run: Run, fallback: list[float]) -> list[str]:
    """The signed ladder, -max ... +max, from the config's levels (given unsigned, or signed)."""
    levels = [float(v) for v in run.config.get("levels") or [] if finite(v)]
    signed = sorted({s * abs(v) for v in levels for s in (-1, 1)} if all(v > 0 for v in levels) else set(levels))
    return [fmt_level(v) for v in (signed or fallback)]


def curves(run: Run, prefix: str, attr: str, s: pd.DataFrame, methods: list[str], compared: list[float]):
    """The attribute's two curve panels (summary.csv rows ``s``) as an embedded PNG; None without data."""
    min_reach = float(run.config["min_reach"]) if finite(run.config.get("min_reach")) else 0.5
    panels, any_data = [], False
    for (metric, quantity), title in ((HEADLINE, "emotion disturbance"), (LANDMARKS, "landmark displacement")):
        q = s[(s.metric == metric) & (s.quantity == quantity)].sort_values("level", kind="mergesort")
        lines = {m: [plots.Point(r.level, r.value, r.lo, r.hi, finite(r.reach) and r.reach >= min_reach)
                     for r in q[q.method == m].itertuples(index=False)] for m in methods}
        any_data |= q.value.map(finite).any()
        ylabel = textwrap.fill(next((lab for lab in q.label if lab), quantity), 40)
        panels.append(plots.Panel(title, ylabel, lines))
    if not any_data:
        return None
    ladder = sorted(v for v in dict.fromkeys(s.level) if finite(v))
    tol = text(run.config.get("tol"))
    png = plots.curves_figure(panels, methods, ladder, compared,
                              f"achieved change ΔR_k of {attr} (the level, reached within ±{tol})")
    at = ", ".join(fmt_level(v) for v in compared) or "none"
    caption = (f"{attr}: emotion disturbance (left) and landmark displacement (right) against the achieved "
               f"change ΔR_k, one line per method with its 95% interval (fit seeds + samples). Filled markers: "
               f"the method reaches the level (at least {min_reach:g} of the samples under every fit seed); "
               f"hollow: it does not, and the number rests on the few samples that did. Dashed lines: the "
               f"compared level(s) ({at}). Each point is on the method's own reached samples; the paired "
               f"numbers are in the tables below.")
    return {"id": f"{prefix}fig-curves-{slug(attr)}", "uri": png_uri(png), "caption": caption}


def trajectories(run: Run, prefix: str, attr: str, methods: list[str], levels: list[float]) -> list[dict]:
    """The trajectory sheets the manifest lists for the attribute, embedded; a missing one is named.
    ``levels``: the summary's ladder, the column labels where the config states none."""
    listed = (run.manifest.get("figures") or {}).get("trajectories") or {}
    ladder = _ladder_text(run, levels)
    cols = ", ".join([x for x in ladder if x.startswith("-")] + ["original"] + [x for x in ladder
                                                                             if not x.startswith("-")])
    out = []
    for m in ordered(methods, listed):
        rel = (listed.get(m) or {}).get(attr) if isinstance(listed.get(m), dict) else None
        if not rel:
            continue
        item = {"id": f"{prefix}traj-{slug(m, attr)}", "path": rel, "uri": "", "missing": "",
                "caption": f"{m}, {attr}: each row one sample; columns are levels {cols} (the ΔR_k each "
                           f"edit was driven to), fit seed 0."}
        f = run.path / str(rel)
        inside = f.resolve().is_relative_to(run.path.resolve())    # a manifest never points outside its run
        if inside and f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n":
            item["uri"] = png_uri(f.read_bytes())
        else:
            item["missing"] = f"{rel} is missing or not a PNG"
        out.append(item)
    return out
