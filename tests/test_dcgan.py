"""The embedded DigiFace DCGAN backbone: checked asset, faithful conversion, determinism, method hooks."""

import io
import zipfile

import pytest
import torch

from latent_edit_bench.assets import asset_path, record, sha256_file
from latent_edit_bench.plugins import get_plugins
from conftest import rebuild_from_pypi


@pytest.fixture(scope="module")
def dcgan():
    return get_plugins().backbones.create("dcgan")


def test_asset_matches_register():
    rec = record("dcgan-digiface")
    assert sha256_file(asset_path("dcgan-digiface")) == rec["sha256"]
    assert rec["licence"].startswith("MIT")


def test_same_seed_bit_identical(dcgan):
    a, b = dcgan.sample(5, seed=7), dcgan.sample(5, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, dcgan.sample(5, seed=8))
    assert a.shape == (5, 3, 64, 64) and a.min() >= -1 and a.max() <= 1


def test_batching_does_not_change_renders(dcgan):
    w = dcgan.to_edit(dcgan.sample_z(6, seed=1))
    torch.testing.assert_close(dcgan.render(w, batch_size=6), dcgan.render(w, batch_size=2), atol=1e-5, rtol=0)


def test_interface_and_hooks(dcgan):
    assert (dcgan.edit_space, dcgan.n_layers, dcgan.latent_dim, dcgan.z_dim) == ("z", 1, 100, 100)
    assert dcgan.discriminator is None
    z = dcgan.sample_z(3, seed=0)
    w = dcgan.to_edit(z)
    assert w.shape == (3, 1, 100)
    A = dcgan.style_weights()
    assert A.shape == (512 * 16, 100)
    # A @ z is the first layer's pre-batch-norm activation: the factorisation SeFa needs
    pre = dcgan.generator.blocks[0].conv(z[:, :, None, None]).flatten(1)
    torch.testing.assert_close(pre, z @ A.T, atol=1e-4, rtol=1e-4)
    assert dcgan.early_activation(w).shape == (3, 512 * 16)
    dcgan.train()
    assert not dcgan.generator.training  # batch-norm statistics stay frozen


def test_edit_space_is_differentiable(dcgan):
    w = dcgan.to_edit(dcgan.sample_z(2, seed=0)).requires_grad_(True)
    dcgan.synthesize(w).square().mean().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0


def test_converter_reproduces_the_shipped_file(tmp_path):
    """Rebuild the safetensors from the original wheel (when pip's cache or the index has it) and compare."""
    wheel, out = rebuild_from_pypi(tmp_path, "gan-face-generate", "1.1.1", "convert_dcgan.py")
    assert sha256_file(out) == record("dcgan-digiface")["sha256"]
    # and the converted generator renders what the original state dict renders through the original layer order
    with zipfile.ZipFile(wheel) as zf:
        sd = torch.load(io.BytesIO(zf.read("gan_face_generate/weights.tar")), map_location="cpu",
                        weights_only=True)["netG_state_dict"]
    seq = torch.nn.Sequential(
        torch.nn.ConvTranspose2d(100, 512, 4, 1, 0, bias=False), torch.nn.BatchNorm2d(512), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(512, 256, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(256), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(128), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(128, 64, 4, 2, 1, bias=False), torch.nn.BatchNorm2d(64), torch.nn.ReLU(),
        torch.nn.ConvTranspose2d(64, 3, 4, 2, 1, bias=False), torch.nn.Tanh())
    seq.load_state_dict({k.replace("main.", ""): v for k, v in sd.items()})
    seq.eval()
    bb = get_plugins().backbones.create("dcgan")
    z = bb.sample_z(4, seed=0)
    with torch.no_grad():
        torch.testing.assert_close(bb.synthesize(bb.to_edit(z)), seq(z[:, :, None, None]), atol=1e-5, rtol=0)
