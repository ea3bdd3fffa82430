"""The HTML report of one or more run folders (docs/run-format.md): the sections assembled into one page.

``render_report([run_dir, ...], out)`` reads each run folder (run_folder.py) and writes one self-contained
HTML file: inline CSS, images as base64 data URIs, no JavaScript, no external URL. Several runs are
rendered one after another (each compares its methods at its own levels). Per run, top to bottom: the
answer (first_screen.py), then per attribute its curves, per-fit-seed estimates, every metric's tables
and the paired comparisons, its trajectories (attribute.py, figures.py, result_tables.py); then methods
status and provenance (provenance.py).
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import write_text

from .attribute import attr_section
from .first_screen import RANKING_NOTE, answer
from .provenance import provenance_tables
from .run_folder import Run, load_run, ordered
from .tables import finite, fmt, fmt_level, text

__all__ = ["build_context", "load_run", "render_report"]

TOP_K = 5   # the I-III tables show each method's k largest ratios; the rest collapsed below


def _metric_titles(run: Run, names) -> dict:
    """Section titles as the run recorded them (manifest "metrics": the plugins' ``title``): the report
    reads only the run folder, so it renders where the run's metric plugins are not installed."""
    recorded = run.manifest.get("metrics") or {}
    return {n: (recorded.get(n) or {}).get("title") or n for n in names}


def _settings_line(run: Run) -> str:
    """The run's settings in one line, under its title."""
    cfg = run.config
    levels = [float(v) for v in cfg.get("levels") or [] if finite(v)]
    lv = (", ".join(f"±{v:g}" for v in levels) if levels and all(v > 0 for v in levels)
          else ", ".join(fmt_level(v) for v in levels) or "–")
    plat = run.manifest.get("platform") or {}
    where = f" · {text(plat.get('dtype'))} on {text(plat.get('device'))}" if plat.get("dtype") else ""   # older runs: none
    return (f"backbone {text(cfg.get('backbone'))} · N = {text(cfg.get('n'))} · fit seeds K = {run.fit_seeds} · "
            f"levels {lv} · tol {text(cfg.get('tol'))} · min_reach {text(cfg.get('min_reach'))} · "
            f"reference {run.reference}{where}")


def _run_context(run: Run, prefix: str, top_k: int) -> dict:
    """Everything the template shows of one run; ``prefix`` keeps element ids unique across runs."""
    cfg = run.config
    attrs = ordered(cfg.get("attrs") or [], run.summary.attr, run.ranking.attr)
    methods = ordered([run.reference], cfg.get("methods") or [], run.summary.method, run.ranking.method)
    metric_order = ordered(cfg.get("metrics") or [], run.summary.metric)
    metric_order = ordered(["edit"] if "edit" in metric_order else [], metric_order)   # the edit first: always beside
    titles = _metric_titles(run, ordered(metric_order, run.comparison.metric))
    failed = [f"{m} ({st.get('status')}" + (f" at {st['stage']}" if st.get("stage") else "") + ")"
              for m, st in run.statuses.items() if st.get("status") != "ok"]
    answers = [answer(run, prefix, a, methods) for a in attrs]
    sections = [attr_section(run, prefix, a, methods, metric_order, titles, top_k) for a in attrs]
    setup = provenance_tables(run, prefix)
    tables = ([b["table"] for a in answers for b in a["blocks"] if b["table"]]
              + [s["seeds"] for s in sections if s["seeds"]]
              + [t for s in sections for lv in s["levels"] for t in lv["tables"]]
              + [lv["comparison"] for s in sections for lv in s["levels"] if lv["comparison"]] + setup)
    images = (sum(bool(s["figure"]) for s in sections)
              + sum(bool(t["uri"]) for s in sections for t in s["trajectories"]))
    seconds = run.manifest.get("seconds")
    return {"id": run.id, "prefix": prefix, "line": _settings_line(run), "created": text(run.manifest.get("created")),
            "seconds": fmt(seconds) if isinstance(seconds, (int, float)) else "", "failed": failed,
            "absent": run.absent, "answers": answers, "sections": sections, "setup": setup,
            "n_tables": len(tables), "n_images": images}


def build_context(runs: list[Run], top_k: int = TOP_K) -> dict:
    """The template's context: each run's, and the counts the page states."""
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
    return write_text(out, html)
