"""The judge role: bench/latent_edit_bench/instruments/judge.py (independent nets on the target) and metrics/latent_edit_bench/metrics/judge.py."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError
from latent_edit_bench.instruments.judge import Judge, check_judges, parse_spec
from latent_edit_bench.contracts.metric import EditSet
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.metrics.judge import Judge as JudgeMetric

MALE, BALD = CELEBA_ATTRIBUTES.index("Male"), CELEBA_ATTRIBUTES.index("Bald")


def edit_set(attr, level, t0, t1, j0, j1):
    n = len(t0)
    attrs0, attrs1 = torch.rand(n, 40), torch.rand(n, 40)
    judge0, judge1 = torch.full((n, 40), float("nan")), torch.full((n, 40), float("nan"))
    k = CELEBA_ATTRIBUTES.index(attr)
    attrs0[:, k], attrs1[:, k] = torch.tensor(t0), torch.tensor(t1)
    if j0 is not None:
        judge0[:, k], judge1[:, k] = torch.tensor(j0), torch.tensor(j1)
    e = torch.softmax(torch.randn(n, 7), 1)
    return EditSet("m", attr, {"attributes": attrs0, "judge": judge0, "judge_emotion": e},
                   {"attributes": attrs1, "judge": judge1, "judge_emotion": e.roll(1, 1)},
                   reached=torch.ones(n, dtype=torch.bool), strength=torch.zeros(n), level=level,
                   instruments={"attributes": "probe", "judge": "judge"})


def test_fooled_counts_reached_edits_the_judge_rejects_and_agreement_is_pearson():
    t0 = [0.1, 0.2, 0.3, 0.4, 0.5]
    t1 = [v + 0.2 for v in t0]                      # the trainer: every sample moved +0.2 (reached)
    j0 = [0.2, 0.1, 0.5, 0.3, 0.6]
    j1 = [0.5, 0.1, 0.4, 0.6, 0.9]                  # the judge: up, flat, down, up, up -> 2 of 5 rejected
    m = JudgeMetric()
    cols = {k: v.numpy() for k, v in m.measure(edit_set("Male", 0.2, t0, t1, j0, j1)).items()}
    assert cols["fooled"].tolist() == [0, 1, 1, 0, 0]
    qs = {q.name: q for q in m.quantities("Male", list(cols))}
    means = {c: cols[c].mean() for c in cols}
    assert qs["fooled"].fn(means) == pytest.approx(0.4)
    assert qs["agreement"].fn(means) == pytest.approx(np.corrcoef(t0, j0)[0, 1])
    assert qs["judge.change"].fn(means) == pytest.approx(np.mean(np.subtract(j1, j0)))
    assert "oarriaga-gender.male" in qs["judge.change"].label and "probe" in qs["trainer.change"].label
    # towards absence (negative level) a judge that went up rejects the edit
    neg = m.measure(edit_set("Male", -0.2, t1, t0, j1, j0))
    assert neg["fooled"].tolist() == [0, 1, 1, 0, 0]


def test_no_independent_judge_is_said_plainly():
    m = JudgeMetric()
    cols = m.measure(edit_set("Bald", 0.2, [0.1, 0.2], [0.3, 0.4], None, None))
    assert "fooled" not in cols and "judge.change" not in cols
    qs = m.quantities("Bald", list(cols))
    row = next(q for q in qs if q.name == "no_judge")
    assert "no independent judge offline for Bald" in row.label
    assert np.isnan(row.fn({c: v.mean().item() for c, v in cols.items()}))


def test_judge_instrument_scores_male_and_smiling_only_by_default():
    create = get_plugins().instruments.create
    j = create("judge", create=create)
    out = j(torch.rand(3, 3, 96, 80) * 2 - 1)
    assert out["judge"].shape == (3, 40) and out["judge_emotion"].shape == (3, 7)
    finite = torch.isfinite(out["judge"]).all(0)
    assert [a for a, f in zip(CELEBA_ATTRIBUTES, finite.tolist()) if f] == ["Male", "Smiling"]
    assert torch.allclose(out["judge_emotion"].sum(1), torch.ones(3), atol=1e-5)
    # the Male judge is oarriaga's gender net, not face-api's
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert torch.allclose(j(x)["judge"][:, MALE], get_plugins().instruments.create("oarriaga-gender")(x)["male"])


def test_any_registered_instrument_can_judge_and_bad_specs_are_clear():
    j = Judge({"Male": "faceapi-age-gender.male", "Young": "fer-emotion.emotion[happy]"}, create=get_plugins().instruments.create)
    out = j(torch.rand(2, 3, 64, 64) * 2 - 1)
    assert torch.isfinite(out["judge"][:, CELEBA_ATTRIBUTES.index("Young")]).all()
    assert parse_spec("oarriaga-emotion.emotion[happy]") == ("oarriaga-emotion", "emotion", "happy")
    with pytest.raises(BenchError, match="labels"):
        Judge({"Male": "oarriaga-emotion.emotion"}, create=get_plugins().instruments.create)
    with pytest.raises(BenchError, match="has no output"):
        Judge({"Male": "oarriaga-gender.age"}, create=get_plugins().instruments.create)
    with pytest.raises(BenchError, match="unknown attribute"):
        check_judges({"Mael": "oarriaga-gender"}, get_plugins().instruments)
    with pytest.raises(BenchError, match="oarriaga-gender"):   # the listing of valid instruments
        check_judges({"Male": "nope"}, get_plugins().instruments)


@pytest.mark.parametrize("arg, needle", [("Mael=oarriaga-gender", "unknown attribute"),
                                         ("Male", "expected ATTR=INSTRUMENT"),
                                         ("Male=nope", "unknown instrument")])
def test_cli_judge_bad_input_exits_2(arg, needle, tmp_path):
    res = subprocess.run([sys.executable, "-m", "latent_edit_bench.cli", "run", "--methods", "sefa", "--attrs", "Male",
                          "--judge", arg, "--out", str(tmp_path / "r")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and needle in res.stderr + res.stdout
