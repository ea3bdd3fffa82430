"""The HTML report of one or more run folders (docs/run-format.md).

``render_report([run_dir, ...], out)`` reads each run's manifest.json, summary.csv, seeds.csv,
comparison.csv, ranking.csv and the trajectory PNGs the manifest lists, and writes one
self-contained HTML file: inline CSS, images as base64 data URIs, no JavaScript, no external URL.
Several runs are rendered one after another (each compares its methods at its own levels).

Per run, top to bottom: the answer (ranking.csv: per attribute and direction, the methods ranked by
emotion disturbance at equal achieved edit), then per attribute the curves against the level, the
per-fit-seed estimates, every metric's quantities at the compared levels and the paired comparison
rows, the trajectories; then methods status and provenance. Result tables come from the CSVs
generically (one per metric and table tag), so a third-party metric appears without template
changes; only the table tags I-III and V get the paper's shapes (reports/latent_edit_bench/reports/tables.py).
"""

from __future__ import annotations

import base64
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np
import pandas as pd

from latent_edit_bench.pipeline.analysis import (COMPARISON_COLUMNS, RANKING_COLUMNS, SEEDS_COLUMNS, SUMMARY_COLUMNS,
                                                 comparison_p_holm, ranking_p_holm)
from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline.validity import SEES, VALIDITY_COLUMNS, auc_text
from latent_edit_bench.pipeline import power

from . import plots
from .tables import (DIRECTIONS, RANKING_NOTE, Cell, Col, Table, comparison_table, emotion_table, finite, fmt,
                     fmt_level, key_value_table, level_slug, list_table, quantity_table, ranking_table, seeds_table,
                     share, slug, topk_table)

TEXT_COLUMNS = {"attr", "method", "metric", "quantity", "label", "better", "table", "test", "reference",
                "direction", "status", "kind", "verdict", "trainer_validity", "role", "instrument", "labels"}
# summary.csv is the one file without which there is nothing to show; the others may be absent
# (a run stopped before its comparison, an old tool): the report then says so where they would be
OPTIONAL = {"seeds.csv": SEEDS_COLUMNS, "comparison.csv": COMPARISON_COLUMNS, "ranking.csv": RANKING_COLUMNS}
# the judge quantities that confirm or refute an edit: no verdict where the judge is not shown to see the attribute
JUDGE_VERDICTS = ("fooled", "agreement", "judge.change", "judge.edited")

HEADLINE = ("emotion", "disturbance")          # what ranking.csv ranks by: the one number the report leads with
LANDMARKS = ("landmarks", "displacement")      # the second curve panel
KNOWN_MANIFEST = {"id", "created", "config", "instruments", "attribute_kinds", "versions", "seeds", "assets",
                  "methods", "figures", "seconds", "metrics", "judges"}
CONFIG_FIRST = ["methods", "attrs", "backbone", "weights", "preset", "n", "seed", "fit_seeds", "levels", "tol",
                "min_reach", "reference", "metrics"]
PAPER_TABLES = {"I-III": "Table I-III", "IV": "Table IV", "V": "Table V"}
TOP_K = 5
LATER_COLUMNS = ("p_holm", "verdict", "mde_rel", "trainer_validity")   # ranking.csv columns an older folder lacks
PLAN_EFFECT = 0.10     # the first screen says what N, K would resolve the observed difference and this one


@dataclass
class Run:
    id: str
    path: Path
    manifest: dict
    summary: pd.DataFrame
    seeds: pd.DataFrame
    comparison: pd.DataFrame
    ranking: pd.DataFrame
    absent: list = field(default_factory=list)    # optional CSVs the folder lacks
    plans: dict = field(default_factory=dict)     # (attr, direction, method) -> power.plan_run row
    validity: pd.DataFrame | None = None          # validity.csv; None for a folder without one

    @property
    def config(self) -> dict:
        return self.manifest.get("config") or {}

    @property
    def reference(self) -> str:
        return self.config.get("reference") or "baseline"

    @property
    def fit_seeds(self) -> int:
        k = self.config.get("fit_seeds")
        if isinstance(k, int):
            return k
        fit = (self.manifest.get("seeds") or {}).get("fit")
        if isinstance(fit, list):
            return len(fit)
        return int(self.summary.n_seeds.max()) if self.summary.n_seeds.notna().any() else 1


