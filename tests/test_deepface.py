"""deepface-emotion: our batched path against DeepFace.analyze itself (pytorch engine, no TensorFlow).

DeepFace's real weights cannot be downloaded here, so the test writes a weights file in DeepFace's own
format — a state_dict of deepface's EmotionModel with seeded random weights — into a temporary
DEEPFACE_HOME; analyze() then loads that same file through its own code. The last layer is scaled
up so the probabilities are far from uniform and a wrong preprocessing shows.
"""

import os
import socket
import time

import numpy as np
import pytest
import torch

pytest.importorskip("deepface")

from latent_edit_bench.errors import MissingAsset  # noqa: E402
from latent_edit_bench.instruments import deepface_emotion as dfe  # noqa: E402
from latent_edit_bench.plugins import get_plugins  # noqa: E402

TOL = 1e-5  # probabilities; seen ~1e-7 (float32 network, same cv2 calls)


def write_weights(home, seed=0):
    torch.manual_seed(seed)
    net = dfe.emotion_model_class()()
    with torch.no_grad():
        net.fc_3.weight.mul_(200.0)  # default init gives nearly uniform softmax on [0, 1] gray
    path = home / ".deepface" / "weights" / dfe.WEIGHTS_NAME
    path.parent.mkdir(parents=True)
    torch.save(net.state_dict(), path)
    return path


def real_images():
    """Grace Hopper crops of different sizes and DCGAN faces, uint8 RGB [H, W, 3]."""
    from matplotlib import cbook
    from PIL import Image

    hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))
    crops = [hopper[40:340, 90:420], hopper[60:124, 180:244], hopper[:150, 100:500]]
    faces = get_plugins().backbones.create("dcgan").sample(3, seed=5)
    faces = ((faces.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(c) for c in crops] + list(faces)


def as_batch(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 127.5 - 1


@pytest.fixture
def deepface_home(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEPFACE_HOME", str(tmp_path))
    monkeypatch.setenv("DEEPFACE_BACKEND_ENGINE", "pytorch")
    return tmp_path


def analyze(rgb):
    from deepface import DeepFace

    # DeepFace takes numpy images as BGR
    res = DeepFace.analyze(rgb[:, :, ::-1], actions=["emotion"], detector_backend="skip",
                           enforce_detection=False, silent=True)
    return np.array([res[0]["emotion"][k] for k in dfe.DEEPFACE_LABELS]) / 100


def test_matches_deepface_analyze(deepface_home):
    write_weights(deepface_home)
    inst = get_plugins().instruments.create("deepface-emotion")
    assert inst.differentiable   # torch preprocessing (to_network_input), not cv2
    worst, spread = 0.0, []
    for rgb in real_images():
        ours = inst(as_batch(rgb))["emotion"][0].numpy()
        theirs = analyze(rgb)
        worst = max(worst, np.abs(ours - theirs).max())
        spread.append(ours.max() - ours.min())
    assert worst < TOL, worst
    assert min(spread) > 0.2  # non-uniform outputs: the comparison means something


def test_torch_preprocessing_equals_cv2():
    """The instrument's batched torch path (on any device) against the cv2 reference, call for call."""
    for rgb in real_images():
        ref = dfe.preprocess(rgb[None])
        ours = dfe.to_network_input(as_batch(rgb)).numpy()
        assert ours.shape == ref.shape == (1, 1, dfe.INPUT_SIZE, dfe.INPUT_SIZE)
        assert np.abs(ours - ref).max() < 1e-5


def test_batch_equals_single(deepface_home):
    write_weights(deepface_home, seed=1)
    inst = dfe.deepface_emotion()
    faces = get_plugins().backbones.create("dcgan").sample(4, seed=2)
    batched = inst(faces)["emotion"]
    single = torch.cat([inst(faces[i:i + 1])["emotion"] for i in range(4)])
    torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)
    torch.testing.assert_close(batched.sum(1), torch.ones(4))


def test_missing_weights_raise_without_network(deepface_home, monkeypatch):
    def no_network(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(MissingAsset) as e:
        get_plugins().instruments.create("deepface-emotion")
    where = str(deepface_home / ".deepface" / "weights" / dfe.WEIGHTS_NAME)
    assert where in str(e.value)
    assert not os.path.exists(where)


def test_timing_batched_vs_analyze(deepface_home, capsys):
    """Not a speed assertion: prints both paths' time on 64 images (see the report)."""
    write_weights(deepface_home)
    inst = dfe.deepface_emotion()
    faces = get_plugins().backbones.create("dcgan").sample(64, seed=3)
    rgb = ((faces + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    analyze(rgb[0])  # build deepface's model once
    t0 = time.perf_counter()
    ours = inst(faces)["emotion"]
    t1 = time.perf_counter()
    theirs = np.stack([analyze(x) for x in rgb[:16]])
    t2 = time.perf_counter()
    per_ours, per_theirs = (t1 - t0) / 64, (t2 - t1) / 16
    with capsys.disabled():
        print(f"\ndeepface-emotion, 64 px: batched {1 / per_ours:.0f} img/s, analyze {1 / per_theirs:.0f} img/s, "
              f"ratio {per_theirs / per_ours:.1f}x")
    assert np.abs(ours[:16].numpy() - theirs).max() < 1e-3  # uint8 rounding of the faces
