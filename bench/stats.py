"""Uncertainty for every reported number: percentile bootstrap over samples, paired across methods.

Every run's methods edit the *same* N samples, so one set of bootstrap resamples (a seeded
[n_boot, N] matrix of multinomial counts) serves every method: a quantity's replicates for method A
and for the baseline come from the same resampled samples, and their difference is a paired
bootstrap. Quantities that are a plain mean of a per-sample column also get a Wilcoxon signed-rank
test on the per-sample differences (scipy); the others get the paired bootstrap's two-sided p-value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .metric import Quantity

LEVEL = 0.95


class Bootstrap:
    """Seeded resampling weights over N samples: ``weights`` [n_boot, N], rows sum to N."""

    def __init__(self, n: int, n_boot: int = 2000, seed: int = 0):
        if n < 1:
            raise ValueError("bootstrap needs at least one sample")
        rng = np.random.default_rng(seed)
        self.n, self.n_boot, self.seed = n, n_boot, seed
        self.weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)

    def means(self, frame: pd.DataFrame, columns) -> tuple[dict, dict]:
        """(point means, replicate means [n_boot]) of each column."""
        if len(frame) != self.n:
            raise ValueError(f"bootstrap was drawn for {self.n} samples, the frame has {len(frame)}")
        x = frame[list(columns)].to_numpy(dtype=np.float64)
        point = x.mean(axis=0)
        reps = self.weights @ x / self.n
        return ({c: point[i] for i, c in enumerate(columns)}, {c: reps[:, i] for i, c in enumerate(columns)})


def _interval(reps: np.ndarray) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    a = (1 - LEVEL) / 2
    lo, hi = np.quantile(reps, [a, 1 - a])
    return float(lo), float(hi)


def replicates(q: Quantity, frame: pd.DataFrame, boot: Bootstrap) -> tuple[float, np.ndarray]:
    point, reps = boot.means(frame, q.columns)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.float64(q.fn(point)), np.asarray(q.fn(reps), dtype=np.float64)


def evaluate(q: Quantity, frame: pd.DataFrame, boot: Bootstrap) -> tuple[float, float, float]:
    """(value, lo, hi): the quantity on all samples and its 95% percentile-bootstrap interval."""
    value, reps = replicates(q, frame, boot)
    return (float(value), *_interval(reps))


def compare(q: Quantity, frame: pd.DataFrame, base: pd.DataFrame, boot: Bootstrap) -> dict:
    """A method against the baseline on one quantity, paired by sample.

    Returns diff = method - baseline and rel = diff / |baseline| (e.g. -0.3 = 30% less), each with a
    95% interval from the shared resamples, the p-value and the test's name."""
    from scipy import stats

    v, r = replicates(q, frame, boot)
    b, rb = replicates(q, base, boot)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel, rel_reps = (v - b) / abs(b), (r - rb) / np.abs(rb)
    diff_reps = r - rb
    if q.per_sample is not None:
        d = frame[q.per_sample].to_numpy(np.float64) - base[q.per_sample].to_numpy(np.float64)
        if np.allclose(d, 0):
            p, test = 1.0, "wilcoxon"
        else:
            p, test = float(stats.wilcoxon(d, zero_method="wilcox").pvalue), "wilcoxon"
    else:
        finite = diff_reps[np.isfinite(diff_reps)]
        if finite.size == 0:
            p = float("nan")
        else:
            p = float(min(1.0, 2 * min((finite <= 0).mean(), (finite >= 0).mean())))
        test = "paired bootstrap"
    v, b, rel = float(v), float(b), float(rel)
    return {"value": v, "baseline": b, "diff": v - b, "diff_lo": _interval(diff_reps)[0],
            "diff_hi": _interval(diff_reps)[1], "rel": rel, "rel_lo": _interval(rel_reps)[0],
            "rel_hi": _interval(rel_reps)[1], "p_value": p, "test": test}
