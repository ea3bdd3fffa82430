"""One attribute's section after the first screen: figures, per-seed estimates, each compared level's tables.

Result tables come from the CSVs generically (one per metric and table tag), so a third-party metric
appears without template changes; each level also gets its paired comparison with the reference.
"""

from __future__ import annotations

import pandas as pd

from latent_edit_bench.pipeline.analysis import HEADLINE

from .caveats import heuristic_warning, no_verdict, not_validated
from .figures import curves, trajectories
from .result_tables import comparison_table, emotion_table, quantity_table, seeds_table, topk_table
from .run_folder import Run, ordered
from .tables import DIRECTIONS, Col, finite, fmt, fmt_level, level_slug, share, slug

PAPER_TABLES = {"I-III": "Table I-III", "IV": "Table IV", "V": "Table V"}


def _table_title(metric: str, table: str, titles: dict) -> str:
    """The metric's recorded title, with the paper table it reproduces or its own table tag."""
    title = titles.get(metric, metric)
    if table in PAPER_TABLES and table not in title:
        return f"{title} ({PAPER_TABLES[table]})"
    if table and table not in (metric, *PAPER_TABLES):
        return f"{title}: {table}"
    return title


def _col_note(rows: pd.DataFrame) -> str:
    """"n = 27, reach 84%" of one method at one level: its headline row's, else its first row's."""
    head = rows[(rows.metric == HEADLINE[0]) & (rows.quantity == HEADLINE[1])]
    r = (head if len(head) else rows).iloc[0]
    return f"n = {fmt(r.n, 0)}, reach {share(r.reach)}"


def _level_block(run: Run, prefix: str, attr: str, level: float, s: pd.DataFrame, methods: list[str],
                 metric_order: list[str], titles: dict, top_k: int) -> dict:
    """One compared level: every metric's tables (the paper's shapes for I-III and V), then comparison.csv's."""
    caveat = not_validated(run, attr, "judge")   # then the judge's confirm/refute numbers are no verdict
    at = no_verdict(s[s.level == level], caveat)
    cols = [Col(m, _col_note(at[at.method == m])) for m in methods if (at.method == m).any()]
    base = f"{prefix}t-{slug(attr)}-{level_slug(level)}"
    tables = []
    for metric in metric_order:
        mf = at[at.metric == metric]
        for table in dict.fromkeys(mf.table):
            g = mf[mf.table == table]
            tid, title = f"{base}-{slug(metric, table)}", _table_title(metric, table, titles)
            if table == "I-III":
                tables.append(topk_table(tid, title, g, cols, attr, top_k))
                ratios = g[g.quantity.str.startswith("r.")]
                if len(dict.fromkeys(ratios.quantity)) > top_k:    # the ranking shows k; the rest on demand
                    tables.append(quantity_table(f"{tid}-all", f"{titles.get(metric, metric)}: every ratio", ratios,
                                                 cols, collapsed=True))
            elif table == "V":
                tables.append(emotion_table(tid, title, g, cols))
            else:
                tables.append(quantity_table(tid, title, g, cols, note=caveat if metric == "judge" else ""))
    comp = no_verdict(run.comparison[(run.comparison.attr == attr) & (run.comparison.level == level)], caveat)
    comparison = None
    if len(comp):
        rank = {m: i for i, m in enumerate(ordered(metric_order, comp.metric))}
        order = {m: i for i, m in enumerate(ordered(methods, comp.method))}
        comp = comp.assign(_m=comp.metric.map(rank), _k=comp.method.map(order))
        comp = comp.sort_values(["_m", "_k"], kind="mergesort")    # stable: the file's quantity order stays
        comparison = comparison_table(f"{prefix}c-{slug(attr)}-{level_slug(level)}",
                                      f"{attr} at ΔR_k = {fmt_level(level)}: every quantity against the reference "
                                      f"(comparison.csv)", comp, titles)
    direction = DIRECTIONS["+" if level > 0 else "-"]
    return {"id": base, "title": f"{attr} at ΔR_k = {fmt_level(level)} ({direction})", "tables": tables,
            "comparison": comparison, "empty": not cols}


def attr_section(run: Run, prefix: str, attr: str, methods: list[str], metric_order: list[str], titles: dict,
                 top_k: int) -> dict:
    """The attribute's section: curves, per-fit-seed estimates at the compared levels, each level's block,
    the trajectories."""
    s = run.summary[run.summary.attr == attr]
    rk = run.ranking[(run.ranking.attr == attr) & (run.ranking.status != "no common level")
                     & run.ranking.level.map(finite)]
    compared = ordered(rk[rk.direction == "+"].level, rk[rk.direction == "-"].level, rk.level)
    headline = s[(s.metric == HEADLINE[0]) & (s.quantity == HEADLINE[1])]
    seeds = run.seeds[(run.seeds.attr == attr) & (run.seeds.metric == HEADLINE[0])
                      & (run.seeds.quantity == HEADLINE[1]) & run.seeds.level.isin(compared)]
    seeds_t = None
    if len(seeds):
        present = set(seeds.method) | set(headline[headline.level.isin(compared)].method)
        seeds_t = seeds_table(f"{prefix}seeds-{slug(attr)}", f"{attr}: emotion disturbance (pp) per fit seed at the "
                              f"compared level(s)", compared, [m for m in methods if m in present], seeds,
                              headline[headline.level.isin(compared)])
    ladder = sorted(v for v in dict.fromkeys(s.level) if finite(v))
    return {"attr": attr, "id": f"{prefix}attr-{slug(attr)}", "warning": heuristic_warning(run, attr),
            "figure": curves(run, prefix, attr, s, methods, compared), "seeds": seeds_t,
            "seeds_missing": "seeds.csv" in run.absent,
            "levels": [_level_block(run, prefix, attr, lv, s, methods, metric_order, titles, top_k)
                       for lv in compared],
            "trajectories": trajectories(run, prefix, attr, methods, ladder)}