# ---------------------------------------------------------------- reading

def _empty(columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c in TEXT_COLUMNS else float) for c in columns})


def _read_csv(path: Path, columns: list[str]) -> pd.DataFrame:
    try:
        # keep_default_na=False: a method or label called "NA" stays text
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise BenchError(f"{path} is not a readable CSV: {e}") from None
    for c in LATER_COLUMNS:      # added after the first release: an older folder reads as "not stated"
        if c in columns and c not in frame.columns:
            frame[c] = ""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BenchError(f"{path} lacks the column(s) {', '.join(missing)}; expected: {', '.join(columns)} "
                         f"(docs/run-format.md; a folder from an older `bench run` needs a new run)")
    for c in columns:
        if c not in TEXT_COLUMNS:
            frame[c] = pd.to_numeric(frame[c], errors="coerce")
    if "level" in frame:
        # levels are matched across files: the same number written twice must compare equal
        frame["level"] = frame["level"].round(9)
    return frame


def load_run(path: Path) -> Run:
    """Read and check one run folder; BenchError naming the problem when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"run folder {str(path)!r} does not exist (give a folder written by `bench run`)")
    for name in ("manifest.json", "summary.csv"):
        if not (path / name).is_file():
            raise BenchError(f"{str(path)!r} is not a run folder: it has no {name} "
                             f"(a run folder holds manifest.json, summary.csv, ranking.csv, ...)")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{path / 'manifest.json'} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise BenchError(f"{path / 'manifest.json'} must hold a JSON object")
    summary = _read_csv(path / "summary.csv", SUMMARY_COLUMNS)
    frames, absent = {}, []
    for name, columns in OPTIONAL.items():
        if (path / name).is_file():
            frames[name] = _read_csv(path / name, columns)
        else:
            frames[name], absent = _empty(columns), absent + [name]
    ranking = frames["ranking.csv"]
    if ranking.p_holm.isna().all():   # a folder from before ranking.csv carried it: the same family, adjusted here
        ranking["p_holm"] = ranking_p_holm(ranking)   # the first screen's colours follow Holm-adjusted p
    comparison = frames["comparison.csv"]
    comparison["p_holm"] = comparison_p_holm(comparison)   # so do each level's comparison table's
    return Run(str(manifest.get("id") or path.name), path, manifest, summary, frames["seeds.csv"],
               comparison, ranking, absent, _plans(path),
               _read_csv(path / "validity.csv", VALIDITY_COLUMNS) if (path / "validity.csv").is_file() else None)


def _plans(path: Path) -> dict:
    """The first screen's power and plans (power.csv + units.json), {} for a folder without power.csv."""
    if not (path / "power.csv").is_file():
        return {}
    rows = power.plan_run(path, PLAN_EFFECT)
    return {(r["attr"], r["direction"], r["method"]): r for r in rows}


# ---------------------------------------------------------------- small helpers

