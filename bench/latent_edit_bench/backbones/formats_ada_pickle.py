"""Unpickling NVIDIA network pickles without running them: an allow-list of globals, plain-data BUILD only.

NVIDIA pickles their networks together with the networks' *source code*
(``torch_utils.persistence``); ``pickle.load`` would run it. The restricted unpickler knows an
explicit allow-list of globals (tensor rebuilding, ``OrderedDict``, sets, numpy scalars, ``EasyDict``
and the persistence reconstructor, which is replaced by a function that keeps the pickled ``state``
and never looks at ``module_src``). Every other global, and any ``BUILD`` on an object that is not
plain data, raises :class:`BenchError`. Tensor storages are stored as ``torch.save`` bytes; they are
read back with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import warnings

import numpy as np
import torch

from latent_edit_bench.errors import BenchError


class PersistentObj:
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
    return PersistentObj(meta["class_name"], dict(meta["state"]))


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


def unpickle(path):
    """The network pickle at ``path`` as plain data and :class:`PersistentObj` trees; never runs its code."""
    with open(path, "rb") as f:
        try:
            return _RestrictedUnpickler(f, str(path)).load()
        except BenchError:
            raise
        except Exception as e:  # truncated or corrupt pickles raise many types
            raise BenchError(f"cannot unpickle {path}: {type(e).__name__}: {e}") from None


def flatten(obj: PersistentObj, prefix: str = "", tensors=None, modules=None):
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
        if not isinstance(child, PersistentObj):
            raise BenchError(f"{prefix}{name} is not a stylegan2-ada network module")
        flatten(child, f"{prefix}{name}.", tensors, modules)
    return tensors, modules
