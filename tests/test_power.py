"""Power of first-screen comparisons (bench/latent_edit_bench/pipeline/power.py): the variance components, the projection
to other N and K, the plan, and `bench plan`'s errors."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from latent_edit_bench.errors import BenchError
from latent_edit_bench.pipeline import power
from latent_edit_bench.pipeline.power import Comparison, Costs, components_of, parse_effect, plan

S2_FIT, S2_SAMPLE, S2_E = 0.5, 4.0, 1.0


def simulate(rng, k, n, mu=10.0, s2_fit=S2_FIT, s2_e=S2_E, sample=None):
    """[k, n] draws of mu + a_k + b_i + e_ki; ``sample``: the b_i to share with a paired reference."""
    b = rng.normal(0, math.sqrt(S2_SAMPLE), n) if sample is None else sample
    a = rng.normal(0, math.sqrt(s2_fit), (k, 1))
    return mu + a + b[None, :] + rng.normal(0, math.sqrt(s2_e), (k, n)), b


def test_components_recover_the_simulated_variances():
    rng = np.random.default_rng(0)
    x, _ = simulate(rng, k=200, n=400)
    s2_fit, s2_e = components_of(x)
    assert s2_e == pytest.approx(S2_E, rel=0.03)
    assert s2_fit == pytest.approx(S2_FIT, rel=0.25)
    assert components_of(x[:1]) == (0.0, 0.0)     # one fit: nothing to separate


def test_the_standard_error_matches_the_spread_of_the_difference_over_replicate_runs():
    """SE(D) from the true components equals the SD of D across simulated runs at K = 3, n = 32, and the
    estimated variance is unbiased on average (method of moments; truncation at 0 is rare here)."""
    rng = np.random.default_rng(1)
    k, n, diffs, var_est = 3, 32, [], []
    for _ in range(3000):
        y, b = simulate(rng, k, n)
        x, _ = simulate(rng, k, n, mu=9.0, sample=b + rng.normal(0, 0.5, n))   # paired, s2_pair = 0.25
        c = Comparison.estimate(x, y, attr="Male", direction="+", level=0.1, method="m", reference="r")
        diffs.append(c.diff)
        var_est.append(c.se() ** 2)
    truth = Comparison(attr="Male", direction="+", level=0.1, method="m", reference="r", n=n, k=k, k_ref=k,
                       fit_varies=True, ref_mean=10.0, diff=-1.0, s2_fit=S2_FIT, s2_fit_ref=S2_FIT, s2_e=S2_E,
                       s2_e_ref=S2_E, s2_pair=0.25)
    assert np.std(diffs) == pytest.approx(truth.se(), rel=0.05)
    assert np.mean(diffs) == pytest.approx(-1.0, abs=0.05)
    assert np.mean(var_est) == pytest.approx(truth.se() ** 2, rel=0.1)


def _truth(**kw):
    base = dict(attr="Male", direction="+", level=0.1, method="m", reference="r", n=32, k=3, k_ref=3,
                fit_varies=True, ref_mean=10.0, diff=-1.0, s2_fit=S2_FIT, s2_fit_ref=S2_FIT, s2_e=S2_E,
                s2_e_ref=S2_E, s2_pair=0.25, family=1)
    return Comparison(**{**base, **kw})


def test_the_detectable_difference_has_the_stated_power():
    c = _truth(family=4)
    assert c.alpha == pytest.approx(0.0125)
    mde = c.mde_rel()
    assert c.power_at(mde) == pytest.approx(0.8, abs=1e-9)
    assert c.power_at(mde / 2) < 0.8 < c.power_at(mde * 1.5)
    assert c.mde_rel(n=10_000, k=3) < mde and c.mde_rel(n=32, k=30) < mde


def test_a_plan_is_the_cheapest_n_and_k_that_detects_the_effect():
    c = _truth()
    costs = Costs(fit={"m": 30.0, "r": 30.0}, edit={("m", "Male"): 0.2, ("r", "Male"): 0.2})
    p = plan(c, 0.05, costs)
    assert p.n is not None and c.mde_rel(p.n, p.k) <= 0.05 < c.mde_rel(p.n - 1, p.k)
    assert p.seconds == pytest.approx(costs.seconds(c, p.n, p.k))
    for k in range(max(3, p.k - 3), p.k + 4):            # no other K is cheaper at its own smallest n
        kx, ky = c.fits(k)
        left = (0.05 * 10 / c.z()) ** 2 - c.s2_fit / kx - c.s2_fit_ref / ky
        if left > 0:
            n = max(2, math.ceil((c.s2_pair + c.s2_e / kx + c.s2_e_ref / ky) / left))
            assert costs.seconds(c, n, k) >= p.seconds - 1e-9
    # fit variance alone too large for any n at K <= MAX_K: out of reach, said so
    assert plan(_truth(s2_fit=1e4, s2_fit_ref=1e4), 0.01).n is None


def test_a_closed_form_method_keeps_one_fit_and_k1_runs_say_fit_variance_is_unknown():
    c = _truth(k=1, s2_fit=0.0, s2_e=0.0)
    assert c.fits(10) == (1, 10)
    one = _truth(k=1, k_ref=1, fit_varies=False, s2_fit=0, s2_fit_ref=0, s2_e=0, s2_e_ref=0)
    p = plan(one, 0.05)
    assert p.k == 1 and "fit variance unknown" in p.note


@pytest.mark.parametrize("text,value", [("10%", 0.1), ("0.1", 0.1), ("2.5%", 0.025), (" 50% ", 0.5)])
def test_parse_effect(text, value):
    assert parse_effect(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "0%", "100%", "10", "-5%", "ten", "nan", ""])
def test_parse_effect_refuses_what_is_outside_0_100(text):
    with pytest.raises(BenchError, match="--effect"):
        parse_effect(text)


def _fake_run(tmp_path, rows):
    """A run folder with the files `bench plan` reads: manifest.json, summary.csv, power.csv, units.json."""
    (tmp_path / "manifest.json").write_text(json.dumps({"config": {"n": 32, "methods": ["m", "r"]},
                                                        "platform": {"processor": "test CPU", "device": "cpu"}}))
    (tmp_path / "summary.csv").write_text("attr\n")
    pd.DataFrame([c.row() for c in rows], columns=power.POWER_COLUMNS).to_csv(tmp_path / "power.csv", index=False)
    (tmp_path / "units.json").write_text(json.dumps({
        "fit/m/seed0/Male": {"state": "done", "fit_seconds": 40.0, "cache_hit": False},
        "fit/r/seed0": {"state": "done", "fit_seconds": 20.0, "cache_hit": False},      # a joint fit's id
        "fit/r/seed1": {"state": "done", "fit_seconds": 0.0, "cache_hit": True},        # cache hits say nothing
        "edit/m/seed0/Male": {"state": "done", "seconds": 6.4},
        "edit/r/seed0/Male": {"state": "done", "seconds": 3.2}}))
    return tmp_path


def test_plan_run_reads_a_run_folder(tmp_path):
    run = _fake_run(tmp_path, [_truth()])
    costs = power.unit_costs(run)
    assert costs.fit == {"m": 40.0, "r": 20.0} and costs.edit[("m", "Male")] == pytest.approx(0.2)
    (row,) = power.plan_run(run, 0.1)
    assert row["effect"].n is not None and row["effect"].seconds > 0
    assert row["mde_rel"] == pytest.approx(_truth().mde_rel())


def test_bench_plan_prints_the_plan_and_refuses_bad_input(tmp_path, bench_cli):
    (tmp_path / "run").mkdir()
    run = _fake_run(tmp_path / "run", [_truth()])
    res = bench_cli("plan", str(run), "--effect", "10%")
    assert res.exit_code == 0, res.output
    assert "to resolve 10%: N = " in res.output and "detectable at this N, K" in res.output
    bad = bench_cli("plan", str(run), "--effect", "150%")
    assert bad.exit_code == 2 and "--effect" in bad.output
    (tmp_path / "empty").mkdir()
    res = bench_cli("plan", str(tmp_path / "empty"))
    assert res.exit_code == 2 and "not a finished run folder" in res.output


def test_the_markdown_first_screen_ranks_only_resolved_and_validated_comparisons(tmp_path):
    from latent_edit_bench.pipeline.analysis import RANKING_COLUMNS
    from latent_edit_bench.reports.markdown import first_screen

    base = dict(direction="+", level=0.1, n=20, reach=0.8, kind="network", lo=1.0, hi=3.0, p_holm=np.nan)
    rows = [dict(attr="Male", method="hfld", status="ranked", rank=1, value=2.0, rel=-0.3, rel_lo=-0.5, rel_hi=-0.1,
                 p_value=0.001, verdict="resolved", trainer_validity="sees"),
            dict(attr="Male", method="baseline", status="reference", rank=2, value=2.9, trainer_validity="sees"),
            dict(attr="Male", method="ganspace", status="ranked", rank=3, value=3.1, rel=0.07, rel_lo=-0.2, rel_hi=0.3,
                 p_value=0.6, verdict="not resolved", trainer_validity="sees"),
            dict(attr="Bald", method="hfld", status="ranked", rank=np.nan, value=2.0, rel=-0.3, rel_lo=-0.5,
                 rel_hi=-0.1, p_value=0.001, verdict="resolved", trainer_validity="not shown"),
            dict(attr="Bald", method="baseline", status="reference", rank=np.nan, value=2.9, trainer_validity="not shown")]
    pd.DataFrame([{**base, **r} for r in rows], columns=RANKING_COLUMNS).to_csv(tmp_path / "ranking.csv", index=False)
    lines = {line.split("|")[5].strip(): line.split("|")[4].strip() for line in first_screen(tmp_path).splitlines()[2:]
             if "Male" in line}
    assert lines == {"hfld": "1", "baseline": "2", "ganspace": "not resolved at N = 20"}
    bald = [line.split("|")[4].strip() for line in first_screen(tmp_path).splitlines() if "| Bald" in line]
    assert bald == ["not validated (trainer: not shown)"] * 2
