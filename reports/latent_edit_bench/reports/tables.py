"""Table layouts of the HTML report, built from the run folder's CSV rows (docs/run-format.md).

Everything here produces plain :class:`Table` objects (text cells, no markup); the template renders
them with autoescaping. The generic layout (quantities as rows, methods as columns) covers any
metric; a table tag of ``I-III`` (top-k ratios per method) or ``V`` (emotion rows x four numbers per
method) gets the paper's shape. Quantities a special layout does not know go to its footer, so
nothing a metric reports is lost.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

EMOTION_KINDS = (("before", "before %"), ("after", "after %"), ("paired", "paired |Δ|"), ("set", "set |Δ|"))
DIRECTIONS = {"+": "towards presence", "-": "towards absence"}


@dataclass
class Cell:
    text: str = ""
    small: str = ""       # grey small text after the value: its interval, or a hint
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
    """One method column of a result table; ``note`` is a second header line (its n and reach)."""

    method: str
    note: str = ""


# ---------------------------------------------------------------- formatting

def finite(v) -> bool:
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
    if not finite(v):
        return "–"
    v = float(v)
    if v != 0 and abs(v) < 1e-4:
        return f"{v:.2e}"
    return f"{v:.{decimals(v) if nd is None else nd}f}"


def fmt_ci(lo, hi, value) -> str:
    """"[lo, hi]" with the value's decimals, so that the three numbers line up; "" when missing."""
    if not (finite(lo) and finite(hi)):
        return ""
    nd = decimals(float(value)) if finite(value) and float(value) != 0 else None
    return f"[{fmt(lo, nd)}, {fmt(hi, nd)}]"


def pct(v) -> str:
    return f"{100 * float(v):+.1f}%" if finite(v) else "–"


def pct_ci(lo, hi) -> str:
    return f"[{pct(lo)}, {pct(hi)}]" if finite(lo) and finite(hi) else ""


def share(v) -> str:
    """A fraction in [0, 1] as a whole percentage (reach fractions)."""
    return f"{100 * float(v):.0f}%" if finite(v) else "–"


def fmt_p(p) -> str:
    if not finite(p):
        return "p n/a"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def fmt_level(v) -> str:
    """A signed ladder level, always with its sign: +0.3, -0.2."""
    return f"{float(v):+g}" if finite(v) else "–"


def slug(*parts) -> str:
    return "-".join(re.sub(r"[^A-Za-z0-9_]+", "_", str(p)) for p in parts)


def level_slug(v) -> str:
    return ("p" if float(v) > 0 else "m") + slug(f"{abs(float(v)):g}")


def value_cell(row) -> Cell:
    if row is None:
        return Cell("–", num=True, cls="missing")
    return Cell(fmt(row.value), fmt_ci(row.lo, row.hi, row.value), num=True)


def bold_best(cells: list[Cell], values: list, better: str) -> None:
    """Bold the best finite value (ties too) when the quantity has a direction and 2+ values compete."""
    if better not in ("lower", "higher"):
        return
    good = [float(v) for v in values if finite(v)]
    if len(good) < 2 or min(good) == max(good):    # nothing to single out
        return
    best = min(good) if better == "lower" else max(good)
    for c, v in zip(cells, values):
        c.bold = finite(v) and float(v) == best


def verdict(lo, hi, better: str) -> str:
    """"good"/"bad" when the interval excludes 0 in the better/worse direction, else ""."""
    if better not in ("lower", "higher") or not (finite(lo) and finite(hi)):
        return ""
    if hi < 0 or lo > 0:
        return "good" if (hi < 0) == (better == "lower") else "bad"
    return ""


ALPHA = 0.05   # a comparison is coloured when it holds at this level after Holm over its family


def family_verdict(lo, hi, better: str, p_holm) -> str:
    """:func:`verdict`, kept only where the comparison's Holm-adjusted p (over its family: the first
    screen, or one level's comparison table) is below ALPHA: each on its own is not a finding."""
    return verdict(lo, hi, better) if finite(p_holm) and p_holm < ALPHA else ""


