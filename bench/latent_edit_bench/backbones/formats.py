"""StyleGAN2 checkpoint formats: rosinality ``.pt`` and NVIDIA stylegan2-ada-pytorch ``.pkl``.

Both are read into one :class:`StyleGAN2Checkpoint` holding rosinality-named state dicts (the
names of :mod:`.stylegan2`) plus constructor arguments inferred from tensor shapes. Nothing in a
file is ever executed:

- ``.pt`` (a torch zip file, or torch's legacy format): ``torch.load(weights_only=True)``; the
  ``args`` entry (an ``argparse.Namespace`` in rosinality's training checkpoints) is allow-listed.
- ``.pkl``: NVIDIA pickles their networks together with the networks' *source code*
  (``torch_utils.persistence``); ``pickle.load`` would run it. We unpickle with a restricted
  unpickler that knows an explicit allow-list of globals (tensor rebuilding, ``OrderedDict``, sets,
  numpy scalars, ``EasyDict`` and the persistence reconstructor, which is replaced by a function
  that keeps the pickled ``state`` and never looks at ``module_src``). Every other global, and any
  ``BUILD`` on an object that is not plain data, raises :class:`BenchError`. Tensor storages are
  stored as ``torch.save`` bytes; they are read back with ``torch.load(weights_only=True)``.

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

import argparse
import collections
import io
import json
import math
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone, make_kernel, stylegan2_channels

_LEGACY_TORCH_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19."   # torch.save before zip files


@dataclass
class StyleGAN2Checkpoint:
    """A checkpoint in our (rosinality) names; ``*_kwargs`` rebuild the modules of :mod:`.stylegan2`."""

    g_ema: dict
    g_kwargs: dict
    latent_avg: torch.Tensor | None = None
    g: dict | None = None
    d: dict | None = None
    d_kwargs: dict | None = None
    source: str = ""          # "rosinality" or "stylegan2-ada"


SAFETENSORS_FORMAT = "latent-edit-bench stylegan2 v1"


def read_checkpoint(path) -> StyleGAN2Checkpoint:
    """Read either format, told apart by content: a torch file (zip or legacy) or a plain pickle."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"StyleGAN2 checkpoint {path} does not exist")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_TORCH_MAGIC))
    if head[:4] == b"PK\x03\x04" or head == _LEGACY_TORCH_MAGIC:
        return read_rosinality(path)
    if head[8:9] == b"{":  # safetensors: u64 header length, then the JSON header ('{' is no pickle opcode)
        return read_safetensors(path)
    if head[:1] == b"\x80":
        return read_ada_pkl(path)
    raise BenchError(f"{path} is neither a torch checkpoint (.pt), a pickle (.pkl) nor a safetensors file of a StyleGAN2")


def load_strict(module: torch.nn.Module, state: dict, what: str, source) -> None:
    """``load_state_dict(strict=True)`` with a message that names the file and the mismatch."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in ours.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"wrong shapes: {show(wrong)}" if wrong else ""]
        raise BenchError(f"{source}: '{what}' does not match a {type(module).__name__} "
                         f"({'; '.join(p for p in parts if p)})")
    module.load_state_dict(state, strict=True)


# -- shapes -> constructor arguments ----------------------------------------------------------------


def _multiplier(channels: dict[int, int]) -> int:
    """rosinality's channel_multiplier if ``channels`` is its table for one (else 2, with explicit channels)."""
    size = max(channels)
    for cm in (1, 2, 4):
        if stylegan2_channels(size, cm) == channels:
            return cm
    return 2


