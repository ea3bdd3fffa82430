"""The HTML report: every section, table and image of a synthetic run folder in the docs/run-format.md
layout, the answer's numbers verbatim, could-not-reach methods never ranked, the heuristic warning, a
third-party metric, escaping, several runs, the CLI, and a headless Chromium that loads the file (no
console errors, every image decodes)."""

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

from latent_edit_bench.errors import BenchError
from latent_edit_bench.reports.html import load_run, render_report

ROOT = Path(__file__).resolve().parents[1]
EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
OTHERS = ("Young", "Bald", "Male", "Eyeglasses", "Heavy_Makeup", "Wearing_Lipstick", "Bangs", "Black_Hair",
          "Smiling", "Goatee")
GESTURES = ("Smiling", "Mouth_Slightly_Open", "Narrow_Eyes")
LEVELS = (0.1, 0.2, 0.3, 0.4)
N, K, MIN_REACH = 32, 3, 0.5
FLIP = "fraction of samples whose dominant emotion changed"    # the third-party metric's label
IDENT = "share of edits closer to their original than P1 of different-face distances"   # the identity metric's
# the answer for hfld on Male towards presence, checked verbatim in the report
HEADLINE = {"value": 4.25, "lo": 3.1, "hi": 5.4, "rel": -0.312, "rel_lo": -0.4, "rel_hi": -0.2, "p_value": 0.0021}

# reached fraction per attribute, role (0: the reference, 1 and 2: the next methods) and signed level;
# 0 = no sample reached (no summary rows). Male: +0.3 reached by all, towards absence the third
# method could not reach anything; Bald: no common level towards presence, -0.2 towards absence.
REACH = {
    "Male": [{lv: 0.94 if abs(lv) == 0.4 else 1.0 for lv in (-.4, -.3, -.2, -.1, .1, .2, .3, .4)},
             {lv: 0.9 for lv in (-.4, -.3, -.2, -.1, .1, .2, .3, .4)},
             {-.4: 0, -.3: 0, -.2: 0, -.1: 0.2, .1: 0.85, .2: 0.85, .3: 0.85, .4: 0.25}],
    "Bald": [{lv: 1.0 for lv in (-.4, -.3, -.2, -.1, .1, .2, .3, .4)},
             {-.4: 0.9, -.3: 0.9, -.2: 0.9, -.1: 0.9, .1: 0.3, .2: 0, .3: 0, .4: 0},
             {-.4: 0, -.3: 0.4, -.2: 0.8, -.1: 0.8, .1: 0, .2: 0, .3: 0, .4: 0}],
}
OFFSET = {"Male": (2.0, -1.0, 1.0), "Bald": (0.5, 3.0, 0.6)}     # emotion disturbance per role


# ---------------------------------------------------------------- a synthetic run folder

def _quantities(attr):
    """(metric, quantity, label, better, table) as the built-in metrics and one third-party metric report them."""
    q = [("edit", "orig", "R_k(original)", "", "edit"), ("edit", "edited", "R_k(edit)", "", "edit"),
         ("edit", "change", "achieved change ΔR_k", "", "edit")]
    q += [("topk", f"r.{j}", f"|mean ΔR_{j}| / |mean ΔR_k|", "lower", "I-III") for j in OTHERS if j != attr]
    q += [("topk", "delta_k", f"mean ΔR_k ({attr})", "", "I-III")]
    q += [("gesture", f"r.{j}", f"|mean ΔR_{j}| / |mean ΔR_k|", "lower", "IV") for j in GESTURES if j != attr]
    q += [("emotion", "disturbance", "emotion disturbance (fer-emotion), pp", "lower", "V")]
    for e in EMOTIONS:
        q += [("emotion", f"paired.{e}", f"mean |E(after) - E(before)| {e}, pp", "lower", "V"),
              ("emotion", f"set.{e}", f"|mean E(after) - mean E(before)| {e}, pp", "lower", "V"),
              ("emotion", f"before.{e}", f"mean E(before) {e}, %", "", "V"),
              ("emotion", f"after.{e}", f"mean E(after) {e}, %", "", "V")]
    q += [("landmarks", n, f"landmark displacement {n} (inter-ocular distances)", "lower", "landmarks")
          for n in ("displacement", "mouth", "eyes_brows")]
    q += [("identity", "kept", IDENT, "higher", "identity")]
    q += [("expression-flip", "flipped", FLIP, "lower", "expression-flip")]
    return q


def _png_bytes(seed: int, w: int = 9 * 16, h: int = 2 * 16) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _compared_level(reach: dict, sign: int) -> tuple[float | None, list[int]]:
    """docs/run-format.md's rule: the largest level every method reaches, else the largest the reference
    and at least one other reach; (None, []) when neither. Returns the level and the roles it ranks."""
    ladder = [sign * lv for lv in sorted(LEVELS, reverse=True)]
    for lv in ladder:
        if all(r[lv] >= MIN_REACH for r in reach):
            return lv, list(range(len(reach)))
    for lv in ladder:
        ok = [i for i, r in enumerate(reach) if r[lv] >= MIN_REACH]
        if 0 in ok and len(ok) > 1:
            return lv, ok
    return None, []


