"""The built-in metrics against independent numpy computations on random, sample-aligned instrument outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, GESTURE_ATTRIBUTES
from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.metric import EditSet
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.pipeline.stats import Bootstrap, evaluate

TORCH_THREADS = 1  # see conftest.py

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NAMES = ("edit", "topk", "gesture", "emotion", "landmarks", "identity")
N = 40
# Scored by our fake attribute instrument; the rest are NaN. Narrow_Eyes left out: an unscored gesture attribute.
SCORED = ("Bald", "Black_Hair", "Eyeglasses", "Male", "Mouth_Slightly_Open", "Pale_Skin", "Smiling", "Young")


def edit_set(attr="Male", n=N, seed=0, device="cpu", dtype=torch.float32) -> EditSet:
    g = torch.Generator().manual_seed(seed)
    mask = torch.tensor([a in SCORED for a in CELEBA_ATTRIBUTES])

    def outputs():
        attrs = torch.rand(n, 40, generator=g, dtype=torch.float64)
        attrs[:, ~mask] = float("nan")
        emotion = torch.softmax(3 * torch.randn(n, 7, generator=g, dtype=torch.float64), dim=1)
        landmarks = 0.3 + 0.4 * torch.rand(n, 68, 2, generator=g, dtype=torch.float64)
        descriptor = torch.randn(n, 128, generator=g, dtype=torch.float64)
        return {k: v.to(device, dtype) for k, v in dict(attributes=attrs, emotion=emotion, landmarks=landmarks,
                                                        descriptor=descriptor).items()}

    return EditSet("m", attr, outputs(), outputs(), reached=(torch.rand(n, generator=g) < 0.7).to(device),
                   strength=torch.randn(n, generator=g).to(device), level=0.2, seed=0,
                   instruments={"attributes": "fake", "emotion": "fer-emotion", "landmarks": "faceapi-landmarks",
                                "descriptor": "faceapi-descriptor"})


def np_(t):
    return t.detach().cpu().double().numpy()


def summarise(metric, cols: dict, attr: str) -> pd.DataFrame:
    """Each quantity over all samples (one fit seed), with its interval: what the run computes per level."""
    boot, x = Bootstrap(N, n_boot=200, seed=0), {c: v[None, :] for c, v in cols.items()}
    rows = []
    for q in metric.quantities(attr, list(cols)):
        value, lo, hi = evaluate(q, x, boot, np.ones(N, bool), None)
        rows.append({"quantity": q.name, "label": q.label or q.name, "value": value, "lo": lo, "hi": hi,
                     "better": q.better or "", "table": q.table})
    return pd.DataFrame(rows).set_index("quantity")


def run(name, s, **config):
    """(metric, columns as numpy, summary indexed by quantity)."""
    metric = get_plugins().metrics.create(name, **config)
    cols = {c: np_(v) for c, v in metric.measure(s).items()}
    return metric, cols, summarise(metric, cols, s.attr)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_edit():
    s = edit_set()
    k = CELEBA_ATTRIBUTES.index("Male")
    _, cols, summ = run("edit", s)
    ao, ae = (np_(t["attributes"])[:, k] for t in (s.original, s.edited))
    want = {"orig": ao, "edited": ae, "change": ae - ao}
    assert set(cols) == set(want)
    for c, v in want.items():
        close(cols[c], v)
        close(summ.loc[c, "value"], v.mean())
    assert summ.loc["change", "label"] == "achieved change R_k(edited) - R_k(original)"
    assert set(summ["table"]) == {"edit"}


def test_topk_ratios_of_every_scored_attribute():
    s = edit_set("Male")
    metric, cols, summ = run("topk", s)
    assert metric.config["k"] == 5
    assert list(cols) == [f"d.{a}" for a in SCORED]               # CelebA order, unscored left out
    x0, x1 = np_(s.original["attributes"]), np_(s.edited["attributes"])
    d = {a: x1[:, CELEBA_ATTRIBUTES.index(a)] - x0[:, CELEBA_ATTRIBUTES.index(a)] for a in SCORED}
    for a in SCORED:
        close(cols[f"d.{a}"], d[a])
    others = [a for a in SCORED if a != "Male"]
    assert sorted(summ.index) == sorted([f"r.{a}" for a in others] + ["delta_k"])
    for a in others:
        close(summ.loc[f"r.{a}", "value"], abs(d[a].mean()) / abs(d["Male"].mean()))
        assert summ.loc[f"r.{a}", "better"] == "lower" and summ.loc[f"r.{a}", "table"] == "I-III"
    close(summ.loc["delta_k", "value"], d["Male"].mean())
    assert run("topk", s, k=3)[0].config["k"] == 3


def test_gesture_reuses_topk_and_skips_target_and_unscored():
    s = edit_set("Male")
    _, cols, summ = run("gesture", s)
    assert list(cols) == ["d.Male", "d.Mouth_Slightly_Open", "d.Smiling"]   # Narrow_Eyes unscored
    assert sorted(summ.index) == ["r.Mouth_Slightly_Open", "r.Smiling"]
    assert set(summ["table"]) == {"IV"} and set(summ["better"]) == {"lower"}
    x0, x1 = np_(s.original["attributes"]), np_(s.edited["attributes"])
    dk = (x1 - x0)[:, CELEBA_ATTRIBUTES.index("Male")].mean()
    for a in ("Smiling", "Mouth_Slightly_Open"):
        close(summ.loc[f"r.{a}", "value"], abs((x1 - x0)[:, CELEBA_ATTRIBUTES.index(a)].mean()) / abs(dk))
    # target is itself a gesture attribute: no ratio of it to itself
    _, cols, summ = run("gesture", edit_set("Smiling"))
    assert list(summ.index) == ["r.Mouth_Slightly_Open"] and "d.Smiling" in cols
    assert set(GESTURE_ATTRIBUTES) == {"Smiling", "Mouth_Slightly_Open", "Narrow_Eyes"}


def test_emotion():
    s = edit_set()
    metric, cols, summ = run("emotion", s)
    eo, ee = (100 * np_(t["emotion"]) for t in (s.original, s.edited))
    for i, emo in enumerate(EMOTIONS):
        close(cols[f"before.{emo}"], eo[:, i])
        close(cols[f"after.{emo}"], ee[:, i])
        close(cols[f"abs.{emo}"], np.abs(ee[:, i] - eo[:, i]))
        close(summ.loc[f"paired.{emo}", "value"], np.abs(ee[:, i] - eo[:, i]).mean())
        close(summ.loc[f"set.{emo}", "value"], abs(ee[:, i].mean() - eo[:, i].mean()))
        close(summ.loc[f"before.{emo}", "value"], eo[:, i].mean())
        close(summ.loc[f"after.{emo}", "value"], ee[:, i].mean())
    dist = np.array([np.mean([abs(ee[n, i] - eo[n, i]) for i in range(7)]) for n in range(N)])
    close(cols["disturbance"], dist)
    close(summ.loc["disturbance", "value"], dist.mean())
    assert summ.loc["disturbance", "better"] == "lower" and set(summ["table"]) == {"V"}
    assert all("fer-emotion" in label for label in summ["label"])
    assert len(summ) == 1 + 4 * 7
    # the backend named in labels follows the EditSet's instrument, or the option (summarise without measure)
    s.instruments["emotion"] = "deepface-emotion"
    assert "deepface-emotion" in run("emotion", s)[2].loc["disturbance", "label"]
    named = get_plugins().metrics.create("emotion", instrument="deepface-emotion")
    assert "deepface-emotion" in named.quantities("Male", list(cols))[0].label


def test_landmarks():
    s = edit_set()
    _, cols, summ = run("landmarks", s)
    o, e = (np_(t["landmarks"]) for t in (s.original, s.edited))

    def disp(idx):
        out = []
        for n in range(N):
            iod = np.hypot(*(o[n, 42:48].mean(0) - o[n, 36:42].mean(0)))
            out.append(np.mean([np.hypot(*(e[n, i] - o[n, i])) for i in idx]) / iod)
        return np.array(out)

    want = {"displacement": disp(range(68)), "mouth": disp(range(48, 68)),
            "eyes_brows": disp([*range(17, 27), *range(36, 48)])}
    assert set(cols) == set(want)
    for c, v in want.items():
        close(cols[c], v)
        close(summ.loc[c, "value"], v.mean())
        assert summ.loc[c, "better"] == "lower"


def test_identity():
    """Against an independent numpy reading: the threshold is the 1st percentile of the distances of all
    pairs of different originals; kept = closer than it; rank = share of those pairs at least as close."""
    s = edit_set()
    _, cols, summ = run("identity", s)
    o, e = (np_(t["descriptor"]) for t in (s.original, s.edited))
    pairs = np.array([np.linalg.norm(o[i] - o[j]) for i in range(N) for j in range(i + 1, N)])
    t = np.percentile(pairs, 1)
    dist = np.linalg.norm(e - o, axis=1)
    want = {"distance": dist, "kept": (dist < t).astype(float), "rank": np.array([(pairs <= d).mean() for d in dist]),
            "threshold": np.full(N, t),
            "cos": np.array([o[n] @ e[n] / np.linalg.norm(o[n]) / np.linalg.norm(e[n]) for n in range(N)])}
    assert set(cols) == set(want)
    for c, v in want.items():
        close(cols[c], v)
        close(summ.loc[c, "value"], v.mean())
    assert summ.loc["kept", "better"] == "higher" and summ.loc["rank", "better"] == "lower"
    assert summ.loc["kept", "label"].startswith("share of edits closer to their original than P1")


def test_identity_by_hand():
    """Four originals at the corners of a 3 x 4 rectangle: different-face distances 3, 3, 4, 4, 5, 5. At the
    30th percentile the threshold is 3.5 (position 1.5 of 0..5); edits at distances 1, 3.5, 4 and 6."""
    o = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0], [3.0, 4.0]])
    e = o + torch.tensor([[1.0, 0.0], [0.0, 3.5], [-4.0, 0.0], [0.0, -6.0]])
    s = EditSet("m", "Male", {"descriptor": o}, {"descriptor": e}, reached=torch.ones(4, dtype=torch.bool),
                strength=torch.zeros(4))
    metric = get_plugins().metrics.create("identity", percentile=30)
    cols = {c: np_(v) for c, v in metric.measure(s).items()}
    close(cols["distance"], [1, 3.5, 4, 6])
    close(cols["threshold"], [3.5] * 4)
    close(cols["kept"], [1, 0, 0, 0])                   # 3.5 is not closer than the threshold itself
    close(cols["rank"], [0, 2 / 6, 4 / 6, 1])           # pairs at distance <= 1, 3.5, 4, 6
    assert metric.quantities("Male", list(cols))[0].label.startswith("share of edits closer to their original than P30")
    # other originals (another run through the same metric object): the threshold follows them
    s2 = EditSet("m", "Male", {"descriptor": 2 * o}, {"descriptor": 2 * o + 1}, reached=s.reached, strength=s.strength)
    close(np_(metric.measure(s2)["threshold"]), [7.0] * 4)
    for bad in (0, 50, -1):
        with pytest.raises(BenchError, match=r"percentile must be in \(0, 50\)"):
            get_plugins().metrics.create("identity", percentile=bad)


@pytest.mark.parametrize("name", NAMES)
def test_contract(name):
    """Every column is [N] on the input's device; quantities read only measured columns; summary columns."""
    s = edit_set()
    metric = get_plugins().metrics.create(name)
    assert metric.name == name and metric.title and set(metric.needs) <= {"attributes", "emotion", "landmarks",
                                                                          "descriptor"}
    cols = metric.measure(s)
    assert all(v.shape == (N,) and torch.isfinite(v).all() for v in cols.values())
    qs = metric.quantities(s.attr, list(cols))
    assert len({q.name for q in qs}) == len(qs)
    assert all(set(q.columns) <= set(cols) for q in qs)
    summary = summarise(metric, {c: np_(v) for c, v in cols.items()}, s.attr)
    assert ((summary["lo"] <= summary["value"] + 1e-9) & (summary["value"] <= summary["hi"] + 1e-9)).all()


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU"))])
@pytest.mark.parametrize("name", NAMES)
def test_device_and_dtype(name, device):
    """Columns stay on the instruments' device and agree with the float64 CPU computation."""
    metric = get_plugins().metrics.create(name)
    ref = metric.measure(edit_set(dtype=torch.float64))
    got = metric.measure(edit_set(device=device))
    assert ref.keys() == got.keys()
    for c in ref:
        assert got[c].device.type == device
        np.testing.assert_allclose(np_(got[c]), np_(ref[c]), rtol=1e-4, atol=1e-4)


