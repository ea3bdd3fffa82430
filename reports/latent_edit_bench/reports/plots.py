"""Report figures: curves of a quantity against the signed level, rendered to PNG bytes in memory.

No pyplot (no global backend or figure state): a bare ``Figure`` saved through Agg. A fixed style,
fixed size and dpi, and no PNG metadata make the bytes depend on the numbers only.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import matplotlib
import seaborn as sns
from matplotlib.figure import Figure

STYLE = {
    **sns.axes_style("whitegrid"),
    **sns.plotting_context("paper", font_scale=1.1),
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid.axis": "y",     # vertical lines are kept for the compared levels
    "savefig.dpi": 100,
    "svg.hashsalt": "bench",
}


@dataclass(frozen=True)
class Point:
    level: float
    value: float
    lo: float
    hi: float
    reached: bool     # the method reaches this level (min_reach under every fit seed)


@dataclass
class Panel:
    title: str
    ylabel: str
    curves: dict      # method -> [Point]; a method absent from the panel simply has no line


def _ok(v) -> bool:
    return v is not None and math.isfinite(v)


def _segments(points: list[Point], ladder: list[float]) -> list[list[Point]]:
    """Runs of neighbouring ladder levels on one side of 0: a line never bridges a level the method has
    no number at, nor the unedited 0 between the two directions."""
    at = {p.level: p for p in points}
    out, cur = [], []
    for lv in ladder:
        p = at.get(lv)
        usable = p is not None and _ok(p.value)
        if cur and (not usable or (cur[-1].level > 0) != (lv > 0)):
            out.append(cur)
            cur = []
        if usable:
            cur.append(p)
    return out + ([cur] if cur else [])


def _curves(ax, panel: Panel, methods: list[str], colours, ladder: list[float], compared: list[float]) -> None:
    for lv in compared:
        ax.axvline(lv, color="#374151", linestyle="--", linewidth=1.1, zorder=1)
        ax.annotate("compared", (lv, 1), xycoords=("data", "axes fraction"), xytext=(3, -2),
                    textcoords="offset points", ha="left", va="top", fontsize="x-small", color="#374151")
    ax.axvline(0, color="#9ca3af", linewidth=0.8, zorder=0)
    drawn = False
    for m, colour in zip(methods, colours):
        for i, seg in enumerate(_segments(panel.curves.get(m, []), ladder)):
            xs = [p.level for p in seg]
            band = [p for p in seg if _ok(p.lo) and _ok(p.hi)]
            if band:
                ax.fill_between([p.level for p in band], [p.lo for p in band], [p.hi for p in band],
                                color=colour, alpha=0.18, linewidth=0)
            ax.plot(xs, [p.value for p in seg], color=colour, linewidth=1.6, label=m if i == 0 else None)
            # filled: the method reaches the level; hollow: too few samples reached it to compare there
            ax.scatter(xs, [p.value for p in seg], s=26, zorder=3, edgecolors=colour, linewidths=1.2,
                       facecolors=[colour if p.reached else "white" for p in seg])
            drawn = True
    if not drawn:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#6b7280")
    ax.set_title(panel.title, loc="left")
    ax.set_ylabel(panel.ylabel)
    ax.set_xticks(ladder)
    ax.set_xticklabels([f"{lv:+g}" for lv in ladder])


def curves_figure(panels: list[Panel], methods: list[str], ladder: list[float], compared: list[float],
                  xlabel: str) -> bytes:
    """One panel per quantity side by side, x = the signed level, one line + 95% band per method."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5 * len(panels), 3.6), layout="constrained")
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        colours = sns.color_palette("colorblind", max(len(methods), 1))
        for ax, panel in zip(axes, panels):
            _curves(ax, panel, methods, colours, ladder, compared)
            ax.set_xlabel(xlabel)
        handles, labels = [], []
        for ax in axes:    # one legend for the figure: every method that has a line in some panel
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="outside upper right", ncols=min(len(labels), 6), frameon=False,
                       fontsize="small")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
        return buf.getvalue()