def p_cell(p, p_holm) -> Cell:
    """The p-value with its Holm-adjusted value beside it ("p = 0.021", "Holm = 0.168")."""
    return Cell(fmt_p(p), f"Holm {fmt_p(p_holm)[2:]}" if finite(p_holm) else "", num=True)


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


def plain_head(labels: list[str], numeric: set[int] = frozenset()) -> list[list[Cell]]:
    return [[Cell(t, th=True, num=i in numeric) for i, t in enumerate(labels)]]


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


# ---------------------------------------------------------------- result layouts (one attribute, one level)

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


# ---------------------------------------------------------------- the answer

def _text_of(v) -> str:
    return v if isinstance(v, str) else ""   # a CSV's empty cell reads as NaN


def block_verdicts(rows: pd.DataFrame) -> tuple[bool, bool]:
    """(judged, any resolved) of one (attribute, direction) of ranking.csv: whether its rows carry verdicts
    (a folder from before they did has none), and whether any comparison is resolved."""
    v = rows.verdict.map(_text_of) if "verdict" in rows else pd.Series([], dtype=str)
    return bool(v.str.len().gt(0).any()), bool(v.eq("resolved").any())


def rank_label(r, judged: bool, any_resolved: bool) -> str:
    """The first screen's rank cell for a compared row (``ranked`` or ``reference``) of ranking.csv: its rank
    where the comparison is resolved (the reference: beside a resolved one; a folder without verdicts: as
    ranked), else "not validated" (the trainer is not shown to see the attribute), "not resolved" or "–"."""
    if _text_of(getattr(r, "trainer_validity", "")) not in ("", "sees"):
        return "not validated"
    if not judged or _text_of(getattr(r, "verdict", "")) == "resolved" or (r.status == "reference" and any_resolved):
        return fmt(r.rank, 0) if finite(r.rank) else ""
    return "–" if r.status == "reference" else "not resolved"


def ranking_table(tid: str, caption: str, rows: pd.DataFrame, order: list[str], plans: dict | None = None) -> Table:
    """One (attribute, direction) of ranking.csv: compared methods (the reference among them) first, by
    value; every other status below, greyed and never ranked, whatever the CSV's rank column says.

    A rank is shown only for what the run resolves (ranking.csv's verdict: the interval excludes 0 and the
    Holm-adjusted p < 0.05); an unresolved comparison reads "not resolved at N, K" instead, the reference
    gets a rank only beside a resolved one. ``plans``: method -> power.plan_run row (detectable difference
    and the N, K that would resolve it); a folder without power.csv shows the CSV's ranks as before."""
    from latent_edit_bench.pipeline.power import describe_plan

    plans = plans or {}
    lead = ["rank", "method", "emotion disturbance, pp [95% CI]", "vs reference: rel [95% CI]",
            "p", "reach"] + (["power"] if plans else [])
    compared = rows[rows.status.isin(["ranked", "reference"])].copy()
    compared["_r"] = compared["rank"].where(compared["rank"].map(finite), math.inf)
    compared = compared.sort_values(["_r", "value", "method"], kind="mergesort")
    others = rows[~rows.status.isin(["ranked", "reference"])]
    others = others.assign(_o=others.method.map(lambda m: order.index(m) if m in order else len(order)))
    judged, any_resolved = block_verdicts(compared)
    body = []
    for r in compared.itertuples(index=False):
        n_k = f"N = {fmt(r.n, 0)}" + (f", K = {plans[r.method]['k']}" if r.method in plans else "")
        label = rank_label(r, judged, any_resolved)
        if label == "not validated":
            rank = Cell(label, th=True, cls="rank nr")
        elif label == "not resolved":
            rank = Cell(label, f"at {n_k}", th=True, cls="rank nr")
        else:
            rank = Cell(label, th=True, cls="rank")
        if r.status == "reference":
            rel, p = Cell("reference", cls="ref"), Cell("")
        else:
            rel = Cell(pct(r.rel), pct_ci(r.rel_lo, r.rel_hi), num=True,
                       cls=family_verdict(r.rel_lo, r.rel_hi, "lower", r.p_holm))
            p = p_cell(r.p_value, r.p_holm)
        row = [rank, Cell(r.method, th=True), Cell(fmt(r.value), fmt_ci(r.lo, r.hi, r.value), num=True), rel, p,
               Cell(share(r.reach), num=True)]
        if plans:
            pl = plans.get(r.method)
            if pl is None:
                row.append(Cell("reference" if r.status == "reference" else ""))
            else:
                obs = (f"the observed {abs(pl['rel']) * 100:.0f}%: {describe_plan(pl['observed'])}; "
                       if pl["rel"] == pl["rel"] else "")
                row.append(Cell(f"{pl['mde_rel'] * 100:.0f}% detectable",
                                f"would resolve {obs}{pl['effect'].effect * 100:.0f}%: {describe_plan(pl['effect'])}",
                                cls="plan"))
        body.append(row)
    span = 3 + (1 if plans else 0)
    for r in others.sort_values(["_o", "method"], kind="mergesort").itertuples(index=False):
        body.append([Cell("", th=True, cls="rank cnr"), Cell(r.method, th=True, cls="cnr"),
                     Cell(r.status, span=span, cls="cnr"), Cell(share(r.reach), num=True, cls="cnr")])
    return Table(tid, caption, plain_head(lead, {2, 3, 4, 5}), body)


