"""The HTML comparison report of one or more run folders (docs/run-format.md).

``render_report([run_dir, ...], out)`` reads each run's manifest.json, summary.csv and
comparison.csv (and the trajectory PNGs the manifest lists) and writes one self-contained HTML
file: inline CSS, images as base64 data URIs, no JavaScript, no external URL. Sections come from
the CSVs generically (one per metric and table), so a new metric appears without template changes;
Tables I-III and V have the paper's shapes (reports/tables.py).
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd

from bench.errors import BenchError

from . import plots
from .tables import (Cell, Col, Table, comparison_table, emotion_table, fmt, fmt_ci, fmt_p, key_value_table,
                     list_table, pct, quantity_table, slug, topk_table)

SUMMARY_COLUMNS = ["attr", "method", "metric", "quantity", "label", "value", "lo", "hi", "n", "better", "table"]
COMPARISON_COLUMNS = ["attr", "method", "metric", "quantity", "label", "value", "baseline", "diff", "diff_lo",
                      "diff_hi", "rel", "rel_lo", "rel_hi", "p_value", "test"]
TEXT_COLUMNS = ["attr", "method", "metric", "quantity", "label", "better", "table", "test"]
KNOWN_MANIFEST = {"id", "created", "config", "instruments", "versions", "seeds", "assets", "methods", "figures",
                  "seconds"}
CONFIG_FIRST = ["methods", "attrs", "backbone", "weights", "preset", "n", "seed", "protocol", "tol", "reference"]
PAPER_TABLES = {"I-III": "Table I-III", "IV": "Table IV", "V": "Table V"}
TOP_K = 5


@dataclass
class Run:
    id: str
    path: Path
    manifest: dict
    summary: pd.DataFrame
    comparison: pd.DataFrame

    @property
    def config(self) -> dict:
        return self.manifest.get("config") or {}

    @property
    def reference(self) -> str:
        return self.config.get("reference") or "baseline"


# ---------------------------------------------------------------- reading

def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        # keep_default_na=False: a method or label called "NA" stays text
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is not a readable CSV: {e}") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BenchError(f"{path} lacks the column(s) {', '.join(missing)}; expected: {', '.join(columns)} "
                         f"(docs/run-format.md)")
    for c in columns:
        if c not in TEXT_COLUMNS:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    return frame


def load_run(path: Path) -> Run:
    """Read and check one run folder; BenchError naming the problem when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"run folder {str(path)!r} does not exist (give a folder written by `bench run`)")
    for name in ("manifest.json", "summary.csv"):
        if not (path / name).is_file():
            raise BenchError(f"{str(path)!r} is not a run folder: it has no {name} "
                             f"(a run folder holds manifest.json, summary.csv, comparison.csv)")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{path / 'manifest.json'} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise BenchError(f"{path / 'manifest.json'} must hold a JSON object")
    summary = _read_csv(path / "summary.csv", SUMMARY_COLUMNS)
    comp_path = path / "comparison.csv"
    # a run with the reference method alone (or a failed reference) has nothing to compare
    comparison = (_read_csv(comp_path, COMPARISON_COLUMNS) if comp_path.is_file()
                  else pd.DataFrame({c: pd.Series(dtype=str if c in TEXT_COLUMNS else float)
                                     for c in COMPARISON_COLUMNS}))
    return Run(str(manifest.get("id") or path.name), path, manifest, summary, comparison)


# ---------------------------------------------------------------- pieces