def make_run(folder: Path, run_id="3f2a9c1e7b", methods=("baseline", "hfld", "ganspace"), attrs=("Male", "Bald"),
             failed=("broken",), seed=0, error="ValueError: edit diverged at strength 3.0") -> Path:
    """A run folder in the docs/run-format.md layout: manifest.json, summary.csv, seeds.csv,
    comparison.csv, ranking.csv and one trajectory PNG per (method, attribute) but the last method's."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    summary, seeds, comp, ranking = [], [], [], []
    for attr in attrs:
        reach = [REACH.get(attr, REACH["Male"])[i] for i in range(len(methods))]
        values = {}
        for i, m in enumerate(methods):
            for lv, frac in reach[i].items():
                if frac == 0:
                    continue
                n = round(frac * N)
                for metric, q, label, better, table in _quantities(attr):
                    v = float(rng.uniform(0.05, 1.0))
                    if metric == "emotion":
                        v *= 30
                    if q == "flipped":       # >= 0.1: three decimals, as the test spells them
                        v = 0.15 + 0.2 * i + float(rng.uniform(0, 0.05))
                    if q == "disturbance":
                        v = 3 + 8 * abs(lv) + OFFSET.get(attr, OFFSET["Male"])[i] + float(rng.uniform(0, 0.1))
                    lo, hi = v * 0.8, v * 1.2
                    if (m, attr, lv, q) == (methods[1], "Male", 0.3, "disturbance"):
                        v, lo, hi = HEADLINE["value"], HEADLINE["lo"], HEADLINE["hi"]
                    values[m, lv, q] = v
                    summary.append(dict(attr=attr, level=lv, method=m, metric=metric, quantity=q, label=label,
                                        value=v, lo=lo, hi=hi, n=n, n_seeds=K, reach=frac, better=better,
                                        table=table))
                    seeds += [dict(attr=attr, level=lv, method=m, seed=k, metric=metric, quantity=q,
                                   value=v * (1 + 0.05 * (k - 1)), n=n, reach=frac) for k in range(K)]
        ref = methods[0]
        for i, m in enumerate(methods[1:], 1):
            for lv in reach[i]:
                if reach[i][lv] < MIN_REACH or reach[0][lv] < MIN_REACH:
                    continue
                n = round(min(reach[i][lv], reach[0][lv]) * N)
                for metric, q, label, better, table in _quantities(attr):
                    v, b = values[m, lv, q], values[ref, lv, q]
                    d = v - b
                    comp.append(dict(attr=attr, level=lv, method=m, reference=ref, metric=metric, quantity=q,
                                     label=label, value=v, ref_value=b, diff=d, diff_lo=d - 0.3 * abs(d) - 0.05,
                                     diff_hi=d + 0.3 * abs(d) + 0.05, diff_lo_samples=d - 0.1 * abs(d) - 0.02,
                                     diff_hi_samples=d + 0.1 * abs(d) + 0.02, rel=d / abs(b),
                                     rel_lo=d / abs(b) - 0.1, rel_hi=d / abs(b) + 0.1,
                                     p_value=float(rng.uniform(0, 1)), n=n, better=better,
                                     test="two-level bootstrap"))
        kind = "heuristic" if attr == "Bald" else "network"
        for direction, sign in (("+", 1), ("-", -1)):
            lv, ranked = _compared_level(reach, sign)
            if lv is None:
                ranking.append(dict(attr=attr, direction=direction, status="no common level", kind=kind))
                continue
            common = min(round(reach[i][lv] * N) for i in ranked)
            rows = []
            for i, m in enumerate(methods):
                if i not in ranked:
                    rows.append(dict(method=m, status="could not reach", reach=reach[i][lv]))
                    continue
                v, b = values[m, lv, "disturbance"], values[ref, lv, "disturbance"]
                row = dict(method=m, status="reference" if i == 0 else "ranked", value=v, lo=0.8 * v, hi=1.2 * v,
                           n=common, reach=reach[i][lv])
                if i:
                    rel = (v - b) / b
                    row |= dict(rel=rel, rel_lo=rel - 0.1, rel_hi=rel + 0.1, p_value=0.004)
                if (m, attr, lv) == (methods[1], "Male", 0.3):
                    row |= HEADLINE
                rows.append(row)
            order = sorted((r for r in rows if "value" in r), key=lambda r: r["value"])
            for k, r in enumerate(order):
                r["rank"] = k + 1
            ranking += [dict(attr=attr, direction=direction, level=lv, kind=kind, **r) for r in rows]
    pd.DataFrame(summary).to_csv(folder / "summary.csv", index=False)
    pd.DataFrame(seeds).to_csv(folder / "seeds.csv", index=False)
    pd.DataFrame(comp).to_csv(folder / "comparison.csv", index=False)
    cols = ["attr", "direction", "level", "method", "status", "rank", "value", "lo", "hi", "n", "reach", "rel",
            "rel_lo", "rel_hi", "p_value", "kind"]
    pd.DataFrame(ranking).reindex(columns=cols).to_csv(folder / "ranking.csv", index=False)
    traj = {}
    for i, m in enumerate(methods[:-1]):
        for j, a in enumerate(attrs):
            rel = f"trajectories/{m}__{a}.png"
            (folder / "trajectories").mkdir(exist_ok=True)
            (folder / rel).write_bytes(_png_bytes(seed * 100 + 10 * i + j))
            traj.setdefault(m, {})[a] = rel
    status = {m: {"status": "ok", "fits": {str(k): {a: {"artifact": f"cache/{m}/{k}-{a}.safetensors",
                                                         "cache_hit": k > 0, "fit_seconds": 2.5} for a in attrs}
                                           for k in range(K)}} for m in methods}
    status |= {m: {"status": "failed", "stage": "edit Male seed 0", "error": error,
                   "traceback": f"Traceback (most recent call last):\n  File \"methods/x.py\", line 3\n{error}"}
               for m in failed}
    manifest = {
        "id": run_id, "created": "2026-11-28T09:00:00+00:00",
        "config": {"methods": [*methods, *failed], "attrs": list(attrs), "backbone": "dcgan", "weights": None,
                   "preset": "quick", "n": N, "seed": seed, "fit_seeds": K, "levels": list(LEVELS), "tol": 0.03,
                   "min_reach": MIN_REACH, "reference": methods[0],
                   "metrics": ["edit", "topk", "gesture", "emotion", "landmarks", "identity", "expression-flip"],
                   "n_boot": 2000},
        "instruments": {"attributes": "probe", "emotion": "fer-emotion", "landmarks": "faceapi-landmarks",
                        "descriptor": "faceapi-descriptor"},
        "attribute_kinds": {a: "heuristic" if a == "Bald" else "network" for a in attrs},
        "versions": {"python": "3.11.2", "latent-edit-bench": "0.1.0", "torch": "2.13.0"},
        "seeds": {"samples": 1000 + seed, "fit": list(range(K)), "bootstrap": seed},
        "assets": [{"name": "dcgan-digiface", "file": "dcgan.safetensors", "sha256": "ab" * 32, "licence": "MIT",
                    "origin": "https://example.org/dcgan"}],
        "methods": status,
        "figures": {"trajectories": traj},
        "platform": {"python": "3.11.2", "machine": "x86_64", "device": "cpu", "dtype": "fp32"},
        "seconds": 42.5,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return folder


# ---------------------------------------------------------------- reading the HTML back

class Doc(HTMLParser):
    """Tables (id -> rows of [tag, text, bold, class]), imgs, figures (id -> caption), every tag seen."""

    def __init__(self, html: str):
        super().__init__(convert_charrefs=True)
        self.tables, self.imgs, self.tags, self.attrs, self.ids = {}, [], [], [], []
        self._table = self._row = self._cell = self._figure = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        self.attrs.append((tag, a))
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = [tag, "", False, a.get("class") or ""]
            self._row.append(self._cell)
        elif tag == "strong" and self._cell is not None:
            self._cell[2] = True
        elif tag == "figure":
            self._figure = a.get("id")
        elif tag == "img":
            self.imgs.append({**a, "figure": self._figure})

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th"):
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell[1] += data


LEVEL_IDS = {"Male": ("p0_3", "m0_4"), "Bald": ("m0_2",)}
DETAIL = ("edit-edit", "topk-I_III", "topk-I_III-all", "gesture-IV", "emotion-V", "landmarks-landmarks",
          "identity-identity", "expression_flip-expression_flip")
SETUP = ("status", "fits", "config", "instruments", "kinds", "versions", "assets", "provenance")


def _expected_tables(prefix="", levels=LEVEL_IDS):
    """Answer tables (one per direction with a compared level), per-seed tables, every metric at every
    compared level, the comparison rows per compared level, then methods status and provenance."""
    ids = [f"answer-{a}-{'plus' if lv[0] == 'p' else 'minus'}-table" for a, lvs in levels.items() for lv in lvs]
    ids += [f"seeds-{a}" for a in levels]
    ids += [f"t-{a}-{lv}-{t}" for a, lvs in levels.items() for lv in lvs for t in DETAIL]
    ids += [f"c-{a}-{lv}" for a, lvs in levels.items() for lv in lvs]
    return [prefix + i for i in [*ids, *SETUP]]


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


def _body(rows):
    return [r for r in rows if r[0][0] == "th" and any(c[0] == "td" for c in r)]


def _summary(run, attr, level, method, quantity):
    s = pd.read_csv(run / "summary.csv")
    return s[(s.attr == attr) & np.isclose(s.level, level) & (s.method == method) & (s.quantity == quantity)].iloc[0]


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    run = make_run(tmp_path_factory.mktemp("runs") / "r1")
    out = render_report([run], run / "report.html")
    return run, out.read_text(encoding="utf-8")


# ---------------------------------------------------------------- tests

def test_every_section_table_and_image_is_present(one_run):
    run, html = one_run
    doc = Doc(html)
    expected = _expected_tables()
    assert len(expected) == 3 + 2 + 3 * 8 + 3 + 8
    assert sorted(doc.tables) == sorted(expected)
    # curves per attribute; trajectories: baseline and hfld on both attributes (ganspace's are not listed)
    assert len(doc.imgs) == 2 + 2 * 2
    assert _meta(html, "bench-tables") == len(expected) and _meta(html, "bench-images") == len(doc.imgs)
    for sid in ("answer", "attr-Male", "attr-Bald", "setup", "fig-curves-Male", "fig-curves-Bald",
                "answer-Bald-plus", "t-Male-p0_3", "t-Male-m0_4", "t-Bald-m0_2"):
        assert sid in doc.ids, sid
    curves = [_png_of(i["src"]) for i in doc.imgs if i["figure"].startswith("fig-curves-")]
    assert len(curves) == 2
    assert all(im.size[0] > 1.8 * im.size[1] > 300 for im in curves)     # two panels side by side
    manifest = json.loads((run / "manifest.json").read_text())
    srcs = {i["src"] for i in doc.imgs}
    for m, per_attr in manifest["figures"]["trajectories"].items():
        for a, rel in per_attr.items():   # embedded byte for byte
            assert "data:image/png;base64," + base64.b64encode((run / rel).read_bytes()).decode() in srcs
    assert ("hfld, Male: each row one sample; columns are levels -0.4, -0.3, -0.2, -0.1, original, +0.1, +0.2, "
            "+0.3, +0.4 (the ΔR_k each edit was driven to), fit seed 0.") in html
    # top to bottom: title line, the answer, the attributes (curves, seeds, details, comparison), setup
    assert ("backbone dcgan · N = 32 · fit seeds K = 3 · levels ±0.1, ±0.2, ±0.3, ±0.4 · tol 0.03 · "
            "min_reach 0.5 · reference baseline · fp32 on cpu") in html
    order = ['id="answer"', 'id="answer-Male-plus"', 'id="attr-Male"', 'id="fig-curves-Male"', 'id="seeds-Male"',
             'id="t-Male-p0_3-edit-edit"', 'id="c-Male-p0_3"', 'id="traj-baseline-Male"', 'id="attr-Bald"',
             'id="setup"', 'id="status"', 'id="provenance"']
    pos = [html.index(o) for o in order]
    assert pos == sorted(pos)


def test_self_contained_without_script(one_run):
    _, html = one_run
    doc = Doc(html)
    assert "script" not in doc.tags and "link" not in doc.tags and "iframe" not in doc.tags
    for tag, a in doc.attrs:
        assert "src" not in a or a["src"].startswith("data:image/png;base64,"), (tag, a)
        assert "href" not in a or a["href"].startswith("#"), (tag, a)
    assert "url(" not in html and "@import" not in html


def test_the_answer_verbatim(one_run):
    run, html = one_run
    assert ("<h3 id=\"answer-Male-plus\">Male, towards presence: compared at ΔR_k = +0.3 (n = 27 samples reached "
            "by every method under all 3 fit seeds)</h3>") in html
    assert ("Male, towards absence: compared at ΔR_k = -0.4 (n = 29 samples reached by every ranked method under "
            "all 3 fit seeds)") in html
    assert "Bald, towards absence: compared at ΔR_k = -0.2 (n = 26 samples" in html
    assert "Bald, towards presence: no common level" in html
    rows = {r[1][1]: r for r in _body(Doc(html).tables["answer-Male-plus-table"])}
    assert list(rows) == ["hfld", "ganspace", "baseline"]           # by rank: lowest disturbance first
    hfld = [c[1] for c in rows["hfld"]]
    r = pd.read_csv(run / "ranking.csv")
    family = r.p_value[r.status == "ranked"]                           # every comparison on the screen
    holm_p = min(1.0, 0.0021 * len(family))                            # the smallest p: times m
    assert hfld == ["1", "hfld", "4.25 [3.10, 5.40]", "-31.2% [-40.0%, -20.0%]",
                    f"p = 0.002 Holm = {holm_p:.3f}", "90%"]
    assert "good" in rows["hfld"][3][3]                               # interval below 0: less disturbance
    assert rows["baseline"][3][1] == "reference" and rows["baseline"][0][1] == "3"
    # Bald -0.2: hfld disturbs more than the reference (red); ganspace's interval straddles 0 (no colour)
    bald = {r[1][1]: r for r in _body(Doc(html).tables["answer-Bald-minus-table"])}
    assert "bad" in bald["hfld"][3][3]
    g = r[(r.attr == "Bald") & (r.method == "ganspace")].iloc[0]
    assert g.rel_lo < 0 < g.rel_hi and not {"good", "bad"} & set(bald["ganspace"][3][3].split())
    # the answer comes before everything else about the results
    assert html.index('id="answer-Bald-minus"') < html.index('id="attr-Male"')


def test_the_answers_colours_follow_holm_over_the_whole_screen(tmp_path):
    """The first screen is one family of comparisons: a comparison whose own interval excludes 0 at p = 0.04
    is not coloured when there are several on the screen (Holm: 0.04 x m), and is when it is the only one."""
    run = make_run(tmp_path / "r")
    r = pd.read_csv(run / "ranking.csv")
    r.loc[r.status == "ranked", "p_value"] = 0.04
    r.to_csv(run / "ranking.csv", index=False)
    rows = _body(Doc(render_report([run], tmp_path / "a.html").read_text()).tables["answer-Male-plus-table"])
    hfld = next(row for row in rows if row[1][1] == "hfld")
    m = int((r.status == "ranked").sum())
    assert m > 1 and hfld[4][1] == f"p = 0.040 Holm = {min(1.0, 0.04 * m):.3f}"
    assert hfld[3][1].startswith("-") and not {"good", "bad"} & set(hfld[3][3].split())   # its interval: below 0
    # the same row as the screen's only comparison: Holm leaves p as it is, and the colour is back
    alone = (r.status == "ranked") & ~((r.attr == "Male") & (r.direction == "+") & (r.method == "hfld"))
    r.loc[alone, ["rel", "rel_lo", "rel_hi", "p_value"]] = float("nan")
    r.to_csv(run / "ranking.csv", index=False)
    rows = _body(Doc(render_report([run], tmp_path / "b.html").read_text()).tables["answer-Male-plus-table"])
    hfld = next(row for row in rows if row[1][1] == "hfld")
    assert hfld[4][1] == "p = 0.040 Holm = 0.040" and "good" in hfld[3][3].split()


def test_could_not_reach_is_never_ranked(one_run, tmp_path):
    _, html = one_run

    def minus_rows(h):
        return _body(Doc(h).tables["answer-Male-minus-table"])

    rows = minus_rows(html)
    assert [r[1][1] for r in rows] == ["hfld", "baseline", "ganspace"]
    assert [r[0][1] for r in rows] == ["1", "2", ""]
    cnr = rows[-1]
    assert [c[1] for c in cnr[1:]] == ["ganspace", "could not reach", "0%"] and "cnr" in cnr[2][3]
    # even a rank in the CSV's could-not-reach row does not put it among the ranked
    run = make_run(tmp_path / "r")
    r = pd.read_csv(run / "ranking.csv")
    bad = (r.status == "could not reach")
    r.loc[bad, ["rank", "value", "lo", "hi"]] = [1, 0.5, 0.4, 0.6]
    r.to_csv(run / "ranking.csv", index=False)
    rows = minus_rows(render_report([run], tmp_path / "o.html").read_text())
    assert [r[0][1] for r in rows] == ["1", "2", ""] and rows[-1][1][1] == "ganspace"


def test_a_reference_with_fewer_fit_seeds_is_named(tmp_path):
    # an untrained reference is "fitted" once: the sentence must not claim K seeds for it
    run = make_run(tmp_path / "r")
    s = pd.read_csv(run / "summary.csv")
    s.loc[s.method == "baseline", "n_seeds"] = 1
    s.to_csv(run / "summary.csv", index=False)
    html = render_report([run], tmp_path / "o.html").read_text()
    assert ("Male, towards presence: compared at ΔR_k = +0.3 (n = 27 samples reached by every method under all "
            "its fit seeds: 3 each, baseline 1)") in html


def test_heuristic_attribute_is_flagged(one_run, tmp_path):
    _, html = one_run
    warning = "the achieved change of Bald rests on a heuristic measure (probe), not a trained network"
    assert html.count(warning) == 2        # in the answer and at the top of Bald's section
    assert html.index(warning) < html.index('id="answer-Bald-minus"')
    assert "achieved change of Male rests" not in html
    # without the manifest's attribute_kinds, ranking.csv's kind column says it
    run = make_run(tmp_path / "r")
    m = json.loads((run / "manifest.json").read_text())
    del m["attribute_kinds"]
    (run / "manifest.json").write_text(json.dumps(m))
    assert render_report([run], tmp_path / "o.html").read_text().count(warning) == 2


def test_curves_and_per_seed_estimates(one_run):
    run, html = one_run
    assert "Dashed lines: the compared level(s) (+0.3, -0.4)" in html
    rows = Doc(html).tables["seeds-Male"]
    assert [c[1] for c in rows[0][1:]] == ["ΔR_k = +0.3", "ΔR_k = -0.4"]
    assert [c[1] for c in rows[1]] == ["method"] + ["seed 0", "seed 1", "seed 2", "all seeds"] * 2
    body = {r[0][1]: r for r in _body(rows)}
    assert list(body) == ["baseline", "hfld", "ganspace"]
    s = pd.read_csv(run / "seeds.csv")
    want = s[(s.attr == "Male") & np.isclose(s.level, 0.3) & (s.method == "hfld") & (s.quantity == "disturbance")]
    np.testing.assert_allclose([_num(c[1]) for c in body["hfld"][1:4]], want.sort_values("seed").value, rtol=5e-3)
    assert body["hfld"][4][1] == "4.25 [3.10, 5.40]"
    assert [c[1] for c in body["ganspace"][5:]] == ["–"] * 4        # no numbers where nothing reached


def test_topk_table_matches_an_independent_ranking(one_run):
    run, html = one_run
    s = pd.read_csv(run / "summary.csv")
    rows = Doc(html).tables["t-Male-p0_3-topk-I_III"]
    assert [c[1] for c in rows[1][1:]] == ["n = 32, reach 100%", "n = 29, reach 90%", "n = 27, reach 85%"]
    body = [r for r in rows if r[0][0] == "th" and r[0][1].strip().isdigit()]
    assert [int(r[0][1]) for r in body] == [1, 2, 3, 4, 5]
    for i, m in enumerate(("baseline", "hfld", "ganspace")):
        mine = s[(s.attr == "Male") & np.isclose(s.level, 0.3) & (s.method == m) & (s.table == "I-III")
                 & s.quantity.str.startswith("r.")]
        top = mine.nlargest(5, "value")
        assert [r[1 + 2 * i][1] for r in body] == [q[2:] for q in top.quantity]
        np.testing.assert_allclose([_num(r[2 + 2 * i][1]) for r in body], top.value, rtol=5e-3)
    for r in body:    # the lowest r_j of each rank row is bold (better = lower), and only it
        vals = [_num(r[2 + 2 * i][1]) for i in range(3)]
        assert [r[2 + 2 * i][2] for i in range(3)] == [v == min(vals) for v in vals]
    foot = [r for r in rows if r[0][1].startswith("mean ΔR_k (Male)")]
    assert len(foot) == 1


def test_emotion_gesture_and_generic_tables(one_run):
    run, html = one_run
    doc = Doc(html)
    emo = {r[0][1]: r for r in doc.tables["t-Male-m0_4-emotion-V"] if r[0][0] == "th" and r[0][1] in EMOTIONS}
    assert list(emo) == list(EMOTIONS)
    for i, m in enumerate(("baseline", "hfld")):        # ganspace did not reach -0.4: no column
        for k, kind in enumerate(("before", "after", "paired", "set")):
            cell = emo["happy"][1 + 4 * i + k][1]
            np.testing.assert_allclose(_num(cell), _summary(run, "Male", -0.4, m, f"{kind}.happy").value, rtol=5e-3)
            assert bool(re.search(r"\[[\d.]+, [\d.]+\]", cell)) == (kind == "paired")
    foot = [r for r in doc.tables["t-Male-m0_4-emotion-V"] if r[0][1].startswith("emotion disturbance")]
    assert len(foot) == 1 and len(foot[0]) == 3
    g = _body(doc.tables["t-Bald-m0_2-gesture-IV"])
    assert len(g) == 3        # Smiling, Mouth_Slightly_Open, Narrow_Eyes; methods as columns
    for r in g:
        vals = [_num(c[1]) for c in r[1:]]
        assert [c[2] for c in r[1:]] == [v == min(vals) for v in vals]
    # a third-party metric, unknown to the report, gets a generic table with its own label
    flip = _body(doc.tables["t-Male-p0_3-expression_flip-expression_flip"])
    assert [r[0][1] for r in flip] == [f"{FLIP} ↓ better"]
    want = _summary(run, "Male", 0.3, "ganspace", "flipped")
    assert flip[0][3][1] == f"{want.value:.3f} [{want.lo:.3f}, {want.hi:.3f}]"
    ident = _body(doc.tables["t-Male-p0_3-identity-identity"])
    assert ident[0][0][1] == f"{IDENT} ↑ better"


def test_comparison_rows_show_both_intervals(one_run):
    run, html = one_run
    rows = _body(Doc(html).tables["c-Male-p0_3"])
    c = pd.read_csv(run / "comparison.csv")
    c = c[(c.attr == "Male") & np.isclose(c.level, 0.3)]
    assert len(rows) == len(c)
    hfld = next(r for r in rows if r[2][1] == "hfld" and r[1][1].startswith("emotion disturbance"))
    want = c[(c.method == "hfld") & (c.quantity == "disturbance")].iloc[0]
    assert hfld[5][1] == f"{want['diff']:.2f} [{want.diff_lo:.2f}, {want.diff_hi:.2f}]"
    assert hfld[6][1] == f"[{want.diff_lo_samples:.2f}, {want.diff_hi_samples:.2f}]"
    assert hfld[4][1] == f"{want.ref_value:.2f} (baseline)" and hfld[9][1] == "29"
    assert '<details><summary>Male at ΔR_k = +0.3: every quantity against the reference' in html


def test_comparison_tables_colour_by_holm_over_each_table(tmp_path):
    """Each level's comparison table is one family (its rows with a better direction): a row whose interval
    excludes 0 at p = 0.04 is not coloured among several claims, and is when it is the table's only one."""
    from latent_edit_bench.pipeline.analysis import comparison_p_holm

    run = make_run(tmp_path / "r")
    c = pd.read_csv(run / "comparison.csv", keep_default_na=False, na_values=[""])
    table = (c.attr == "Male") & np.isclose(c.level, 0.3)
    claims = table & c.better.isin(["lower", "higher"]) & c.p_value.notna()
    target = claims & (c.method == "hfld") & (c.quantity == "disturbance")
    assert target.sum() == 1 and claims.sum() > 1
    c.loc[claims, "p_value"] = 0.04
    c.loc[target, ["rel", "rel_lo", "rel_hi", "diff", "diff_lo", "diff_hi"]] = [-0.3, -0.5, -0.1, -1.0, -1.5, -0.5]
    c.loc[target, "better"] = "lower"
    c.to_csv(run / "comparison.csv", index=False)
    # the family is the table: Holm over its claims only (other tables' rows do not count)
    assert np.allclose(comparison_p_holm(c)[claims.to_numpy()], min(1.0, 0.04 * claims.sum()))

    def hfld_row(name):
        rows = _body(Doc(render_report([run], tmp_path / name).read_text()).tables["c-Male-p0_3"])
        return next(r for r in rows if r[2][1] == "hfld" and r[1][1].startswith("emotion disturbance"))

    row = hfld_row("a.html")
    assert row[8][1] == f"p = 0.040 Holm = {min(1.0, 0.04 * claims.sum()):.3f}"
    assert not {"good", "bad"} & set(row[7][3].split())
    c.loc[claims & ~target, "p_value"] = float("nan")      # now the table's only claim: Holm = p, coloured
    c.to_csv(run / "comparison.csv", index=False)
    row = hfld_row("b.html")
    assert row[8][1] == "p = 0.040 Holm = 0.040" and "good" in row[7][3].split()


