"""StyleGAN2 checkpoint formats: round trips, NVIDIA conventions, and refusal of hostile files.

The NVIDIA-convention check renders from the NVIDIA-named tensors of a written .pkl with an
independent re-statement of stylegan2-ada-pytorch's forward math (below), so a wrong name
mapping or gain that the writer and reader share would still be caught.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latent_edit_bench.backbones import formats, formats_ada_pickle
from latent_edit_bench.backbones.formats import load_stylegan2
from stylegan2_writers import write_ada_pkl, write_rosinality
from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone
from latent_edit_bench.errors import BenchError


def _perturbed(module, seed):
    """Move every parameter and buffer off its init so that each mapping matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if name.endswith("kernel"):
                continue
            t.add_(0.3 * torch.randn(t.shape, generator=g))
        if hasattr(module, "latent_avg"):
            module.latent_avg.copy_(torch.randn(module.latent_avg.shape, generator=g))
    return module.eval()


CONFIGS = [
    dict(size=16, channel_multiplier=1, max_channels=24, style_dim=32, n_mlp=3),
    dict(size=32, channel_multiplier=2, channels={4: 32, 8: 24, 16: 16, 32: 8}, style_dim=48, n_mlp=2),
]


@pytest.fixture(scope="module", params=range(len(CONFIGS)), ids=["16px-cm1", "32px-cm2"])
def models(request):
    torch.manual_seed(request.param)
    cfg = dict(CONFIGS[request.param])
    g = _perturbed(Generator(**cfg), 10 + request.param)
    d_cfg = {k: cfg[k] for k in ("size", "channel_multiplier", "channels", "max_channels") if k in cfg}
    d = _perturbed(Discriminator(**d_cfg), 20 + request.param)
    return g, d


@pytest.mark.parametrize("fmt", ["pt", "pkl", "safetensors"])
def test_round_trip_same_images_and_d(models, tmp_path, fmt):
    g, d = models
    path = tmp_path / f"model.{fmt}"
    if fmt == "pt":
        write_rosinality(path, g, d, args=dict(size=g.size, channel_multiplier=g.channel_multiplier))
    elif fmt == "pkl":
        write_ada_pkl(path, g, d)
    else:
        formats.write_safetensors(path, g, d)   # the package's own format (bench perf, the trainer)
    bb = load_stylegan2(path)
    assert bb.generator.channels == g.channels and bb.discriminator.channels == d.channels
    assert torch.equal(bb.generator.latent_avg, g.latent_avg)
    z = torch.randn(4, g.z_dim, generator=torch.Generator().manual_seed(1))
    w_plus = torch.randn(4, g.n_latent, g.style_dim, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(bb.synthesize(w_plus), g.synthesis(w_plus))
        assert torch.equal(bb.synthesize(bb.to_edit(z)), g.synthesis(g.mapping(z)))
        x = g.synthesis(w_plus)
        assert torch.equal(bb.discriminator(x), d(x))


def test_rosinality_checkpoint_with_optimiser_state_and_no_latent_avg(models, tmp_path):
    g, d = models
    ckpt = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict(),
            "g_optim": torch.optim.Adam(g.parameters(), betas=(0.0, 0.99)).state_dict(), "ada_aug_p": 0.1}
    torch.save(ckpt, tmp_path / "train.pt")
    bb = load_stylegan2(tmp_path / "train.pt")
    expected = g.mean_latent(10000, seed=0)[0]
    assert torch.allclose(bb.generator.latent_avg, expected, atol=1e-6)   # computed: none stored


def test_legacy_torch_format_pt(models, tmp_path):
    # checkpoints from torch < 1.6 are not zip files
    g, _ = models
    torch.save({"g_ema": g.state_dict(), "latent_avg": g.latent_avg}, tmp_path / "old.pt",
               _use_new_zipfile_serialization=False)
    assert (tmp_path / "old.pt").read_bytes()[:4] != b"PK\x03\x04"
    bb = load_stylegan2(tmp_path / "old.pt")
    ws = torch.randn(2, g.n_latent, g.style_dim)
    with torch.no_grad():
        assert torch.equal(bb.synthesize(ws), g.synthesis(ws))


