"""Report figures: grouped bar plots with 95% interval error bars, rendered to PNG bytes in memory.

No pyplot (no global backend or figure state): a bare ``Figure`` saved through Agg. A fixed style,
fixed size and dpi, and no PNG metadata make the bytes depend on the numbers only.
"""

from __future__ import annotations

import io
import math
import textwrap

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
    "axes.grid.axis": "y",
    "savefig.dpi": 100,
    "svg.hashsalt": "bench",
}

# one value with its interval: (value, lo, hi); NaN where missing
Bar = tuple[float, float, float]


def _ok(v) -> bool:
    return v is not None and math.isfinite(v)


def grouped_bars(ax, groups: list[str], series: list[str], data: dict, ylabel: str) -> None:
    """Bars of data[(series, group)] = (value, lo, hi), grouped on the x axis, one colour per series."""
    colours = sns.color_palette("colorblind", max(len(series), 1))
    width = 0.8 / max(len(series), 1)
    for i, s in enumerate(series):
        xs, ys, err = [], [], [[], []]
        for g, group in enumerate(groups):
            v, lo, hi = data.get((s, group), (math.nan,) * 3)
            if not _ok(v):
                continue
            xs.append(g - 0.4 + width * (i + 0.5))
            ys.append(v)
            # percentile intervals need not contain the point estimate: never a negative bar length
            err[0].append(max(v - lo, 0.0) if _ok(lo) else 0.0)
            err[1].append(max(hi - v, 0.0) if _ok(hi) else 0.0)
        ax.bar(xs, ys, width * 0.92, yerr=err, capsize=2.5, color=colours[i], label=s,
               error_kw={"elinewidth": 1, "ecolor": "#333333"})
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([textwrap.fill(g, 16) for g in groups])
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(ylabel)
    ax.axhline(0, color="#888888", linewidth=0.8)


def _legend(fig: Figure, ax, n: int) -> None:
    """One legend above the plots, outside the data (constrained layout makes room for it)."""
    fig.legend(*ax.get_legend_handles_labels(), loc="outside upper right", ncols=min(n, 6), frameon=False,
               fontsize="small")


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None}, bbox_inches="tight", pad_inches=0.1)
    return buf.getvalue()


def emotion_figure(attr: str, series: list[str], disturbance: dict, emotions: list[str], paired: dict) -> bytes:
    """Left: the headline disturbance per method; right: paired |Δ| per emotion (grouped by emotion)."""
    with matplotlib.rc_context(STYLE):
        left = bool(disturbance)
        fig = Figure(figsize=(10, 3.4), layout="constrained")
        axes = fig.subplots(1, 2, width_ratios=[1, 3.2]) if left else [None, fig.subplots()]
        if left:
            grouped_bars(axes[0], ["all emotions"], series, {(s, "all emotions"): v for s, v in disturbance.items()},
                         "mean |E(X1) − E(X0)| (pp)")
            axes[0].set_title("disturbance", loc="left")
        grouped_bars(axes[1], emotions, series, paired, "paired |Δ| (pp)")
        axes[1].set_title(f"{attr}: paired |E(X1) − E(X0)| per emotion, 95% intervals", loc="left")
        _legend(fig, axes[1], len(series))
        return _png(fig)


def bars_figure(title: str, groups: list[str], series: list[str], data: dict, ylabel: str) -> bytes:
    """One grouped bar plot (used for the landmark displacements)."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(10, 3.4), layout="constrained")
        ax = fig.subplots()
        grouped_bars(ax, groups, series, data, ylabel)
        ax.set_title(title, loc="left")
        _legend(fig, ax, len(series))
        return _png(fig)
