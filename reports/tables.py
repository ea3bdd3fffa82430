"""Table layouts of the HTML report, built from summary.csv / comparison.csv rows.

Everything here produces plain :class:`Table` objects (text cells, no markup); the template renders
them with autoescaping. The generic layout (quantities as rows, methods as columns) covers any
metric; Tables I-III (top-k ranking per method) and V (emotion rows x four numbers per method) have
the paper's shapes. Quantities a special layout does not know go to its footer, so nothing is lost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

EMOTION_KINDS = (("x0", "X0 %"), ("x1", "X1 %"), ("paired", "paired |Δ|"), ("set", "set |Δ|"))


@dataclass
class Cell:
    text: str = ""
    ci: str = ""          # the interval, shown small and grey after the value
    num: bool = False     # right-aligned number
    bold: bool = False    # best value of its row
    span: int = 1
    th: bool = False
    cls: str = ""
    more: str = ""        # long text (a traceback) behind a closed <details>


@dataclass
class Table:
    id: str
    caption: str
    head: list
    body: list
    foot: list = field(default_factory=list)
    note: str = ""
    collapsed: bool = False   # long tables go inside a closed <details>


@dataclass(frozen=True)
class Col:
    """One column of the result tables: a method of a run."""

    run: str
    method: str
    label: str            # the method, plus the run id when several runs are compared


# ---------------------------------------------------------------- formatting

def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def decimals(v: float) -> int:
    """Decimals that show 3 significant digits in fixed point (0 for |v| >= 100)."""
    a = abs(v)
    if a == 0 or a >= 100:
        return 0 if a >= 100 else 2
    return min(6, max(0, 2 - math.floor(math.log10(a))))


def fmt(v, nd: int | None = None) -> str:
    if not _finite(v):
        return "–"
    v = float(v)
    if v != 0 and abs(v) < 1e-4:
        return f"{v:.2e}"
    return f"{v:.{decimals(v) if nd is None else nd}f}"


def fmt_ci(lo, hi, value) -> str:
    if not (_finite(lo) and _finite(hi)):
        return ""
    nd = decimals(float(value)) if _finite(value) and float(value) != 0 else None
    return f"[{fmt(lo, nd)}, {fmt(hi, nd)}]"


def pct(v) -> str:
    return f"{100 * float(v):+.1f}%" if _finite(v) else "–"


def fmt_p(p) -> str:
    if not _finite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def slug(*parts) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_]+", "_", str(p)) for p in parts)


def value_cell(row) -> Cell:
    if row is None:
        return Cell("–", num=True, cls="missing")
    return Cell(fmt(row.value), fmt_ci(row.lo, row.hi, row.value), num=True)


def bold_best(cells: list[Cell], values: list, better: str) -> None:
    """Bold the best finite value (ties too) when the quantity has a direction and 2+ values compete."""
    if better not in ("lower", "higher"):
        return
    finite = [float(v) for v in values if _finite(v)]
    if len(finite) < 2 or min(finite) == max(finite):    # nothing to single out
        return
    best = min(finite) if better == "lower" else max(finite)
    for c, v in zip(cells, values):
        c.bold = _finite(v) and float(v) == best


# ---------------------------------------------------------------- headers and lookups

def head(cols: list[Col], lead: list[str], sub: tuple[str, ...] = ("",)) -> list[list[Cell]]:
    """Header rows: run ids (when several runs), method names, then per-method sub-columns."""
    rows, width = [], len(sub)
    if len({c.run for c in cols}) > 1:
        groups: list[list] = []
        for c in cols:
            if groups and groups[-1][0] == c.run:
                groups[-1][1] += width
            else:
                groups.append([c.run, width])
        rows.append([Cell(th=True, span=len(lead))] + [Cell(f"run {r}", th=True, span=s, cls="run")
                                                       for r, s in groups])
    if width > 1:
        rows.append([Cell(th=True, span=len(lead))] + [Cell(c.method, th=True, span=width, cls="method sep")
                                                       for c in cols])
        rows.append([Cell(t, th=True) for t in lead] + [Cell(s, th=True, num=True, cls="sep" if i == 0 else "")
                                                        for _ in cols for i, s in enumerate(sub)])
    else:
        rows.append([Cell(t, th=True) for t in lead] + [Cell(c.method, th=True, num=True, cls="method")
                                                        for c in cols])
    return rows


def lookup(frame: pd.DataFrame) -> dict:
    """(run, method, quantity) -> row."""
    return {(r.run, r.method, r.quantity): r for r in frame.itertuples(index=False)}


def quantities(frame: pd.DataFrame) -> list:
    """Unique quantities in order of first appearance: first row of each."""
    return [r for _, r in frame.drop_duplicates("quantity").iterrows()]


def _row(label: str, look: dict, cols: list[Col], q) -> list[Cell]:
    rows = [look.get((c.run, c.method, q.quantity)) for c in cols]
    cells = [value_cell(r) for r in rows]
    bold_best(cells, [r.value if r is not None else None for r in rows], q.better)
    return [Cell(label, th=True)] + cells


# ---------------------------------------------------------------- layouts

def quantity_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col], note: str = "",
                   collapsed: bool = False) -> Table:
    """Generic layout: one row per quantity (its label), one column per method."""
    look = lookup(frame)
    body = [_row(q.label or q.quantity, look, cols, q) for q in quantities(frame)]
    return Table(tid, caption, head(cols, ["quantity"]), body, note=note, collapsed=collapsed)


def _footer(frame: pd.DataFrame, cols: list[Col], span: int) -> list[list[Cell]]:
    """Quantities a special layout does not place: label + one value per method across its sub-columns."""
    look = lookup(frame)
    foot = [_row(q.label or q.quantity, look, cols, q) for q in quantities(frame)]
    for row in foot:
        row[0].cls = "foot"
        for c in row[1:]:
            c.span, c.cls = span, (c.cls + " sep").strip()
    return foot


def topk_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col], attr: str, k: int) -> Table:
    """Tables I-III: per method its k largest ratios r_j (rank, attribute, value [lo, hi]).

    ``r.<Attr>`` quantities are ranked; the target's own ratio (1 by definition) is left out; any
    other quantity of the group (e.g. the denominator Δ_k) goes to the footer."""
    is_ratio = frame.quantity.str.startswith("r.") & (frame.quantity != f"r.{attr}")
    ratios, rest = frame[is_ratio], frame[~is_ratio & (frame.quantity != f"r.{attr}")]
    ranked = {}
    for c in cols:
        mine = ratios[(ratios.run == c.run) & (ratios.method == c.method) & ratios.value.map(_finite)]
        ranked[c] = list(mine.sort_values(["value", "quantity"], ascending=[False, True],
                                          kind="mergesort").head(k).itertuples(index=False))
    body = []
    for i in range(k):
        cells, values, better = [Cell(str(i + 1), th=True, cls="rank")], [], ""
        for c in cols:
            if i < len(ranked[c]):
                r = ranked[c][i]
                better = better or r.better
                vc = value_cell(r)
                cells += [Cell(r.quantity[2:], cls="sep"), vc]
                values.append((vc, r.value))
            else:
                cells += [Cell("", cls="sep"), Cell("", num=True)]
        bold_best([vc for vc, _ in values], [v for _, v in values], better)
        body.append(cells)
    note = (f"Top {k} relative change ratios r_j = |Δ_j| / |Δ_k| per method, largest first "
            f"(Δ = mean R(X1) − mean R(X0); the target {attr} itself is left out). Lower is better.")
    return Table(tid, caption, head(cols, ["rank"], ("attribute", "r_j")), body, _footer(rest, cols, 2),
                 note=note)


def emotion_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col]) -> Table:
    """Table V: one row per emotion; per method mean X0, mean X1, paired |Δ| and set-level |Δ|."""
    kinds = [k for k, _ in EMOTION_KINDS]
    parts = frame.quantity.str.split(".", n=1, expand=True).reindex(columns=[0, 1])
    placed = parts[0].isin(kinds) & parts[1].notna()
    emos = list(dict.fromkeys(parts[1][placed]))
    look = lookup(frame)
    body = []
    for emo in emos:
        per_kind = {}
        for kind in kinds:
            rows = [look.get((c.run, c.method, f"{kind}.{emo}")) for c in cols]
            cells = [value_cell(r) for r in rows]
            if kind != "paired":    # the paper's shape: only the paired |Δ| carries its interval here
                for c in cells:
                    c.ci = ""
            better = next((r.better for r in rows if r is not None and r.better), "")
            bold_best(cells, [r.value if r is not None else None for r in rows], better)
            per_kind[kind] = cells
        for c in per_kind[kinds[0]]:
            c.cls = (c.cls + " sep").strip()
        body.append([Cell(emo, th=True)] + [per_kind[kind][i] for i in range(len(cols)) for kind in kinds])
    note = ("X0, X1: mean emotion score (%) of the edits to target 0 and 1. paired |Δ|: mean over samples "
            "of |E(X1) − E(X0)|; set |Δ|: |mean E(X1) − mean E(X0)| (the paper's). Both in percentage points, "
            "lower is better.")
    return Table(tid, caption, head(cols, ["emotion"], tuple(t for _, t in EMOTION_KINDS)), body,
                 _footer(frame[~placed], cols, len(kinds)), note=note)


def comparison_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col], better: dict,
                     collapsed: bool) -> Table:
    """Every quantity of one metric: each method against its run's reference (diff, rel, p, test)."""
    lead = ["quantity", "method", "value", "reference", "diff [95% CI]", "rel [95% CI]", "p", "test"]
    look = lookup(frame)
    body = []
    for q in quantities(frame):
        for c in cols:
            r = look.get((c.run, c.method, q.quantity))
            if r is None:
                continue
            rel = Cell(pct(r.rel), f"[{pct(r.rel_lo)}, {pct(r.rel_hi)}]" if _finite(r.rel_lo) else "", num=True)
            # colour by the interval shown (rel); diff's where rel is undefined (reference = 0)
            lo, hi = (r.rel_lo, r.rel_hi) if _finite(r.rel_lo) and _finite(r.rel_hi) else (r.diff_lo, r.diff_hi)
            rel.cls = _verdict(lo, hi, better.get(q.quantity, ""))
            body.append([Cell(q.label or q.quantity, th=True), Cell(c.label), Cell(fmt(r.value), num=True),
                         Cell(fmt(r.baseline), num=True),
                         Cell(fmt(r.diff), fmt_ci(r.diff_lo, r.diff_hi, r.diff), num=True), rel,
                         Cell(fmt_p(r.p_value), num=True), Cell(r.test or "")])
    return Table(tid, caption, [[Cell(t, th=True, num=i >= 2 and i < 7) for i, t in enumerate(lead)]], body,
                 note="diff = method − reference; rel = diff / |reference|; intervals and p from the paired "
                      "resamples of the same samples. Green/red: the rel interval excludes 0 in the better/worse "
                      "direction.", collapsed=collapsed)


def _verdict(lo, hi, better: str) -> str:
    if better not in ("lower", "higher") or not (_finite(lo) and _finite(hi)):
        return ""
    if hi < 0 or lo > 0:
        return "good" if (hi < 0) == (better == "lower") else "bad"
    return ""


def key_value_table(tid: str, caption: str, keys: list[str], runs: list[str], values: dict,
                    lead: str = "key", collapsed: bool = False) -> Table:
    """Rows = keys, one column per run: values[(key, run)] -> text."""
    multi = len(runs) > 1
    hd = [[Cell(lead, th=True)] + [Cell(f"run {r}" if multi else "value", th=True) for r in runs]]
    body = [[Cell(k, th=True)] + [Cell(values.get((k, r), "–")) for r in runs] for k in keys]
    return Table(tid, caption, hd, body, collapsed=collapsed)


def list_table(tid: str, caption: str, lead: list[str], rows: list[list[Cell]], empty: str,
               collapsed: bool = False) -> Table:
    body = rows or [[Cell(empty, span=len(lead), cls="missing")]]
    return Table(tid, caption, [[Cell(t, th=True) for t in lead]], body, collapsed=collapsed)
