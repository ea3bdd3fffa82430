"""Instrument validity: how well each instrument sees an attribute on human-labelled faces (no torch here).

A label file (format: docs/validity.md) names faces, by backbone sample index or by image path, and
gives per CelebA attribute a person's call: 1 (present), 0 (absent), ``unsure`` (the face does not
settle it) or blank (not labelled). Every instrument that scores an attribute, the trainer R and the
judge, is read against the clear calls only:

    AUC       P(score of a labelled-present face > score of a labelled-absent face), ties counting 1/2
              (the Mann-Whitney statistic; 0.5 = no better than chance)
    interval  95% score interval for the AUC: Newcombe (2006, Stat Med 25:559, method 5), the set of
              theta with (theta - AUC)^2 <= z^2 var(theta), var the Hanley-McNeil variance with both group
              sizes replaced by their mean N* = (n_pos + n_neg) / 2:
                  var(theta) = theta (1 - theta) / (n_pos n_neg) * [(2N* - 1) - (3N* - 3) / ((2 - theta)(1 + theta))]
              Unlike DeLong or a bootstrap it does not collapse to a point when 3 positives all score
              above every negative (AUC 1 on 3 faces is not proof), and it stays inside [0, 1].
    status    "sees" where the interval's lower bound > 0.5; "not shown" where it reaches 0.5; "no labels"
              where the attribute has no clear positive or no clear negative (or no label file matches)

Nothing is fitted on the labels: they are read once, to score instruments whose constants were fixed
before (an instrument tuned on these labels and scored on them would read better than it is).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError

VALIDITY_COLUMNS = ["attr", "role", "instrument", "auc", "lo", "hi", "n_pos", "n_neg", "n_unsure", "unsure_share",
                    "status", "labels"]
SEES, NOT_SHOWN, NO_LABELS = "sees", "not shown", "no labels"
Z95 = 1.959963984540054
KEYS = ("sample", "image")                     # what identifies a face: a backbone sample index, or a file
HEADER_KEYS = ("backbone", "weights_sha256", "seed", "n", "source", "licence", "notes")
SAMPLE_HEADER = ("backbone", "weights_sha256", "seed", "n")   # required where faces are sample indices
UNSURE = "unsure"
LABEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "labels"   # the built-in label files


# ---------------------------------------------------------------- statistics

def auc(pos, neg) -> float:
    """Mann-Whitney AUC of scores ``pos`` (labelled present) against ``neg`` (absent); NaN if either is empty."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not len(pos) or not len(neg):
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


def auc_variance(theta: float, n_pos: int, n_neg: int) -> float:
    """Newcombe's method-5 variance of an AUC of ``theta`` (module docstring)."""
    n_star = (n_pos + n_neg) / 2
    return (theta * (1 - theta) / (n_pos * n_neg)
            * ((2 * n_star - 1) - (3 * n_star - 3) / ((2 - theta) * (1 + theta))))


def auc_interval(a: float, n_pos: int, n_neg: int, z: float = Z95) -> tuple[float, float]:
    """(lo, hi): the score interval {theta: (theta - a)^2 <= z^2 var(theta)}, its ends found by bisection."""
    if not (n_pos and n_neg) or not math.isfinite(a):
        return float("nan"), float("nan")

    def outside(theta):   # > 0 where theta lies outside the interval
        return (theta - a) ** 2 - z * z * auc_variance(theta, n_pos, n_neg)

    def end(inside: float, out: float) -> float:
        if outside(out) <= 0:     # the interval reaches 0 or 1 itself
            return out
        for _ in range(100):      # bisection to float precision: 2^-100 of [0, 1]
            mid = (inside + out) / 2
            inside, out = (mid, out) if outside(mid) <= 0 else (inside, mid)
        return (inside + out) / 2

    return end(a, 0.0), end(a, 1.0)


def status(lo: float, n_pos: int, n_neg: int) -> str:
    if not (n_pos and n_neg):
        return NO_LABELS
    return SEES if math.isfinite(lo) and lo > 0.5 else NOT_SHOWN


def score_row(attr: str, role: str, instrument: str, scores, labels: "Labels") -> dict:
    """One row of validity.csv: ``scores`` [faces of ``labels``, in its order] read against ``attr``'s calls."""
    y = labels.values[attr]
    scores = np.asarray(scores, float)
    ok = np.isfinite(scores)
    pos, neg = scores[ok & (y == 1)], scores[ok & (y == 0)]
    n_unsure = int(labels.unsure[attr].sum())
    called = int(np.isfinite(y).sum()) + n_unsure
    a = auc(pos, neg)
    lo, hi = auc_interval(a, len(pos), len(neg))
    return {"attr": attr, "role": role, "instrument": instrument, "auc": a, "lo": lo, "hi": hi,
            "n_pos": len(pos), "n_neg": len(neg), "n_unsure": n_unsure,
            "unsure_share": n_unsure / called if called else float("nan"),
            "status": status(lo, len(pos), len(neg)), "labels": labels.name}


def no_label_row(attr: str, role: str, instrument: str) -> dict:
    return {"attr": attr, "role": role, "instrument": instrument, "auc": np.nan, "lo": np.nan, "hi": np.nan,
            "n_pos": 0, "n_neg": 0, "n_unsure": 0, "unsure_share": np.nan, "status": NO_LABELS, "labels": ""}


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=VALIDITY_COLUMNS)


def trainer_status(validity: pd.DataFrame) -> dict:
    """{attr: status of its trainer row} (what analysis.rank() reads)."""
    t = validity[validity.role == "trainer"]
    return dict(zip(t.attr, t.status))