def _text(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, (list, tuple)):
        return ", ".join(_text(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, ensure_ascii=False)
    return str(v)


def _ordered(*lists) -> list:
    return list(dict.fromkeys(x for xs in lists for x in xs if x != ""))    # "": a CSV's empty cell


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _metric_titles(run: "Run", names) -> dict:
    """Section titles as the run recorded them (manifest "metrics": the plugins' ``title``): the report
    reads only the run folder, so it renders where the run's metric plugins are not installed."""
    recorded = run.manifest.get("metrics") or {}
    return {n: (recorded.get(n) or {}).get("title") or n for n in names}


def _table_title(metric: str, table: str, titles: dict) -> str:
    title = titles.get(metric, metric)
    if table in PAPER_TABLES and table not in title:
        return f"{title} ({PAPER_TABLES[table]})"
    if table and table not in (metric, *PAPER_TABLES):
        return f"{title}: {table}"
    return title


def _ladder_text(run: Run, fallback: list[float]) -> list[str]:
    """The signed ladder, -max ... +max, from the config's levels (given unsigned, or signed)."""
    levels = [float(v) for v in run.config.get("levels") or [] if finite(v)]
    signed = sorted({s * abs(v) for v in levels for s in (-1, 1)} if all(v > 0 for v in levels) else set(levels))
    return [fmt_level(v) for v in (signed or fallback)]


def _settings_line(run: Run) -> str:
    cfg = run.config
    levels = [float(v) for v in cfg.get("levels") or [] if finite(v)]
    lv = (", ".join(f"±{v:g}" for v in levels) if levels and all(v > 0 for v in levels)
          else ", ".join(fmt_level(v) for v in levels) or "–")
    plat = run.manifest.get("platform") or {}
    where = f" · {_text(plat.get('dtype'))} on {_text(plat.get('device'))}" if plat.get("dtype") else ""   # older runs: none
    return (f"backbone {_text(cfg.get('backbone'))} · N = {_text(cfg.get('n'))} · fit seeds K = {run.fit_seeds} · "
            f"levels {lv} · tol {_text(cfg.get('tol'))} · min_reach {_text(cfg.get('min_reach'))} · "
            f"reference {run.reference}{where}")


def _status(run: Run) -> dict:
    return {m: st if isinstance(st, dict) else {"status": st} for m, st in (run.manifest.get("methods") or {}).items()}


def _kind(run: Run, attr: str) -> tuple[str, str]:
    """(kind of the attribute's measure, attribute instrument): the manifest's word, else ranking.csv's."""
    kind = (run.manifest.get("attribute_kinds") or {}).get(attr)
    if not kind:
        kind = next((k for k in run.ranking.kind[run.ranking.attr == attr] if k), "")
    return str(kind or ""), _text((run.manifest.get("instruments") or {}).get("attributes"))


def _heuristic_warning(run: Run, attr: str) -> str:
    kind, instrument = _kind(run, attr)
    if kind != "heuristic":
        return ""
    return f"the achieved change of {attr} rests on a heuristic measure ({instrument}), not a trained network"


# ---------------------------------------------------------------- instrument validity (validity.csv)

def _validity_row(run: Run, attr: str, role: str):
    if run.validity is None:
        return None
    v = run.validity[(run.validity.attr == attr) & (run.validity.role == role)]
    return None if v.empty else v.iloc[0]


def _validity_line(run: Run, attr: str) -> str:
    """The first screen's line: how well the attribute's trainer and judge see it on this backbone."""
    if run.validity is None:
        return f"How well the instruments see {attr} on this backbone: not measured (this run folder has no validity.csv)"
    parts, labels, unsure = [], "", float("nan")
    for role in ("trainer", "judge"):
        r = _validity_row(run, attr, role)
        if r is None:
            continue
        parts.append(f"{role} {r.instrument}: {auc_text(r)}, {r.status}")
        labels = labels or r["labels"]
        unsure = r.unsure_share if finite(r.unsure_share) else unsure
    where = f" (human labels: {labels}; AUC with its 95% interval, sees = above 0.5)" if labels else \
        " (no human labels for this backbone's weights; docs/validity.md)"
    tail = f"; a person could not call {share(unsure)} of the labelled faces" if finite(unsure) else ""
    return f"How well the instruments see {attr} on this backbone{where}: " + "; ".join(parts or ["–"]) + tail


def _not_validated(run: Run, attr: str, role: str) -> str:
    """"not validated: the trainer is not shown to see Bald on this backbone (...)", or "" where it sees it
    (or validity was not measured: a folder from before validity.csv)."""
    r = _validity_row(run, attr, role)
    if r is None or r.status == SEES:
        return ""
    return f"not validated: the {role} ({r.instrument}) is not shown to see {attr} on this backbone ({auc_text(r)})"


# ---------------------------------------------------------------- the answer

def _answer(run: Run, prefix: str, attr: str, methods: list[str]) -> dict:
    rk = run.ranking[run.ranking.attr == attr]
    k = run.fit_seeds
    under = f"under all {k} fit seeds" if k > 1 else "under its one fit seed"
    blocks = []
    for d in _ordered(["+", "-"], rk.direction):
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
                                       f"{_text(run.config.get('min_reach'))} of the samples {under}, with "
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
                                              + _unresolved(run, attr, d, compared),
                       "table": ranking_table(f"{tid}-table", f"{where}: compared by emotion disturbance", usable,
                                              methods, {m: pl for (a, dd, m), pl in run.plans.items()
                                                        if a == attr and dd == d})})
    missing = "" if blocks else ("no ranking: this run folder has no ranking.csv" if "ranking.csv" in run.absent
                                 else f"no ranking for {attr} in ranking.csv")
    unvalidated = _not_validated(run, attr, "trainer")
    return {"attr": attr, "warning": _heuristic_warning(run, attr), "blocks": blocks, "missing": missing,
            "validity": _validity_line(run, attr),
            "unvalidated": unvalidated and f"{unvalidated}: its comparisons are listed without a rank"}


