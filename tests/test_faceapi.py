"""Parity of the face-api ports (bench/latent_edit_bench/instruments/faceapi.py, faceapi_nets.py) with the original
TF.js networks.

The reference outputs in tests/fixtures/faceapi_reference.npz come from the original face-api 1.7.15
models run by TF.js 4.22 (wasm backend) on the stored uint8 crops; regenerate them with
``python tools/parity/faceapi_reference/make_fixture.py`` (needs Node; these tests do not).
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from latent_edit_bench.assets import asset_path, record, sha256_file
from latent_edit_bench.instruments import faceapi as fa
from latent_edit_bench.instruments import faceapi_nets, tf_ops

TORCH_THREADS = 1  # see conftest.py

FIXTURE = Path(__file__).parent / "fixtures" / "faceapi_reference.npz"
ASSETS = ("faceapi-landmark68", "faceapi-expression", "faceapi-age-gender", "faceapi-recognition")
# worst |ours - original| allowed over all crops (seen on this CPU: 3e-7, 1.7e-6, 3e-5 years, 7e-7, 5e-7)
TOLERANCE = {"landmarks": 5e-6, "expression": 2e-5, "age": 5e-4, "male": 1e-5, "descriptor": 5e-6}


@pytest.fixture(scope="module")
def ref():
    z = np.load(FIXTURE)
    names = [str(n) for n in z["names"]]
    return {"names": names, "crops": [z[f"crop_{i}"] for i in range(len(names))],
            "meta": json.loads(str(z["meta"])), **{k: z[k] for k in
                                                  ("landmarks", "landmarks_unpadded", "expression", "age", "gender",
                                                   "descriptor")}}


@pytest.fixture(scope="module")
def nets():
    return {"landmarks": fa.landmarks(), "expression": fa.expression(), "age_gender": fa.age_gender(),
            "descriptor": fa.descriptor()}


def to_images(*crops: np.ndarray) -> torch.Tensor:
    """uint8 HWC crops (same size) -> [B, 3, H, W] in [-1, 1]."""
    x = torch.from_numpy(np.stack(crops)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


def run_all(nets, images):
    out = {}
    for net in nets.values():
        out.update(net(images))
    return out


def test_parity_with_original(ref, nets):
    worst = dict.fromkeys(TOLERANCE, 0.0)
    with torch.no_grad():
        for i, crop in enumerate(ref["crops"]):
            o = run_all(nets, to_images(crop))
            err = {"landmarks": o["landmarks"][0].numpy() - ref["landmarks"][i],
                   "expression": o["expression"][0].numpy() - ref["expression"][i],
                   "age": o["age"][0].item() - ref["age"][i],
                   "male": o["male"][0].item() - ref["gender"][i][0],
                   "descriptor": o["descriptor"][0].numpy() - ref["descriptor"][i]}
            for k, e in err.items():
                worst[k] = max(worst[k], float(np.abs(e).max()))
    print("worst abs error vs original:", {k: f"{v:.1e}" for k, v in worst.items()})
    bad = {k: v for k, v in worst.items() if v > TOLERANCE[k]}
    assert not bad, f"ports differ from the original beyond {TOLERANCE}: {bad}"


def test_fixture_covers_both_padding_axes_and_no_resize(ref):
    shapes = [c.shape[:2] for c in ref["crops"]]
    assert any(h > w for h, w in shapes) and any(w > h for h, w in shapes) and (112, 112) in shapes


def test_landmark_pixels_match_original_postprocessing(ref, nets):
    """Our pixel mapping vs face-api's forward(); face-api pads |w-h|/2 (fractional), we the actual pixels."""
    for i, crop in enumerate(ref["crops"]):
        h, w = crop.shape[:2]
        with torch.no_grad():
            px = fa.landmarks_to_pixels(nets["landmarks"](to_images(crop))["landmarks"][0], h, w).numpy()
        theirs = ref["landmarks_unpadded"][i] * np.array([w, h])
        assert np.abs(px - theirs).max() <= 0.5 * (abs(h - w) % 2) + 1e-3


