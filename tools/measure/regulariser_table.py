"""With/without-regulariser table of a finished run: emotion disturbance of M and M+<reg> at equal edit.

    python tools/measure/regulariser_table.py RUN_FOLDER [--reg hfld] [--out comparison_pairs.csv]

For every method M of the run whose M+<reg> is in the run too, the run's own analysis
(``latent_edit_bench.pipeline.analysis.analyse``: paired on the samples both reach under every fit seed, two-level
bootstrap over fit seeds and samples) is redone on ``samples.parquet`` with M as the reference, so each
row compares a method with its regularised self (the run's comparison.csv compares everything with
one reference). Prints a markdown table and writes the pairs' comparison rows as CSV.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd


def pairs_table(run: Path, reg: str = "hfld", metric: str = "emotion", quantity: str = "disturbance"):
    from latent_edit_bench.pipeline.analysis import analyse
    from latent_edit_bench.plugins import get_plugins

    m = json.loads((run / "manifest.json").read_text())
    cfg = m["config"]
    samples = pd.read_parquet(run / "samples.parquet")
    methods = list(cfg["methods"])
    metrics = {metric: get_plugins().metrics.create(metric)}
    rows, frames = [], []
    for base in methods:
        if f"{base}+{reg}" not in methods:
            continue
        pair = [base, f"{base}+{reg}"]
        t = analyse(samples[samples.method.isin(pair)], metrics, methods=pair, attrs=cfg["attrs"], reference=base,
                    n=cfg["n"], min_reach=cfg["min_reach"], n_boot=cfg.get("n_boot", 2000), seed=cfg["seed"])
        cmp_, summ = t["comparison"], t["summary"]
        cmp_ = cmp_[(cmp_.metric == metric) & (cmp_.quantity == quantity)]
        frames.append(cmp_)
        for c in cmp_.itertuples():
            s = {mm: summ[(summ.attr == c.attr) & np.isclose(summ.level, c.level) & (summ.method == mm)
                          & (summ.metric == metric) & (summ.quantity == quantity)].iloc[0] for mm in pair}
            rows.append(f"| {c.attr} | {c.level:+.1f} | {base} | {s[base].value:.2f} [{s[base].lo:.2f}, {s[base].hi:.2f}] "
                        f"| {s[pair[1]].value:.2f} [{s[pair[1]].lo:.2f}, {s[pair[1]].hi:.2f}] "
                        f"| {c.diff:+.2f} [{c.diff_lo:+.2f}, {c.diff_hi:+.2f}] | {c.p_value:.3f} | {c.n} "
                        f"| {s[base].reach:.2f} / {s[pair[1]].reach:.2f} |")
    unit = ", pp" if metric == "emotion" else ""
    head = [f"| attribute | ΔR_k | method M | M: {metric} {quantity}{unit} [95% CI] | M+{reg} [95% CI] "
            f"| (M+{reg}) − M{unit} [95% CI] | p | n paired | reach M / M+{reg} |",
            "|---|---|---|---|---|---|---|---|---|"]
    return "\n".join(head + rows), (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--reg", default="hfld")
    ap.add_argument("--metric", default="emotion")
    ap.add_argument("--quantity", default="disturbance")
    ap.add_argument("--out", type=Path, default=None, help="CSV of the pairs' comparison rows (default: RUN/comparison_pairs.csv)")
    args = ap.parse_args()
    table, frame = pairs_table(args.run, args.reg, args.metric, args.quantity)
    frame.to_csv(args.out or args.run / "comparison_pairs.csv", index=False)
    print(table)


if __name__ == "__main__":
    main()
