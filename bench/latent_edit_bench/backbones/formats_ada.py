"""NVIDIA stylegan2-ada-pytorch ``.pkl`` network pickles, read without running them, in rosinality's names.

NVIDIA <-> rosinality conventions (learned from NVlabs/stylegan2-ada-pytorch training/networks.py
and its conv2d_resample): parameters are stored raw (N(0,1)) with the same equalised-lr gains, so
weights copy over unchanged apart from shapes: modulated conv weights gain a leading 1, affine
(style) biases hold their +1 init in both, ``noise_strength`` [] -> ``noise.weight`` [1],
``noise_const`` [r, r] -> ``noises.noise_i`` [1, 1, r, r], ToRGB bias [3] -> [1, 3, 1, 1], ``const``
[C, 4, 4] -> [1, C, 4, 4], ``mapping.w_avg`` -> ``latent_avg``. NVIDIA's up-convolution is a
transposed conv with the same (unflipped) kernel followed by the same FIR padding as rosinality's
Blur, and images are NCHW RGB in [-1, 1] in both: no flips (those are only needed from the
TensorFlow releases). The one gain NVIDIA applies elsewhere, ToRGB's 1/sqrt(fan_in), multiplies
the styles instead of the weight: the product is the same.
"""

from __future__ import annotations

import math
import re

import torch

from latent_edit_bench.backbones.checkpoint import StyleGAN2Checkpoint, discriminator_kwargs, generator_kwargs
from latent_edit_bench.backbones.formats_ada_pickle import PersistentObj, flatten, unpickle
from latent_edit_bench.backbones.stylegan2 import make_kernel
from latent_edit_bench.errors import BenchError


def _attr(modules, name, key, default=None):
    m = modules.get(name)
    return m.state.get(key, default) if m is not None else default


class _Taker:
    """Pops NVIDIA tensors by name, so that anything left over (an unsupported variant) is noticed."""

    def __init__(self, tensors, source, what):
        self.tensors, self.source, self.what = dict(tensors), source, what

    def __call__(self, name):
        try:
            return self.tensors.pop(name).float().contiguous()
        except KeyError:
            raise BenchError(f"{self.source}: {self.what} has no '{name}': not a StyleGAN2(-ADA) "
                             "network with the supported architecture") from None

    def maybe(self, name):
        return self(name) if name in self.tensors else None

    def done(self, hint):
        left = sorted(k for k in self.tensors if not k.endswith("resample_filter"))
        if left:
            raise BenchError(f"{self.source}: {self.what} has tensors this reader does not support "
                             f"({', '.join(left[:6])}{' ...' if len(left) > 6 else ''}): {hint}")


def _ada_generator(G: PersistentObj, source: str, what: str):
    if G.class_name != "Generator":
        raise BenchError(f"{source}: '{what}' is a {G.class_name}, not a stylegan2-ada Generator")
    tensors, modules = flatten(G)
    take = _Taker(tensors, source, what)
    size = int(G.state.get("img_resolution") or 0)
    if not size:
        size = max(int(m.group(1)) for k in tensors if (m := re.match(r"synthesis\.b(\d+)\.", k)))
    out = {}
    n_mlp = 0
    while f"mapping.fc{n_mlp}.weight" in tensors:
        out[f"style.{n_mlp + 1}.weight"] = take(f"mapping.fc{n_mlp}.weight")
        out[f"style.{n_mlp + 1}.bias"] = take(f"mapping.fc{n_mlp}.bias")
        n_mlp += 1
    latent_avg = take.maybe("mapping.w_avg")
    lr_mlp = float(_attr(modules, "mapping.fc0", "bias_gain", 0.01))
    conv_clamp = _attr(modules, "synthesis.b4.conv1", "conv_clamp")

    def styled(nv, ours, noise_idx, res):
        out[f"{ours}.conv.modulation.weight"] = take(f"{nv}.affine.weight")
        out[f"{ours}.conv.modulation.bias"] = take(f"{nv}.affine.bias")
        out[f"{ours}.conv.weight"] = take(f"{nv}.weight")[None]
        out[f"{ours}.activate.bias"] = take(f"{nv}.bias")
        strength, noise = take.maybe(f"{nv}.noise_strength"), take.maybe(f"{nv}.noise_const")
        out[f"{ours}.noise.weight"] = strength.reshape(1) if strength is not None else torch.zeros(1)
        out[f"noises.noise_{noise_idx}"] = (noise[None, None] if noise is not None
                                            else torch.zeros(1, 1, res, res))

    def torgb(nv, ours):
        out[f"{ours}.conv.modulation.weight"] = take(f"{nv}.affine.weight")
        out[f"{ours}.conv.modulation.bias"] = take(f"{nv}.affine.bias")
        out[f"{ours}.conv.weight"] = take(f"{nv}.weight")[None]
        out[f"{ours}.bias"] = take(f"{nv}.bias").reshape(1, -1, 1, 1)

    out["input.input"] = take("synthesis.b4.const")[None]
    styled("synthesis.b4.conv1", "conv1", 0, 4)
    torgb("synthesis.b4.torgb", "to_rgb1")
    log_size = int(math.log2(size))
    for k, log in enumerate(range(3, log_size + 1)):
        b = f"synthesis.b{2 ** log}"
        styled(f"{b}.conv0", f"convs.{2 * k}", 2 * k + 1, 2 ** log)
        styled(f"{b}.conv1", f"convs.{2 * k + 1}", 2 * k + 2, 2 ** log)
        torgb(f"{b}.torgb", f"to_rgbs.{k}")
        fir = tensors.get(f"{b}.conv0.resample_filter")
        out[f"convs.{2 * k}.conv.blur.kernel"] = (fir.float() if fir is not None else _fir()) * 4
        fir = tensors.get(f"{b}.resample_filter")
        out[f"to_rgbs.{k}.upsample.kernel"] = (fir.float() if fir is not None else _fir()) * 4
    take.done("conditional (c_dim > 0) or 'orig'/'resnet' generator architectures are not supported")
    if out["to_rgb1.conv.weight"].shape[1] != 3:
        raise BenchError(f"{source}: only RGB generators are supported")

    kwargs = generator_kwargs(out, source)
    kwargs["lr_mlp"] = lr_mlp
    if conv_clamp is not None:
        kwargs["conv_clamp"] = float(conv_clamp)
    return out, kwargs, latent_avg