# said once under all the answer's tables rather than under each
RANKING_NOTE = ("Lower disturbance is better. Intervals are 95%, over fit seeds and samples (two-level bootstrap). Numbers on the n samples every ranked method reached under all its "
                "fit seeds; rel = (method − reference) / |reference| on the same samples; p from the two-level "
                "bootstrap, and Holm-adjusted over all the comparisons on this screen (one family); green/red only "
                "where the interval excludes 0 and the Holm-adjusted p is below 0.05. reach: the smallest fraction "
                "of the N samples "
                "that reached the level under any one fit seed. Methods that could not reach the level are listed "
                "greyed, unranked. A rank is given only where the comparison is resolved (interval excludes 0, "
                "Holm-adjusted p < 0.05); otherwise the row reads \"not resolved at N, K\". power: \"detectable\" is the smallest "
                "relative difference this N and K would detect with 80% power at two-sided alpha 0.05 / (comparisons "
                "on the screen), from the run's own fit-seed and sample variance components, and the N and K (and "
                "the time at this run's measured unit times) that would resolve the observed difference and a 10% "
                "one (docs/metrics.md, `bench plan`).")

# instrument validity (validity.csv, docs/validity.md), kept apart from the rest of the note
RANKING_NOTE += (" \"not validated\" instead of a rank: the attribute's trainer is not shown to see it on this backbone "
                 "(its AUC against human labels has a 95% interval reaching 0.5, or there are no labels), so the "
                 "edits were driven to a change of a score that may not be the attribute.")


# ---------------------------------------------------------------- provenance

def key_value_table(tid: str, caption: str, keys: list[str], values: dict, lead: str = "key",
                    collapsed: bool = False) -> Table:
    body = [[Cell(k, th=True), Cell(values.get(k, "–"))] for k in keys]
    body = body or [[Cell("none recorded", span=2, cls="missing")]]
    return Table(tid, caption, plain_head([lead, "value"]), body, collapsed=collapsed)


def list_table(tid: str, caption: str, lead: list[str], rows: list[list[Cell]], empty: str,
               collapsed: bool = False) -> Table:
    body = rows or [[Cell(empty, span=len(lead), cls="missing")]]
    return Table(tid, caption, plain_head(lead), body, collapsed=collapsed)
