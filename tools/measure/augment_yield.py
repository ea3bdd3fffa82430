"""The yield table: per method, attribute and level, the fraction of edits ``bench augment`` keeps.

Runs ``bench augment --sample N`` once per method (fits cached in --cache, as ``bench run``), then joins
their yield.csv files into one table (CSV + markdown):

    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python tools/measure/augment_yield.py --methods baseline,hfld,ganspace \
        --attrs Male,Bald -n 32 --out runs/augment_yield
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--methods", default="baseline,hfld,ganspace")
    p.add_argument("--attrs", default="Male,Bald")
    p.add_argument("-n", type=int, default=32)
    p.add_argument("--levels", default="0.1,0.2,0.3")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default="cache")
    p.add_argument("--out", default="runs/augment_yield")
    args = p.parse_args()
    from click.testing import CliRunner

    from latent_edit_bench.cli import cli

    out = Path(args.out)
    frames = []
    for m in args.methods.split(","):
        res = CliRunner().invoke(cli, ["augment", "--method", m, "--attrs", args.attrs, "--sample", str(args.n),
                                       "--levels", args.levels, "--seed", str(args.seed), "--cache", args.cache,
                                       "-o", str(out / m), "--device", "cpu"], catch_exceptions=False)
        print(res.output.strip().splitlines()[-1] if res.output.strip() else "", flush=True)
        if res.exit_code != 0:
            raise SystemExit(f"{m}: exit {res.exit_code}: {res.output}")
        frames.append(pd.read_csv(out / m / "yield.csv").assign(method=m))
    table = pd.concat(frames, ignore_index=True)[["method", "attribute", "level", "n", "reached", "emotion_ok",
                                                  "landmarks_ok", "kept"]]
    table.to_csv(out / "yield.csv", index=False, float_format="%.3f")
    cols = list(table.columns)
    print("| " + " | ".join(cols) + " |\n|" + " --- |" * len(cols))
    for r in table.itertuples(index=False):
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")


if __name__ == "__main__":
    main()
