"""The built-in metrics against independent numpy computations on random, sample-aligned instrument outputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from bench.attributes import CELEBA_ATTRIBUTES, GESTURE_ATTRIBUTES
from bench.errors import BenchError
from bench.metric import EditSet
from bench.plugins import get_plugins
from bench.stats import Bootstrap

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

    return EditSet("m", attr, outputs(), outputs(), outputs(),
                   reached0=(torch.rand(n, generator=g) < 0.7).to(device),
                   reached1=(torch.rand(n, generator=g) < 0.6).to(device),
                   strength0=torch.randn(n, generator=g).to(device), strength1=torch.randn(n, generator=g).to(device),
                   instruments={"attributes": "fake", "emotion": "fer-emotion", "landmarks": "faceapi-landmarks",
                                "descriptor": "faceapi-descriptor"})


def np_(t):
    return t.detach().cpu().double().numpy()


def run(name, s, **config):
    """(metric, columns as numpy, summary indexed by quantity)."""
    metric = get_plugins().metrics.create(name, **config)
    cols = metric.measure(s)
    frame = pd.DataFrame({c: np_(v) for c, v in cols.items()})
    summary = metric.summarise(frame, s.attr, Bootstrap(s.n, n_boot=200, seed=0))
    return metric, {c: np_(v) for c, v in cols.items()}, summary.set_index("quantity")


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_edit():
    s = edit_set()
    k = CELEBA_ATTRIBUTES.index("Male")
    _, cols, summ = run("edit", s)
    a0, a1, ao = (np_(t["attributes"])[:, k] for t in (s.x0, s.x1, s.original))
    r0, r1 = np_(s.reached0), np_(s.reached1)
    both = np.array([float(x and y) for x, y in zip(s.reached0.tolist(), s.reached1.tolist())])
    want = {"achieved0": a0, "achieved1": a1, "change": a1 - a0, "orig": ao, "reached0": r0, "reached1": r1,
            "reached_both": both}
    assert set(cols) == set(want)
    for c, v in want.items():
        close(cols[c], v)
        close(summ.loc[c, "value"], v.mean())
    assert summ.loc["reached_both", "label"] == "success rate (both targets reached)"
    assert summ.loc["change", "label"] == "R_k(X1) - R_k(X0)"
    assert set(summ["table"]) == {"edit"}


def test_topk_ratios_of_every_scored_attribute():
    s = edit_set("Male")
    metric, cols, summ = run("topk", s)
    assert metric.config["k"] == 5
    assert list(cols) == [f"d.{a}" for a in SCORED]               # CelebA order, unscored left out
    x0, x1 = np_(s.x0["attributes"]), np_(s.x1["attributes"])
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
    x0, x1 = np_(s.x0["attributes"]), np_(s.x1["attributes"])
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
    e0, e1, eo = (100 * np_(t["emotion"]) for t in (s.x0, s.x1, s.original))
    for i, emo in enumerate(EMOTIONS):
        close(cols[f"x0.{emo}"], e0[:, i])
        close(cols[f"x1.{emo}"], e1[:, i])
        close(cols[f"abs.{emo}"], np.abs(e1[:, i] - e0[:, i]))
        close(cols[f"abs_orig_x0.{emo}"], np.abs(e0[:, i] - eo[:, i]))
        close(cols[f"abs_orig_x1.{emo}"], np.abs(e1[:, i] - eo[:, i]))
        close(summ.loc[f"paired.{emo}", "value"], np.abs(e1[:, i] - e0[:, i]).mean())
        close(summ.loc[f"set.{emo}", "value"], abs(e1[:, i].mean() - e0[:, i].mean()))
        close(summ.loc[f"x0.{emo}", "value"], e0[:, i].mean())
        close(summ.loc[f"x1.{emo}", "value"], e1[:, i].mean())
    dist = np.array([np.mean([abs(e1[n, i] - e0[n, i]) for i in range(7)]) for n in range(N)])
    close(cols["disturbance"], dist)
    close(summ.loc["disturbance", "value"], dist.mean())
    assert summ.loc["disturbance", "better"] == "lower" and set(summ["table"]) == {"V"}
    assert all("fer-emotion" in label for label in summ["label"])
    q = {q.name: q for q in metric.quantities("Male", list(cols))}
    assert q["disturbance"].per_sample == "disturbance" and q["set.happy"].per_sample is None
    assert len(summ) == 1 + 4 * 7
    # the backend named in labels follows the EditSet's instrument, or the option (summarise without measure)
    s.instruments["emotion"] = "deepface-emotion"
    assert "deepface-emotion" in run("emotion", s)[2].loc["disturbance", "label"]
    named = get_plugins().metrics.create("emotion", instrument="deepface-emotion")
    assert "deepface-emotion" in named.quantities("Male", list(cols))[0].label


def test_landmarks():
    s = edit_set()
    _, cols, summ = run("landmarks", s)
    o, a, b = (np_(t["landmarks"]) for t in (s.original, s.x0, s.x1))

    def disp(p, q, idx):
        out = []
        for n in range(N):
            iod = np.hypot(*(o[n, 42:48].mean(0) - o[n, 36:42].mean(0)))
            out.append(np.mean([np.hypot(*(p[n, i] - q[n, i])) for i in idx]) / iod)
        return np.array(out)

    every, mouth, eyes_brows = range(68), range(48, 68), [*range(17, 27), *range(36, 48)]
    want = {"x0_x1": disp(a, b, every), "orig_x0": disp(o, a, every), "orig_x1": disp(o, b, every),
            "x0_x1_mouth": disp(a, b, mouth), "x0_x1_eyes_brows": disp(a, b, eyes_brows)}
    assert set(cols) == set(want)
    for c, v in want.items():
        close(cols[c], v)
        close(summ.loc[c, "value"], v.mean())
        assert summ.loc[c, "better"] == "lower"


def test_identity():
    s = edit_set()
    _, cols, summ = run("identity", s)
    o, a, b = (np_(t["descriptor"]) for t in (s.original, s.x0, s.x1))

    def cos(p, q):
        return np.array([p[n] @ q[n] / np.linalg.norm(p[n]) / np.linalg.norm(q[n]) for n in range(N)])

    want = {"cos_x0_x1": cos(a, b), "cos_orig_x0": cos(o, a), "cos_orig_x1": cos(o, b)}
    assert set(cols) == set(want)
    for c, v in want.items():
        close(cols[c], v)
        close(summ.loc[c, "value"], v.mean())
        assert summ.loc[c, "better"] == "higher"


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
    frame = pd.DataFrame({c: np_(v) for c, v in cols.items()})
    summary = metric.summarise(frame, s.attr, Bootstrap(N, n_boot=100))
    assert list(summary.columns) == ["quantity", "label", "value", "lo", "hi", "n", "better", "table"]
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
    with pytest.raises(BenchError, match=r"unknown attribute 'Beard'; valid: 5_o_Clock_Shadow"):
        metrics.create("edit").measure(edit_set("Beard"))
    with pytest.raises(BenchError, match=r"'Wavy_Hair' is not scored .*scored: Bald, Black_Hair"):
        metrics.create("topk").measure(edit_set("Wavy_Hair"))


def test_docs_example_metric_runs():
    """The complete example of docs/metrics.md registers as a plugin and measures."""
    import re
    import types
    from pathlib import Path

    from bench.plugins import Plugins, make_plugin_manager

    doc = (Path(__file__).resolve().parents[1] / "docs" / "metrics.md").read_text()
    module = types.ModuleType("expression_flip")
    exec(re.search(r"```python\n# expression_flip.py\n(.*?)```", doc, re.S).group(1), module.__dict__)
    metric = Plugins(make_plugin_manager([module])).metrics.create("expression-flip")
    s = edit_set()
    cols = metric.measure(s)
    want = (np_(s.x0["emotion"]).argmax(1) != np_(s.x1["emotion"]).argmax(1)).astype(float)
    close(np_(cols["flipped"]), want)
    summary = metric.summarise(pd.DataFrame({"flipped": want}), s.attr, Bootstrap(N, n_boot=100))
    close(summary.set_index("quantity").loc["flipped", "value"], want.mean())
