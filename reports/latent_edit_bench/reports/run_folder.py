"""Reading and checking one run folder (docs/run-format.md) into a :class:`Run`, the report's only input.

ranking.csv's ``p_holm`` is read as the pipeline wrote it; only a folder from before it was written goes
through :func:`holm_for_older_ranking`, the compatibility path that adjusts the same family here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from latent_edit_bench.errors import BenchError, CorruptFile
from latent_edit_bench.fs import read_json
from latent_edit_bench.pipeline import power
from latent_edit_bench.pipeline.analysis import (COMPARISON_COLUMNS, RANKING_COLUMNS, SEEDS_COLUMNS, SUMMARY_COLUMNS,
                                                 comparison_p_holm, ranking_p_holm)
from latent_edit_bench.pipeline.tables import verify_tables
from latent_edit_bench.pipeline.validity import VALIDITY_COLUMNS

TEXT_COLUMNS = {"attr", "method", "metric", "quantity", "label", "better", "table", "test", "reference",
                "direction", "status", "kind", "verdict", "trainer_validity", "role", "instrument", "labels"}
# summary.csv is the one file without which there is nothing to show; the others may be absent
# (a run stopped before its comparison, an old tool): the report then says so where they would be
OPTIONAL = {"seeds.csv": SEEDS_COLUMNS, "comparison.csv": COMPARISON_COLUMNS, "ranking.csv": RANKING_COLUMNS}
LATER_COLUMNS = ("p_holm", "verdict", "mde_rel", "trainer_validity")   # ranking.csv columns an older folder lacks
PLAN_EFFECT = 0.10     # the first screen says what N, K would resolve the observed difference and this one


@dataclass
class Run:
    """One run folder as read: its manifest and CSVs (absent optional ones empty, named in ``absent``)."""

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

    @property
    def statuses(self) -> dict:
        """method -> its manifest entry as a dict (an older manifest records a bare status word)."""
        methods = self.manifest.get("methods") or {}
        return {m: st if isinstance(st, dict) else {"status": st} for m, st in methods.items()}


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


def holm_for_older_ranking(ranking: pd.DataFrame) -> pd.DataFrame:
    """Compatibility path for a run folder from before ranking.csv carried ``p_holm`` (the column absent or
    empty): its ranked rows, the first screen's one family, Holm-adjusted here as the pipeline adjusts them.
    A folder that has the column is returned as it is: the report reads the pipeline's numbers, never
    recomputes them."""
    if "p_holm" in ranking and ranking.p_holm.notna().any():
        return ranking
    return ranking.assign(p_holm=ranking_p_holm(ranking))


def load_run(path: Path) -> Run:
    """Read and check one run folder; BenchError naming the problem when it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise BenchError(f"run folder {str(path)!r} does not exist (give a folder written by `bench run`)")
    if not (path / "manifest.json").is_file():
        raise BenchError(f"{str(path)!r} is not a run folder: it has no manifest.json "
                         f"(a run folder holds manifest.json, summary.csv, ranking.csv, ...)")
    resume = f"the `bench run` command that made it, with --out {path}, resumes it and writes the report"
    if not (path / "summary.csv").is_file():   # started, not finished: the units are kept
        raise BenchError(f"{str(path)!r} is a run that has not finished (no summary.csv yet); {resume} "
                         f"(`bench status {path}` shows what is left)")
    try:
        manifest = read_json(path / "manifest.json")
    except CorruptFile as e:
        raise BenchError(f"{e}; {resume}") from None
    if not isinstance(manifest, dict):
        raise BenchError(f"{path / 'manifest.json'} must hold a JSON object")
    verify_tables(path, manifest)
    summary = _read_csv(path / "summary.csv", SUMMARY_COLUMNS)
    frames, absent = {}, []
    for name, columns in OPTIONAL.items():
        if (path / name).is_file():
            frames[name] = _read_csv(path / name, columns)
        else:
            frames[name], absent = _empty(columns), absent + [name]
    comparison = frames["comparison.csv"]
    if not comparison.p_holm.notna().any():   # a folder from before comparison.csv carried p_holm
        comparison["p_holm"] = comparison_p_holm(comparison)
    return Run(str(manifest.get("id") or path.name), path, manifest, summary, frames["seeds.csv"],
               comparison, holm_for_older_ranking(frames["ranking.csv"]), absent, _plans(path),
               _read_csv(path / "validity.csv", VALIDITY_COLUMNS) if (path / "validity.csv").is_file() else None)


def _plans(path: Path) -> dict:
    """The first screen's power and plans (power.csv + units.json), {} for a folder without power.csv."""
    if not (path / "power.csv").is_file():
        return {}
    rows = power.plan_run(path, PLAN_EFFECT)
    return {(r["attr"], r["direction"], r["method"]): r for r in rows}


def ordered(*lists) -> list:
    """The values of several lists, each once, in order of first appearance."""
    return list(dict.fromkeys(x for xs in lists for x in xs if x != ""))    # "": a CSV's empty cell