def _unresolved(run: Run, attr: str, d: str, compared: pd.DataFrame) -> str:
    """". This run cannot tell these methods apart: ..." where no comparison of the block is resolved,
    with the N, K that would resolve a 10% difference (power.csv); "" otherwise or for older folders."""
    verdicts = compared.verdict[compared.status == "ranked"] if "verdict" in compared else pd.Series([], dtype=str)
    if verdicts.empty or not verdicts.ne("").all() or verdicts.eq("resolved").any():
        return ""
    plans = [pl for (a, dd, _), pl in run.plans.items() if a == attr and dd == d]
    need = max((pl["effect"] for pl in plans if pl["effect"].n is not None), default=None,
               key=lambda p: p.seconds if p.seconds is not None else p.n * p.k)
    tail = (f"; N = {need.n}, K = {need.k} would resolve a {need.effect * 100:.0f}% difference"
            f" ({power.describe_time(need)})" if need is not None else "")
    return f". This run cannot tell these methods apart at this N and K{tail}."


# ---------------------------------------------------------------- per attribute

def _curves(run: Run, prefix: str, attr: str, s: pd.DataFrame, methods: list[str], compared: list[float]):
    min_reach = float(run.config["min_reach"]) if finite(run.config.get("min_reach")) else 0.5
    panels, any_data = [], False
    for (metric, quantity), title in ((HEADLINE, "emotion disturbance"), (LANDMARKS, "landmark displacement")):
        q = s[(s.metric == metric) & (s.quantity == quantity)].sort_values("level", kind="mergesort")
        curves = {m: [plots.Point(r.level, r.value, r.lo, r.hi, finite(r.reach) and r.reach >= min_reach)
                      for r in q[q.method == m].itertuples(index=False)] for m in methods}
        any_data |= q.value.map(finite).any()
        ylabel = textwrap.fill(next((lab for lab in q.label if lab), quantity), 40)
        panels.append(plots.Panel(title, ylabel, curves))
    if not any_data:
        return None
    ladder = sorted(v for v in dict.fromkeys(s.level) if finite(v))
    tol = _text(run.config.get("tol"))
    png = plots.curves_figure(panels, methods, ladder, compared,
                              f"achieved change ΔR_k of {attr} (the level, reached within ±{tol})")
    at = ", ".join(fmt_level(v) for v in compared) or "none"
    caption = (f"{attr}: emotion disturbance (left) and landmark displacement (right) against the achieved "
               f"change ΔR_k, one line per method with its 95% interval (fit seeds + samples). Filled markers: "
               f"the method reaches the level (at least {min_reach:g} of the samples under every fit seed); "
               f"hollow: it does not, and the number rests on the few samples that did. Dashed lines: the "
               f"compared level(s) ({at}). Each point is on the method's own reached samples; the paired "
               f"numbers are in the tables below.")
    return {"id": f"{prefix}fig-curves-{slug(attr)}", "uri": _png_uri(png), "caption": caption}


def _col_note(rows: pd.DataFrame) -> str:
    """"n = 27, reach 84%" of one method at one level: its headline row's, else its first row's."""
    head = rows[(rows.metric == HEADLINE[0]) & (rows.quantity == HEADLINE[1])]
    r = (head if len(head) else rows).iloc[0]
    return f"n = {fmt(r.n, 0)}, reach {share(r.reach)}"