def _text(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    return str(v)


def _ordered(*lists) -> list:
    return list(dict.fromkeys(x for xs in lists for x in xs))


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _metric_titles(names) -> dict:
    """Section titles from the installed metric plugins (their ``title``); the bare name otherwise."""
    titles = {}
    try:
        from bench.plugins import get_plugins

        reg = get_plugins().metrics
        for n in names:
            if n in reg:
                titles[n] = getattr(reg.get(n).load(), "title", "") or n
    except Exception:   # a report must render even where a run's metric plugin is not installed
        pass
    return {n: titles.get(n) or n for n in names}


def _header_tables(runs: list[Run]) -> dict[str, Table]:
    ids = [r.id for r in runs]
    cfg = {(k, r.id): _text(v) for r in runs for k, v in r.config.items()}
    cfg |= {(f"seeds.{k}", r.id): _text(v) for r in runs for k, v in (r.manifest.get("seeds") or {}).items()}
    keys = _ordered([k for k in CONFIG_FIRST if any((k, i) in cfg for i in ids)], [k for k, _ in cfg])
    inst = {(k, r.id): _text(v) for r in runs for k, v in (r.manifest.get("instruments") or {}).items()}
    vers = {(k, r.id): _text(v) for r in runs for k, v in (r.manifest.get("versions") or {}).items()}
    multi = len(runs) > 1
    lead = ["run"] if multi else []
    assets, status = [], []
    for r in runs:
        for a in r.manifest.get("assets") or []:
            sha = str(a.get("sha256") or "")
            assets.append([Cell(r.id)] * multi + [Cell(_text(a.get("name")), th=True), Cell(_text(a.get("file"))),
                                                  Cell(_text(a.get("origin"))), Cell(_text(a.get("licence"))),
                                                  Cell(sha[:12] or "–", cls="mono")])
        for m, st in (r.manifest.get("methods") or {}).items():
            st = st if isinstance(st, dict) else {"status": st}
            ok = st.get("status") == "ok"
            secs = st.get("fit_seconds")
            fit = (fmt(secs) if isinstance(secs, (int, float)) else "") + (" (cached)" if st.get("cache_hit") else "")
            status.append([Cell(r.id)] * multi + [
                Cell(m, th=True), Cell(_text(st.get("status")), cls="ok" if ok else "failed"),
                Cell(_text(st.get("stage")) if "stage" in st else ""), Cell(fit.strip(), num=True),
                Cell(_text(st.get("artifact")) if "artifact" in st else "", cls="mono"),
                Cell(_text(st.get("error")) if "error" in st else "", cls="error" if not ok else "",
                     more=_text(st["traceback"]) if st.get("traceback") else "")])
    # anything else the manifest records (platform, weight fingerprints, ...), one level flattened
    extra = {}
    for r in runs:
        for k, v in r.manifest.items():
            if k in KNOWN_MANIFEST:
                continue
            items = v.items() if isinstance(v, dict) else [("", v)]
            extra |= {(f"{k}.{sub}" if sub else k, r.id): _text(x) for sub, x in items}
    tables = {
        "status": list_table("status", "Methods", lead + ["method", "status", "stage", "fit s", "artifact", "error"],
                             status, "no methods listed"),
        "config": key_value_table("config", "Configuration", keys, ids, cfg),
        "instruments": key_value_table("instruments", "Instruments per role", _ordered([k for k, _ in inst]), ids,
                                       inst, "role"),
        "versions": key_value_table("versions", "Package versions", _ordered([k for k, _ in vers]), ids, vers,
                                    "package"),
        "assets": list_table("assets", "Asset provenance", lead + ["asset", "file", "origin", "licence", "sha256"],
                             assets, "no assets listed", collapsed=True),
    }
    if extra:
        tables["extra"] = key_value_table("provenance", "More provenance", _ordered([k for k, _ in extra]), ids,
                                          extra, "field", collapsed=True)
    return tables


@dataclass
class Headline:
    label: str
    text: str
    cls: str = ""
    edit: str = ""


def _headlines(attr: str, cols: list[Col], runs: dict, summ: dict, comp: dict) -> list[Headline]:
    """"emotion change vs <reference>: rel [lo, hi] (p)" per method, with the achieved edit beside it."""
    out = []
    for c in cols:
        ref = runs[c.run].reference
        s = summ.get((c.run, c.method, "emotion", "disturbance"))
        if c.method == ref:
            text = (f"reference; emotion disturbance {fmt(s.value)} pp {fmt_ci(s.lo, s.hi, s.value)}"
                    if s is not None else "reference")
            cls = "ref"
        elif (r := comp.get((c.run, c.method, "emotion", "disturbance"))) is not None:
            text = f"emotion change vs {ref}: {pct(r.rel)} [{pct(r.rel_lo)}, {pct(r.rel_hi)}] ({fmt_p(r.p_value)})"
            cls = ("good" if r.rel_hi < 0 else "bad" if r.rel_lo > 0 else "") if not math.isnan(r.rel_lo) else ""
        else:
            text, cls = f"emotion change vs {ref}: not available", "missing"
        edit = []
        if (ch := summ.get((c.run, c.method, "edit", "change"))) is not None:
            edit.append(f"achieved ΔR_k {fmt(ch.value)} {fmt_ci(ch.lo, ch.hi, ch.value)}")
        if (rb := summ.get((c.run, c.method, "edit", "reached_both"))) is not None:
            edit.append(f"both targets reached {100 * rb.value:.0f}%")
        out.append(Headline(c.label, text, cls, "; ".join(edit)))
    return out


def _figures(attr: str, sid: str, frame: pd.DataFrame, cols: list[Col]) -> list[dict]:
    figs = []

    def bar(r):
        return (r.value, r.lo, r.hi)

    label = {(c.run, c.method): c.label for c in cols}
    emo = frame[(frame.metric == "emotion") & frame.value.notna()]
    dist = {label[(r.run, r.method)]: bar(r) for r in emo[emo.quantity == "disturbance"].itertuples()
            if (r.run, r.method) in label}
    pair = emo[emo.quantity.str.startswith("paired.")]
    paired = {(label[(r.run, r.method)], r.quantity[7:]): bar(r) for r in pair.itertuples()
              if (r.run, r.method) in label}
    if paired or dist:
        emotions = list(dict.fromkeys(q[7:] for q in pair.quantity))
        png = plots.emotion_figure(attr, [c.label for c in cols], dist, emotions, paired)
        figs.append({"id": f"fig-emotion-{sid}", "uri": _png_uri(png),
                     "caption": f"{attr}: emotion disturbance per method (left) and paired |Δ| per emotion "
                                "(right), percentage points, bars = 95% bootstrap intervals."})
    lm = frame[(frame.metric == "landmarks") & frame.value.notna()]
    if len(lm):
        groups = list(dict.fromkeys(lm.quantity))
        data = {(label[(r.run, r.method)], r.quantity): bar(r) for r in lm.itertuples() if (r.run, r.method) in label}
        units = {lab[lab.rfind("("):] for lab in lm.label if lab.endswith(")") and "(" in lab}
        ylabel = "displacement" + (f" {units.pop()}" if len(units) == 1 else "")   # the labels' shared unit
        png = plots.bars_figure(f"{attr}: landmark displacement, 95% intervals", groups, [c.label for c in cols],
                                data, ylabel)
        figs.append({"id": f"fig-landmarks-{sid}", "uri": _png_uri(png),
                     "caption": f"{attr}: landmark displacement per method ("
                                + "; ".join(f"{q}: {lab}" for q, lab in lm.drop_duplicates("quantity")
                                            [["quantity", "label"]].itertuples(index=False)) + ")."})
    return figs


def _trajectories(attr: str, runs: list[Run], cols: list[Col]) -> list[dict]:
    out = []
    for r in runs:
        listed = ((r.manifest.get("figures") or {}).get("trajectories") or {})
        targets = (r.config.get("trajectory") or {}).get("targets")
        steps = ", ".join(f"{t:g}" for t in targets) if targets else "0 → 1"
        methods = _ordered([c.method for c in cols if c.run == r.id], listed)
        for m in methods:
            rel = (listed.get(m) or {}).get(attr)
            if not rel:
                continue
            label = f"{m} ({r.id})" if len(runs) > 1 else m
            item = {"id": f"traj-{slug(r.id, m, attr)}", "label": label, "path": rel, "uri": "", "missing": "",
                    "caption": f"{label}, {attr}: each row one sample: the original, then the matched edits to "
                               f"targets {steps}."}
            f = (r.path / rel)
            if f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n":
                item["uri"] = _png_uri(f.read_bytes())
            else:
                item["missing"] = f"{rel} is missing or not a PNG"
            out.append(item)
    return out


def _attr_section(attr: str, runs: list[Run], titles: dict, top_k: int) -> dict:
    by_id = {r.id: r for r in runs}
    multi = len(runs) > 1
    sid = slug(attr)
    frame = pd.concat([r.summary[r.summary.attr == attr].assign(run=r.id) for r in runs], ignore_index=True)
    comp = pd.concat([r.comparison[(r.comparison.attr == attr) & (r.comparison.method != r.reference)]
                      .assign(run=r.id) for r in runs], ignore_index=True)
    cols, notes = [], []
    for r in runs:
        present = list(dict.fromkeys(frame[frame.run == r.id].method))
        order = _ordered([r.reference], r.config.get("methods") or [], present)
        cols += [Col(r.id, m, f"{m} ({r.id})" if multi else m) for m in order if m in present]
        for m, st in (r.manifest.get("methods") or {}).items():
            st = st if isinstance(st, dict) else {"status": st}
            if m not in present:
                why = (f"{st.get('status')} at {st.get('stage')}" if st.get("stage") else str(st.get("status")))
                notes.append(f"{m}{f' ({r.id})' if multi else ''}: no results ({why})")

    summ = {(r.run, r.method, r.metric, r.quantity): r for r in frame.itertuples(index=False)}
    cmp_ = {(r.run, r.method, r.metric, r.quantity): r for r in comp.itertuples(index=False)}
    metric_order = _ordered(*[r.config.get("metrics") or [] for r in runs], frame.metric)
    metric_order = _ordered(["edit"] if "edit" in metric_order else [], metric_order)  # edit first: always beside

    tables = []
    for metric in metric_order:
        mf = frame[frame.metric == metric]
        for table in dict.fromkeys(mf.table):
            g = mf[mf.table == table]
            title = titles.get(metric, metric)
            if table in PAPER_TABLES and table not in title:
                title = f"{title} ({PAPER_TABLES[table]})"
            elif table and table not in (metric, *PAPER_TABLES):
                title = f"{title}: {table}"
            tid = f"t-{slug(attr, metric, table)}"
            if table == "I-III":
                tables.append(topk_table(tid, title, g, cols, attr, top_k))
                ratios = g[g.quantity.str.startswith("r.")]
                if len(ratios) and len(dict.fromkeys(ratios.quantity)) > top_k:
                    tables.append(quantity_table(f"{tid}-all", f"{titles.get(metric, metric)}: every ratio",
                                                 ratios, cols, collapsed=True))
            elif table == "V":
                tables.append(emotion_table(tid, title, g, cols))
            else:
                tables.append(quantity_table(tid, title, g, cols))

    better = {q: b for q, b in zip(frame.quantity, frame.better) if b}
    comparisons = []
    for metric in _ordered(metric_order, comp.metric):
        g = comp[comp.metric == metric]
        if len(g):
            comparisons.append(comparison_table(f"c-{slug(attr, metric)}", f"{titles.get(metric, metric)} vs reference",
                                                g, cols, better, collapsed=metric != "edit"))
    return {"attr": attr, "id": f"attr-{sid}", "headlines": _headlines(attr, cols, by_id, summ, cmp_),
            "notes": notes, "tables": tables, "figures": _figures(attr, sid, frame, cols),
            "comparisons": comparisons, "trajectories": _trajectories(attr, runs, cols)}


def build_context(runs: list[Run], top_k: int = TOP_K) -> dict:
    attrs = _ordered(*[r.config.get("attrs") or [] for r in runs], *[r.summary.attr for r in runs])
    metrics = _ordered(*[r.config.get("metrics") or [] for r in runs], *[r.summary.metric for r in runs])
    titles = _metric_titles(metrics)
    sections = [_attr_section(a, runs, titles, top_k) for a in attrs]
    header = _header_tables(runs)
    n_tables = len(header) + sum(len(s["tables"]) + len(s["comparisons"]) for s in sections)
    n_images = sum(len(s["figures"]) + sum(bool(t["uri"]) for t in s["trajectories"]) for s in sections)
    return {"runs": runs, "ids": [r.id for r in runs], "header": header, "sections": sections,
            "created": [r.manifest.get("created") or "" for r in runs],
            "seconds": [r.manifest["seconds"] for r in runs if isinstance(r.manifest.get("seconds"), (int, float))],
            "n_tables": n_tables, "n_images": n_images}


def _environment() -> jinja2.Environment:
    # autoescape=True, not select_autoescape: the template's name ends in .j2, not .html
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def render_report(run_dirs: list[Path], out: Path, *, top_k: int = TOP_K) -> Path:
    """Write the HTML report of one run, or several side by side, to ``out``; returns ``out``."""
    if not run_dirs:
        raise BenchError("give at least one run folder")
    runs = [load_run(Path(d)) for d in run_dirs]
    seen: dict[str, int] = {}
    for r in runs:   # two folders of the same config share an id: keep the columns apart
        seen[r.id] = seen.get(r.id, 0) + 1
        if seen[r.id] > 1:
            r.id = f"{r.id}#{seen[r.id]}"
    html = _environment().get_template("report.html.j2").render(**build_context(runs, top_k))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