def auc_text(row) -> str:
    """"0.95 [0.84, 0.99], n = 12+/13-" of one validity row; the status alone where there are no labels."""
    if row["status"] == NO_LABELS or not math.isfinite(float(row["auc"])):
        return "no labels" if not (row["n_pos"] or row["n_neg"]) else \
            f"no labels (only {int(row['n_pos'])}+/{int(row['n_neg'])}−)"
    return (f"AUC {float(row['auc']):.2f} [{float(row['lo']):.2f}, {float(row['hi']):.2f}], "
            f"n = {int(row['n_pos'])}+/{int(row['n_neg'])}−")


# ---------------------------------------------------------------- label files

@dataclass
class Labels:
    """A parsed label file: faces in file order, per attribute its calls (1.0, 0.0, NaN) and where 'unsure'."""

    path: Path
    meta: dict                 # header keys (backbone, weights_sha256, seed, n, source, ...)
    key: str                   # "sample" or "image"
    faces: list                # sample indices (int) or image paths (Path, resolved against the file's folder)
    values: dict = field(default_factory=dict)   # attr -> float array: 1, 0 or NaN (unsure or blank)
    unsure: dict = field(default_factory=dict)   # attr -> bool array

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def attrs(self) -> list[str]:
        return list(self.values)


def read_labels(path: str | Path) -> Labels:
    """Parse and check a label file (docs/validity.md); BenchError naming the file and line otherwise."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"label file {str(path)!r} not found (format: docs/validity.md)")
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (UnicodeDecodeError, OSError) as e:
        raise BenchError(f"{path}: not a readable UTF-8 text file ({e})") from None

    def fail(line: int, what: str):
        raise BenchError(f"{path}:{line}: {what} (format: docs/validity.md)")

    meta, body = {}, []
    for i, line in enumerate(lines, 1):
        if line.startswith("#"):
            key, colon, value = line[1:].partition(":")
            key = key.strip()
            if not body and colon and key and " " not in key:   # '# key: value' above the header row
                if key not in HEADER_KEYS:
                    fail(i, f"unknown header key {key!r}; valid: {', '.join(HEADER_KEYS)}")
                meta[key] = value.strip()
            # other comment lines are free text
        elif line.strip():
            body.append((i, line))
    if not body:
        fail(len(lines) or 1, "no header row: expected e.g. 'sample,Male,Smiling,Bald'")
    (head_line, head), rows = body[0], body[1:]
    columns = [c.strip() for c in next(csv.reader([head]))]
    key = columns[0] if columns else ""
    if key not in KEYS:
        fail(head_line, f"the first column must be 'sample' (a backbone sample index) or 'image' (a file path), "
                        f"got {key!r}")
    attrs = columns[1:]
    for c in attrs:
        if c not in CELEBA_ATTRIBUTES:
            fail(head_line, f"unknown column {c!r}: label columns are CelebA attribute names, "
                            f"e.g. Male, Smiling, Bald (all: bench list)")
    if len(set(attrs)) != len(attrs):
        fail(head_line, f"a column is named twice: {', '.join(attrs)}")
    if not attrs:
        fail(head_line, "no attribute column: add at least one CelebA attribute, e.g. 'sample,Male'")
    n = None
    if key == "sample":
        missing = [k for k in SAMPLE_HEADER if k not in meta]
        if missing:
            fail(1, "faces given by sample index need the header line(s) "
                    + ", ".join(f"'# {k}: ...'" for k in missing) + " to say which faces they are")
        for k in ("seed", "n"):
            try:
                meta[k] = int(meta[k])
            except ValueError:
                fail(1, f"header '{k}: {meta[k]}' is not a whole number")
        n = meta["n"]
        if n < 1:
            fail(1, f"header 'n: {n}' must be at least 1")
    faces, calls, seen = [], [], {}
    for i, line in rows:
        cells = [c.strip() for c in next(csv.reader([line]))]
        if len(cells) != len(columns):
            fail(i, f"{len(cells)} cells, the header has {len(columns)}")
        face = cells[0]
        if key == "sample":
            try:
                face = int(face)
            except ValueError:
                fail(i, f"sample {cells[0]!r} is not a whole number")
            if not 0 <= face < n:
                fail(i, f"sample {face} is out of range: the file labels samples 0..{n - 1} (n: {n})")
        else:
            if not face:
                fail(i, "empty image path")
            face = (path.parent / face).resolve()
        if face in seen:
            fail(i, f"{cells[0]} is labelled twice (first on line {seen[face]})")
        seen[face] = i
        row = []
        for attr, v in zip(attrs, cells[1:]):
            v = v.lower()
            if v not in ("1", "0", UNSURE, ""):
                fail(i, f"{attr} = {v!r}: values are 1, 0, unsure, or blank (not labelled)")
            row.append(v)
        faces.append(face)
        calls.append(row)
    if not faces:
        fail(head_line, "no labelled faces below the header")
    calls = np.array(calls, dtype=object).reshape(len(faces), len(attrs))
    values = {a: np.where(calls[:, j] == "1", 1.0, np.where(calls[:, j] == "0", 0.0, np.nan))
              for j, a in enumerate(attrs)}
    unsure = {a: calls[:, j] == UNSURE for j, a in enumerate(attrs)}
    return Labels(path, meta, key, faces, values, unsure)


def builtin_label_files() -> list[Path]:
    return sorted(LABEL_DIR.glob("*.csv"))


def builtin_labels(fingerprint: str) -> Labels | None:
    """The built-in label file of the backbone whose weights fingerprint (contracts.artifacts.module_fingerprint,
    manifest.json's weights_sha256.backbone.sha256) is ``fingerprint``; None where there is none."""
    for p in builtin_label_files():
        labels = read_labels(p)
        if labels.meta.get("weights_sha256") == fingerprint:
            return labels
    return None
