"""latent_edit_bench.pipeline.stats: the two-level bootstrap (fit seeds, then samples) against scipy and direct resampling."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from latent_edit_bench.contracts.metric import Quantity, mean_of
from latent_edit_bench.pipeline.stats import Bootstrap, compare, evaluate, means, per_seed

N = 60
RATIO = Quantity("ratio", lambda m: np.abs(m["a"]) / np.abs(m["b"]), ("a", "b"))   # not a plain mean
ALL = np.ones(N, bool)


def data(seed=0, k=1, n=N, shift=0.0, seed_sd=0.0):
    """{col: [K, N]}: per-sample values plus a per-fit-seed offset of spread ``seed_sd`` on "a"."""
    rng = np.random.default_rng(seed)
    a = rng.gamma(2.0, 1.0, n) + shift
    b = rng.normal(3.0, 1.0, n)
    off = rng.normal(0, seed_sd, (k, 1))
    return {"a": a[None, :] + off, "b": np.repeat(b[None, :], k, 0)}


def test_bootstrap_weights_are_seeded_resamples():
    b1, b2, b3 = Bootstrap(N, 500, seed=7), Bootstrap(N, 500, seed=7), Bootstrap(N, 500, seed=8)
    assert np.array_equal(b1.weights, b2.weights) and not np.array_equal(b1.weights, b3.weights)
    assert b1.weights.shape == (500, N) and (b1.weights.sum(1) == N).all() and (b1.weights >= 0).all()
    v1, v2 = b1.seed_weights("hfld", 3), b2.seed_weights("hfld", 3)
    assert np.array_equal(v1, v2) and not np.array_equal(v1, b1.seed_weights("baseline", 3))
    assert v1.shape == (500, 3) and (v1.sum(1) == 3).all()
    x = data(k=3, seed_sd=1.0)
    # replicate 3 is the mean over a resample of seeds and a resample of samples, drawn with replacement
    idx = np.repeat(np.arange(N), b1.weights[3].astype(int))
    seeds = np.repeat(np.arange(3), v1[3].astype(int))
    want = x["a"][seeds][:, idx].mean()
    assert np.isclose(means(x, b1, ALL, v1)[1]["a"][3], want)


def test_interval_of_a_mean_matches_scipy_percentile_bootstrap():
    x = data(seed=1)
    value, lo, hi = evaluate(mean_of("a"), x, Bootstrap(N, 4000, seed=0), ALL, None)
    ref = stats.bootstrap((x["a"][0],), np.mean, n_resamples=4000, method="percentile",
                          random_state=np.random.default_rng(1)).confidence_interval
    assert np.isclose(value, x["a"].mean()) and lo < value < hi
    width = ref.high - ref.low
    assert abs(lo - ref.low) < 0.15 * width and abs(hi - ref.high) < 0.15 * width


def test_subset_weights_are_restricted_and_paired():
    """On a subset the replicate mean is the weighted mean of the subset's resampled samples."""
    boot, x = Bootstrap(N, 300, seed=2), data(seed=2)
    sub = np.arange(N) % 3 != 0
    _, reps = means(x, boot, sub, None)
    w = boot.weights[:, sub]
    assert np.allclose(reps["a"], (w * x["a"][0, sub]).sum(1) / w.sum(1))


def test_fit_seed_variance_widens_the_interval():
    """Seeds that disagree (offsets of sd 1 on a sample spread of ~1.4) must widen the interval well beyond
    the samples-only one; seeds that agree must not."""
    boot = Bootstrap(N, 2000, seed=0)
    spread = {}
    for sd in (0.0, 1.0):
        x = data(seed=3, k=5, seed_sd=sd)
        _, lo, hi = evaluate(mean_of("a"), x, boot, ALL, boot.seed_weights("m", 5))
        _, lo_s, hi_s = evaluate(mean_of("a"), x, boot, ALL, None)
        spread[sd] = (hi - lo) / (hi_s - lo_s)
    assert spread[0.0] == pytest.approx(1.0, abs=1e-9)
    assert spread[1.0] > 2.0


def test_per_seed_estimates():
    x = data(seed=4, k=3, seed_sd=0.5)
    sub = np.arange(N) < 40
    got = per_seed(RATIO, x, sub)
    want = [abs(x["a"][k, :40].mean()) / abs(x["b"][k, :40].mean()) for k in range(3)]
    assert np.allclose(got, want)


def test_compare_identical_data():
    boot = Bootstrap(N, 500)
    x = data()
    for q in (mean_of("a"), RATIO):
        r = compare(q, x, {k: v.copy() for k, v in x.items()}, boot, ALL, None, None)
        assert r["diff"] == 0 and r["diff_lo"] == 0 and r["diff_hi"] == 0 and r["rel"] == 0 and r["p_value"] == 1


def test_compare_shifted_paired_sample_and_fit_variance():
    """The method's a is the reference's minus 0.3 plus small noise: paired, clearly lower; the same shift
    is no longer significant when the method's fits disagree by far more than 0.3."""
    boot = Bootstrap(N, 2000)
    ref = data(seed=5, k=3)
    rng = np.random.default_rng(6)
    mine = {"a": ref["a"] - 0.3 + rng.normal(0, 0.1, ref["a"].shape), "b": ref["b"]}
    for q in (mean_of("a"), RATIO):
        r = compare(q, mine, ref, boot, ALL, boot.seed_weights("m", 3), boot.seed_weights("ref", 3))
        assert r["p_value"] < 0.01 and r["diff_hi"] < 0 and r["rel_hi"] < 0
        vb, vm = q.fn({c: v.mean() for c, v in ref.items()}), q.fn({c: v.mean() for c, v in mine.items()})
        assert np.isclose(r["value"], vm) and np.isclose(r["ref_value"], vb)
        assert np.isclose(r["diff"], vm - vb) and np.isclose(r["rel"], (vm - vb) / abs(vb))
    noisy = {"a": mine["a"] + np.array([[-1.5], [0.0], [1.5]]), "b": ref["b"]}
    r = compare(mean_of("a"), noisy, ref, boot, ALL, boot.seed_weights("m", 3), boot.seed_weights("ref", 3))
    assert r["p_value"] > 0.05 and r["diff_lo"] < 0 < r["diff_hi"]
    assert r["diff_hi_samples"] < 0                       # samples alone would have called it significant


def test_holm_adjusts_one_family_and_skips_nan():
    """Holm-Bonferroni by hand: sorted 0.01, 0.03, 0.04 of m = 3 -> 0.03, 0.06, max(0.06, 0.04) = 0.06."""
    from latent_edit_bench.pipeline.stats import holm

    out = holm([0.01, 0.04, 0.03, float("nan")])
    np.testing.assert_allclose(out[:3], [0.03, 0.06, 0.06])
    assert np.isnan(out[3])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0] and holm([]).shape == (0,)


def test_compare_against_a_reference_of_exactly_zero_is_inf_not_an_error():
    """A share no reference edit reaches (0) against a method's 0.5: the relative difference is +inf
    (undefined as a ratio), the absolute one still has its interval."""
    boot = Bootstrap(8, n_boot=200, seed=0)
    x = {"kept": np.full((2, 8), 0.5)}
    ref = {"kept": np.zeros((2, 8))}
    c = compare(mean_of("kept"), x, ref, boot, np.ones(8, bool), boot.seed_weights("m", 2), boot.seed_weights("r", 2))
    assert c["diff"] == pytest.approx(0.5) and np.isinf(c["rel"])
    same = compare(mean_of("kept"), ref, ref, boot, np.ones(8, bool), None, None)
    assert np.isnan(same["rel"]) and same["diff"] == 0