def test_emotion_is_expression_in_deepface_order(nets, ref):
    same = {"angry": "angry", "disgust": "disgusted", "fear": "fearful", "happy": "happy", "sad": "sad",
            "surprise": "surprised", "neutral": "neutral"}
    with torch.no_grad():
        o = nets["expression"](to_images(ref["crops"][0]))
    for j, label in enumerate(fa.DEEPFACE_LABELS):
        k = fa.EXPRESSION_LABELS.index(same[label])
        assert o["emotion"][0, j] == o["expression"][0, k]
    assert [o.labels for o in nets["expression"].outputs] == [fa.EXPRESSION_LABELS, fa.DEEPFACE_LABELS]


def test_declared_outputs(nets, ref):
    with torch.no_grad():
        for net in nets.values():
            out = net(to_images(*ref["crops"][1:2] * 2))
            assert set(out) == {o.name for o in net.outputs}
            for o in net.outputs:
                assert tuple(out[o.name].shape) == (2, *o.shape)
            assert all(record(a) for a in net.assets)


def test_batch_of_one_equals_batch_of_many(ref, nets):
    crops = ref["crops"][:5]
    h, w = min(c.shape[0] for c in crops), min(c.shape[1] for c in crops)
    images = to_images(*[c[:h, :w] for c in crops])
    with torch.no_grad():
        batched = run_all(nets, images)
        for i in range(len(crops)):
            single = run_all(nets, images[i:i + 1])
            for k, v in single.items():
                torch.testing.assert_close(batched[k][i:i + 1], v, rtol=1e-5, atol=1e-5)