def generator_kwargs(state: dict, source="checkpoint") -> dict:
    """Generator(**kwargs) arguments from a rosinality generator state dict."""
    try:
        n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim, z_dim = state["style.1.weight"].shape
        n_up = len([k for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
        channels = {4: int(state["conv1.conv.weight"].shape[1])}
        for k in range(n_up):
            channels[8 * 2 ** k] = int(state[f"convs.{2 * k}.conv.weight"].shape[1])
    except (KeyError, AttributeError, ValueError) as e:
        raise BenchError(f"{source}: not a StyleGAN2 generator state dict (rosinality layout): "
                         f"no usable {e}") from None
    if n_up < 1:
        raise BenchError(f"{source}: StyleGAN2 generator below 8 px (no to_rgbs layers)")
    kwargs = dict(size=4 * 2 ** n_up, style_dim=int(style_dim), n_mlp=n_mlp, channel_multiplier=_multiplier(channels),
                  channels=channels)
    if z_dim != style_dim:
        kwargs["z_dim"] = int(z_dim)
    return kwargs


def discriminator_kwargs(state: dict, source="checkpoint") -> dict:
    """Discriminator(**kwargs) arguments from a rosinality discriminator state dict."""
    try:
        n_blocks = len([k for k in state if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k)])
        size = 4 * 2 ** n_blocks
        channels = {size: int(state["convs.0.0.weight"].shape[0])}
        for k in range(1, n_blocks + 1):
            channels[size // 2 ** k] = int(state[f"convs.{k}.conv2.1.weight"].shape[0])
        stddev_feat = int(state["final_conv.0.weight"].shape[1]) - channels[4]
    except (KeyError, AttributeError, ValueError) as e:
        raise BenchError(f"{source}: not a StyleGAN2 discriminator state dict (rosinality layout): "
                         f"no usable {e}") from None
    return dict(size=size, channel_multiplier=_multiplier(channels), channels=channels, stddev_feat=stddev_feat)


# -- rosinality .pt ---------------------------------------------------------------------------------


def read_rosinality(path) -> StyleGAN2Checkpoint:
    """rosinality checkpoint: {'g_ema', ['g', 'd', 'latent_avg', 'args', optimiser states ...]}
    or a bare generator state dict. Loaded with ``weights_only=True``."""
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise BenchError(f"refusing to load {path}: it holds objects other than tensors and plain data "
                         f"(torch.load weights_only: {first})") from None
    except (RuntimeError, EOFError, OSError) as e:
        raise BenchError(f"cannot read {path} as a torch checkpoint: {e}") from None
    if not isinstance(ckpt, dict):
        raise BenchError(f"{path}: expected a dict checkpoint, got {type(ckpt).__name__}")
    if "g_ema" not in ckpt and "style.1.weight" in ckpt:
        ckpt = {"g_ema": ckpt}
    if "g_ema" not in ckpt:
        raise BenchError(f"{path}: no 'g_ema' in this checkpoint (keys: {', '.join(map(str, list(ckpt)[:10]))})")
    g_kwargs = generator_kwargs(ckpt["g_ema"], path)
    d = ckpt.get("d")
    latent_avg = ckpt.get("latent_avg")
    if latent_avg is not None:
        latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).reshape(-1)
    return StyleGAN2Checkpoint(g_ema=dict(ckpt["g_ema"]), g_kwargs=g_kwargs, latent_avg=latent_avg,
                               g=dict(ckpt["g"]) if ckpt.get("g") is not None else None,
                               d=dict(d) if d is not None else None,
                               d_kwargs=discriminator_kwargs(d, path) if d is not None else None, source="rosinality")


# -- NVIDIA stylegan2-ada .pkl: restricted unpickling ------------------------------------------------


class _PersistentObj:
    """What ``torch_utils.persistence._reconstruct_persistent_obj`` would have rebuilt, as data only."""

    def __init__(self, class_name: str, state: dict):
        self.class_name, self.state = class_name, state

    def __repr__(self):
        return f"<persistent {self.class_name}>"


def _reconstruct_persistent_state(meta):
    # the real one exec()s meta['module_src']; we keep the class name and the state and nothing else
    if not isinstance(meta, dict) or meta.get("type") != "class" or not isinstance(meta.get("state"), dict) \
            or not isinstance(meta.get("class_name"), str):
        raise BenchError("malformed torch_utils.persistence object in pickle")
    return _PersistentObj(meta["class_name"], dict(meta["state"]))


class _EasyDict(dict):
    """Stand-in for dnnlib.EasyDict: a dict."""


def _load_storage_bytes(b):
    # torch.storage._load_from_bytes runs torch.load(weights_only=False); ours never does
    if not isinstance(b, (bytes, bytearray)):
        raise BenchError("malformed tensor storage in pickle")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            storage = torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise BenchError(f"refusing a tensor storage in the pickle: {str(e).splitlines()[0]}") from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise BenchError(f"tensor storage in pickle decoded to {type(storage).__name__}")
    return storage


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # TypedStorage is deprecated, and is what torch pickles hold
        if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)) or not isinstance(storage_offset, int) \
                or not all(isinstance(v, int) for v in (*size, *stride)) or math.prod(size) > len(storage):
            # (the last check: no zero-stride views that would blow up to huge tensors when copied)
            raise BenchError("malformed tensor in pickle")
        return torch._utils._rebuild_tensor_v2(storage, storage_offset, tuple(size), tuple(stride), False,
                                               collections.OrderedDict())


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise BenchError("malformed parameter in pickle")
    return data.detach()   # plain tensors: we only want the numbers


class _NumpyDtype:
    """Stand-in for a pickled numpy dtype. (BUILD on a real one would call ``__setstate__`` on
    numpy's shared built-in dtype objects.)"""

    def __init__(self, name, align=False, copy=False):
        if not isinstance(name, str) or name[:1] not in ("b", "i", "u", "f") or np.dtype(name).kind not in "biuf":
            raise BenchError(f"refusing numpy dtype {name!r} in pickle")
        self.name, self.byteorder = name, "="

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) > 1 and state[1] in ("<", ">", "|", "="):
            self.byteorder = state[1]

    def dtype(self):
        return np.dtype(self.name).newbyteorder(self.byteorder) if self.byteorder in "<>" else np.dtype(self.name)