def test_methods_status_and_provenance(one_run):
    _, html = one_run
    doc = Doc(html)
    status = {r[0][1]: r for r in doc.tables["status"][1:]}
    assert [c[1] for c in status["broken"][1:3]] == ["failed", "edit Male seed 0"]
    error = status["broken"][-1][1]      # the error, then its traceback behind a <details>
    assert error.startswith("ValueError: edit diverged at strength 3.0") and 'File "methods/x.py", line 3' in error
    assert status["hfld"][1][1] == "ok" and status["hfld"][3][1] == "6 fit(s) over 3 seed(s), 4 cached, 15.0 s"
    fits = doc.tables["fits"][1:]
    assert len(fits) == 3 * 3 * 2 and [c[1] for c in fits[0]] == ["baseline", "0", "Male", "2.50", "no",
                                                                  "cache/baseline/0-Male.safetensors"]
    assert "Not compared: broken (failed at edit Male seed 0)" in html
    kinds = {r[0][1]: r[1][1] for r in doc.tables["kinds"][1:]}
    assert kinds == {"Male": "network", "Bald": "heuristic"}
    prov = {r[0][1]: r[1][1] for r in doc.tables["provenance"][1:]}
    assert prov["platform.machine"] == "x86_64"
    assert "took 42.5 s" in html