def test_bare_state_dict_pt(models, tmp_path):
    g, _ = models
    torch.save(g.state_dict(), tmp_path / "g.pt")
    bb = load_stylegan2(tmp_path / "g.pt")
    assert bb.discriminator is None and bb.resolution == g.size


# -- NVIDIA conventions, restated independently ------------------------------------------------------


def _ref_upfirdn(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    b, c, h, w = x.shape
    if up > 1:
        z = x.new_zeros(b, c, h * up, w * up)
        z[:, :, ::up, ::up] = x
        x = z
    x = F.pad(x, list(pad))                                   # [x0, x1, y0, y1]
    f = (f * gain).flip([0, 1])[None, None]                    # flip_filter=False: true convolution
    x = F.conv2d(x.reshape(b * c, 1, *x.shape[2:]), f)
    return x.reshape(b, c, *x.shape[2:])[:, :, ::down, ::down]


def _ref_conv2d_resample(x, w, f, up=1, down=1, padding=0, flip_weight=True):
    """conv2d_resample of stylegan2-ada for the cases StyleGAN2 uses (one sample, groups=1)."""
    kw = w.shape[-1]
    fw = f.shape[-1]
    px0 = px1 = padding
    if up > 1:
        px0 += (fw + up - 1) // 2
        px1 += (fw - up) // 2
    if down > 1:
        px0 += (fw - down + 1) // 2
        px1 += (fw - down) // 2
    if kw == 1 and down > 1:
        return F.conv2d(_ref_upfirdn(x, f, down=down, pad=(px0, px1, px0, px1)), w)
    if down > 1:
        return F.conv2d(_ref_upfirdn(x, f, pad=(px0, px1, px0, px1)), w, stride=down)
    if up > 1:
        px0 -= kw - 1
        px1 -= kw - up
        pxt = max(min(-px0, -px1), 0)
        wt = w.transpose(0, 1)
        if flip_weight:          # conv_transpose is called with flip_weight=(not flip_weight)
            wt = wt.flip([2, 3])
        x = F.conv_transpose2d(x, wt, stride=up, padding=pxt)
        return _ref_upfirdn(x, f, pad=(px0 + pxt, px1 + pxt, px0 + pxt, px1 + pxt), gain=up ** 2)
    return F.conv2d(x, w, padding=padding)


def _ref_bias_act(x, b, act, gain=None, clamp=None):
    x = x + b.reshape(1, -1, *([1] * (x.ndim - 2))) if b is not None else x
    if act == "lrelu":
        x = F.leaky_relu(x, 0.2) * (math.sqrt(2) if gain is None else gain)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def _ref_fc(t, name, x, act="linear", lr=1.0):
    w, b = t[f"{name}.weight"], t[f"{name}.bias"]
    return _ref_bias_act(x @ (w * (lr / math.sqrt(w.shape[1]))).t(), b * lr, act)


def _ref_generator(t, ws=None, z=None, lr_mlp=0.01, clamp=None):
    if z is not None:
        x = z * (z.square().mean(1, keepdim=True) + 1e-8).rsqrt()
        i = 0
        while f"mapping.fc{i}.weight" in t:
            x = _ref_fc(t, f"mapping.fc{i}", x, "lrelu", lr_mlp)
            i += 1
        n_ws = 2 * int(math.log2(max(int(k.split(".")[1][1:]) for k in t if k.startswith("synthesis.b")))) - 2
        ws = x[:, None].repeat(1, n_ws, 1)
    imgs = []
    for s in range(ws.shape[0]):          # one sample at a time: plain, per-sample modulated conv
        x = img = None
        res, w_idx = 4, 0
        while f"synthesis.b{res}.conv1.weight" in t:
            blk = f"synthesis.b{res}"
            wv = ws[s, w_idx:w_idx + 3]
            layers = ["conv1"] if res == 4 else ["conv0", "conv1"]
            if res == 4:
                x = t[f"{blk}.const"][None]
            for j, name in enumerate(layers):
                lay = f"{blk}.{name}"
                styles = _ref_fc(t, f"{lay}.affine", wv[j][None])[0]
                weight = t[f"{lay}.weight"] * styles[None, :, None, None]
                weight = weight * (weight.square().sum([1, 2, 3], keepdim=True) + 1e-8).rsqrt()
                up = 2 if name == "conv0" else 1
                x = _ref_conv2d_resample(x, weight, t[f"{lay}.resample_filter"], up=up, padding=1,
                                         flip_weight=(up == 1))
                x = x + t[f"{lay}.noise_const"] * t[f"{lay}.noise_strength"]
                x = _ref_bias_act(x, t[f"{lay}.bias"], "lrelu", clamp=clamp)
            rgb = f"{blk}.torgb"
            w_rgb = t[f"{rgb}.weight"]
            styles = _ref_fc(t, f"{rgb}.affine", wv[len(layers)][None])[0] / math.sqrt(w_rgb.shape[1])
            y = _ref_bias_act(F.conv2d(x, w_rgb * styles[None, :, None, None]), t[f"{rgb}.bias"], "linear",
                              clamp=clamp)
            if img is not None:
                img = _ref_upfirdn(img, t[f"{blk}.resample_filter"], up=2, pad=(2, 1, 2, 1), gain=4)
            img = y if img is None else img + y
            w_idx += len(layers)
            res *= 2
        imgs.append(img)
    return torch.cat(imgs)


def _ref_discriminator(t, img, group_size=4, clamp=None):
    size = img.shape[-1]
    x = None
    res = size
    while res > 4:
        blk = f"b{res}"
        f = t[f"{blk}.resample_filter"]
        if x is None:
            x = _ref_bias_act(F.conv2d(img, t[f"{blk}.fromrgb.weight"] / math.sqrt(3)), t[f"{blk}.fromrgb.bias"],
                              "lrelu", clamp=clamp)
        c = x.shape[1]
        y = _ref_conv2d_resample(x, t[f"{blk}.skip.weight"] / math.sqrt(c), f, down=2) * math.sqrt(0.5)
        x = _ref_bias_act(F.conv2d(x, t[f"{blk}.conv0.weight"] / math.sqrt(c * 9), padding=1), t[f"{blk}.conv0.bias"],
                          "lrelu", clamp=clamp)
        x = _ref_conv2d_resample(x, t[f"{blk}.conv1.weight"] / math.sqrt(c * 9), f, down=2, padding=1)
        x = y + _ref_bias_act(x, t[f"{blk}.conv1.bias"], "lrelu", gain=math.sqrt(2) * math.sqrt(0.5),
                              clamp=clamp * math.sqrt(0.5) if clamp is not None else None)
        res //= 2
    n, c, h, w = x.shape
    g = min(group_size, n)
    y = x.reshape(g, -1, 1, c, h, w)
    y = ((y - y.mean(0)).square().mean(0) + 1e-8).sqrt().mean([2, 3, 4]).reshape(-1, 1, 1, 1).repeat(g, 1, h, w)
    x = torch.cat([x, y], 1)
    x = _ref_bias_act(F.conv2d(x, t["b4.conv.weight"] / math.sqrt((c + 1) * 9), padding=1), t["b4.conv.bias"], "lrelu",
                      clamp=clamp)
    x = _ref_fc(t, "b4.fc", x.flatten(1), "lrelu")
    return _ref_fc(t, "b4.out", x)


def _nv_tensors(path):
    data = formats_ada_pickle.unpickle(path)
    return ({k: v.double() for k, v in formats_ada_pickle.flatten(data["G_ema"])[0].items()},
            {k: v.double() for k, v in formats_ada_pickle.flatten(data["D"])[0].items()}, data)


def test_pkl_matches_nvidia_forward_math(models, tmp_path):
    g, d = models
    write_ada_pkl(tmp_path / "m.pkl", g, d)
    tg, td, data = _nv_tensors(tmp_path / "m.pkl")
    assert data["G_ema"].class_name == "Generator" and set(data) >= {"G", "D", "G_ema", "augment_pipe"}
    assert tg["synthesis.b4.conv1.noise_strength"].shape == () and tg["synthesis.b4.const"].ndim == 3
    bb = load_stylegan2(tmp_path / "m.pkl")
    z = torch.randn(4, g.z_dim, generator=torch.Generator().manual_seed(5))
    ws = torch.randn(4, g.n_latent, g.style_dim, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ours_ws, ours_z = bb.synthesize(ws), bb.synthesize(bb.to_edit(z))
        ours_d = bb.discriminator(ours_ws)
    ref_ws = _ref_generator(tg, ws=ws.double())
    ref_z = _ref_generator(tg, z=z.double())
    ref_d = _ref_discriminator(td, ours_ws.double())
    scale = ref_ws.abs().max()
    assert (ours_ws.double() - ref_ws).abs().max() / scale < 1e-5
    assert (ours_z.double() - ref_z).abs().max() / ref_z.abs().max() < 1e-5
    assert (ours_d.double() - ref_d).abs().max() / ref_d.abs().max() < 1e-5
    # and it is a real test: a swapped pair of layers is far off
    bad = dict(tg)
    bad["synthesis.b8.conv0.bias"], bad["synthesis.b8.conv1.bias"] = tg["synthesis.b8.conv1.bias"], tg[
        "synthesis.b8.conv0.bias"]
    assert (ours_ws.double() - _ref_generator(bad, ws=ws.double())).abs().max() / scale > 1e-3


def test_conv_clamp_and_mbstd_group_survive_the_pkl(tmp_path):
    torch.manual_seed(0)
    g = _perturbed(Generator(16, style_dim=32, n_mlp=2, max_channels=16, conv_clamp=0.5), 3)
    d = _perturbed(Discriminator(16, max_channels=16, stddev_group=2, conv_clamp=0.5), 4)
    write_ada_pkl(tmp_path / "c.pkl", g, d)
    bb = load_stylegan2(tmp_path / "c.pkl")
    assert bb.generator.conv_clamp == 0.5 and bb.discriminator.stddev_group == 2
    tg, td, _ = _nv_tensors(tmp_path / "c.pkl")
    ws = torch.randn(2, g.n_latent, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = bb.synthesize(ws)
        assert torch.equal(x, g.synthesis(ws))
        ref = _ref_generator(tg, ws=ws.double(), clamp=0.5)
        assert (x.double() - ref).abs().max() < 1e-5
        ref_d = _ref_discriminator(td, x.double(), group_size=2, clamp=0.5)
        assert (bb.discriminator(x).double() - ref_d).abs().max() < 1e-5
        unclamped = Generator(16, style_dim=32, n_mlp=2, max_channels=16)
        unclamped.load_state_dict(g.state_dict())
        assert (unclamped.synthesis(ws) - x).abs().max() > 1e-2   # the clamp is active here


# -- errors and hostile files ---------------------------------------------------------------------


def test_strict_key_errors_are_clear(models, tmp_path):
    g, _ = models
    sd = dict(g.state_dict())
    del sd["convs.1.noise.weight"]
    sd["convs.1.extra.weight"] = torch.zeros(1)
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(BenchError, match=r"missing keys: convs\.1\.noise\.weight.*unexpected keys: convs\.1\.extra"):
        load_stylegan2(tmp_path / "bad.pt")
    sd = dict(g.state_dict())
    sd["conv1.conv.modulation.weight"] = torch.zeros(3, g.style_dim)
    torch.save({"g_ema": sd}, tmp_path / "shape.pt")
    with pytest.raises(BenchError, match=r"wrong shapes: conv1\.conv\.modulation\.weight"):
        load_stylegan2(tmp_path / "shape.pt")
    torch.save({"weights": sd}, tmp_path / "nog.pt")
    with pytest.raises(BenchError, match="no 'g_ema'"):
        load_stylegan2(tmp_path / "nog.pt")


class _System:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Eval:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


class _HostileStorage:
    def __init__(self, marker):
        buf = io.BytesIO()
        torch.save(_System(marker), buf, _use_new_zipfile_serialization=False)
        self.payload = buf.getvalue()

    def __reduce__(self):
        return (torch.storage._load_from_bytes, (self.payload,))


class _TensorWithState:
    def __reduce__(self):
        storage = torch.zeros(2)._typed_storage()
        return (torch._utils._rebuild_tensor_v2, (storage, 0, (2,), (1,), False, collections.OrderedDict()),
                {"anything": 1})


class _ZeroStrideTensor:
    def __reduce__(self):
        storage = torch.zeros(2)._typed_storage()
        return (torch._utils._rebuild_tensor_v2, (storage, 0, (10 ** 9,), (0,), False, collections.OrderedDict()))


@pytest.mark.parametrize("payload", ["system", "eval", "storage"])
def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path, payload):
    marker = tmp_path / "pwned"
    obj = {"system": _System, "eval": _Eval, "storage": _HostileStorage}[payload](marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": obj}, protocol=3))
    with pytest.raises(BenchError, match="refusing"):
        load_stylegan2(path)
    assert not marker.exists()


def test_build_on_a_tensor_is_refused(tmp_path):
    path = tmp_path / "build.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _TensorWithState()}, protocol=3))
    with pytest.raises(BenchError, match="BUILD of a Tensor"):
        load_stylegan2(path)


def test_zero_stride_tensor_bomb_is_refused(tmp_path):
    path = tmp_path / "bomb.pkl"
    path.write_bytes(pickle.dumps({"G_ema": _ZeroStrideTensor()}, protocol=3))
    with pytest.raises(BenchError, match="malformed tensor"):
        load_stylegan2(path)


def test_pickled_module_source_is_never_executed(models, tmp_path):
    g, d = models
    marker = tmp_path / "ran"
    write_ada_pkl(tmp_path / "src.pkl", g, d, module_src=f"open({str(marker)!r}, 'w').close()\n")
    bb = load_stylegan2(tmp_path / "src.pkl")
    assert isinstance(bb, StyleGAN2Backbone) and not marker.exists()


class _PlainClass:
    pass


@pytest.mark.parametrize("payload", ["system", "class"])
def test_pt_with_code_is_refused(models, tmp_path, payload):
    g, _ = models
    marker = tmp_path / "pwned"
    extra = _System(marker) if payload == "system" else _PlainClass()
    torch.save({"g_ema": g.state_dict(), "extra": extra}, tmp_path / "evil.pt")
    with pytest.raises(BenchError, match="refusing to load"):
        load_stylegan2(tmp_path / "evil.pt")
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "x.pt").write_text("hello")
    with pytest.raises(BenchError, match="neither"):
        load_stylegan2(tmp_path / "x.pt")
    with pytest.raises(BenchError, match="does not exist"):
        load_stylegan2(tmp_path / "missing.pkl")


def test_numpy_scalars_in_pkl_state_are_read(models, tmp_path):
    g, d = models
    write_ada_pkl(tmp_path / "m.pkl", g, d)
    data = formats_ada_pickle.unpickle(tmp_path / "m.pkl")
    fc0 = data["G_ema"].state["_modules"]["mapping"].state["_modules"]["fc0"].state
    assert fc0["weight_gain"] == pytest.approx(g.lr_mlp / np.sqrt(g.z_dim)) and isinstance(fc0["weight_gain"], float)


def test_same_seed_renders_bit_identical_twice(models, tmp_path):
    g, d = models
    write_ada_pkl(tmp_path / "m.pkl", g, d)
    a = load_stylegan2(tmp_path / "m.pkl").sample(3, seed=7)
    b = load_stylegan2(tmp_path / "m.pkl").sample(3, seed=7)
    assert torch.equal(a, b)
    assert not torch.equal(a, load_stylegan2(tmp_path / "m.pkl").sample(3, seed=8))
