"""Test-only writers of StyleGAN2 checkpoints in the two foreign formats the readers take
(bench/latent_edit_bench/backbones/formats_rosinality.py and formats_ada.py).

rosinality's ``.pt`` and NVIDIA stylegan2-ada's ``.pkl`` are written from our own modules, so the
readers can be tested on files we made (tensor for tensor, and a pickle whose ``module_src`` would
run code if a reader ever executed it). Not part of the installed package: users only read these
formats.
"""

from __future__ import annotations

import argparse
import math
import collections
import io
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from latent_edit_bench.backbones.stylegan2 import make_kernel

def write_rosinality(path, g_ema, d=None, g=None, args: dict | None = None) -> None:
    """Save modules as rosinality does: state dicts under g_ema / g / d, ``latent_avg`` beside them,
    ``args`` (if given) as an ``argparse.Namespace`` like its train.py."""
    ckpt = {"g_ema": g_ema.state_dict(), "latent_avg": g_ema.latent_avg.detach().clone()}
    if g is not None:
        ckpt["g"] = g.state_dict()
    if d is not None:
        ckpt["d"] = d.state_dict()
    if args is not None:
        ckpt["args"] = argparse.Namespace(**args)
    torch.save(ckpt, path)


# -- NVIDIA stylegan2-ada .pkl: writer ---------------------------------------------------------------

# What we put where NVIDIA stores its network source: our pickles hold weights, not code.
PLACEHOLDER_MODULE_SRC = ("raise ImportError('written by latent-edit-bench: weights only; "
                          "read with latent_edit_bench.backbones.formats_ada.read_ada_pkl')\n")