def test_plugin_text_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    run = make_run(tmp_path / "evil", run_id='"><b>id', methods=("baseline", evil), failed=("<b>bad</b>",),
                   error=f"RuntimeError: {evil}")
    s = pd.read_csv(run / "summary.csv")
    s.loc[s.quantity == "change", "label"] = '<img src=x onerror="alert(2)">'
    s.loc[s.metric == "expression-flip", ["metric", "table"]] = ["<i>m</i>", "<u>t</u>"]
    s.to_csv(run / "summary.csv", index=False)
    m = json.loads((run / "manifest.json").read_text())
    m["instruments"]["attributes"] = "<em>probe</em>"
    (run / "manifest.json").write_text(json.dumps(m))
    html = render_report([run], tmp_path / "r.html").read_text()
    doc = Doc(html)
    assert not {"script", "b", "i", "u", "em"} & set(doc.tags)
    assert all(i["src"].startswith("data:image/png;base64,") for i in doc.imgs)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "heuristic measure (&lt;em&gt;probe&lt;/em&gt;)" in html
    status = {r[0][1]: r for r in doc.tables["status"][1:]}
    assert status["<b>bad</b>"][-1][1].startswith(f"RuntimeError: {evil}")      # text survives, as text
    assert any(c[1] == evil for r in doc.tables["answer-Male-plus-table"] for c in r)
    assert "t-Male-p0_4-_i_m_i_-_u_t_u_" in doc.tables                             # ids stay plain


