"""Perceptual trunks: the embedded ST-LPIPS VGG16 against stlpips' own code, and VGG19's layout."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latent_edit_bench.errors import MissingAsset
from latent_edit_bench.instruments.vgg import CONTENT_LAYERS, VGGFeatures, vgg16_stlpips, vgg19

FIXTURE = Path(__file__).parent / "fixtures" / "stlpips_vgg_reference.npz"
ATOL = 1e-5  # float32; observed worst 1.7e-6 on activations up to ~2


@pytest.fixture(scope="module")
def stlpips():
    torch.set_num_threads(1)
    return vgg16_stlpips()


def test_stlpips_trunk_matches_stlpips_code(stlpips):
    """Reference: tools/parity/stlpips_reference.py ran stlpips' models_lpf/vgg.py + downsample.py on the same
    photo crops (one odd, non-square) with the original weights file."""
    ref = np.load(FIXTURE)
    for n in (0, 1):
        out = stlpips(torch.from_numpy(ref[f"input{n}"]))
        for layer in CONTENT_LAYERS:
            want = ref[f"input{n}_{layer}"]
            got = out[layer][:, ref[f"channels_{layer}"]].numpy()
            assert got.shape == want.shape, (n, layer)
            np.testing.assert_allclose(got, want, atol=ATOL, rtol=0, err_msg=f"input{n} {layer}")


def test_stlpips_is_differentiable_and_declares_outputs(stlpips):
    x = torch.rand(2, 3, 24, 20, requires_grad=True) * 2 - 1
    x.retain_grad()
    out = stlpips(x)
    assert [o.name for o in stlpips.outputs] == list(out) == list(CONTENT_LAYERS)
    assert [o.shape[0] for o in stlpips.outputs] == [64, 64, 128, 128]
    assert out["conv_1"].shape == (2, 64, 24, 20)
    out["conv_4"].square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def naive_vgg19_convs(x: torch.Tensor, sd: dict) -> list[torch.Tensor]:
    """VGG19 block 1-2 written out by hand from torchvision's indices: conv 0, 2, pool, conv 5, 7."""
    x = (((x + 1) / 2) - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) \
        / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    c1 = F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], padding=1)
    c2 = F.conv2d(c1.relu(), sd["features.2.weight"], sd["features.2.bias"], padding=1)
    p = F.max_pool2d(c2.relu(), 2)
    c3 = F.conv2d(p, sd["features.5.weight"], sd["features.5.bias"], padding=1)
    c4 = F.conv2d(c3.relu(), sd["features.7.weight"], sd["features.7.bias"], padding=1)
    return [c1, c2, c3, c4]


def test_vgg19_loads_torchvision_layout(tmp_path):
    """A torchvision-layout state dict (random weights, extra deeper/classifier keys) loads through the
    factory, and conv_1..conv_4 are features 0, 2, 5, 7 before their ReLU."""
    g = torch.Generator().manual_seed(0)
    sd = {}
    for idx, (cin, cout) in {0: (3, 64), 2: (64, 64), 5: (64, 128), 7: (128, 128), 10: (128, 256)}.items():
        sd[f"features.{idx}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * (2 / (9 * cin)) ** 0.5
        sd[f"features.{idx}.bias"] = torch.randn(cout, generator=g) * 0.1
    sd["classifier.6.bias"] = torch.zeros(1000)  # deeper / head keys are ignored
    path = tmp_path / "vgg19-dcbb9e9d.pth"
    torch.save(sd, path)
    inst = vgg19(weights=str(path))
    x = torch.rand(2, 3, 18, 22) * 2 - 1
    got = inst(x)
    for layer, want in zip(CONTENT_LAYERS, naive_vgg19_convs(x, sd)):
        torch.testing.assert_close(got[layer], want, atol=1e-5, rtol=1e-5)
    assert VGGFeatures("vgg19").conv_index == [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]


def test_vgg19_missing_weights_say_where(tmp_path, monkeypatch):
    monkeypatch.setenv("BENCH_HOME", str(tmp_path))
    with pytest.raises(MissingAsset) as e:
        vgg19()
    msg = str(e.value)
    assert "vgg19-dcbb9e9d.pth" in msg and "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth" in msg
    assert str(tmp_path) in msg
