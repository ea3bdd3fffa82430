"""A third-party metric package reaches the HTML report with no change to reports/.

The docs' expression-flip metric (docs/writing-a-metric.md) is the package
tests/plugins/bench-expression-flip/. It is pip-installed into a private folder, found by `bench list`, run
onto a finished run that was made without it (`bench report RUN --metrics ...`: measure once, score any
time), and its numbers in summary.csv and report.html are recomputed with numpy from measurements.parquet
alone; `bench run --metrics ...` with the metric then finds the rescored run finished.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SMALL_FITS, run_bench, set_args

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_PKG = ROOT / "tests" / "plugins" / "bench-expression-flip"
MODULE = PLUGIN_PKG / "bench_expression_flip" / "expression_flip.py"
TITLE = "Dominant emotion changed by the edit"
LABEL = "fraction of samples whose dominant emotion changed"
# two cheap closed-form methods, one level a side, one fit seed: the smallest run with a compared level
RUN = ["run", "--methods", "sefa,interfacegan", "--attrs", "Male", "-n", "16", "--reference", "sefa",
       "--fit-seeds", "1", "--levels", "0.1", *set_args(SMALL_FITS)]
METRICS = "edit,emotion,expression-flip"


class Tables(HTMLParser):
    """Every <table> of a page: id, caption, the <h3> above it, and its rows as lists of cell texts."""

    def __init__(self):
        super().__init__()
        self.tables, self.h3, self._text, self._in = [], "", None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"id": dict(attrs).get("id", ""), "caption": "", "h3": self.h3, "head": [],
                                "body": []})
        elif tag in ("thead", "tbody", "tfoot"):
            self._in = tag
        elif tag == "tr" and self.tables and self._in in ("thead", "tbody"):
            self.tables[-1]["head" if self._in == "thead" else "body"].append([])
        elif tag in ("th", "td", "caption", "h3"):
            self._text = []

    def handle_endtag(self, tag):
        if self._text is None:
            return
        text = " ".join("".join(self._text).split())
        if tag == "h3":
            self.h3, self._text = text, None
        elif tag == "caption" and self.tables:
            self.tables[-1]["caption"], self._text = text, None
        elif tag in ("th", "td"):
            if self.tables and self._in in ("thead", "tbody"):
                self.tables[-1]["head" if self._in == "thead" else "body"][-1].append(text)
            self._text = None

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)


def install(tmp_path: Path) -> dict:
    """pip-install a copy of the package into a private folder; the environment that sees it."""
    src = tmp_path / "src"
    # a copy: an in-place build would leave build/ and *.egg-info in the repository
    shutil.copytree(PLUGIN_PKG, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, timeout=300)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))


def recompute(meas: pd.DataFrame) -> pd.DataFrame:
    """From measurements.parquet alone: per (method, attr, level), the fraction of the samples reached under
    every fit seed whose dominant emotion (argmax of the E.<emotion> columns) differs from the original's,
    averaged over the fit seeds; and n, the number of those samples."""
    emo = [c for c in meas.columns if c.startswith("E.")]
    assert len(emo) == 7
    orig = meas[meas.method == "original"].set_index("sample")
    edits = meas[meas.method != "original"]
    rows = []
    for (m, a, lv), g in edits.groupby(["method", "attr", "level"]):
        common = g.pivot(index="sample", columns="seed", values="reached").astype(bool).all(axis=1)
        if not common.any():
            continue
        g = g[g["sample"].isin(common[common].index)]
        before = orig.loc[g["sample"].to_numpy(), emo].to_numpy().argmax(1)
        after = g[emo].to_numpy().argmax(1)
        rows.append({"method": m, "attr": a, "level": lv, "want": float((before != after).mean()),
                     "want_n": int(common.sum())})
    return pd.DataFrame(rows)


def test_docs_show_the_test_package():
    """docs/writing-a-metric.md shows this package's module and pyproject.toml verbatim."""
    doc = (ROOT / "docs" / "writing-a-metric.md").read_text()
    code = re.search(r"```python\n# expression_flip\.py\n(.*?)```", doc, re.S).group(1)
    toml = re.search(r"```toml\n# pyproject\.toml\n(.*?)```", doc, re.S).group(1)
    assert code == MODULE.read_text()
    assert toml == (PLUGIN_PKG / "pyproject.toml").read_text()