def test_gradients_reach_the_image(ref, nets):
    """Gradient flows, and matches a central finite difference (float64: dtype follows the instrument)."""
    x = to_images(ref["crops"][0]).double()
    v = torch.randn(x.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for net in nets.values():
        net64 = copy.deepcopy(net).double()

        def f(img):
            return sum((t.double() * (1 + torch.arange(t.numel(), dtype=t.dtype).view(t.shape) % 3)).sum()
                       for t in net64(img).values())

        xg = x.clone().requires_grad_(True)
        f(xg).backward()
        assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0, net.name
        eps = 1e-7  # small: a larger step crosses ReLU kinks
        with torch.no_grad():
            fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
        assert math.isclose(fd.item(), (xg.grad * v).sum().item(), rel_tol=1e-4, abs_tol=1e-7), net.name


def test_grace_hopper_through_the_original_pipeline(ref, nets):
    """Re-run face-api's pipeline with our ports from the original detector's box (stored in the fixture):
    crop the box, landmarks, landmark box + 20%, then expressions and age/gender (SPEC: neutral 0.835,
    happy 0.161, age 88.6, male 0.908)."""
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    photo = np.asarray(Image.open(path).convert("RGB"))
    H, W = photo.shape[:2]
    det = ref["meta"]["crops"]["grace_hopper"]["detection"]

    def cut(x, y, w, h):  # Box.clipAtImageBorders + floor, as extractFaceTensors does
        cx, cy = max(x, 0), max(y, 0)
        x0, y0, cw, ch = (math.floor(v) for v in (cx, cy, min(x + w - cx, W - cx), min(y + h - cy, H - cy)))
        return photo[y0:y0 + ch, x0:x0 + cw]

    face = cut(*det["box"])
    fh, fw = face.shape[:2]
    with torch.no_grad():
        lm = nets["landmarks"](to_images(face))["landmarks"][0].double().numpy()
    # face-api's postProcess: fractions of the unpadded face, padding taken as |w - h| / 2
    pad = np.array([abs(fw - fh) / 2 if fw < fh else 0, abs(fw - fh) / 2 if fh < fw else 0])
    pts = (lm * max(fw, fh) - pad) + np.array(det["box"][:2])
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    bw, bh = x1 - x0, y1 - y0
    aligned = cut(x0 - 0.1 * bw, y0 - 0.1 * bh, 1.2 * bw, 1.2 * bh)
    with torch.no_grad():
        o = run_all({k: nets[k] for k in ("expression", "age_gender")}, to_images(aligned))
    expr = o["expression"][0].numpy()
    print(f"grace hopper: neutral {expr[0]:.3f} happy {expr[1]:.3f} age {o['age'].item():.1f} "
          f"male {o['male'].item():.3f}; original {det['expressions'][:2]}, {det['age']:.1f}, {det['male']:.3f}")
    assert np.abs(expr - np.array(det["expressions"])).max() < 0.01
    assert abs(o["age"].item() - det["age"]) < 0.5 and abs(o["male"].item() - det["male"]) < 0.01
    assert abs(det["expressions"][0] - 0.835) < 1e-3 and abs(det["age"] - 88.6) < 0.1  # the fixture is SPEC's run


def load_converter():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tools" / "convert" / "convert_faceapi.py"
    spec = importlib.util.spec_from_file_location("convert_faceapi", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_decode_tfjs_weights():
    decode = load_converter().decode

    q = np.array([0, 1, 200, 255], np.uint8)
    raw = np.array([1.5, -2.25], "<f4")
    manifest = [{"weights": [
        {"name": "a/filters", "shape": [2, 2], "dtype": "float32",
         "quantization": {"dtype": "uint8", "scale": 0.1, "min": -0.7}},
        {"name": "a/bias", "shape": [2], "dtype": "float32"}]}]
    out = decode(manifest, q.tobytes() + raw.tobytes())
    np.testing.assert_array_equal(out["a/filters"], np.float32(q.astype(np.float64) * 0.1 - 0.7).reshape(2, 2))
    np.testing.assert_array_equal(out["a/bias"], raw)
    with pytest.raises(ValueError):
        decode(manifest, q.tobytes() + raw.tobytes() + b"\0")


@pytest.mark.parametrize("asset", ASSETS)
def test_shipped_weights_match_register(asset):
    path = asset_path(asset, verify=False)
    assert sha256_file(path) == record(asset)["sha256"]


def test_converter_reproduces_register():
    """Byte-identical conversion, when the npm package is at hand (make_fixture.py's workspace)."""
    package = Path(tempfile.gettempdir()) / "faceapi_reference_node" / "node_modules" / "@vladmandic" / "face-api"
    if not (package / "model").is_dir():
        pytest.skip(f"no face-api package at {package} (python tools/parity/faceapi_reference/make_fixture.py)")
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    with tempfile.TemporaryDirectory() as out:
        subprocess.run([sys.executable, str(root / "tools" / "convert" / "convert_faceapi.py"), "--package", str(package),
                        "--out-dir", out], check=True, capture_output=True)
        for asset in ASSETS:
            assert sha256_file(Path(out) / record(asset)["file"]) == record(asset)["sha256"], asset


def test_strict_loading_names_what_is_wrong():
    from safetensors.torch import load_file

    from latent_edit_bench.errors import BenchError

    tensors = load_file(str(asset_path("faceapi-landmark68")))
    tensors["dense0/conv9/bias"] = tensors.pop("dense0/conv3/bias")
    with pytest.raises(BenchError, match="conv9"):
        faceapi_nets.load_tfjs(faceapi_nets.FaceFeatureNet(136), tensors)


def test_max_pool_same_equals_pooling_a_minus_inf_padded_copy():
    """max_pool_same uses max_pool2d's own padding (ceil_mode) instead of copying the activations into a
    -inf frame: the values and the gradients must be exactly those of the padded copy, for every size."""
    import torch.nn.functional as F

    for n in range(3, 30):
        for k, s in ((3, 2), (2, 2), (3, 1), (5, 2), (3, 3)):
            x = torch.randn(2, 3, n, n + 1, dtype=torch.float64).requires_grad_()
            ref = F.max_pool2d(F.pad(x, tf_ops.same_pads(x, k, s), value=float("-inf")), k, s)
            got = tf_ops.max_pool_same(x, k, s)
            assert got.shape == ref.shape and torch.equal(got, ref), (n, k, s)
            assert torch.equal(*(torch.autograd.grad(y.sum(), x)[0] for y in (got, ref))), (n, k, s)
