"""From per-sample metric columns to the run's tables: curves, per-seed estimates, equal-edit comparisons
and the ranking (docs/run-format.md for the files, docs/metrics.md for the rules).

Input: ``samples`` with one row per (method, attr, seed, level, sample), a ``reached`` column and
``<metric>.<column>`` columns. Nothing here is ever computed on a sample that did not reach its
level, and no two methods are compared except at a level both reach, on the samples both reached
under every fit seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from latent_edit_bench.pipeline import power, stats
from latent_edit_bench.pipeline.stats import Bootstrap
from latent_edit_bench.pipeline.validity import NO_LABELS, SEES

MIN_PAIRED = 8          # fewer common samples than this: no comparison at that level
HEADLINE = ("emotion", "disturbance")

SUMMARY_COLUMNS = ["attr", "level", "method", "metric", "quantity", "label", "value", "lo", "hi", "n", "n_seeds",
                   "reach", "better", "table"]
SEEDS_COLUMNS = ["attr", "level", "method", "seed", "metric", "quantity", "value", "n", "reach"]
COMPARISON_COLUMNS = ["attr", "level", "method", "reference", "metric", "quantity", "label", "value", "ref_value",
                      "diff", "diff_lo", "diff_hi", "diff_lo_samples", "diff_hi_samples", "rel", "rel_lo", "rel_hi",
                      "p_value", "n", "better", "test", "p_holm"]
RANKING_COLUMNS = ["attr", "direction", "level", "method", "status", "rank", "value", "lo", "hi", "n", "reach", "rel",
                   "rel_lo", "rel_hi", "p_value", "kind", "p_holm", "verdict", "mde_rel",
                   "trainer_validity"]   # validity.csv's status of the attribute's trainer: sees / not shown / no labels


def ranking_p_holm(ranking: pd.DataFrame) -> np.ndarray:
    """Holm-adjusted p of every row of ranking.csv: its ranked rows are one family of comparisons to the
    reference (the first screen); other rows get NaN."""
    out = np.full(len(ranking), np.nan)
    ranked = ranking.status.eq("ranked").to_numpy()
    out[ranked] = stats.holm(ranking.p_value.to_numpy()[ranked])
    return out


def comparison_p_holm(comparison: pd.DataFrame) -> np.ndarray:
    """Holm-adjusted p of every row of comparison.csv. One family per (attribute, level): the report's
    comparison table of that level. Its members are the rows that make a claim (a quantity with a
    better direction and a p-value); other rows get NaN."""
    out = np.full(len(comparison), np.nan)
    p = pd.to_numeric(comparison.p_value, errors="coerce").to_numpy(dtype=float)
    claims = comparison.better.isin(["lower", "higher"]).to_numpy() & np.isfinite(p)
    for rows in comparison.groupby(["attr", "level"], sort=False).indices.values():
        rows = rows[claims[rows]]
        out[rows] = stats.holm(p[rows])
    return out


@dataclass
class Block:
    """One (method, attr, level): ``reached`` [K, N] and each metric's columns {metric: {col: [K, N]}}."""

    seeds: list
    reached: np.ndarray
    columns: dict

    @property
    def common(self) -> np.ndarray:           # reached under every fit seed
        return self.reached.all(0)

    @property
    def reach(self) -> float:                 # the worst fit seed's reached fraction
        return float(self.reached.mean(1).min())


def blocks(samples: pd.DataFrame, metric_names) -> dict:
    """{(method, attr, level): Block}, rows ordered by fit seed then sample."""
    out = {}
    for (m, a, lv), g in samples.groupby(["method", "attr", "level"], sort=False):
        g = g.sort_values(["seed", "sample"])
        seeds = sorted(g.seed.unique())
        k = len(seeds)
        cols = {}
        for name in metric_names:
            pre = f"{name}."
            cols[name] = {c[len(pre):]: g[c].to_numpy(np.float64).reshape(k, -1) for c in g.columns
                          if c.startswith(pre)}
        out[m, a, float(lv)] = Block(seeds, g.reached.to_numpy(bool).reshape(k, -1), cols)
    return out


