"""Joint vs per-attribute fits, side by side: reach and emotion disturbance of two finished runs.

    python tools/measure/joint_vs_per_attribute.py RUN_JOINT RUN_PER_ATTRIBUTE [--metric emotion --quantity disturbance]

The two runs must be the same command but for ``--fit`` (their configs may differ in ``fit`` only), so
they edit the same N originals with the same methods, attributes, levels and fit seeds. Per (method,
attribute, level): each run's reach (the worst fit seed's reached fraction, from samples.parquet, as the
run's analysis computes it), each run's disturbance on the samples it reached under every fit seed, with
its interval and n (summary.csv), and the paired difference per-attribute − joint on the samples both
reached under all their fit seeds: the run's own analysis (two-level bootstrap) redone on the two runs'
samples with the joint form as the reference. Prints a markdown table; "–" where a run reached no
sample under every seed (no summary row) or the pair has too few common samples.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

LABELS = {"joint": "joint", "per-attribute": "per-attr"}


def load(run: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(config, samples, summary) of a finished run; SystemExit naming what is missing."""
    need = [run / f for f in ("manifest.json", "samples.parquet", "summary.csv")]
    missing = [p.name for p in need if not p.exists()]
    if missing:
        raise SystemExit(f"{run} is not a finished run folder (missing {', '.join(missing)})")
    cfg = json.loads(need[0].read_text())["config"]
    return cfg, pd.read_parquet(need[1]), pd.read_csv(need[2])


def reach(samples: pd.DataFrame) -> pd.Series:
    """(method, attr, level) -> the smallest reached fraction over the fit seeds (analysis.Block.reach)."""
    return samples.groupby(["method", "attr", "level", "seed"]).reached.mean().groupby(
        ["method", "attr", "level"]).min()


def table(joint: Path, per: Path, metric: str = "emotion", quantity: str = "disturbance") -> str:
    from latent_edit_bench.pipeline.analysis import analyse
    from latent_edit_bench.plugins import get_plugins

    (cj, sj, uj), (cp, sp, up) = load(joint), load(per)
    if (cj.get("fit"), cp.get("fit")) != ("joint", "per-attribute"):
        raise SystemExit(f"expected a joint run then a per-attribute run; got fit={cj.get('fit')!r} ({joint}) "
                         f"and fit={cp.get('fit')!r} ({per})")
    differ = sorted(k for k in set(cj) | set(cp) if k != "fit" and cj.get(k) != cp.get(k))
    if differ:
        raise SystemExit(f"the runs differ in more than --fit: {', '.join(differ)}; compare runs of one command")
    if metric not in cj["metrics"]:
        raise SystemExit(f"metric {metric!r} is not in the runs (metrics: {', '.join(cj['metrics'])})")
    rj, rp = reach(sj), reach(sp)

    def summary_cell(summ: pd.DataFrame, m: str, a: str, lv: float) -> str:
        row = summ[(summ.method == m) & (summ.attr == a) & np.isclose(summ.level, lv)
                   & (summ.metric == metric) & (summ.quantity == quantity)]
        if row.empty:
            return "–"
        r = row.iloc[0]
        return f"{r.value:.2f} [{r.lo:.2f}, {r.hi:.2f}] (n {int(r.n)})"

    # the paired difference: both runs' samples as two methods of one analysis, the joint form the reference
    tag = {"joint": "@joint", "per": "@per"}
    both = pd.concat([sj.assign(method=sj.method + tag["joint"]), sp.assign(method=sp.method + tag["per"])],
                     ignore_index=True)
    metrics = {metric: get_plugins().metrics.create(metric)}
    diffs = {}
    for m in cj["methods"]:
        pair = [m + tag["joint"], m + tag["per"]]
        t = analyse(both[both.method.isin(pair)], metrics, methods=pair, attrs=cj["attrs"], reference=pair[0],
                    n=cj["n"], min_reach=cj["min_reach"], n_boot=cj.get("n_boot", 2000), seed=cj["seed"])
        c = t["comparison"]
        for r in c[(c.metric == metric) & (c.quantity == quantity)].itertuples():
            diffs[m, r.attr, round(float(r.level), 6)] = (f"{r.diff:+.2f} [{r.diff_lo:+.2f}, {r.diff_hi:+.2f}] "
                                                          f"p {r.p_value:.3f} (n {int(r.n)})")
    unit = ", pp" if metric == "emotion" else ""
    head = [f"| method | attribute | ΔR_k | reach joint / per-attr | {metric} {quantity}{unit}, joint [95% CI] "
            f"| per-attr [95% CI] | per-attr − joint, paired [95% CI] |",
            "|---|---|---|---|---|---|---|"]
    rows = []
    for m in cj["methods"]:
        for a in cj["attrs"]:
            for lv in sorted([-v for v in cj["levels"]] + list(cj["levels"])):
                key = (m, a, lv)
                reach_j = f"{rj[key]:.2f}" if key in rj.index else "–"
                reach_p = f"{rp[key]:.2f}" if key in rp.index else "–"
                rows.append(f"| {m} | {a} | {lv:+g} | {reach_j} / {reach_p} | {summary_cell(uj, m, a, lv)} "
                            f"| {summary_cell(up, m, a, lv)} | {diffs.get((m, a, round(lv, 6)), '–')} |")
    return "\n".join(head + rows)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("joint", type=Path, help="the run folder of `bench run ... --fit joint`")
    ap.add_argument("per_attribute", type=Path, help="the run folder of the same command with --fit per-attribute")
    ap.add_argument("--metric", default="emotion")
    ap.add_argument("--quantity", default="disturbance")
    args = ap.parse_args(argv)
    print(table(args.joint, args.per_attribute, args.metric, args.quantity))


if __name__ == "__main__":
    sys.exit(main())
