"""latent_edit_bench.pipeline.analysis: equal-edit comparisons and the ranking rule, on synthetic per-sample frames.

The point of these tests is fairness: a method whose edit is weaker (it cannot reach the larger
levels) must never look better for disturbing less, and a method that reaches a level for too few
samples is "could not reach", never ranked.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from latent_edit_bench.pipeline.analysis import MIN_PAIRED, analyse
from latent_edit_bench.contracts.metric import Metric, mean_of

N, SEEDS, LEVELS = 40, (0, 1), (-0.3, -0.2, -0.1, 0.1, 0.2, 0.3)


class Disturbance(Metric):
    """Stands in for the emotion metric: the headline quantity emotion.disturbance."""
    name, needs = "emotion", ()

    def measure(self, s):
        raise NotImplementedError

    def quantities(self, attr, columns):
        return [mean_of("disturbance", label="disturbance", better="lower", table="V")]


def frame(spec: dict, seed=0) -> pd.DataFrame:
    """spec: method -> (per-unit-of-edit disturbance, largest |level| it reaches, reach fraction there)."""
    rng = np.random.default_rng(seed)
    rows = []
    for m, (slope, reach_to, frac) in spec.items():
        for s in SEEDS:
            for lv in LEVELS:
                reached = rng.random(N) < (frac if abs(lv) <= reach_to + 1e-9 else 0.0)
                d = slope * abs(lv) * 100 + rng.normal(0, 0.5, N)
                rows.append(pd.DataFrame({"method": m, "attr": "Male", "seed": s, "level": lv, "sample": np.arange(N),
                                          "reached": reached, "emotion.disturbance": d}))
    return pd.concat(rows, ignore_index=True)


def run(spec, **kw):
    return analyse(frame(spec), {"emotion": Disturbance()}, methods=list(spec), attrs=["Male"], reference="ref",
                   n=N, n_boot=400, kinds={"Male": "network"}, **kw)


def test_a_weaker_edit_that_disturbs_less_is_not_reported_as_better():
    # weak: 1.2x the disturbance per unit of edit, but it only gets to 0.1, where the others reach 0.3:
    # at their own strongest edits it disturbs 3x less than strong. At equal edit it is worse.
    spec = {"ref": (0.5, 0.3, 1.0), "strong": (0.25, 0.3, 1.0), "weak": (0.3, 0.1, 1.0)}
    out = run(spec)
    rk = out["ranking"][out["ranking"].direction == "+"].set_index("method")
    assert set(rk.level) == {0.1}                                   # the largest level every method reaches
    assert rk.loc["weak", "rank"] > rk.loc["strong", "rank"]       # worse at the same edit
    assert rk.loc["weak", "value"] > rk.loc["strong", "value"]
    cmp_ = out["comparison"]
    assert set(cmp_[cmp_.method == "weak"].level.abs()) == {0.1}    # never compared where it did not get
    # the unfair reading (weak at its strongest vs the reference at its strongest) would have said "better"
    s = out["summary"]
    weak_max = s[(s.method == "weak") & (s.level == 0.1)].value.item()
    ref_max = s[(s.method == "ref") & (s.level == 0.3)].value.item()
    assert weak_max < ref_max


def test_a_method_that_reaches_too_few_samples_could_not_reach():
    spec = {"ref": (0.5, 0.3, 1.0), "strong": (0.25, 0.3, 1.0), "rare": (0.01, 0.3, 0.3)}   # 30% < min_reach
    out = run(spec)
    rk = out["ranking"][out["ranking"].direction == "-"].set_index("method")
    assert rk.loc["rare", "status"] == "could not reach" and np.isnan(rk.loc["rare", "rank"])
    assert np.isnan(rk.loc["rare", "value"])
    assert rk.loc["strong", "status"] == "ranked" and rk.loc["ref", "status"] == "reference"
    assert set(rk.level) == {-0.3}                                   # fallback: the reference and one other
    assert "rare" not in set(out["comparison"].method)


def test_no_common_level():
    out = run({"ref": (0.5, 0.3, 0.2), "other": (0.5, 0.3, 0.2)})
    assert set(out["ranking"].status) == {"no common level"}
    assert out["comparison"].empty


def test_numbers_are_means_over_seeds_and_commonly_reached_samples():
    spec = {"ref": (0.5, 0.3, 0.8), "b": (0.4, 0.3, 0.8)}
    f = frame(spec, seed=3)
    out = analyse(f, {"emotion": Disturbance()}, methods=["ref", "b"], attrs=["Male"], reference="ref", n=N,
                  n_boot=200)
    rk = out["ranking"][out["ranking"].direction == "+"].set_index("method")
    lv = rk.level.iloc[0]
    sub = f[(f.level == lv)]
    reached = sub.pivot_table(index="sample", columns=["method", "seed"], values="reached", aggfunc="first")
    common = reached.all(axis=1)
    assert common.sum() == rk.loc["b", "n"] >= MIN_PAIRED
    for m in spec:
        d = sub[sub.method == m].pivot(index="sample", columns="seed", values="emotion.disturbance")
        assert np.isclose(rk.loc[m, "value"], d[common].to_numpy().mean())
    # rel against the reference, on the same samples
    want = (rk.loc["b", "value"] - rk.loc["ref", "value"]) / abs(rk.loc["ref", "value"])
    assert np.isclose(rk.loc["b", "rel"], want)