def analyse(samples: pd.DataFrame, metrics: dict, *, methods, attrs, reference: str, n: int, min_reach: float = 0.5,
            n_boot: int = 2000, seed: int = 0, kinds: dict | None = None,
            validity: dict | None = None) -> dict[str, pd.DataFrame]:
    """summary, seeds, comparison and ranking frames (the CSVs of a run folder). ``validity``: {attr: status of
    its trainer} (validity.csv); None: not measured, ranks as if the trainer saw every attribute."""
    boot = Bootstrap(n, n_boot, seed=seed)
    bl = blocks(samples, list(metrics))
    levels = sorted({lv for (_, _, lv) in bl})
    seed_w = {}

    def sw(method, k):
        if (method, k) not in seed_w:
            seed_w[method, k] = boot.seed_weights(method, k)
        return seed_w[method, k]

    summary, per_seed, comparison = [], [], []
    for a in attrs:
        for lv in levels:
            for m in methods:
                b = bl.get((m, a, lv))
                if b is None or not b.common.any():
                    continue
                k = len(b.seeds)
                for mname, metric in metrics.items():
                    x = b.columns[mname]
                    for q in metric.quantities(a, list(x)):
                        value, lo, hi = stats.evaluate(q, x, boot, b.common, sw(m, k))
                        summary.append([a, lv, m, mname, q.name, q.label or q.name, value, lo, hi,
                                        int(b.common.sum()), k, b.reach, q.better or "", q.table])
                        for s, v, reached in zip(b.seeds, stats.per_seed(q, x, b.common), b.reached):
                            per_seed.append([a, lv, m, int(s), mname, q.name, v, int(b.common.sum()),
                                             float(reached.mean())])
            ref = bl.get((reference, a, lv))
            if ref is None or ref.reach < min_reach:
                continue
            for m in methods:
                b = bl.get((m, a, lv))
                if m == reference or b is None or b.reach < min_reach:
                    continue
                both = b.common & ref.common
                if both.sum() < MIN_PAIRED:
                    continue
                for mname, metric in metrics.items():
                    x, xr = b.columns[mname], ref.columns[mname]
                    for q in metric.quantities(a, list(x)):
                        c = stats.compare(q, x, xr, boot, both, sw(m, len(b.seeds)), sw(reference, len(ref.seeds)))
                        comparison.append({"attr": a, "level": lv, "method": m, "reference": reference,
                                           "metric": mname, "quantity": q.name, "label": q.label or q.name,
                                           **c, "n": int(both.sum()), "better": q.better or ""})
    ranking, power_rows = rank(bl, metrics, methods=methods, attrs=attrs, reference=reference,
                               min_reach=min_reach, boot=boot, sw=sw, kinds=kinds or {}, validity=validity)
    comparison = pd.DataFrame(comparison, columns=COMPARISON_COLUMNS)
    comparison["p_holm"] = comparison_p_holm(comparison)   # each level's table one family (the report reads it)
    return {"summary": pd.DataFrame(summary, columns=SUMMARY_COLUMNS),
            "seeds": pd.DataFrame(per_seed, columns=SEEDS_COLUMNS),
            "comparison": comparison,
            "ranking": pd.DataFrame(ranking, columns=RANKING_COLUMNS),
            "power": pd.DataFrame(power_rows, columns=power.POWER_COLUMNS)}


def compared_level(bl: dict, methods, attr: str, direction: int, reference: str, min_reach: float):
    """(level, methods ranked there, their common samples) or None.

    The rule: the largest level (in this direction) that every method reaches, i.e. that at least
    ``min_reach`` of the samples reach under every fit seed of every method, with at least
    ``MIN_PAIRED`` samples reached by all of them under all seeds. Where no level qualifies, the
    largest level the reference and at least one other method reach (with enough common samples);
    the methods that do not reach it are "could not reach". A weaker edit is never ranked against a
    stronger one."""
    levels = sorted({lv for (_, a, lv) in bl if a == attr and np.sign(lv) == direction}, key=abs, reverse=True)

    def reaching(lv):
        return [m for m in methods if (b := bl.get((m, attr, lv))) is not None and b.reach >= min_reach]

    def common(lv, ms):
        return np.logical_and.reduce([bl[m, attr, lv].common for m in ms])

    for everyone in (True, False):
        for lv in levels:
            ms = reaching(lv)
            if (len(ms) == len(methods)) if everyone else (reference in ms and len(ms) >= 2):
                c = common(lv, ms)
                if c.sum() >= MIN_PAIRED:
                    return lv, ms, c
    return None


