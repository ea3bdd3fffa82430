"""The HTML report: every table and image of a synthetic run folder, escaping, several runs, the CLI,
and a headless Chromium that loads the file (no console errors, every image decodes)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bench.errors import BenchError
from reports.html import render_report

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
OTHERS = ("Young", "Bald", "Male", "Eyeglasses", "Heavy_Makeup", "Wearing_Lipstick", "Bangs", "Black_Hair",
          "Smiling", "Goatee")
GESTURES = ("Smiling", "Mouth_Slightly_Open", "Narrow_Eyes")
# the headline numbers of hfld on Male, checked verbatim in the report
HEADLINE = {"rel": -0.312, "rel_lo": -0.4, "rel_hi": -0.2, "p_value": 0.0021}


# ---------------------------------------------------------------- a synthetic run folder

def _quantities(attr):
    """(metric, quantity, label, better, table) as the built-in metrics report them."""
    q = [("edit", "orig", "R_k(original)", "", "edit"), ("edit", "achieved0", "R_k(X0) (target 0)", "", "edit"),
         ("edit", "achieved1", "R_k(X1) (target 1)", "", "edit"),
         ("edit", "change", "R_k(X1) - R_k(X0)", "higher", "edit")]
    q += [("edit", f"reached{s}", f"success rate ({s})", "higher", "edit") for s in ("0", "1", "_both")]
    q += [("topk", f"r.{j}", f"|Δ{j}| / |Δ{attr}|", "lower", "I-III") for j in OTHERS if j != attr]
    q += [("topk", "delta_k", f"R_k(X1) - R_k(X0) ({attr})", "", "I-III")]
    q += [("gesture", f"r.{j}", f"|Δ{j}| / |Δ{attr}|", "lower", "IV") for j in GESTURES if j != attr]
    q += [("emotion", "disturbance", "emotion disturbance (fer-emotion), pp", "lower", "V")]
    for e in EMOTIONS:
        q += [("emotion", f"paired.{e}", f"mean |E(X1) - E(X0)| {e}, pp", "lower", "V"),
              ("emotion", f"set.{e}", f"|mean E(X1) - mean E(X0)| {e}, pp", "lower", "V"),
              ("emotion", f"x0.{e}", f"mean E(X0) {e}, %", "", "V"),
              ("emotion", f"x1.{e}", f"mean E(X1) {e}, %", "", "V")]
    q += [("landmarks", n, f"landmark displacement {n}", "lower", "landmarks")
          for n in ("x0_x1", "orig_x0", "orig_x1", "x0_x1_mouth", "x0_x1_eyes_brows")]
    q += [("identity", n, f"cosine {n}", "higher", "identity") for n in ("cos_x0_x1", "cos_orig_x0", "cos_orig_x1")]
    return q


def _png_bytes(seed: int, w: int = 6 * 16, h: int = 2 * 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_run(folder: Path, run_id="3f2a9c1e7b", methods=("baseline", "hfld", "ganspace"), attrs=("Male", "Bald"),
             failed=("broken",), seed=0, error="ValueError: edit diverged at strength 3.0") -> Path:
    """A run folder in the docs/run-format.md layout: manifest.json, summary.csv, comparison.csv and one
    trajectory PNG per ok (method, attribute) except the last method's (its PNGs are not listed)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    rows, comp = [], []
    for attr in attrs:
        values = {}
        for m in methods:
            for metric, q, label, better, table in _quantities(attr):
                v = float(rng.uniform(0.05, 1.0) * (30 if metric == "emotion" else 1))
                lo, hi = v * rng.uniform(0.6, 0.95), v * rng.uniform(1.05, 1.4)
                values[m, q] = v
                rows.append(dict(attr=attr, method=m, metric=metric, quantity=q, label=label, value=v, lo=lo, hi=hi,
                                 n=32, better=better, table=table))
        for m in methods[1:]:
            for metric, q, label, better, table in _quantities(attr):
                v, b = values[m, q], values[methods[0], q]
                d = v - b
                r = {"rel": d / abs(b), "rel_lo": d / abs(b) - 0.1, "rel_hi": d / abs(b) + 0.1,
                     "p_value": float(rng.uniform(0, 1))}
                if (m, attr, q) == ("hfld", "Male", "disturbance"):
                    r, v = HEADLINE, b * (1 + HEADLINE["rel"])
                    d = v - b
                    row = next(x for x in rows if (x["attr"], x["method"], x["quantity"]) == (attr, m, q))
                    row.update(value=v, lo=0.8 * v, hi=1.2 * v)
                comp.append(dict(attr=attr, method=m, metric=metric, quantity=q, label=label, value=v, baseline=b,
                                 diff=d, diff_lo=d - 0.05, diff_hi=d + 0.05, **r,
                                 test="wilcoxon" if "." in q or metric != "topk" else "paired bootstrap"))
    pd.DataFrame(rows).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(comp).to_csv(folder / "comparison.csv", index=False)
    traj = {}
    for i, m in enumerate(methods[:-1]):
        for j, a in enumerate(attrs):
            rel = f"trajectories/{m}__{a}.png"
            (folder / "trajectories").mkdir(exist_ok=True)
            (folder / rel).write_bytes(_png_bytes(seed * 100 + 10 * i + j))
            traj.setdefault(m, {})[a] = rel
    status = {m: {"status": "ok", "artifact": f"cache/{m}/abc.safetensors", "cache_hit": i > 0, "fit_seconds": 12.5}
              for i, m in enumerate(methods)}
    status |= {m: {"status": "failed", "stage": "edit Male", "error": error,
                   "traceback": f"Traceback (most recent call last):\n  File \"methods/x.py\", line 3\n{error}"}
               for m in failed}
    manifest = {
        "id": run_id, "created": "2026-11-21T09:00:00+00:00",
        "config": {"methods": [*methods, *failed], "attrs": list(attrs), "backbone": "dcgan", "weights": None,
                   "preset": "quick", "n": 32, "seed": seed, "protocol": "matched", "tol": 0.1,
                   "reference": methods[0], "metrics": ["edit", "topk", "gesture", "emotion", "landmarks", "identity"],
                   "trajectory": {"samples": 2, "targets": [0.0, 0.25, 0.5, 0.75, 1.0]}, "n_boot": 2000},
        "instruments": {"attributes": "probe", "emotion": "fer-emotion", "landmarks": "faceapi-landmarks",
                        "descriptor": "faceapi-descriptor"},
        "versions": {"python": "3.11.2", "latent-edit-bench": "0.1.0", "torch": "2.13.0"},
        "seeds": {"samples": seed, "fit": seed, "bootstrap": seed},
        "assets": [{"name": "dcgan-digiface", "file": "dcgan.safetensors", "sha256": "ab" * 32, "licence": "MIT",
                    "origin": "https://example.org/dcgan"}],
        "methods": status,
        "figures": {"trajectories": traj},
        "platform": {"python": "3.11.2", "machine": "x86_64", "device": "cpu"},
        "weights_sha256": {"backbone": {"name": "dcgan", "sha256": "cd" * 32}, "probe": "ef" * 32},
        "seconds": 42.5,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


# ---------------------------------------------------------------- reading the HTML back

class Doc(HTMLParser):
    """Tables (id -> rows of (tag, text, bold)), imgs (src, alt), and every tag name seen."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tables, self.imgs, self.tags, self.attrs = {}, [], [], []
        self._table = self._row = self._cell = None
        self._bold = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs.append((tag, a))
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, "", False]
            self._row.append(self._cell)
        elif tag == "strong" and self._cell is not None:
            self._cell[2] = True
        elif tag == "img":
            self.imgs.append(a)

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


def _expected_tables(attrs, methods_ok=True):
    ids = ["status", "config", "instruments", "versions", "assets", "provenance"]
    for a in attrs:
        ids += [f"t-{a}-edit-edit", f"t-{a}-topk-I_III", f"t-{a}-topk-I_III-all", f"t-{a}-gesture-IV",
                f"t-{a}-emotion-V", f"t-{a}-landmarks-landmarks", f"t-{a}-identity-identity"]
        ids += [f"c-{a}-{m}" for m in ("edit", "topk", "gesture", "emotion", "landmarks", "identity")]
    return ids


def _png_of(src: str) -> Image.Image:
    assert src.startswith("data:image/png;base64,"), src[:40]
    data = base64.b64decode(src.split(",", 1)[1], validate=True)
    img = Image.open(io.BytesIO(data))
    img.verify()
    return Image.open(io.BytesIO(data))


def _num(text: str) -> float:
    return float(text.split("[")[0].strip())


def _meta(html: str, name: str) -> int:
    return int(re.search(rf'<meta name="{name}" content="(\d+)">', html).group(1))


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "r1")
    out = render_report([run], run / "report.html")
    return run, out.read_text(encoding="utf-8")


# ---------------------------------------------------------------- tests

def test_every_table_and_image_is_present(one_run):
    run, html = one_run
    doc = Doc(html)
    expected = _expected_tables(["Male", "Bald"])
    assert sorted(doc.tables) == sorted(expected)
    # figures: emotion + landmarks per attribute; trajectories: baseline and hfld on both attributes
    assert len(doc.imgs) == 2 * 2 + 2 * 2
    assert _meta(html, "bench-tables") == len(expected) and _meta(html, "bench-images") == len(doc.imgs)
    sizes = [_png_of(i["src"]).size for i in doc.imgs]
    assert all(w > 50 and h > 20 for w, h in sizes)
    manifest = json.loads((run / "manifest.json").read_text())
    srcs = {i["src"] for i in doc.imgs}
    for m, per_attr in manifest["figures"]["trajectories"].items():
        for a, rel in per_attr.items():   # embedded byte for byte
            assert "data:image/png;base64," + base64.b64encode((run / rel).read_bytes()).decode() in srcs
    assert "the original, then the matched edits to targets 0, 0.25, 0.5, 0.75, 1." in html


def test_self_contained_without_script(one_run):
    _, html = one_run
    doc = Doc(html)
    assert "script" not in doc.tags and "link" not in doc.tags and "iframe" not in doc.tags
    for tag, a in doc.attrs:
        assert "src" not in a or a["src"].startswith("data:image/png;base64,"), (tag, a)
        assert "href" not in a or a["href"].startswith("#"), (tag, a)
    assert "url(" not in html and "@import" not in html


def test_headline_and_edit_beside_it(one_run):
    run, html = one_run
    assert "emotion change vs baseline: -31.2% [-40.0%, -20.0%] (p = 0.002)" in html
    s = pd.read_csv(run / "summary.csv")
    ch = s[(s.attr == "Male") & (s.method == "hfld") & (s.quantity == "change")].iloc[0]
    rb = s[(s.attr == "Male") & (s.method == "hfld") & (s.quantity == "reached_both")].iloc[0]
    assert f"achieved ΔR_k {ch.value:.3f}" in html and f"both targets reached {100 * rb.value:.0f}%" in html
    # the edit table comes first in each attribute's section, before every collateral table
    for a in ("Male", "Bald"):
        assert html.index(f'id="t-{a}-edit-edit"') < min(html.index(f'id="t-{a}-{t}"')
                                                          for t in ("topk-I_III", "emotion-V", "landmarks-landmarks"))


def test_topk_table_matches_an_independent_ranking(one_run):
    run, html = one_run
    s = pd.read_csv(run / "summary.csv")
    rows = Doc(html).tables["t-Male-topk-I_III"]
    body = [r for r in rows if r[0][0] == "th" and r[0][1].strip().isdigit()]
    assert [int(r[0][1]) for r in body] == [1, 2, 3, 4, 5]
    for i, m in enumerate(("baseline", "hfld", "ganspace")):
        mine = s[(s.attr == "Male") & (s.method == m) & (s.table == "I-III") & s.quantity.str.startswith("r.")]
        top = mine.nlargest(5, "value")
        got_attr = [r[1 + 2 * i][1] for r in body]
        got_val = [_num(r[2 + 2 * i][1]) for r in body]
        assert got_attr == [q[2:] for q in top.quantity]
        np.testing.assert_allclose(got_val, top.value, rtol=5e-3)
    # each rank row: the lowest r_j (better = lower) is bold, and only it
    for r in body:
        vals = [_num(r[2 + 2 * i][1]) for i in range(3)]
        bold = [r[2 + 2 * i][2] for i in range(3)]
        assert bold == [v == min(vals) for v in vals]


def test_gesture_and_emotion_tables(one_run):
    run, html = one_run
    s = pd.read_csv(run / "summary.csv")
    doc = Doc(html)
    g = [r for r in doc.tables["t-Bald-gesture-IV"] if r[0][0] == "th" and r[1][0] == "td"]
    assert len(g) == 3          # Smiling, Mouth_Slightly_Open, Narrow_Eyes; methods as columns
    for r in g:
        vals = [_num(c[1]) for c in r[1:]]
        assert [c[2] for c in r[1:]] == [v == min(vals) for v in vals]
    emo = {r[0][1]: r for r in doc.tables["t-Male-emotion-V"] if r[0][0] == "th" and r[0][1] in EMOTIONS}
    assert list(emo) == list(EMOTIONS)
    for i, m in enumerate(("baseline", "hfld", "ganspace")):
        for k, kind in enumerate(("x0", "x1", "paired", "set")):
            want = s[(s.attr == "Male") & (s.method == m) & (s.quantity == f"{kind}.happy")].iloc[0]
            cell = emo["happy"][1 + 4 * i + k][1]
            np.testing.assert_allclose(_num(cell), want.value, rtol=5e-3)
            # the paper's shape: the interval on paired |Δ| only
            assert bool(re.search(r"\[[\d.]+, [\d.]+\]", cell)) == (kind == "paired")
    foot = [r for r in doc.tables["t-Male-emotion-V"] if r[0][1].startswith("emotion disturbance")]
    assert len(foot) == 1 and len(foot[0]) == 4


def test_failed_method_is_shown_with_stage_and_error(one_run):
    _, html = one_run
    status = {r[0][1]: r for r in Doc(html).tables["status"][1:]}
    assert [c[1] for c in status["broken"][1:3]] == ["failed", "edit Male"]
    error = status["broken"][-1][1]      # the error, then its traceback behind a <details>
    assert error.startswith("ValueError: edit diverged at strength 3.0")
    assert 'traceback' in error and 'File "methods/x.py", line 3' in error
    assert status["hfld"][3][1] == "12.5 (cached)" and status["baseline"][3][1] == "12.5"
    assert status["hfld"][1][1] == "ok"
    assert html.count("broken: no results (failed at edit Male)") == 2     # once per attribute section
    prov = {r[0][1]: r[1][1] for r in Doc(html).tables["provenance"][1:]}
    assert prov["platform.machine"] == "x86_64" and prov["weights_sha256.probe"] == "ef" * 32
    assert "took 42.5 s" in html


def test_plugin_text_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    run = make_run(tmp_path / "evil", run_id='"><b>id', methods=("baseline", evil), failed=("<b>bad</b>",),
                   error=f"RuntimeError: {evil}")
    s = pd.read_csv(run / "summary.csv")
    s.loc[s.quantity == "change", "label"] = '<img src=x onerror="alert(2)">'
    s.to_csv(run / "summary.csv", index=False)
    html = render_report([run], tmp_path / "r.html").read_text()
    doc = Doc(html)
    assert "script" not in doc.tags and "b" not in doc.tags
    assert all(i["src"].startswith("data:image/png;base64,") for i in doc.imgs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    status = {r[0][1]: r for r in doc.tables["status"][1:]}
    assert status["<b>bad</b>"][-1][1].startswith(f"RuntimeError: {evil}")      # text survives, as text
    assert any(c[1] == evil for r in doc.tables["t-Male-edit-edit"] for c in r)


def test_two_runs_side_by_side(tmp_path):
    a = make_run(tmp_path / "a", run_id="aaaa111", seed=1)
    b = make_run(tmp_path / "b", run_id="bbbb222", methods=("baseline", "hfld"), attrs=("Male",), seed=2)
    html = render_report([a, b], tmp_path / "cmp.html").read_text()
    doc = Doc(html)
    gest = doc.tables["t-Male-gesture-IV"]
    assert [c[1] for c in gest[0][1:]] == ["run aaaa111", "run bbbb222"]
    assert [c[1] for c in gest[1][1:]] == ["baseline", "hfld", "ganspace", "baseline", "hfld"]
    # Bald exists in run a only; trajectories: a has 2 methods x 2 attrs, b has baseline on Male
    assert len(doc.imgs) == (2 + 2) + (4 + 1)
    assert "hfld (bbbb222)" in html and "run aaaa111" in Doc(html).tables["config"][0][1][1]
    # each run is compared with its own reference
    cmp_rows = [r for r in doc.tables["c-Male-emotion"] if r[0][0] == "th" and r[0][1].startswith("emotion dist")]
    assert [r[1][1] for r in cmp_rows] == ["hfld (aaaa111)", "ganspace (aaaa111)", "hfld (bbbb222)"]


def test_partial_runs_still_render(tmp_path):
    # every method failed: header-only CSVs, nothing to plot, the failures in plain sight
    run = make_run(tmp_path / "failed", methods=("baseline", "hfld"))
    for name in ("summary.csv", "comparison.csv"):
        pd.read_csv(run / name).iloc[:0].to_csv(run / name, index=False)
    m = json.loads((run / "manifest.json").read_text())
    m["methods"] = {k: {"status": "failed", "stage": "fit", "error": "OSError: no weights"} for k in m["methods"]}
    m["figures"] = {"trajectories": {}}
    (run / "manifest.json").write_text(json.dumps(m))
    html = render_report([run], tmp_path / "f.html").read_text()
    doc = Doc(html)
    assert not doc.imgs and [r[1][1] for r in doc.tables["status"][1:]] == ["failed"] * 3
    assert "baseline: no results (failed at fit)" in html
    # no comparison.csv, an infinite ratio, a missing interval, a listed trajectory that is gone
    run = make_run(tmp_path / "partial", methods=("baseline", "x"))
    (run / "comparison.csv").unlink()
    s = pd.read_csv(run / "summary.csv")
    s.loc[s.quantity == "r.Young", "value"] = np.inf
    s.loc[s.quantity == "r.Bald", "lo"] = np.nan
    s.to_csv(run / "summary.csv", index=False)
    (run / "trajectories" / "baseline__Male.png").unlink()
    html = render_report([run], tmp_path / "p.html").read_text()
    doc = Doc(html)
    assert "trajectories/baseline__Male.png is missing or not a PNG" in html
    assert len(doc.imgs) == _meta(html, "bench-images") == 2 * 2 + 1
    assert not any(t.startswith("c-") for t in doc.tables)       # nothing to compare
    top = [r[1][1] for r in doc.tables["t-Male-topk-I_III"] if r[0][1].strip().isdigit()]
    assert "Young" not in top and "inf" not in html


def test_rendering_is_deterministic(tmp_path):
    run = make_run(tmp_path / "r")
    first, second = (render_report([run], tmp_path / f"{i}.html").read_bytes() for i in (1, 2))
    assert first == second


def test_bad_folders_raise_bench_error(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        render_report([tmp_path / "nope"], tmp_path / "o.html")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no manifest.json"):
        render_report([tmp_path / "empty"], tmp_path / "o.html")
    run = make_run(tmp_path / "r")
    pd.read_csv(run / "summary.csv").drop(columns=["lo"]).to_csv(run / "summary.csv", index=False)
    with pytest.raises(BenchError, match="lacks the column"):
        render_report([run], tmp_path / "o.html")


def _bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "bench.cli", "report", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_cli(tmp_path):
    run = make_run(tmp_path / "r")
    res = _bench(run)
    assert res.returncode == 0, res.stderr
    assert (run / "report.html").is_file()
    other = make_run(tmp_path / "s", run_id="other")
    res = _bench(run, other, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "comparison.html").is_file()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text("{}")
    for bad, needle in [(tmp_path / "nope", "does not exist"), (tmp_path / "half", "no summary.csv")]:
        res = _bench(run, bad)
        assert res.returncode == 2, (res.stdout, res.stderr)
        assert needle in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "nope").exists()      # nothing created for a bad folder


# ---------------------------------------------------------------- a real browser

def chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def headless(html: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """Chromium headless on a file:// URL with a throwaway profile; stderr carries the verbose log."""
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                               "--v=1", f"--user-data-dir={profile}", *args, html.resolve().as_uri()],
                              capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(chromium() is None, reason="no chromium / google-chrome binary")