def _numpy_scalar(dtype, data=None):
    if not isinstance(dtype, _NumpyDtype) or not isinstance(data, bytes) or len(data) != dtype.dtype().itemsize:
        raise BenchError("malformed numpy scalar in pickle")
    return np.frombuffer(data, dtype.dtype())[0].item()


_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_state,
    ("dnnlib.util", "EasyDict"): _EasyDict,
    ("dnnlib", "EasyDict"): _EasyDict,
    ("numpy", "dtype"): _NumpyDtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


_TORCH_DTYPES = {"float16", "float32", "float64", "bfloat16", "uint8", "int8", "int16", "int32", "int64", "bool"}


class _RestrictedUnpickler(pickle._Unpickler):
    """Pure-Python unpickler with an allow-list of globals and BUILD limited to plain data.

    (The C unpickler cannot restrict BUILD, which calls ``__setstate__`` of whatever object is on
    the stack; the pure-Python one lets us replace that opcode.)
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source

    def find_class(self, module, name):
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None and module == "torch" and name in _TORCH_DTYPES:
            found = getattr(torch, name)
        if found is None:
            raise BenchError(f"refusing to unpickle {module}.{name} from {self.source}: only tensors and "
                             "StyleGAN2-ADA network state are read from .pkl files (pickled code is never run)")
        return found

    def load_build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if not (type(inst) is _NumpyDtype and isinstance(state, tuple)
                or type(inst) in (_EasyDict, collections.OrderedDict) and (state is None or isinstance(state, dict))):
            raise BenchError(f"refusing to unpickle {self.source}: BUILD of a {type(inst).__name__} "
                             "(only plain data is restored)")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def persistent_load(self, pid):
        raise BenchError(f"refusing to unpickle {self.source}: persistent ids are not used by network pickles")


def _unpickle(path):
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, str(path)).load()
        except BenchError:
            raise
        except Exception as e:  # truncated or corrupt pickles raise many types
            raise BenchError(f"cannot unpickle {path}: {type(e).__name__}: {e}") from None


def _flatten(obj: _PersistentObj, prefix: str = "", tensors=None, modules=None):
    """Parameters and buffers of a persistent module tree under dotted names, plus each module's state."""
    tensors = {} if tensors is None else tensors
    modules = {} if modules is None else modules
    modules[prefix.rstrip(".")] = obj
    state = obj.state
    for key in ("_parameters", "_buffers"):
        for name, t in (state.get(key) or {}).items():
            if t is not None:
                if not isinstance(t, torch.Tensor):
                    raise BenchError(f"{prefix}{name} is not a tensor in the pickle")
                tensors[prefix + name] = t
    for name, child in (state.get("_modules") or {}).items():
        if child is None:
            continue
        if not isinstance(child, _PersistentObj):
            raise BenchError(f"{prefix}{name} is not a stylegan2-ada network module")
        _flatten(child, f"{prefix}{name}.", tensors, modules)
    return tensors, modules


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


def _ada_generator(G: _PersistentObj, source: str, what: str):
    if G.class_name != "Generator":
        raise BenchError(f"{source}: '{what}' is a {G.class_name}, not a stylegan2-ada Generator")
    tensors, modules = _flatten(G)
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


def _ada_discriminator(D: _PersistentObj, source: str, what: str = "D"):
    if D.class_name != "Discriminator":
        raise BenchError(f"{source}: '{what}' is a {D.class_name}, not a stylegan2-ada Discriminator")
    tensors, modules = _flatten(D)
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
    data = _unpickle(path)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), _PersistentObj):
        raise BenchError(f"{path}: not a stylegan2-ada network pickle (no 'G_ema' network)")
    g_ema, g_kwargs, latent_avg = _ada_generator(data["G_ema"], str(path), "G_ema")
    g = _ada_generator(data["G"], str(path), "G")[0] if isinstance(data.get("G"), _PersistentObj) else None
    d = d_kwargs = None
    if isinstance(data.get("D"), _PersistentObj):
        d, d_kwargs = _ada_discriminator(data["D"], str(path))
    return StyleGAN2Checkpoint(g_ema=g_ema, g_kwargs=g_kwargs, latent_avg=latent_avg, g=g, d=d, d_kwargs=d_kwargs,
                               source="stylegan2-ada")