def test_two_runs_one_after_another(tmp_path):
    a = make_run(tmp_path / "a", run_id="aaaa111", seed=1)
    b = make_run(tmp_path / "b", run_id="bbbb222", methods=("baseline", "hfld"), attrs=("Male",), seed=2)
    html = render_report([a, b], tmp_path / "cmp.html").read_text()
    doc = Doc(html)
    # b has no third method: everything reaches +-0.4 on Male; each run compares at its own levels
    want = _expected_tables("r1-") + _expected_tables("r2-", {"Male": ("p0_4", "m0_4")})
    assert sorted(doc.tables) == sorted(want)
    assert len(doc.imgs) == _meta(html, "bench-images") == (2 + 4) + (1 + 1)
    assert _meta(html, "bench-tables") == len(want)
    assert html.index("<h2 class=\"run\">Run aaaa111</h2>") < html.index("<h2 class=\"run\">Run bbbb222</h2>")
    assert html.index('id="r1-setup"') < html.index('id="r2-answer"')
    assert "Male, towards presence: compared at ΔR_k = +0.4 (n = 29 samples" in html
    assert [c[1] for c in doc.tables["r2-t-Male-p0_4-edit-edit"][0][1:]] == ["baseline", "hfld"]


def test_partial_runs_still_render(tmp_path):
    # every method failed: header-only CSVs, nothing to plot or rank, the failures in plain sight
    run = make_run(tmp_path / "failed", methods=("baseline", "hfld"))
    for name in ("summary.csv", "seeds.csv", "comparison.csv", "ranking.csv"):
        pd.read_csv(run / name).iloc[:0].to_csv(run / name, index=False)
    m = json.loads((run / "manifest.json").read_text())
    m["methods"] = {k: {"status": "failed", "stage": "fit", "error": "OSError: no weights"} for k in m["methods"]}
    m["figures"] = {"trajectories": {}}
    (run / "manifest.json").write_text(json.dumps(m))
    html = render_report([run], tmp_path / "f.html").read_text()
    doc = Doc(html)
    assert not doc.imgs and [r[1][1] for r in doc.tables["status"][1:]] == ["failed"] * 3
    assert "Not compared: baseline (failed at fit); hfld (failed at fit); broken (failed at fit)" in html
    assert "no ranking for Male in ranking.csv" in html
    # no seeds, comparison or ranking file, an infinite ratio, a missing interval, a trajectory that is gone
    run = make_run(tmp_path / "partial", methods=("baseline", "x"))
    for name in ("seeds.csv", "comparison.csv", "ranking.csv"):
        (run / name).unlink()
    s = pd.read_csv(run / "summary.csv")
    s.loc[s.quantity == "r.Young", "value"] = np.inf
    s.loc[s.quantity == "r.Bald", "lo"] = np.nan
    s.to_csv(run / "summary.csv", index=False)
    (run / "trajectories" / "baseline__Male.png").unlink()
    html = render_report([run], tmp_path / "p.html").read_text()
    doc = Doc(html)
    assert "trajectories/baseline__Male.png is missing or not a PNG" in html
    assert "no ranking: this run folder has no ranking.csv" in html and "this run folder has no seeds.csv" in html
    assert "no compared level, so no detailed tables" in html and "inf" not in html
    assert len(doc.imgs) == _meta(html, "bench-images") == 2 + 1      # curves still drawn from summary.csv
    assert sorted(doc.tables) == sorted(SETUP)
    assert load_run(run).absent == ["seeds.csv", "comparison.csv", "ranking.csv"]


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
    (run / "manifest.json").write_text("{not json")
    with pytest.raises(BenchError, match="not valid JSON"):
        render_report([run], tmp_path / "o.html")
    # a folder of the old format (no levels) names what it lacks
    run = make_run(tmp_path / "old")
    pd.read_csv(run / "summary.csv").drop(columns=["level", "n_seeds"]).to_csv(run / "summary.csv", index=False)
    with pytest.raises(BenchError, match="lacks the column.s. level, n_seeds"):
        render_report([run], tmp_path / "o.html")
    run = make_run(tmp_path / "rk")
    pd.read_csv(run / "ranking.csv").drop(columns=["status"]).to_csv(run / "ranking.csv", index=False)
    with pytest.raises(BenchError, match="ranking.csv lacks the column.s. status"):
        render_report([run], tmp_path / "o.html")


