"""The metric contract: a batched measure part (torch, on the device) and quantities (functions of means).

A run drives every shared original to a ladder of achieved changes of the target attribute
(docs/run-format.md) and measures the originals and every edit once with the shared instruments. A
metric then sees one :class:`EditSet` per (method, attribute, fit seed, level): the originals
("before") and their edits at that level ("after"), sample-aligned.

- ``measure(edit_set) -> {column: tensor [N]}``: per-sample numbers (on the instruments' device);
  the run stores them in ``samples.parquet`` as ``<metric>.<column>``.
- ``quantities(attr, columns) -> [Quantity]``: what the metric reports. Every quantity is a
  function of column *means*, so one two-level bootstrap (fit seeds, then samples) gives its
  interval and the same resamples give paired method-vs-reference differences (:mod:`latent_edit_bench.pipeline.stats`).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from latent_edit_bench.registry import configure


@dataclass
class EditSet:
    """Instrument outputs of the originals and of their edits, sample-aligned.

    ``original`` and ``edited`` map an output name to a tensor [N, ...]: ``attributes`` [N, 40]
    (CelebA order, NaN where R does not score), ``emotion`` [N, 7] (DeepFace order: angry, disgust,
    fear, happy, sad, surprise, neutral; probabilities), ``landmarks`` [N, 68, 2] (x, y as fractions
    of the image), ``descriptor`` [N, 128] (face-api identity). ``level`` is the signed achieved
    change of R_k the edits were driven to (+ towards presence); ``reached`` [N] bool says which
    samples got there within tolerance (the run summarises only those); ``strength`` [N] is the
    method's own strength used. ``instruments`` names the instrument behind each output.
    """

    method: str
    attr: str
    original: dict
    edited: dict
    reached: torch.Tensor
    strength: torch.Tensor
    level: float = float("nan")
    seed: int = 0
    instruments: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.reached.shape[0])


@dataclass(frozen=True)
class Quantity:
    """One reported number: ``fn(means)`` where ``means[column]`` is the mean of a per-sample column
    (a float, or an array of bootstrap replicates; ``fn`` must work on both)."""

    name: str                         # unique within the metric, e.g. "r.Smiling"
    fn: Callable[[dict], np.ndarray]
    columns: tuple[str, ...]          # the per-sample columns fn reads
    label: str = ""                   # human text for the report
    better: str | None = None         # "lower", "higher" or None (no direction)
    table: str = ""                   # which report table shows it (e.g. "I-III", "IV", "V")


def mean_of(column: str, name: str | None = None, **kw) -> Quantity:
    """The quantity "mean of a per-sample column"."""
    return Quantity(name or column, lambda m, c=column: m[c], (column,), **kw)


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
        """Per-sample columns [N] for one EditSet; batched torch, no grad needed."""

    @abc.abstractmethod
    def quantities(self, attr: str, columns: list[str]) -> list[Quantity]:
        """What to report for target ``attr``, given the columns ``measure`` produced."""
