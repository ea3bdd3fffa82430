"""StyleGAN2 in pure PyTorch: shapes, truncation, the two modulated-conv formulations, noise modes,
SeFa weights, discriminator and gradients, and rosinality's exact state-dict names."""

from __future__ import annotations

import pytest
import torch

from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone, stylegan2_channels


@pytest.fixture(scope="module")
def gen():
    torch.manual_seed(0)
    g = Generator(32, style_dim=64, n_mlp=3, channel_multiplier=1, max_channels=32).eval()
    with torch.no_grad():   # off init: noise strengths and biases are zero there
        for p in g.parameters():
            p.add_(0.2 * torch.randn_like(p))
        g.latent_avg.copy_(g.mean_latent(2000, seed=0)[0])
    return g


def test_rosinality_state_dict_names():
    # written out from rosinality/stylegan2-pytorch model.py (Generator(8, 512, 2) / Discriminator(8))
    g_keys = {f"style.{i}.{p}" for i in range(1, 3) for p in ("weight", "bias")} | {
        "input.input", "noises.noise_0", "noises.noise_1", "noises.noise_2",
        "conv1.conv.weight", "conv1.conv.modulation.weight", "conv1.conv.modulation.bias", "conv1.noise.weight",
        "conv1.activate.bias", "to_rgb1.bias", "to_rgb1.conv.weight", "to_rgb1.conv.modulation.weight",
        "to_rgb1.conv.modulation.bias",
        "convs.0.conv.weight", "convs.0.conv.blur.kernel", "convs.0.conv.modulation.weight",
        "convs.0.conv.modulation.bias", "convs.0.noise.weight", "convs.0.activate.bias",
        "convs.1.conv.weight", "convs.1.conv.modulation.weight", "convs.1.conv.modulation.bias",
        "convs.1.noise.weight", "convs.1.activate.bias",
        "to_rgbs.0.bias", "to_rgbs.0.upsample.kernel", "to_rgbs.0.conv.weight", "to_rgbs.0.conv.modulation.weight",
        "to_rgbs.0.conv.modulation.bias"}
    assert set(Generator(8, style_dim=16, n_mlp=2, max_channels=8).state_dict()) == g_keys
    d_keys = {"convs.0.0.weight", "convs.0.1.bias", "convs.1.conv1.0.weight", "convs.1.conv1.1.bias",
              "convs.1.conv2.0.kernel", "convs.1.conv2.1.weight", "convs.1.conv2.2.bias", "convs.1.skip.0.kernel",
              "convs.1.skip.1.weight", "final_conv.0.weight", "final_conv.1.bias", "final_linear.0.weight",
              "final_linear.0.bias", "final_linear.1.weight", "final_linear.1.bias"}
    assert set(Discriminator(8, max_channels=8).state_dict()) == d_keys


def test_channel_tables():
    assert stylegan2_channels(256, 2) == {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128}
    assert stylegan2_channels(256, 1)[256] == 64
    assert stylegan2_channels(64, 2, max_channels=128) == {4: 128, 8: 128, 16: 128, 32: 128, 64: 128}
    assert stylegan2_channels(16, channels={16: 8})[16] == 8
    g = Generator(256, channel_multiplier=1, max_channels=8, style_dim=8, n_mlp=1)
    assert g.n_latent == 14 and g.num_layers == 13 and g.convs[0].conv.weight.shape == (1, 8, 8, 3, 3)
    with pytest.raises(ValueError):
        Generator(48)


def test_shapes_w_and_w_plus(gen):
    w = gen.mapping(torch.randn(2, 64))
    assert gen.n_latent == 8 and w.shape == (2, 64)
    with torch.no_grad():
        x_w = gen.synthesis(w)
        x_wp = gen.synthesis(w[:, None].repeat(1, gen.n_latent, 1))
    assert x_w.shape == (2, 3, 32, 32) and x_w.is_contiguous()
    assert torch.equal(x_w, x_wp)
    with pytest.raises(ValueError, match="W\\+"):
        gen.synthesis(torch.zeros(2, 5, 64))


def test_truncation_psi_zero_renders_w_avg(gen):
    bb = StyleGAN2Backbone(gen, truncation=0.0)
    z = bb.sample_z(3, seed=1)
    with torch.no_grad():
        w = bb.to_edit(z)
        assert w.shape == (3, gen.n_latent, 64)
        assert torch.allclose(w, gen.latent_avg.expand_as(w))
        x = bb.synthesize(w)
        assert torch.allclose(x, gen.synthesis(gen.latent_avg[None].expand(3, -1)), atol=1e-6)
        half = StyleGAN2Backbone(gen, truncation=0.5).to_edit(z)
        full = StyleGAN2Backbone(gen, truncation=1.0).to_edit(z)
    assert torch.allclose(half, (full + w) / 2, atol=1e-6)