def test_in_a_real_browser(one_run, tmp_path):
    run, html = one_run
    report = run / "report.html"
    res = headless(report, "--dump-dom")
    assert res.returncode == 0, res.stderr[-2000:]
    # this Chromium logs every console message as INFO:CONSOLE whatever its level; the report has no
    # script, so any console line at all (an error, an Uncaught exception) is a failure
    bad = [l for l in res.stderr.splitlines() if ":CONSOLE" in l or "Uncaught" in l]
    assert not bad, bad
    # no file fetched but the report itself (the browser's own update pings are http, so external
    # URLs are checked on the HTML in test_self_contained_without_script)
    fetched = re.findall(r"FileURLLoader::Start: (\S+)", res.stderr)
    assert fetched and set(fetched) <= {report.resolve().as_uri()}, fetched
    dom = Doc(res.stdout)
    assert sorted(dom.tables) == sorted(_expected_tables(["Male", "Bald"]))
    assert len(dom.tables) == _meta(html, "bench-tables")
    assert len(dom.imgs) == _meta(html, "bench-images") == 8
    for img in dom.imgs:
        _png_of(img["src"])
    shot = tmp_path / "shot.png"
    res = headless(report, f"--screenshot={shot}", "--window-size=1280,3000")
    assert res.returncode == 0, res.stderr[-2000:]
    img = Image.open(shot)
    img.verify()
    assert Image.open(shot).size == (1280, 3000)
    assert np.asarray(Image.open(shot).convert("L")).std() > 5      # something was drawn