def _level_block(run: Run, prefix: str, attr: str, level: float, s: pd.DataFrame, methods: list[str],
                 metric_order: list[str], titles: dict, top_k: int) -> dict:
    caveat = _not_validated(run, attr, "judge")   # then the judge's confirm/refute numbers are no verdict
    at = _no_verdict(s[s.level == level], caveat)
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
    comp = _no_verdict(run.comparison[(run.comparison.attr == attr) & (run.comparison.level == level)], caveat)
    comparison = None
    if len(comp):
        rank = {m: i for i, m in enumerate(_ordered(metric_order, comp.metric))}
        order = {m: i for i, m in enumerate(_ordered(methods, comp.method))}
        comp = comp.assign(_m=comp.metric.map(rank), _k=comp.method.map(order))
        comp = comp.sort_values(["_m", "_k"], kind="mergesort")    # stable: the file's quantity order stays
        comparison = comparison_table(f"{prefix}c-{slug(attr)}-{level_slug(level)}",
                                      f"{attr} at ΔR_k = {fmt_level(level)}: every quantity against the reference "
                                      f"(comparison.csv)", comp, titles)
    direction = DIRECTIONS["+" if level > 0 else "-"]
    return {"id": base, "title": f"{attr} at ΔR_k = {fmt_level(level)} ({direction})", "tables": tables,
            "comparison": comparison, "empty": not cols}


def _no_verdict(frame: pd.DataFrame, caveat: str) -> pd.DataFrame:
    """Where the judge is not shown to see the attribute (``caveat``): its confirm/refute rows say so in their
    label and lose their better-direction, so no cell is bolded or coloured as a finding."""
    rows = (frame.metric == "judge") & frame.quantity.isin(JUDGE_VERDICTS)
    if not caveat or not rows.any():
        return frame
    frame = frame.copy()
    frame.loc[rows, "label"] = frame.loc[rows, "label"] + " (not validated: the judge is not shown to see it)"
    frame.loc[rows, "better"] = ""
    return frame


def _trajectories(run: Run, prefix: str, attr: str, methods: list[str], ladder: list[str]) -> list[dict]:
    listed = (run.manifest.get("figures") or {}).get("trajectories") or {}
    cols = ", ".join([x for x in ladder if x.startswith("-")] + ["original"] + [x for x in ladder
                                                                             if not x.startswith("-")])
    out = []
    for m in _ordered(methods, listed):
        rel = (listed.get(m) or {}).get(attr) if isinstance(listed.get(m), dict) else None
        if not rel:
            continue
        item = {"id": f"{prefix}traj-{slug(m, attr)}", "path": rel, "uri": "", "missing": "",
                "caption": f"{m}, {attr}: each row one sample; columns are levels {cols} (the ΔR_k each "
                           f"edit was driven to), fit seed 0."}
        f = run.path / str(rel)
        inside = f.resolve().is_relative_to(run.path.resolve())    # a manifest never points outside its run
        if inside and f.is_file() and f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n":
            item["uri"] = _png_uri(f.read_bytes())
        else:
            item["missing"] = f"{rel} is missing or not a PNG"
        out.append(item)
    return out


def _attr_section(run: Run, prefix: str, attr: str, methods: list[str], metric_order: list[str], titles: dict,
                  top_k: int) -> dict:
    s = run.summary[run.summary.attr == attr]
    rk = run.ranking[(run.ranking.attr == attr) & (run.ranking.status != "no common level")
                     & run.ranking.level.map(finite)]
    compared = _ordered(rk[rk.direction == "+"].level, rk[rk.direction == "-"].level, rk.level)
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
    return {"attr": attr, "id": f"{prefix}attr-{slug(attr)}", "warning": _heuristic_warning(run, attr),
            "figure": _curves(run, prefix, attr, s, methods, compared), "seeds": seeds_t,
            "seeds_missing": "seeds.csv" in run.absent,
            "levels": [_level_block(run, prefix, attr, lv, s, methods, metric_order, titles, top_k)
                       for lv in compared],
            "trajectories": _trajectories(run, prefix, attr, methods, _ladder_text(run, ladder))}


# ---------------------------------------------------------------- methods status and provenance