def rank(bl, metrics, *, methods, attrs, reference, min_reach, boot, sw, kinds, validity=None) -> tuple[list, list]:
    """(ranking rows, power rows) as dicts. The ranked comparisons of every (attribute, direction) are one
    family: their p-values are Holm-adjusted together, and a comparison is "resolved" only where its
    interval excludes 0 and its adjusted p < 0.05; its power (bench/latent_edit_bench/pipeline/power.py) is stated either way."""
    mname, qname = HEADLINE
    if mname not in metrics:
        return [], []
    rows, comps = [], []
    for a in attrs:
        q = next((q for q in metrics[mname].quantities(a, []) if q.name == qname), None)
        for direction in (1, -1):
            d = "+" if direction > 0 else "-"
            head = {"attr": a, "direction": d, "kind": kinds.get(a, ""),
                    "trainer_validity": validity.get(a, NO_LABELS) if validity is not None else ""}
            found = compared_level(bl, methods, a, direction, reference, min_reach)
            if q is None or found is None:
                rows.append({**head, "level": np.nan, "method": "", "status": "no common level"})
                continue
            lv, ranked, common = found
            vals, block_comps = {}, {}
            for m in ranked:
                b = bl[m, a, lv]
                x = b.columns[mname]
                v, lo, hi = stats.evaluate(q, x, boot, common, sw(m, len(b.seeds)))
                rel = {}
                if m != reference and reference in ranked:
                    rb = bl[reference, a, lv]
                    c = stats.compare(q, x, rb.columns[mname], boot, common, sw(m, len(b.seeds)),
                                      sw(reference, len(rb.seeds)))
                    rel = {k: c[k] for k in ("rel", "rel_lo", "rel_hi", "p_value")}
                    if len(q.columns) == 1:   # a mean of one column: its variance components are the column's
                        col = q.columns[0]
                        block_comps[m] = power.Comparison.estimate(
                            x[col][:, common], rb.columns[mname][col][:, common],
                            attr=a, direction=d, level=lv, method=m, reference=reference)
                vals[m] = {"value": v, "lo": lo, "hi": hi, "reach": b.reach, **rel}
            order = sorted(ranked, key=lambda m: vals[m]["value"])
            rows += [{**head, "level": lv, "method": m, "status": "reference" if m == reference else "ranked",
                      "rank": i + 1, "n": int(common.sum()), **vals[m]} for i, m in enumerate(order)]
            comps += [(len(rows) - len(order) + order.index(m), c) for m, c in block_comps.items()]
            for m in methods:
                if m not in ranked:
                    b = bl.get((m, a, lv))
                    rows.append({**head, "level": lv, "method": m, "status": "could not reach",
                                 "reach": b.reach if b is not None else 0.0})
    # one family: Holm over the screen's comparisons, then each comparison's verdict and power
    p_holm = ranking_p_holm(pd.DataFrame(rows, columns=RANKING_COLUMNS))
    family = int(np.isfinite(p_holm).sum())
    power_rows = []
    for i, r in enumerate(rows):
        r["p_holm"] = p_holm[i]
        if r["status"] == "ranked":
            resolved = (np.isfinite(p_holm[i]) and p_holm[i] < 0.05
                        and not (r.get("rel_lo", np.nan) <= 0 <= r.get("rel_hi", np.nan)))
            r["verdict"] = "resolved" if resolved else "not resolved"
    for i, c in comps:
        c = dataclasses.replace(c, family=family)
        rows[i]["mde_rel"] = c.mde_rel()
        power_rows.append(c.row())
    # validity: a comparison whose trainer is not shown to see the attribute on this backbone (validity.csv)
    # keeps its numbers but gets no rank: it did not measure the attribute as far as anyone can tell
    for r in rows:
        if validity is not None and r["trainer_validity"] != SEES:
            r["rank"] = np.nan
    return rows, power_rows
