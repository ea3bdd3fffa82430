"""A finished run folder as Python objects: its manifest and every table, for notebooks and the API.

The report (``latent_edit_bench.reports``) reads the same files; this reader is for analysis, so the
columns keep pandas' types (numbers as numbers)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from latent_edit_bench.errors import BenchError, CorruptFile
from latent_edit_bench.fs import read_json

CSV_TABLES = ("summary", "seeds", "comparison", "ranking", "power", "validity")
PARQUET_TABLES = ("samples", "measurements")


def verify_tables(folder, manifest: dict, names=None) -> None:
    """BenchError naming a table (of ``names``, default all) that is not the file the run wrote: gone, or
    its sha256 differs from the one manifest.json's ``tables`` records. A folder from before the manifest
    recorded them is read as it is."""
    from latent_edit_bench.assets import sha256_file

    folder = Path(folder)
    fix = f"the `bench run` command that made it, with --out {folder}, rewrites it from the run's units"
    for name, digest in (manifest.get("tables") or {}).items():
        if names is not None and name not in names:
            continue
        f = folder / name
        if not f.is_file():
            raise BenchError(f"{f} is missing; {fix}")
        if sha256_file(f) != digest:
            raise BenchError(f"{f} is not the file the run wrote (its sha256 differs from manifest.json's); {fix}")


def load_run(folder) -> dict:
    """{"manifest": dict, "summary": DataFrame, "ranking": ..., "samples": ..., ...} of a run folder.

    Tables the folder does not have (an older run, or metrics not asked for) are absent from the dict;
    a folder without manifest.json and summary.csv is not a finished run (BenchError)."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file() or not (folder / "summary.csv").is_file():
        raise BenchError(f"{folder} is not a finished run folder (it needs manifest.json and summary.csv); "
                         f"`bench run` finishes or resumes it")
    try:
        out: dict = {"manifest": read_json(folder / "manifest.json")}
    except CorruptFile as e:
        raise BenchError(f"{e}; rerun `bench run` to rewrite it") from None
    verify_tables(folder, out["manifest"])
    for name in CSV_TABLES:
        path = folder / f"{name}.csv"
        if path.is_file():
            out[name] = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for name in PARQUET_TABLES:
        path = folder / f"{name}.parquet"
        if path.is_file():
            out[name] = pd.read_parquet(path)
    return out