def test_fused_and_non_fused_modconv_agree(gen):
    ws = torch.randn(3, gen.n_latent, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = gen.synthesis(ws)
        gen.set_fused(True)
        gen.channels_last = False
        try:
            grouped = gen.synthesis(ws)
        finally:
            gen.set_fused(False)
            gen.channels_last = True
    assert (ref - grouped).abs().max() < 1e-5 * ref.abs().max() * 10
    assert ref.std() > 0.1      # a non-trivial image


def test_noise_modes(gen):
    ws = torch.randn(2, gen.n_latent, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        a, b = gen.synthesis(ws), gen.synthesis(ws)
        torch.manual_seed(0)
        r1 = gen.synthesis(ws, noise_mode="random")
        r2 = gen.synthesis(ws, noise_mode="random")
        none = gen.synthesis(ws, noise_mode="none")
        img_default, _ = gen([ws], input_is_latent=True)
    assert torch.equal(a, b) and torch.equal(a, img_default)
    assert (r1 - r2).abs().max() > 1e-3 and (r1 - a).abs().max() > 1e-3 and (none - a).abs().max() > 1e-3


def test_style_mixing_interface(gen):
    z1, z2 = torch.randn(2, 64), torch.randn(2, 64)
    with torch.no_grad():
        _, latent = gen([z1, z2], inject_index=3, return_latents=True)
    assert torch.allclose(latent[:, :3], gen.mapping(z1)[:, None].expand(-1, 3, -1))
    assert torch.allclose(latent[:, 3:], gen.mapping(z2)[:, None].expand(-1, gen.n_latent - 3, -1))


def test_style_weights_and_early_activation(gen):
    bb = StyleGAN2Backbone(gen)
    a = bb.style_weights()
    in_channels = gen.channels[4] + sum(c.conv.in_channel for c in gen.convs)
    assert a.shape == (in_channels, 64)
    m = gen.convs[2].conv.modulation
    start = gen.channels[4] + gen.convs[0].conv.in_channel + gen.convs[1].conv.in_channel
    assert torch.equal(a[start:start + m.weight.shape[0]], m.weight * m.scale)
    w = bb.to_edit(bb.sample_z(2, 0))
    assert bb.early_activation(w).shape == (2, gen.channels[4] * 16)


def test_discriminator_forward():
    torch.manual_seed(0)
    d = Discriminator(32, channel_multiplier=1, max_channels=16)
    x = torch.randn(8, 3, 32, 32)
    out = d(x)
    assert out.shape == (8, 1) and torch.isfinite(out).all()
    # minibatch stddev: with 8 samples and groups of 4, sample 0 is grouped with 2, 4, 6 (strided, as
    # in rosinality and NVIDIA), so changing sample 2 moves its score and changing sample 1 does not
    x2, x1 = x.clone(), x.clone()
    x2[2], x1[1] = 0, 0
    assert not torch.allclose(d(x2)[0], out[0]) and torch.allclose(d(x1)[0], out[0])
    with pytest.raises(ValueError, match="multiple of its stddev group"):
        d(torch.randn(6, 3, 32, 32))


def test_gradients_reach_every_w_plus_layer(gen):
    bb = StyleGAN2Backbone(gen, Discriminator(32, channel_multiplier=1, max_channels=16))
    w = bb.to_edit(bb.sample_z(4, 0)).detach().requires_grad_(True)
    x = bb.synthesize(w)
    (x.square().mean() + bb.discriminator(x).mean()).backward()
    assert w.grad is not None and (w.grad.abs().sum(dim=(0, 2)) > 0).all()
    assert all(p.grad is None for p in bb.parameters())      # the backbone stays frozen


@pytest.mark.slow
def test_double_backward_for_r1_and_path_length():
    # the in-place leaky ReLU must stay twice differentiable (R1 and path-length regularisers)
    torch.manual_seed(0)
    d = Discriminator(8, max_channels=4).double()
    x = torch.randn(4, 3, 8, 8, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: d(t), (x,))
    g = Generator(8, style_dim=4, n_mlp=1, max_channels=4).double()
    w = torch.randn(2, g.n_latent, 4, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradgradcheck(lambda t: g.synthesis(t), (w,))
