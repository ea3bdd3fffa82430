"""What a plugin's options may hold, declared beside its defaults and checked before any work.

A check is a callable ``check(value) -> str | None``: None if the value is fine, else what is wrong
("must be at least 1"). A method lists its checks in ``limits = {option: check}``; the checks of every
class in its MRO apply (a regulariser mixin brings its own), each only where the option exists, and
:func:`latent_edit_bench.registry.configure` runs them when the editor is built (``bench run`` builds
every editor before anything runs, so ``--set sefa.top_k=0`` exits 2 at once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from latent_edit_bench.errors import BenchError

Check = Callable[[object], "str | None"]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class Range:
    """A number in [lo, hi] (either end open or absent)."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    integer: bool = False

    def __call__(self, v) -> str | None:
        if not _number(v) or (self.integer and not isinstance(v, int)):
            return f"must be {'an integer' if self.integer else 'a number'} {self}"
        if not math.isfinite(v):
            return "must be finite"
        low = self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo)
        high = self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi)
        return f"must be {self}" if low or high else None

    def __str__(self) -> str:
        if self.lo is not None and self.hi is not None:
            return f"in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        if self.lo is not None:
            return f"{'above' if self.lo_open else 'at least'} {self.lo:g}"
        if self.hi is not None:
            return f"{'below' if self.hi_open else 'at most'} {self.hi:g}"
        return "finite"


def at_least(n: int) -> Range:
    """An integer count of at least ``n``."""
    return Range(lo=n, integer=True)


positive = Range(lo=0, lo_open=True)
non_negative = Range(lo=0)
fraction = Range(lo=0, hi=1, hi_open=True)   # [0, 1), e.g. Adam's betas


def optional(check: Check) -> Check:
    """None, or a value ``check`` accepts."""
    return lambda v: None if v is None else check(v)


def each(check: Check, length: int | None = None) -> Check:
    """A list whose every item ``check`` accepts (of ``length`` items, if given)."""
    def run(v):
        if not isinstance(v, (list, tuple)) or (length is not None and len(v) != length):
            return f"must be a list of {length or 'any number of'} items"
        bad = [(i, p) for i, p in ((i, check(x)) for i, x in enumerate(v)) if p]
        return f"item {bad[0][0]} {bad[0][1]}" if bad else None
    return run


def values(check: Check) -> Check:
    """A mapping whose every value ``check`` accepts."""
    def run(v):
        if not isinstance(v, dict):
            return "must be a mapping"
        bad = [(k, p) for k, p in ((k, check(x)) for k, x in v.items()) if p]
        return f"entry {bad[0][0]!r} {bad[0][1]}" if bad else None
    return run


def layer_range(v) -> str | None:
    """A [lo, hi) pair of layer indices, 0 <= lo < hi (the backbone's layer count is checked at fit)."""
    if (isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            and 0 <= v[0] < v[1]):
        return None
    return "must be a [lo, hi) pair of layer indices with 0 <= lo < hi, e.g. [0, 4]"


def attribute_names(v) -> str | None:
    """A list of CelebA attribute names."""
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.errors import did_you_mean

    if not isinstance(v, (list, tuple)) or not all(isinstance(x, str) for x in v):
        return "must be a list of attribute names, e.g. [\"Smiling\"]"
    bad = [x for x in v if x not in CELEBA_ATTRIBUTES]
    return f"names unknown attribute {bad[0]!r}{did_you_mean(bad[0], CELEBA_ATTRIBUTES)}" if bad else None


# The options several methods share, under the same names: one definition of what each may hold.
TRAINING = {"steps": at_least(1), "batch_size": at_least(1), "lr": positive, "betas": each(fraction, 2),
            "weights": values(non_negative), "max_strength": positive}
DIRECTIONS = {"n_samples": at_least(2), "top_k": at_least(1), "probe_sigmas": positive, "max_sigmas": positive,
              "layers": optional(layer_range)}


def check_options(kind: str, name: str, config: dict, limits: dict[str, Check]) -> None:
    """BenchError naming the first option of ``config`` a check of ``limits`` refuses, its value and what
    is valid; options ``config`` does not have are skipped (shared limit tables)."""
    for key, check in limits.items():
        if key in config:
            problem = check(config[key])
            if problem:
                raise BenchError(f"{kind} {name!r}: option {key}={config[key]!r} {problem}")