def _judges_table(run: Run, prefix: str) -> list[Table]:
    """Per target: its independent judge (or that none exists offline) and the trainer-judge Pearson r on
    all the run's originals, from measurements.parquet (R.<attr>, J.<attr>)."""
    judges = run.manifest.get("judges")
    if not isinstance(judges, dict) or not judges:
        return []
    path, trainer = run.path / "measurements.parquet", _text((run.manifest.get("instruments") or {}).get("attributes"))
    rows = []
    for attr, spec in judges.items():
        if not spec:
            rows.append([Cell(attr, th=True), Cell(f"no independent judge offline (only {trainer} measures it)"),
                         Cell("–", num=True), Cell("–", num=True), Cell("–")])
            continue
        r, n = float("nan"), 0
        try:
            m = pd.read_parquet(path, columns=["method", f"R.{attr}", f"J.{attr}"])
            o = m[m.method == "original"][[f"R.{attr}", f"J.{attr}"]].dropna().to_numpy(float)
            n = len(o)
            if n > 2 and o.std(0).min() > 0:
                r = float(np.corrcoef(o[:, 0], o[:, 1])[0, 1])
        except (OSError, ValueError, KeyError, ImportError):
            pass   # no measurements file (or an older run): the judge is still named
        v = _validity_row(run, attr, "judge")
        rows.append([Cell(attr, th=True), Cell(_text(spec), cls="mono"), Cell(fmt(r), num=True),
                     Cell(str(n) if n else "–", num=True),
                     Cell(f"{v.status}: {auc_text(v)}" if v is not None else "not measured")])
    return [list_table(f"{prefix}judges", f"Independent judges (trainer: {trainer})",
                       ["attribute", "judge", "r with the trainer on the originals", "n",
                        "the judge against human labels (validity.csv)"], rows, "no judges")]


def _setup(run: Run, prefix: str) -> list[Table]:
    status, fits = [], []
    for m, st in _status(run).items():
        ok = st.get("status") == "ok"
        per = st.get("fits") if isinstance(st.get("fits"), dict) else {}
        rows = [(seed, a, f) for seed, by_attr in sorted(per.items(), key=lambda kv: (len(str(kv[0])), str(kv[0])))
                if isinstance(by_attr, dict) for a, f in by_attr.items() if isinstance(f, dict)]
        secs = [f["fit_seconds"] for _, _, f in rows if isinstance(f.get("fit_seconds"), (int, float))]
        cached = sum(bool(f.get("cache_hit")) for _, _, f in rows)
        summary = (f"{len(rows)} fit(s) over {len({s for s, _, _ in rows})} seed(s), {cached} cached, "
                   f"{fmt(sum(secs))} s" if rows else "")
        status.append([Cell(m, th=True), Cell(_text(st.get("status")), cls="ok" if ok else "failed"),
                       Cell(_text(st["stage"]) if "stage" in st else ""), Cell(summary),
                       Cell(_text(st["error"]) if "error" in st else "", cls="error" if not ok else "",
                            more=_text(st["traceback"]) if st.get("traceback") else "")])
        for seed, a, f in rows:
            sec = f.get("fit_seconds")
            fits.append([Cell(m, th=True), Cell(str(seed), num=True), Cell(a),
                         Cell(fmt(sec) if isinstance(sec, (int, float)) else "–", num=True),
                         Cell("yes" if f.get("cache_hit") else "no"), Cell(_text(f.get("artifact")), cls="mono")])
    cfg = {k: _text(v) for k, v in run.config.items()}
    cfg |= {f"seeds.{k}": _text(v) for k, v in (run.manifest.get("seeds") or {}).items()}
    keys = _ordered([k for k in CONFIG_FIRST if k in cfg], cfg)
    inst = {k: _text(v) for k, v in (run.manifest.get("instruments") or {}).items()}
    kinds = {k: _text(v) for k, v in (run.manifest.get("attribute_kinds") or {}).items()}
    vers = {k: _text(v) for k, v in (run.manifest.get("versions") or {}).items()}
    assets = []
    for a in run.manifest.get("assets") or []:
        a = a if isinstance(a, dict) else {"name": a}
        sha = str(a.get("sha256") or "")
        assets.append([Cell(_text(a.get("name")), th=True), Cell(_text(a.get("file"))), Cell(_text(a.get("origin"))),
                       Cell(_text(a.get("licence"))), Cell(sha[:12] or "–", cls="mono")])
    tables = [
        list_table(f"{prefix}status", "Methods", ["method", "status", "stage", "fits", "error"], status,
                   "no methods listed"),
        list_table(f"{prefix}fits", "Fits per method, fit seed and attribute",
                   ["method", "fit seed", "attribute", "fit s", "cached", "artifact"], fits, "no fits recorded",
                   collapsed=True),
        key_value_table(f"{prefix}config", "Configuration", keys, cfg),
        key_value_table(f"{prefix}instruments", "Instruments per role", list(inst), inst, "role"),
        key_value_table(f"{prefix}kinds", "How each target attribute is measured", list(kinds), kinds, "attribute"),
        *_judges_table(run, prefix),
        key_value_table(f"{prefix}versions", "Package versions", list(vers), vers, "package"),
        list_table(f"{prefix}assets", "Asset provenance", ["asset", "file", "origin", "licence", "sha256"], assets,
                   "no assets listed", collapsed=True),
    ]
    # anything else the manifest records (platform, weight fingerprints, ...), one level flattened
    extra = {}
    for k, v in run.manifest.items():
        if k not in KNOWN_MANIFEST:
            extra |= {(f"{k}.{sub}" if sub else k): _text(x) for sub, x in (v.items() if isinstance(v, dict)
                                                                              else [("", v)])}
    if extra:
        tables.append(key_value_table(f"{prefix}provenance", "More provenance", list(extra), extra, "field",
                                      collapsed=True))
    return tables


