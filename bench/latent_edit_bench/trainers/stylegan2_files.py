"""The files of a training folder: the atomic checkpoint, and the CSV logs a resume truncates to it."""

from __future__ import annotations

import csv
import os
import pickle
from pathlib import Path

import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import atomic

CHECKPOINT = "checkpoint.pt"
# g_loss is the paired (distillation) loss while phase is "distil", the non-saturating loss after
LOG_FIELDS = ["step", "kimg", "d_loss", "g_loss", "r1", "pl", "real_score", "fake_score", "sec_per_step", "phase"]
QUALITY_FIELDS = ["step", "kid", "kid_std", "fid", "floor"]


def atomic_save(obj, path: Path) -> None:
    """torch.save through the project's atomic write: a kill leaves the old file or the new one."""
    with atomic(path) as tmp:
        torch.save(obj, tmp)


def append_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path``, writing its header first if the file is new."""
    new = not path.exists()
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        if new:
            w.writeheader()
        w.writerows(rows)


def truncate_csv(path: Path, max_step: int) -> None:
    """Drop rows written after the checkpoint a killed run is resumed from (they will be redone)."""
    if not path.exists():
        return
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
        fields = rows and list(rows[0]) or None
    keep = [r for r in rows if int(r["step"]) <= max_step]
    if len(keep) != len(rows) and fields:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(keep)
        os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """A training checkpoint, tensors and plain data only (``weights_only=True``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise BenchError(f"cannot read {path} ({e}); delete it or pass resume=False") from None