def test_bad_options_and_inputs():
    metrics = get_plugins().metrics
    with pytest.raises(BenchError, match=r"metric 'emotion' has no option bogus; options: instrument"):
        metrics.create("emotion", bogus=1)
    with pytest.raises(BenchError, match=r"has no option k; options: \(none\)"):
        metrics.create("landmarks", k=3)
    with pytest.raises(BenchError, match="positive integer"):
        metrics.create("topk", k=0)
    with pytest.raises(BenchError, match="unknown metric 'nope'; valid metrics: edit, emotion"):
        metrics.create("nope")
    with pytest.raises(BenchError, match=r"unknown attribute 'Beard' \(did you mean 'No_Beard'\?\); valid: 5_o_Clock_Shadow"):
        metrics.create("edit").measure(edit_set("Beard"))
    with pytest.raises(BenchError, match=r"'Wavy_Hair' is not scored .*scored: Bald, Black_Hair"):
        metrics.create("topk").measure(edit_set("Wavy_Hair"))


def test_docs_example_metric_runs():
    """The complete example of docs/writing-a-metric.md registers as a plugin and measures; it is the
    module of the test package tests/plugins/bench-expression-flip (installed by test_metric_plugin.py)."""
    import re
    import types
    from pathlib import Path

    from latent_edit_bench.plugins import Plugins, make_plugin_manager

    root = Path(__file__).resolve().parents[1]
    doc = (root / "docs" / "writing-a-metric.md").read_text()
    code = re.search(r"```python\n# expression_flip.py\n(.*?)```", doc, re.S).group(1)
    assert code == (root / "tests" / "plugins" / "bench-expression-flip" / "bench_expression_flip"
                    / "expression_flip.py").read_text()
    module = types.ModuleType("expression_flip")
    exec(code, module.__dict__)
    metric = Plugins(make_plugin_manager([module])).metrics.create("expression-flip")
    s = edit_set()
    cols = metric.measure(s)
    want = (np_(s.original["emotion"]).argmax(1) != np_(s.edited["emotion"]).argmax(1)).astype(float)
    close(np_(cols["flipped"]), want)
    close(summarise(metric, {"flipped": want}, s.attr).loc["flipped", "value"], want.mean())