# ---------------------------------------------------------------- the whole report

def _run_context(run: Run, prefix: str, top_k: int) -> dict:
    cfg = run.config
    attrs = _ordered(cfg.get("attrs") or [], run.summary.attr, run.ranking.attr)
    methods = _ordered([run.reference], cfg.get("methods") or [], run.summary.method, run.ranking.method)
    metric_order = _ordered(cfg.get("metrics") or [], run.summary.metric)
    metric_order = _ordered(["edit"] if "edit" in metric_order else [], metric_order)   # the edit first: always beside
    titles = _metric_titles(run, _ordered(metric_order, run.comparison.metric))
    failed = [f"{m} ({st.get('status')}" + (f" at {st['stage']}" if st.get("stage") else "") + ")"
              for m, st in _status(run).items() if st.get("status") != "ok"]
    answers = [_answer(run, prefix, a, methods) for a in attrs]
    sections = [_attr_section(run, prefix, a, methods, metric_order, titles, top_k) for a in attrs]
    setup = _setup(run, prefix)
    tables = ([b["table"] for a in answers for b in a["blocks"] if b["table"]]
              + [s["seeds"] for s in sections if s["seeds"]]
              + [t for s in sections for lv in s["levels"] for t in lv["tables"]]
              + [lv["comparison"] for s in sections for lv in s["levels"] if lv["comparison"]] + setup)
    images = (sum(bool(s["figure"]) for s in sections)
              + sum(bool(t["uri"]) for s in sections for t in s["trajectories"]))
    seconds = run.manifest.get("seconds")
    return {"id": run.id, "prefix": prefix, "line": _settings_line(run), "created": _text(run.manifest.get("created")),
            "seconds": fmt(seconds) if isinstance(seconds, (int, float)) else "", "failed": failed,
            "absent": run.absent, "answers": answers, "sections": sections, "setup": setup,
            "n_tables": len(tables), "n_images": images}


def build_context(runs: list[Run], top_k: int = TOP_K) -> dict:
    multi = len(runs) > 1
    ctx = [_run_context(r, f"r{i + 1}-" if multi else "", top_k) for i, r in enumerate(runs)]
    return {"runs": ctx, "ids": [r.id for r in runs], "multi": multi, "ranking_note": RANKING_NOTE,
            "n_tables": sum(c["n_tables"] for c in ctx), "n_images": sum(c["n_images"] for c in ctx)}


def _environment() -> jinja2.Environment:
    # autoescape=True, not select_autoescape: the template's name ends in .j2, not .html
    return jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                              autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                              lstrip_blocks=True, keep_trailing_newline=True)


def render_report(run_dirs: list[Path], out: Path, *, top_k: int = TOP_K) -> Path:
    """Write the HTML report of one run, or several one after another, to ``out``; returns ``out``."""
    if not run_dirs:
        raise BenchError("give at least one run folder")
    runs = [load_run(Path(d)) for d in run_dirs]
    html = _environment().get_template("report.html.j2").render(**build_context(runs, top_k))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    return out