def _bench(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "latent_edit_bench.cli", "report", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_cli(tmp_path, bench_cli):
    run = make_run(tmp_path / "r")
    res = _bench(run)                                # the entry point itself, once
    assert res.returncode == 0, res.stderr
    assert "Male, towards presence: compared at" in (run / "report.html").read_text()
    other = make_run(tmp_path / "s", run_id="other")
    res = bench_cli("report", run, other, cwd=tmp_path)   # the rest in-process: a traceback fails the test
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "comparison.html").is_file()
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "manifest.json").write_text("{}")
    for bad, needle in [(tmp_path / "nope", "does not exist"), (tmp_path / "half", "no summary.csv")]:
        res = bench_cli("report", run, bad)
        assert res.exit_code == 2, (res.stdout, res.stderr)
        assert needle in res.stderr
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
    bad = [line for line in res.stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]
    assert not bad, bad
    # no file fetched but the report itself (the browser's own update pings are http, so external
    # URLs are checked on the HTML in test_self_contained_without_script)
    fetched = re.findall(r"FileURLLoader::Start: (\S+)", res.stderr)
    assert fetched and set(fetched) <= {report.resolve().as_uri()}, fetched
    dom = Doc(res.stdout)
    assert sorted(dom.tables) == sorted(_expected_tables())
    assert len(dom.tables) == _meta(html, "bench-tables")
    assert len(dom.imgs) == _meta(html, "bench-images") == 6
    for img in dom.imgs:
        _png_of(img["src"])
    shot = tmp_path / "shot.png"
    res = headless(report, f"--screenshot={shot}", "--window-size=1280,3000")
    assert res.returncode == 0, res.stderr[-2000:]
    img = Image.open(shot)
    img.verify()
    assert Image.open(shot).size == (1280, 3000)
    assert np.asarray(Image.open(shot).convert("L")).std() > 5      # something was drawn
