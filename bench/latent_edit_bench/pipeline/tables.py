"""A finished run folder as Python objects: its manifest and every table, for notebooks and the API.

The report (``latent_edit_bench.reports``) reads the same files; this reader is for analysis, so the
columns keep pandas' types (numbers as numbers)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from latent_edit_bench.errors import BenchError

CSV_TABLES = ("summary", "seeds", "comparison", "ranking", "power", "validity")
PARQUET_TABLES = ("samples", "measurements")


def load_run(folder) -> dict:
    """{"manifest": dict, "summary": DataFrame, "ranking": ..., "samples": ..., ...} of a run folder.

    Tables the folder does not have (an older run, or metrics not asked for) are absent from the dict;
    a folder without manifest.json and summary.csv is not a finished run (BenchError)."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file() or not (folder / "summary.csv").is_file():
        raise BenchError(f"{folder} is not a finished run folder (it needs manifest.json and summary.csv); "
                         f"`bench run` finishes or resumes it")
    try:
        out: dict = {"manifest": json.loads((folder / "manifest.json").read_text())}
    except json.JSONDecodeError as e:
        raise BenchError(f"{folder / 'manifest.json'} is not valid JSON ({e}); rerun `bench run` to rewrite it") from None
    for name in CSV_TABLES:
        path = folder / f"{name}.csv"
        if path.is_file():
            out[name] = pd.read_csv(path, keep_default_na=False, na_values=[""])
    for name in PARQUET_TABLES:
        path = folder / f"{name}.parquet"
        if path.is_file():
            out[name] = pd.read_parquet(path)
    return out
