"""The metric contract: a batched measure part (torch, on the device) and a summarise part (pandas).

A run edits every shared sample to the target attribute's 0 and 1 (sets X0 and X1) and measures
the originals, X0 and X1 once with the shared instruments. A metric then sees one
:class:`EditSet` per (method, attribute):

- ``measure(edit_set) -> {column: tensor [N]}``: per-sample numbers (on the instruments' device);
  the run stores them in ``samples.parquet`` as ``<metric>.<column>``.
- ``quantities(attr, columns) -> [Quantity]``: what the metric reports. Every quantity is a
  function of column *means*, so one bootstrap over samples gives its 95% interval and the same
  resamples give paired method-vs-baseline differences (:mod:`bench.stats`).
- ``summarise(frame, boot)``: the pandas part; the default evaluates the quantities with their
  intervals. Override it for anything that is not a function of means.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .registry import configure


@dataclass
class EditSet:
    """Instrument outputs of the originals and of the edits of one (method, attribute), sample-aligned.

    ``original``, ``x0`` and ``x1`` map an output name to a tensor [N, ...]:
    ``attributes`` [N, 40] (CelebA order, NaN where R does not score), ``emotion`` [N, 7] (DeepFace
    order: angry, disgust, fear, happy, sad, surprise, neutral; probabilities), ``landmarks``
    [N, 68, 2] (x, y as fractions of the image), ``descriptor`` [N, 128] (face-api identity).
    ``reached0``/``reached1`` [N] bool say whether the matched search reached the target;
    ``strength0``/``strength1`` [N] are the method's own strengths used. ``instruments`` names the
    instrument behind each output (``{"emotion": "fer-emotion", ...}``).
    """

    method: str
    attr: str
    original: dict
    x0: dict
    x1: dict
    reached0: torch.Tensor
    reached1: torch.Tensor
    strength0: torch.Tensor
    strength1: torch.Tensor
    instruments: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.reached0.shape[0])


@dataclass(frozen=True)
class Quantity:
    """One reported number: ``fn(means)`` where ``means[column]`` is the mean of a per-sample column
    (a float, or an array of bootstrap replicates; ``fn`` must work on both)."""

    name: str                         # unique within the metric, e.g. "r_Smiling"
    fn: Callable[[dict], np.ndarray]
    columns: tuple[str, ...]          # the per-sample columns fn reads
    label: str = ""                   # human text for the report
    better: str | None = None         # "lower", "higher" or None (no direction)
    table: str = ""                   # which report table shows it (e.g. "I-III", "IV", "V")
    per_sample: str | None = None     # set when the quantity is the plain mean of this column:
                                      # the paired test is then a Wilcoxon signed-rank test on it


def mean_of(column: str, name: str | None = None, **kw) -> Quantity:
    """The quantity "mean of a per-sample column"."""
    return Quantity(name or column, lambda m, c=column: m[c], (column,), per_sample=column, **kw)


class Metric(abc.ABC):
    """Subclasses set ``name``, ``title`` and ``needs`` and implement ``measure`` and ``quantities``."""

    name: str = "metric"
    title: str = ""                   # heading of its report section
    needs: tuple[str, ...] = ()       # instrument outputs read from the EditSet
    config: dict = {}

    def __init__(self, **overrides):
        self.config = configure("metric", self.name, type(self).config, overrides)

    @abc.abstractmethod
    def measure(self, s: EditSet) -> dict[str, torch.Tensor]:
        """Per-sample columns [N] for one (method, attribute); batched torch, no grad needed."""

    @abc.abstractmethod
    def quantities(self, attr: str, columns: list[str]) -> list[Quantity]:
        """What to report for target ``attr``, given the columns ``measure`` produced."""

    def summarise(self, frame: pd.DataFrame, attr: str, boot) -> pd.DataFrame:
        """frame: this metric's per-sample columns (unprefixed) of one (method, attribute).

        Returns one row per quantity: quantity, label, value, lo, hi, n, better, table."""
        from .stats import evaluate

        rows = []
        for q in self.quantities(attr, list(frame.columns)):
            value, lo, hi = evaluate(q, frame, boot)
            rows.append({"quantity": q.name, "label": q.label or q.name, "value": value, "lo": lo, "hi": hi,
                         "n": len(frame), "better": q.better or "", "table": q.table})
        return pd.DataFrame(rows)