def write_safetensors(path, g_ema, d=None, training: dict | None = None) -> Path:
    """Our own format, read by :func:`read_safetensors`: tensors ``g_ema.*`` (and ``d.*``), widths and
    ``latent_avg`` in the metadata, so the file alone rebuilds the networks. Written atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    g_state = {k: v.detach().cpu() for k, v in g_ema.state_dict().items()}
    g_kwargs = generator_kwargs(g_state, source=str(path))
    tensors = {f"g_ema.{k}": v.contiguous() for k, v in g_state.items()}
    meta = {"format": SAFETENSORS_FORMAT, "g_kwargs": json.dumps(g_kwargs, default=str),
            "latent_avg": json.dumps([float(v) for v in g_ema.latent_avg.reshape(-1)]),
            "d_kwargs": json.dumps(None)}
    if d is not None:
        d_state = {k: v.detach().cpu() for k, v in d.state_dict().items()}
        meta["d_kwargs"] = json.dumps(discriminator_kwargs(d_state, source=str(path)))
        tensors.update({f"d.{k}": v.contiguous() for k, v in d_state.items()})
    if training is not None:
        meta["training"] = json.dumps(training)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def read_safetensors(path) -> StyleGAN2Checkpoint:
    """A file written by ``bench zoo train-stylegan2`` (G_ema + D, widths and latent_avg in the metadata)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise BenchError(f"StyleGAN2 file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:   # safetensors raises its own error types for a malformed header
        raise BenchError(f"cannot read {path} as safetensors: {e}") from None
    if meta.get("format") != SAFETENSORS_FORMAT or meta.get("part") == "d":
        what = "the discriminator half of one (load the generator file that names it)" if meta.get("part") == "d" \
            else f"format {meta.get('format')!r}"
        raise BenchError(f"{path} is not an exported train-stylegan2 file ({what})")
    if "d_file" in meta:   # D in a second file beside this one (each file under a size limit)
        d_path = path.parent / meta["d_file"]
        if not d_path.is_file():
            raise BenchError(f"{path} keeps its discriminator in {meta['d_file']}, which is missing from {path.parent}")
        from latent_edit_bench.assets import sha256_file
        if sha256_file(d_path) != meta.get("d_sha256"):
            raise BenchError(f"{d_path} does not match the sha256 that {path.name} records for it")
        with safe_open(str(d_path), framework="pt") as f:
            tensors.update({k: f.get_tensor(k) for k in f.keys()})
    g_kwargs, d_kwargs = json.loads(meta["g_kwargs"]), json.loads(meta["d_kwargs"])
    latent_avg = torch.tensor(json.loads(meta["latent_avg"]), dtype=torch.float32)
    # files may store float16 (half the size); the networks compute in float32
    tensors = {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}
    g_ema = {k[len("g_ema."):]: v for k, v in tensors.items() if k.startswith("g_ema.")}
    d = {k[len("d."):]: v for k, v in tensors.items() if k.startswith("d.")}
    return StyleGAN2Checkpoint(g_ema=g_ema, g_kwargs=g_kwargs, latent_avg=latent_avg, d=d or None,
                               d_kwargs=d_kwargs if d else None, source="latent-edit-bench")


# -- checkpoint -> backbone ---------------------------------------------------------------------

def load_stylegan2(path, truncation: float = 1.0, name: str = "stylegan2", with_discriminator: bool = True,
                   map_location="cpu") -> StyleGAN2Backbone:
    """Load a rosinality ``.pt`` or a NVIDIA stylegan2-ada ``.pkl`` (format told by content, never by
    suffix; no code from the file is run) as a :class:`StyleGAN2Backbone` on ``map_location``."""
    ckpt = read_checkpoint(path)
    generator = build_generator(ckpt.g_kwargs, ckpt.g_ema, ckpt.latent_avg, source=str(path))
    discriminator = None
    if with_discriminator and ckpt.d is not None:
        discriminator = build_discriminator(ckpt.d_kwargs, ckpt.d, source=str(path))
    return StyleGAN2Backbone(generator, discriminator, truncation=truncation, name=name).to(map_location)


def build_generator(kwargs: dict, state: dict, latent_avg: torch.Tensor | None = None, source: str = "checkpoint",
                    what: str = "g_ema") -> Generator:
    """Generator(**kwargs) with ``state`` loaded strictly; ``latent_avg`` from the checkpoint or the
    mean of 10,000 mapped samples (seed 0) when the checkpoint has none."""
    g = Generator(**kwargs)
    load_strict(g, state, what, source)
    with torch.no_grad():
        g.latent_avg.copy_(latent_avg.reshape(-1) if latent_avg is not None else g.mean_latent(10000, seed=0)[0])
    return g.eval()


def build_discriminator(kwargs: dict, state: dict, source: str = "checkpoint") -> Discriminator:
    d = Discriminator(**kwargs)
    load_strict(d, state, "d", source)
    return d.eval()