@pytest.mark.slow
def test_third_party_metric_reaches_the_report(tmp_path):
    from latent_edit_bench.reports.tables import fmt   # the report's number format (3 significant digits)

    env = install(tmp_path)
    listing = run_bench("list", env=env)
    assert listing.returncode == 0, listing.stderr
    line = next((ln for ln in listing.stdout.splitlines() if ln.split()[:1] == ["expression-flip"]), "")
    assert "dominant emotion changed" in line and line.endswith("[expression_flip]"), listing.stdout

    out = tmp_path / "run"
    res = run_bench(*RUN, "--metrics", "edit,emotion", "--out", out, "--cache", tmp_path / "cache", env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    units = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "units").rglob("*.safetensors")}
    pictures = {p: p.stat().st_mtime_ns for p in (out / "trajectories").glob("*.png")}
    assert units and pictures

    # the metric added to the finished run from its stored measurements: nothing rendered or measured again
    res = run_bench("report", out, "--metrics", METRICS, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in (out / "units").rglob("*.safetensors")} == units
    assert {p: p.stat().st_mtime_ns for p in (out / "trajectories").glob("*.png")} == pictures
    rescored = (out / "summary.csv").read_bytes()
    # the rescored folder is the run of the command with the metric: that command finds it finished
    res = run_bench(*RUN, "--metrics", METRICS, "--out", out, "--cache", tmp_path / "cache", env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "ladder edits" not in res.stdout + res.stderr and (out / "summary.csv").read_bytes() == rescored

    # summary.csv: the plugin's rows, as it declared them, equal to the numpy recomputation
    summary = pd.read_csv(out / "summary.csv", keep_default_na=False)
    flip = summary[summary.metric == "expression-flip"]
    assert len(flip), "summary.csv has no expression-flip rows"
    assert set(flip.quantity) == {"flipped"} and set(flip.label) == {LABEL}
    assert set(flip.better) == {"lower"} and set(flip.table) == {"expression-flip"}
    flip = flip.assign(level=flip.level.astype(float).round(9), value=flip.value.astype(float),
                       n=flip.n.astype(int))
    meas = pd.read_parquet(out / "measurements.parquet")
    want = recompute(meas)
    want["level"] = want.level.round(9)
    got = flip.merge(want, on=["method", "attr", "level"], how="outer", indicator=True)
    assert (got._merge == "both").all(), got[["method", "level", "_merge"]]     # the same (method, level) cells
    assert np.allclose(got.value, got.want, rtol=0, atol=1e-12), got[["method", "level", "value", "want"]]
    assert (got.n == got.want_n).all()

    # the per-sample column in samples.parquet is the flag itself
    samples = pd.read_parquet(out / "samples.parquet")
    emo = [c for c in meas.columns if c.startswith("E.")]
    orig = meas[meas.method == "original"].set_index("sample")[emo]
    keys = ["method", "attr", "seed", "level", "sample"]
    edits = meas[meas.method != "original"].merge(samples[keys + ["expression-flip.flipped"]], on=keys)
    assert len(edits) == len(samples)
    flags = orig.loc[edits["sample"].to_numpy()].to_numpy().argmax(1) != edits[emo].to_numpy().argmax(1)
    assert np.array_equal(edits["expression-flip.flipped"].to_numpy(), flags.astype(float))

    # report.html: one table per compared level, titled by the metric, a row per quantity label, the numbers
    html = (out / "report.html").read_text(encoding="utf-8")
    assert TITLE in html and LABEL in html
    parser = Tables()
    parser.feed(html)
    ranking = pd.read_csv(out / "ranking.csv")
    compared = sorted({float(v) for v in ranking.level[ranking.status.isin(["ranked", "reference"])]
                       if np.isfinite(v)})
    assert compared, f"no compared level in this run:\n{ranking}"
    tables = [t for t in parser.tables if t["caption"] == TITLE]
    assert len(tables) == len(compared), [t["h3"] for t in tables]
    for lv, t in zip(sorted(compared, key=lambda v: (v < 0, abs(v))), tables):
        # the level blocks come in ranking order (+ before -), each under its heading
        assert t["h3"].startswith(f"Male at ΔR_k = {lv:+g}"), (lv, t["h3"])
        methods = t["head"][0][1:]
        at = want[np.isclose(want.level, lv)].set_index("method")
        assert set(methods) == set(at.index), (methods, at)
        assert len(t["body"]) == 1
        row = t["body"][0]
        assert row[0] == f"{LABEL} ↓ better"
        for m, cell in zip(methods, row[1:]):
            assert cell.split(" [")[0] == fmt(at.loc[m, "want"]), (lv, m, cell, at.loc[m, "want"])
            lo, hi = (float(x) for x in re.search(r"\[(.*), (.*)\]", cell).groups())
            assert lo <= float(cell.split(" [")[0]) <= hi
        notes = t["head"][1][1:]
        assert [f"n = {at.loc[m, 'want_n']}," in note for m, note in zip(methods, notes)] == [True] * len(methods)

    # and against the reference, in the collapsed comparison table, when the run compared at all
    comparison = pd.read_csv(out / "comparison.csv")
    if len(comparison):
        assert "expression-flip" in set(comparison.metric)
