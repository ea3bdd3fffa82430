"""bench.stats against scipy: percentile bootstrap, paired comparison, Wilcoxon signed-rank."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bench.metric import Quantity, mean_of
from bench.stats import Bootstrap, compare, evaluate

N = 60
RATIO = Quantity("ratio", lambda m: np.abs(m["a"]) / np.abs(m["b"]), ("a", "b"))   # not a plain mean


def frame(seed=0, n=N, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.gamma(2.0, 1.0, n) + shift, "b": rng.normal(3.0, 1.0, n)})


def test_bootstrap_weights_are_seeded_resamples():
    b1, b2, b3 = Bootstrap(N, 500, seed=7), Bootstrap(N, 500, seed=7), Bootstrap(N, 500, seed=8)
    assert np.array_equal(b1.weights, b2.weights) and not np.array_equal(b1.weights, b3.weights)
    assert b1.weights.shape == (500, N) and (b1.weights.sum(1) == N).all() and (b1.weights >= 0).all()
    f = frame()
    assert evaluate(RATIO, f, b1) == evaluate(RATIO, f, b2)
    # each replicate is the mean of a resample drawn with replacement: reproduce one by index sampling
    idx = np.repeat(np.arange(N), b1.weights[3].astype(int))
    assert np.isclose(b1.means(f, ["a"])[1]["a"][3], f["a"].to_numpy()[idx].mean())
    with pytest.raises(ValueError, match="drawn for 60 samples"):
        b1.means(frame(n=10), ["a"])


def test_interval_of_a_mean_matches_scipy_percentile_bootstrap():
    f = frame(seed=1)
    value, lo, hi = evaluate(mean_of("a"), f, Bootstrap(N, 4000, seed=0))
    ref = stats.bootstrap((f["a"].to_numpy(),), np.mean, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(1)).confidence_interval
    assert np.isclose(value, f["a"].mean()) and lo < value < hi
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.15 * width and abs(hi - ref.high) < 0.15 * width
    # and the normal-theory interval, for scale
    se = f["a"].std(ddof=1) / np.sqrt(N)
    assert abs((hi - lo) - 2 * 1.96 * se) < 0.25 * 2 * 1.96 * se


def test_compare_identical_frames():
    f, boot = frame(), Bootstrap(N, 500)
    for q in (mean_of("a"), RATIO):
        r = compare(q, f, f.copy(), boot)
        assert r["diff"] == 0 and r["diff_lo"] == 0 and r["diff_hi"] == 0 and r["rel"] == 0 and r["p_value"] == 1
        assert r["test"] == ("wilcoxon" if q.per_sample else "paired bootstrap")


def test_compare_shifted_paired_sample():
    """The method's a is the baseline's minus 0.3 plus small noise: paired, clearly lower."""
    base, boot = frame(seed=2), Bootstrap(N, 2000)
    rng = np.random.default_rng(3)
    f = base.assign(a=base["a"] - 0.3 + rng.normal(0, 0.1, N))
    for q in (mean_of("a"), RATIO):
        r = compare(q, f, base, boot)
        assert r["p_value"] < 0.01
        assert r["diff_hi"] < 0 and r["rel_hi"] < 0 and r["rel_lo"] <= r["rel"] <= r["rel_hi"]
        vb, vm = q.fn(base.mean()), q.fn(f.mean())
        assert np.isclose(r["value"], vm) and np.isclose(r["baseline"], vb)
        assert np.isclose(r["diff"], vm - vb) and np.isclose(r["rel"], (vm - vb) / abs(vb))
    # unpaired, the same shift drowns in the between-sample spread: pairing is what makes it visible
    shuffled = f.sample(frac=1, random_state=0).reset_index(drop=True)
    assert compare(mean_of("a"), shuffled, base, boot)["p_value"] > 0.01


def test_wilcoxon_p_matches_scipy():
    base, f = frame(seed=4), frame(seed=5)
    r = compare(mean_of("a"), f, base, Bootstrap(N, 200))
    assert r["test"] == "wilcoxon"
    assert np.isclose(r["p_value"], stats.wilcoxon(f["a"].to_numpy() - base["a"].to_numpy()).pvalue)


def test_summarise_columns():
    from bench.metric import EditSet, Metric

    class Two(Metric):
        name, needs = "two", ()

        def measure(self, s: EditSet):
            return {}

        def quantities(self, attr, columns):
            return [mean_of("a", label="mean a", better="lower", table="t"), RATIO]

    out = Two().summarise(frame(), "Male", Bootstrap(N, 300))
    assert list(out.columns) == ["quantity", "label", "value", "lo", "hi", "n", "better", "table"]
    assert out["quantity"].tolist() == ["a", "ratio"] and out["label"].tolist() == ["mean a", "ratio"]
    assert out["n"].tolist() == [N, N] and out["better"].tolist() == ["lower", ""]
    assert ((out["lo"] < out["value"]) & (out["value"] < out["hi"])).all()