def _ada_discriminator(D: PersistentObj, source: str, what: str = "D"):
    if D.class_name != "Discriminator":
        raise BenchError(f"{source}: '{what}' is a {D.class_name}, not a stylegan2-ada Discriminator")
    tensors, modules = flatten(D)
    take = _Taker(tensors, source, what)
    size = int(D.state.get("img_resolution") or 0) or max(
        int(m.group(1)) for k in tensors if (m := re.match(r"b(\d+)\.", k)))
    for name, m in modules.items():
        arch = m.state.get("architecture")
        if arch is not None and arch != "resnet":
            raise BenchError(f"{source}: discriminator architecture {arch!r} is not supported (only 'resnet')")
    out = {"convs.0.0.weight": take(f"b{size}.fromrgb.weight"), "convs.0.1.bias": take(f"b{size}.fromrgb.bias")}
    log_size = int(math.log2(size))
    for k, log in enumerate(range(log_size, 2, -1), start=1):
        b = f"b{2 ** log}"
        fir = tensors.get(f"{b}.resample_filter")
        fir = fir.float() if fir is not None else _fir()
        out[f"convs.{k}.conv1.0.weight"] = take(f"{b}.conv0.weight")
        out[f"convs.{k}.conv1.1.bias"] = take(f"{b}.conv0.bias")
        out[f"convs.{k}.conv2.0.kernel"] = fir.clone()
        out[f"convs.{k}.conv2.1.weight"] = take(f"{b}.conv1.weight")
        out[f"convs.{k}.conv2.2.bias"] = take(f"{b}.conv1.bias")
        out[f"convs.{k}.skip.0.kernel"] = fir.clone()
        out[f"convs.{k}.skip.1.weight"] = take(f"{b}.skip.weight")
    out["final_conv.0.weight"] = take("b4.conv.weight")
    out["final_conv.1.bias"] = take("b4.conv.bias")
    out["final_linear.0.weight"] = take("b4.fc.weight")
    out["final_linear.0.bias"] = take("b4.fc.bias")
    out["final_linear.1.weight"] = take("b4.out.weight")
    out["final_linear.1.bias"] = take("b4.out.bias")
    take.done("conditional discriminators are not supported")
    if out["final_linear.1.weight"].shape[0] != 1:
        raise BenchError(f"{source}: conditional (projection) discriminators are not supported")
    kwargs = discriminator_kwargs(out, source)
    group = _attr(modules, "b4.mbstd", "group_size", 4)
    kwargs["stddev_group"] = int(group) if group is not None else None
    conv_clamp = _attr(modules, "b4.conv", "conv_clamp")
    if conv_clamp is not None:
        kwargs["conv_clamp"] = float(conv_clamp)
    return out, kwargs


def _fir(taps=(1, 3, 3, 1)):
    return make_kernel(list(taps))


def read_ada_pkl(path) -> StyleGAN2Checkpoint:
    """NVIDIA stylegan2-ada-pytorch network pickle (dict with G, D, G_ema, ...), read without running code."""
    data = unpickle(path)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentObj):
        raise BenchError(f"{path}: not a stylegan2-ada network pickle (no 'G_ema' network)")
    g_ema, g_kwargs, latent_avg = _ada_generator(data["G_ema"], str(path), "G_ema")
    g = _ada_generator(data["G"], str(path), "G")[0] if isinstance(data.get("G"), PersistentObj) else None
    d = d_kwargs = None
    if isinstance(data.get("D"), PersistentObj):
        d, d_kwargs = _ada_discriminator(data["D"], str(path))
    return StyleGAN2Checkpoint(g_ema=g_ema, g_kwargs=g_kwargs, latent_avg=latent_avg, g=g, d=d, d_kwargs=d_kwargs,
                               source="stylegan2-ada")
