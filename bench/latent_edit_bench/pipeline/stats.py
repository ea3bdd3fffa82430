"""Uncertainty for every reported number: a two-level bootstrap over fit seeds, then samples.

A trained method's numbers move with the seed of its fit as well as with the samples it edits, so
an interval over samples alone is too narrow for any claim about the method. Every replicate b
therefore resamples both levels:

- samples: one seeded [n_boot, N] matrix of multinomial counts ``W`` shared by every method, so a
  method and the reference are always resampled on the same samples (paired);
- fit seeds: per method, an independent seeded [n_boot, K] matrix of counts ``V`` (the methods'
  fits are independent).

A column's replicate mean over the fit seeds k and a subset S of the samples is
sum_k V_bk sum_{i in S} W_bi x_ki / (K sum_{i in S} W_bi); a quantity is a function of such means
(:class:`latent_edit_bench.contracts.metric.Quantity`). The subset is a run's "reached" samples: restricting the shared
weights keeps the pairing. With ``V`` fixed to ones the same code gives the samples-only interval,
so the share of an interval that is fit variance can be read off.
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:   # no torch import for readers of run folders (the report)
    from latent_edit_bench.contracts.metric import Quantity

LEVEL = 0.95


class Bootstrap:
    """Seeded resampling weights: ``weights`` [n_boot, N] over samples, ``seed_weights(method, K)`` over fits."""

    def __init__(self, n: int, n_boot: int = 2000, seed: int = 0):
        if n < 1:
            raise ValueError("bootstrap needs at least one sample")
        rng = np.random.default_rng(seed)
        self.n, self.n_boot, self.seed = n, n_boot, seed
        self.weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)

    def seed_weights(self, stream: str, k: int) -> np.ndarray:
        """[n_boot, k] resample counts of k fit seeds, one fixed stream per method name."""
        if k == 1:
            return np.ones((self.n_boot, 1))
        rng = np.random.default_rng([self.seed, zlib.crc32(stream.encode())])
        return rng.multinomial(k, np.full(k, 1.0 / k), size=self.n_boot).astype(np.float64)


def means(x: dict, boot: Bootstrap, subset: np.ndarray, seed_w: np.ndarray | None) -> tuple[dict, dict]:
    """(point, replicates) of each column's mean. ``x[col]`` is [K, N] (fit seeds x all samples);
    ``subset`` [N] bool picks the samples; ``seed_w`` [n_boot, K] or None (samples-only)."""
    w = boot.weights[:, subset]                                    # [B, n]
    wsum = w.sum(1)
    point, reps = {}, {}
    for c, v in x.items():
        v = np.asarray(v, dtype=np.float64)[:, subset]             # [K, n]
        point[c] = v.mean()
        per_seed = w @ v.T                                        # [B, K]: sum_i W_bi x_ki
        total = per_seed.sum(1) if seed_w is None else (per_seed * seed_w).sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            reps[c] = total / (v.shape[0] * wsum)
    return point, reps


def interval(reps: np.ndarray) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    a = (1 - LEVEL) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def replicates(q: Quantity, x: dict, boot: Bootstrap, subset, seed_w) -> tuple[float, np.ndarray]:
    point, reps = means({c: x[c] for c in q.columns}, boot, subset, seed_w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(q.fn(point)), np.asarray(q.fn(reps), dtype=np.float64)


def evaluate(q: Quantity, x: dict, boot: Bootstrap, subset, seed_w) -> tuple[float, float, float]:
    """(value, lo, hi): the quantity over all fit seeds and the subset, and its 95% interval."""
    value, reps = replicates(q, x, boot, subset, seed_w)
    return (value, *interval(reps))


def per_seed(q: Quantity, x: dict, subset) -> list[float]:
    """The quantity's point estimate for each fit seed alone (on the same samples)."""
    k = next(iter(x.values())).shape[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        return [float(q.fn({c: float(np.asarray(x[c], np.float64)[j, subset].mean()) for c in q.columns}))
                for j in range(k)]


def p_two_sided(diff_reps: np.ndarray) -> float:
    """Twice the smaller tail of the replicate differences around 0 (capped at 1)."""
    d = diff_reps[np.isfinite(diff_reps)]
    if d.size == 0:
        return float("nan")
    return float(min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean())))


def holm(p) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values of one family of comparisons (NaN stays NaN and is not counted):
    the i-th smallest of m is multiplied by m - i + 1, made non-decreasing, capped at 1."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    if idx.size:
        order = idx[np.argsort(p[idx], kind="stable")]
        m = idx.size
        out[order] = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    return out


def compare(q: Quantity, x: dict, ref: dict, boot: Bootstrap, subset, seed_w, ref_seed_w) -> dict:
    """A method against the reference on one quantity, paired by sample, over the same ``subset``.

    diff = method - reference and rel = diff / |reference| (e.g. -0.3 = 30% less), each with a 95%
    two-level interval; ``diff_lo/hi_samples``: the interval when only samples are resampled."""
    v, r = replicates(q, x, boot, subset, seed_w)
    b, rb = replicates(q, ref, boot, subset, ref_seed_w)
    _, r_s = replicates(q, x, boot, subset, None)
    _, rb_s = replicates(q, ref, boot, subset, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        # numpy division: a reference of exactly 0 (e.g. a share no reference edit reaches) gives inf/nan, not an error
        rel, rel_reps = np.float64(v - b) / np.abs(np.float64(b)), (r - rb) / np.abs(rb)
    d_lo, d_hi = interval(r - rb)
    s_lo, s_hi = interval(r_s - rb_s)
    r_lo, r_hi = interval(rel_reps)
    return {"value": v, "ref_value": b, "diff": v - b, "diff_lo": d_lo, "diff_hi": d_hi,
            "diff_lo_samples": s_lo, "diff_hi_samples": s_hi, "rel": float(rel), "rel_lo": r_lo,
            "rel_hi": r_hi, "p_value": p_two_sided(r - rb), "test": "two-level bootstrap"}
