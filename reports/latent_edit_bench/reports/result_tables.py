"""The result tables of one attribute at one level, built from the run folder's CSV rows (docs/run-format.md).

The generic layout (quantities as rows, methods as columns) covers any metric; a table tag of ``I-III``
(top-k ratios per method) or ``V`` (emotion rows x four numbers per method) gets the paper's shape.
Quantities a special layout does not know go to its footer, so nothing a metric reports is lost.
"""

from __future__ import annotations

import pandas as pd

from .tables import (Cell, Col, Table, bold_best, family_verdict, finite, fmt, fmt_ci, fmt_level, p_cell, pct, pct_ci,
                     plain_head, value_cell)

EMOTION_KINDS = (("before", "before %"), ("after", "after %"), ("paired", "paired |Δ|"), ("set", "set |Δ|"))
HINT = {"lower": "↓ better", "higher": "↑ better"}


# ---------------------------------------------------------------- headers and lookups


def head(cols: list[Col], lead: list[str], sub: tuple[str, ...] = ("",)) -> list[list[Cell]]:
    """Header rows: method names, their notes (n, reach) when any, then per-method sub-columns.

    The lead labels sit on the last row, above the body's row labels."""
    w = len(sub)
    sep = " sep" if w > 1 else ""
    layers = [[Cell(c.method, th=True, span=w, num=w == 1, cls="method" + sep) for c in cols]]
    if any(c.note for c in cols):
        layers.append([Cell(c.note, th=True, span=w, num=w == 1, cls="colnote" + sep) for c in cols])
    if w > 1:
        layers.append([Cell(s, th=True, num=True, cls="sep" if i == 0 else "") for _ in cols
                       for i, s in enumerate(sub)])
    blank = [Cell(th=True, span=len(lead))]
    return [([Cell(t, th=True) for t in lead] if i == len(layers) - 1 else blank) + layer
            for i, layer in enumerate(layers)]


def lookup(frame: pd.DataFrame) -> dict:
    """(method, quantity) -> row."""
    return {(r.method, r.quantity): r for r in frame.itertuples(index=False)}


def quantities(frame: pd.DataFrame) -> list:
    """Unique quantities in order of first appearance: first row of each."""
    return list(frame.drop_duplicates("quantity").itertuples(index=False))


def _row(look: dict, cols: list[Col], q) -> list[Cell]:
    rows = [look.get((c.method, q.quantity)) for c in cols]
    cells = [value_cell(r) for r in rows]
    bold_best(cells, [r.value if r is not None else None for r in rows], q.better)
    return [Cell(q.label or q.quantity, HINT.get(q.better, ""), th=True)] + cells


# ---------------------------------------------------------------- layouts


def quantity_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col], note: str = "",
                   collapsed: bool = False) -> Table:
    """Generic layout: one row per quantity (its label), one column per method."""
    look = lookup(frame)
    body = [_row(look, cols, q) for q in quantities(frame)]
    return Table(tid, caption, head(cols, ["quantity"]), body, note=note, collapsed=collapsed)


def _footer(frame: pd.DataFrame, cols: list[Col], span: int) -> list[list[Cell]]:
    """Quantities a special layout does not place: label + one value per method across its sub-columns."""
    look = lookup(frame)
    foot = [_row(look, cols, q) for q in quantities(frame)]
    for row in foot:
        row[0].cls = "foot"
        for c in row[1:]:
            c.span, c.cls = span, (c.cls + " sep").strip()
    return foot


def topk_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col], attr: str, k: int) -> Table:
    """Tables I-III: per method its k largest ratios r_j (rank, attribute, value [lo, hi]).

    ``r.<Attr>`` quantities are ranked; the target's own ratio (1 by definition) is left out; any
    other quantity of the group (the denominator delta_k) goes to the footer."""
    own = frame.quantity == f"r.{attr}"
    is_ratio = frame.quantity.str.startswith("r.") & ~own
    ratios, rest = frame[is_ratio], frame[~is_ratio & ~own]
    ranked = {}
    for c in cols:
        mine = ratios[(ratios.method == c.method) & ratios.value.map(finite)]
        # mergesort + quantity as second key: ties rank the same way on every machine
        ranked[c] = list(mine.sort_values(["value", "quantity"], ascending=[False, True],
                                          kind="mergesort").head(k).itertuples(index=False))
    body = []
    for i in range(max((len(v) for v in ranked.values()), default=0)):
        cells, shown, better = [Cell(str(i + 1), th=True, cls="rank")], [], ""
        for c in cols:
            if i < len(ranked[c]):
                r = ranked[c][i]
                better = better or r.better
                vc = value_cell(r)
                cells += [Cell(r.quantity[2:], cls="sep"), vc]
                shown.append((vc, r.value))
            else:
                cells += [Cell("", cls="sep"), Cell("", num=True)]
        bold_best([vc for vc, _ in shown], [v for _, v in shown], better)
        body.append(cells)
    note = (f"Top {k} relative change ratios r_j = |mean ΔR_j| / |mean ΔR_k| per method, largest first "
            f"(Δ = R(edit) − R(original); the target {attr} itself is left out). Lower is better.")
    return Table(tid, caption, head(cols, ["rank"], ("attribute", "r_j")), body, _footer(rest, cols, 2),
                 note=note)


