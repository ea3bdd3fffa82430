"""The first screen: per attribute and direction, the methods ranked by emotion disturbance (ranking.csv)."""

from __future__ import annotations

import math

import pandas as pd

from latent_edit_bench.pipeline.power import describe_plan

from .caveats import heuristic_warning, not_validated, unresolved, validity_line
from .run_folder import Run, ordered
from .tables import (DIRECTIONS, Cell, Table, family_verdict, finite, fmt, fmt_ci, fmt_level, p_cell, pct, pct_ci,
                     plain_head, share, slug, text)

def answer(run: Run, prefix: str, attr: str, methods: list[str]) -> dict:
    """One attribute's part of the first screen: per direction where its methods are compared and their
    ranking table, with the attribute's caveats (heuristic measure, validity, unresolved comparisons)."""
    rk = run.ranking[run.ranking.attr == attr]
    k = run.fit_seeds
    under = f"under all {k} fit seeds" if k > 1 else "under its one fit seed"
    blocks = []
    for d in ordered(["+", "-"], rk.direction):
        rows = rk[rk.direction == d]
        if rows.empty:
            continue
        where = f"{attr}, {DIRECTIONS.get(d, f'direction {d}')}"
        tid = f"{prefix}answer-{slug(attr)}-{'plus' if d == '+' else 'minus'}"
        usable = rows[(rows.status != "no common level") & rows.level.map(finite)]
        if usable.empty:
            blocks.append({"id": tid, "table": None,
                           "sentence": f"{where}: no common level: no level of the ladder is reached by the "
                                       f"reference and at least one other method (at least "
                                       f"{text(run.config.get('min_reach'))} of the samples {under}, with "
                                       f"enough samples in common; docs/metrics.md)."})
            continue
        level = usable.level.iloc[0]
        compared = usable[usable.status.isin(["ranked", "reference"])]
        ns = sorted({int(n) for n in compared.n if finite(n)})
        n = "n = " + (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}–{ns[-1]}" if ns else "?")
        who = "every method" if len(compared) == len(usable) else "every ranked method"
        # a method fitted fewer times (an untrained reference has one "fit") is named, not counted as K
        fewer = sorted({(m, int(v)) for m, v in run.summary[(run.summary.attr == attr) & (run.summary.level == level)
                                                            & run.summary.method.isin(compared.method)]
                        [["method", "n_seeds"]].itertuples(index=False) if finite(v) and v < k})
        if fewer:
            who += f" under all its fit seeds: {k} each, " + ", ".join(f"{m} {v}" for m, v in fewer)
        blocks.append({"id": tid, "sentence": f"{where}: compared at ΔR_k = {fmt_level(level)} "
                                              f"({n} samples reached by {who}{'' if fewer else ' ' + under})"
                                              + unresolved(run, attr, d, compared),
                       "table": ranking_table(f"{tid}-table", f"{where}: compared by emotion disturbance", usable,
                                              methods, {m: pl for (a, dd, m), pl in run.plans.items()
                                                        if a == attr and dd == d})})
    missing = "" if blocks else ("no ranking: this run folder has no ranking.csv" if "ranking.csv" in run.absent
                                 else f"no ranking for {attr} in ranking.csv")
    unvalidated = not_validated(run, attr, "trainer")
    return {"attr": attr, "warning": heuristic_warning(run, attr), "blocks": blocks, "missing": missing,
            "validity": validity_line(run, attr),
            "unvalidated": unvalidated and f"{unvalidated}: its comparisons are listed without a rank"}


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