class _GlobalRef:
    """A global written by module and name only, without importing it (torch_utils / dnnlib
    need not exist here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise TypeError(f"{self.module}.{self.name} is a pickle reference only")


_RECONSTRUCT = _GlobalRef("torch_utils.persistence", "_reconstruct_persistent_obj")
_EASYDICT = _GlobalRef("dnnlib.util", "EasyDict")


class _WritePersistent:
    def __init__(self, meta):
        self.meta = meta

    def __reduce__(self):
        return (_RECONSTRUCT, (self.meta,))


class _WriteEasyDict(dict):
    def __reduce__(self):
        return (_EASYDICT, (), None, None, iter(self.items()))


class _Pickler(pickle._Pickler):
    dispatch = dict(pickle._Pickler.dispatch)

    def save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("utf-8"))
        self.memoize(obj)

    dispatch[_GlobalRef] = save_global_ref


_HOOK_DICTS = ("_backward_pre_hooks", "_backward_hooks", "_forward_hooks", "_forward_hooks_with_kwargs",
               "_forward_hooks_always_called", "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
               "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
               "_load_state_dict_post_hooks")


def _nv_module(class_name, module_src, params=(), buffers=(), modules=(), init_kwargs=None, **attrs):
    """A persistent module as NVIDIA pickles it: meta{type, version, module_src, class_name, state}
    where state is the nn.Module ``__dict__`` (frozen Parameters, buffers, children, attributes)."""
    state = {"training": False,
             "_parameters": collections.OrderedDict(
                 (k, torch.nn.Parameter(v.detach().clone().contiguous(), requires_grad=False)) for k, v in params),
             "_buffers": collections.OrderedDict((k, v.detach().clone().contiguous()) for k, v in buffers),
             "_non_persistent_buffers_set": set(),
             "_is_full_backward_hook": None,
             "_modules": collections.OrderedDict(modules)}
    state.update({k: collections.OrderedDict() for k in _HOOK_DICTS})
    state.update(attrs)
    state["_init_args"] = ()
    state["_init_kwargs"] = dict(init_kwargs or {})
    return _WritePersistent({"type": "class", "version": 6, "module_src": module_src, "class_name": class_name,
                             "state": state})


def _channel_base_max(channels: dict[int, int]):
    """NVIDIA's (channel_base, channel_max) describing these widths, or None if none does."""
    cmax = max(channels.values())
    for base in sorted({w * r for r, w in channels.items()}):
        if all(min(base // r, cmax) == w for r, w in channels.items()):
            return base, cmax
    return None


def _sd(module):
    return {k: v.detach().float().cpu() for k, v in module.state_dict().items()}


def _nv_generator(G, src):
    """Our Generator -> NVIDIA's module tree (Generator{synthesis, mapping})."""
    sd = _sd(G)
    lr, w_dim, z_dim, size = G.lr_mlp, G.style_dim, G.z_dim, G.size
    gain2 = np.float64(np.sqrt(2))
    fcs = []
    for i in range(G.n_mlp):
        fin = z_dim if i == 0 else w_dim
        fcs.append((f"fc{i}", _nv_module(
            "FullyConnectedLayer", src,
            params=[("weight", sd[f"style.{i + 1}.weight"]), ("bias", sd[f"style.{i + 1}.bias"])],
            init_kwargs=dict(in_features=fin, out_features=w_dim, activation="lrelu", lr_multiplier=lr),
            activation="lrelu", weight_gain=np.float64(lr / np.sqrt(fin)), bias_gain=lr)))
    mapping = _nv_module(
        "MappingNetwork", src, buffers=[("w_avg", G.latent_avg.detach().float().cpu())], modules=fcs,
        init_kwargs=dict(z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=G.n_latent, num_layers=G.n_mlp, lr_multiplier=lr),
        z_dim=z_dim, c_dim=0, w_dim=w_dim, num_ws=G.n_latent, num_layers=G.n_mlp, w_avg_beta=0.995)

    fir = make_kernel(list(G.blur_kernel))

    def affine(ours, in_ch):
        return _nv_module("FullyConnectedLayer", src,
                          params=[("weight", sd[f"{ours}.conv.modulation.weight"]),
                                  ("bias", sd[f"{ours}.conv.modulation.bias"])],
                          init_kwargs=dict(in_features=w_dim, out_features=in_ch, bias_init=1),
                          activation="linear", weight_gain=np.float64(1 / np.sqrt(w_dim)), bias_gain=1)

    def layer(ours, noise_idx, res, up):
        weight = sd[f"{ours}.conv.weight"][0]
        up_fir = sd[f"{ours}.conv.blur.kernel"] / 4 if up > 1 else fir
        out_ch, in_ch = weight.shape[:2]
        noise = sd[f"noises.noise_{noise_idx}"][0, 0]
        return _nv_module(
            "SynthesisLayer", src,
            params=[("weight", weight), ("noise_strength", sd[f"{ours}.noise.weight"].reshape(())),
                    ("bias", sd[f"{ours}.activate.bias"])],
            buffers=[("resample_filter", up_fir), ("noise_const", noise)],
            modules=[("affine", affine(ours, in_ch))],
            init_kwargs=dict(in_channels=in_ch, out_channels=out_ch, w_dim=w_dim, resolution=res, up=up,
                             conv_clamp=G.conv_clamp),
            resolution=res, up=up, use_noise=True, activation="lrelu", conv_clamp=G.conv_clamp, padding=1,
            act_gain=gain2)

    def torgb(ours):
        weight = sd[f"{ours}.conv.weight"][0]
        in_ch = weight.shape[1]
        return _nv_module(
            "ToRGBLayer", src, params=[("weight", weight), ("bias", sd[f"{ours}.bias"].reshape(-1))],
            modules=[("affine", affine(ours, in_ch))],
            init_kwargs=dict(in_channels=in_ch, out_channels=3, w_dim=w_dim, conv_clamp=G.conv_clamp),
            conv_clamp=G.conv_clamp, weight_gain=np.float64(1 / np.sqrt(in_ch)))

    blocks = []
    ch = G.channels
    for log in range(2, G.log_size + 1):
        res, k = 2 ** log, log - 3
        if res == 4:
            children = [("conv1", layer("conv1", 0, 4, 1)), ("torgb", torgb("to_rgb1"))]
            params = [("const", sd["input.input"][0])]
        else:
            children = [("conv0", layer(f"convs.{2 * k}", 2 * k + 1, res, 2)),
                        ("conv1", layer(f"convs.{2 * k + 1}", 2 * k + 2, res, 1)), ("torgb", torgb(f"to_rgbs.{k}"))]
            params = []
        block_fir = fir if res == 4 else sd[f"to_rgbs.{k}.upsample.kernel"] / 4
        in_ch = 0 if res == 4 else ch[res // 2]
        blocks.append((f"b{res}", _nv_module(
            "SynthesisBlock", src, params=params, buffers=[("resample_filter", block_fir)], modules=children,
            init_kwargs=dict(in_channels=in_ch, out_channels=ch[res], w_dim=w_dim, resolution=res, img_channels=3,
                             is_last=res == size, use_fp16=False, conv_clamp=G.conv_clamp),
            in_channels=in_ch, w_dim=w_dim, resolution=res, img_channels=3, is_last=res == size, architecture="skip",
            use_fp16=False, channels_last=False, num_conv=1 if res == 4 else 2, num_torgb=1)))
    synthesis_kwargs = _WriteEasyDict(num_fp16_res=0, conv_clamp=G.conv_clamp)
    base_max = _channel_base_max(ch)
    if base_max:
        synthesis_kwargs.update(channel_base=base_max[0], channel_max=base_max[1])
    synthesis = _nv_module(
        "SynthesisNetwork", src, modules=blocks,
        init_kwargs=dict(w_dim=w_dim, img_resolution=size, img_channels=3, **synthesis_kwargs),
        w_dim=w_dim, img_resolution=size, img_resolution_log2=G.log_size, img_channels=3,
        block_resolutions=[2 ** i for i in range(2, G.log_size + 1)], num_ws=G.n_latent)
    return _nv_module(
        "Generator", src, modules=[("synthesis", synthesis), ("mapping", mapping)],
        init_kwargs=dict(z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=size, img_channels=3,
                         mapping_kwargs=_WriteEasyDict(num_layers=G.n_mlp, lr_multiplier=lr),
                         synthesis_kwargs=synthesis_kwargs),
        z_dim=z_dim, c_dim=0, w_dim=w_dim, img_resolution=size, img_channels=3, num_ws=G.n_latent)


def _nv_discriminator(D, src):
    sd = _sd(D)
    ch, size = D.channels, D.size
    clamp = D.conv_clamp
    gain2 = np.float64(np.sqrt(2))
    fir = make_kernel(list(D.blur_kernel))

    def conv(weight, bias=None, activation="lrelu", down=1, conv_clamp=clamp, res_fir=fir):
        out_ch, in_ch, k, _ = weight.shape
        params = [("weight", weight)] + ([("bias", bias)] if bias is not None else [])
        return _nv_module(
            "Conv2dLayer", src, params=params, buffers=[("resample_filter", res_fir)],
            init_kwargs=dict(in_channels=in_ch, out_channels=out_ch, kernel_size=k, bias=bias is not None,
                             activation=activation, down=down, conv_clamp=conv_clamp),
            activation=activation, up=1, down=down, conv_clamp=conv_clamp, padding=k // 2,
            weight_gain=np.float64(1 / np.sqrt(in_ch * k * k)), act_gain=gain2 if activation == "lrelu" else 1.0)

    blocks, layer_idx = [], 0
    log_size = int(math.log2(size))
    for k, log in enumerate(range(log_size, 2, -1), start=1):
        res = 2 ** log
        block_fir = sd[f"convs.{k}.conv2.0.kernel"]
        children = []
        if res == size:
            children.append(("fromrgb", conv(sd["convs.0.0.weight"], sd["convs.0.1.bias"])))
        children += [("conv0", conv(sd[f"convs.{k}.conv1.0.weight"], sd[f"convs.{k}.conv1.1.bias"])),
                     ("conv1", conv(sd[f"convs.{k}.conv2.1.weight"], sd[f"convs.{k}.conv2.2.bias"], down=2,
                                    res_fir=block_fir)),
                     ("skip", conv(sd[f"convs.{k}.skip.1.weight"], None, activation="linear", down=2, conv_clamp=None,
                                   res_fir=sd[f"convs.{k}.skip.0.kernel"]))]
        in_ch = 0 if res == size else ch[res]
        blocks.append((f"b{res}", _nv_module(
            "DiscriminatorBlock", src, buffers=[("resample_filter", block_fir)], modules=children,
            init_kwargs=dict(in_channels=in_ch, tmp_channels=ch[res], out_channels=ch[res // 2], resolution=res,
                             img_channels=3, first_layer_idx=layer_idx, use_fp16=False, conv_clamp=clamp),
            in_channels=in_ch, resolution=res, img_channels=3, first_layer_idx=layer_idx, architecture="resnet",
            use_fp16=False, channels_last=False, num_layers=len(children))))
        layer_idx += len(children)

    def fc(i, activation):
        w, b = sd[f"final_linear.{i}.weight"], sd[f"final_linear.{i}.bias"]
        return _nv_module("FullyConnectedLayer", src, params=[("weight", w), ("bias", b)],
                          init_kwargs=dict(in_features=w.shape[1], out_features=w.shape[0], activation=activation),
                          activation=activation, weight_gain=np.float64(1 / np.sqrt(w.shape[1])), bias_gain=1)

    mbstd = _nv_module("MinibatchStdLayer", src,
                       init_kwargs=dict(group_size=D.stddev_group, num_channels=D.stddev_feat),
                       group_size=D.stddev_group, num_channels=D.stddev_feat)
    epilogue = _nv_module(
        "DiscriminatorEpilogue", src,
        modules=[("mbstd", mbstd), ("conv", conv(sd["final_conv.0.weight"], sd["final_conv.1.bias"])),
                 ("fc", fc(0, "lrelu")), ("out", fc(1, "linear"))],
        init_kwargs=dict(in_channels=ch[4], cmap_dim=0, resolution=4, img_channels=3, architecture="resnet",
                         mbstd_group_size=D.stddev_group, mbstd_num_channels=D.stddev_feat, conv_clamp=clamp),
        in_channels=ch[4], cmap_dim=0, resolution=4, img_channels=3, architecture="resnet")
    kwargs = dict(c_dim=0, img_resolution=size, img_channels=3, architecture="resnet", conv_clamp=clamp,
                  epilogue_kwargs=_WriteEasyDict(mbstd_group_size=D.stddev_group))
    base_max = _channel_base_max(ch)
    if base_max:
        kwargs.update(channel_base=base_max[0], channel_max=base_max[1])
    return _nv_module("Discriminator", src, modules=blocks + [("b4", epilogue)], init_kwargs=kwargs,
                      c_dim=0, img_resolution=size, img_resolution_log2=log_size, img_channels=3,
                      block_resolutions=[2 ** i for i in range(log_size, 2, -1)])


def write_ada_pkl(path, g_ema, d=None, g=None, module_src: str = PLACEHOLDER_MODULE_SRC) -> None:
    """Write our modules as a stylegan2-ada-style network pickle: {'G', 'D', 'G_ema', 'augment_pipe',
    'training_set_kwargs'} with persistent objects carrying NVIDIA-named parameters and buffers.

    ``module_src`` stands where NVIDIA stores the network source; NVIDIA's own loader would exec it,
    so these pickles are for our reader (and for tests), not for NVIDIA's code.
    """
    data = {"training_set_kwargs": None,
            "G": _nv_generator(g if g is not None else g_ema, module_src),
            "D": _nv_discriminator(d, module_src) if d is not None else None,
            "G_ema": _nv_generator(g_ema, module_src),
            "augment_pipe": None}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # TypedStorage deprecation, raised while pickling storages
        buf = io.BytesIO()
        _Pickler(buf, protocol=3).dump(data)   # protocol 3: what NVIDIA's Python 3.7 wrote
    Path(path).write_bytes(buf.getvalue())