def emotion_table(tid: str, caption: str, frame: pd.DataFrame, cols: list[Col]) -> Table:
    """Table V: one row per emotion; per method mean before, mean after, paired |Δ| and set-level |Δ|."""
    kinds = [k for k, _ in EMOTION_KINDS]
    parts = frame.quantity.str.split(".", n=1, expand=True).reindex(columns=[0, 1])
    placed = parts[0].isin(kinds) & parts[1].notna()
    look = lookup(frame)
    body = []
    for emo in dict.fromkeys(parts[1][placed]):
        per_kind = {}
        for kind in kinds:
            rows = [look.get((c.method, f"{kind}.{emo}")) for c in cols]
            cells = [value_cell(r) for r in rows]
            if kind != "paired":    # the paper's shape: only the paired |Δ| carries its interval here
                for c in cells:
                    c.small = ""
            better = next((r.better for r in rows if r is not None and r.better), "")
            bold_best(cells, [r.value if r is not None else None for r in rows], better)
            per_kind[kind] = cells
        for c in per_kind[kinds[0]]:
            c.cls = (c.cls + " sep").strip()
        body.append([Cell(emo, th=True)] + [per_kind[kind][i] for i in range(len(cols)) for kind in kinds])
    note = ("before, after: mean emotion probability (%) of the originals and of the edits. paired |Δ|: mean "
            "over samples of |E(after) − E(before)|; set |Δ|: |mean E(after) − mean E(before)| (the paper's). "
            "Both in percentage points, lower is better.")
    return Table(tid, caption, head(cols, ["emotion"], tuple(t for _, t in EMOTION_KINDS)), body,
                 _footer(frame[~placed], cols, len(kinds)), note=note)


def comparison_table(tid: str, caption: str, frame: pd.DataFrame, titles: dict) -> Table:
    """comparison.csv rows of one level: each method against the reference, with the interval from
    fit seeds + samples beside the one from samples only (their gap is the fit-seed variance)."""
    lead = ["metric", "quantity", "method", "value", "reference", "diff [95% CI: fit seeds + samples]",
            "[95% CI: samples only]", "rel [95% CI]", "p", "n", "test"]
    body = []
    for r in frame.itertuples(index=False):
        rel = Cell(pct(r.rel), pct_ci(r.rel_lo, r.rel_hi), num=True)
        # colour by the interval shown (rel; diff's where rel is undefined: reference = 0), and only where
        # the claim survives Holm over the table's claims (one family, as the first screen)
        both = finite(r.rel_lo) and finite(r.rel_hi)
        rel.cls = family_verdict(*((r.rel_lo, r.rel_hi) if both else (r.diff_lo, r.diff_hi)), r.better, r.p_holm)
        body.append([Cell(titles.get(r.metric, r.metric), th=True), Cell(r.label or r.quantity, th=True),
                     Cell(r.method),
                     Cell(fmt(r.value), num=True), Cell(f"{fmt(r.ref_value)} ({r.reference})", num=True),
                     Cell(fmt(r.diff), fmt_ci(r.diff_lo, r.diff_hi, r.diff), num=True),
                     Cell(fmt_ci(r.diff_lo_samples, r.diff_hi_samples, r.diff) or "–", num=True), rel,
                     p_cell(r.p_value, r.p_holm), Cell(fmt(r.n, 0), num=True), Cell(r.test or "")])
    note = ("diff = method − reference; rel = diff / |reference|; on the samples both reached under all their "
            "fit seeds (n). The first interval resamples fit seeds, then samples; the second samples only: "
            "the wider the first against the second, the more the fits disagree. Green/red: the rel interval "
            "excludes 0 in the better/worse direction and the Holm-adjusted p over this table's rows with a "
            "better direction (one family) is below 0.05.")
    return Table(tid, caption, plain_head(lead, {3, 4, 5, 6, 7, 8, 9}), body, note=note, collapsed=True)


def seeds_table(tid: str, caption: str, levels: list[float], methods: list[str], seeds: pd.DataFrame,
                summary: pd.DataFrame) -> Table:
    """Method x fit seed -> the point estimate at each compared level, then all seeds together."""
    groups = []
    for lv in levels:
        ids = sorted({int(s) for s in seeds.seed[seeds.level == lv] if finite(s)})
        groups.append((lv, ids))
    top = [Cell(th=True)] + [Cell(f"ΔR_k = {fmt_level(lv)}", th=True, span=len(ids) + 1, cls="method sep")
                             for lv, ids in groups]
    sub = [Cell("method", th=True)] + [Cell(f"seed {s}" if s is not None else "all seeds", th=True, num=True,
                                            cls="sep" if i == 0 else "")
                                       for _, ids in groups for i, s in enumerate([*ids, None])]
    per_seed = {(r.level, r.method, int(r.seed)): r.value for r in seeds.itertuples(index=False) if finite(r.seed)}
    pooled = {(r.level, r.method): r for r in summary.itertuples(index=False)}
    body = []
    for m in methods:
        row = [Cell(m, th=True)]
        for lv, ids in groups:
            row += [Cell(fmt(per_seed.get((lv, m, s))), num=True, cls="sep" if i == 0 else "")
                    for i, s in enumerate(ids)]
            row.append(value_cell(pooled.get((lv, m))))
        body.append(row)
    note = ("Each fit seed's estimate on the same samples as the pooled one (all seeds: mean over fit seeds "
            "and samples, with its two-level 95% interval). A spread across seeds wider than the interval "
            "of one would be the fits disagreeing.")
    return Table(tid, caption, [top, sub], body, note=note)
