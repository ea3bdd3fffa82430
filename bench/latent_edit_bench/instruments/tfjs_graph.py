"""Loading TF.js graph-model weights (tools/convert/convert_human.py: tensors keyed by Keras layer) into a port.

Each port declares ``keras_names()``: its module path -> the Keras layer name in the graph. Every
parameter must find its tensor with the right shape, and every tensor in the file must be used,
except layers the port names in ``unused_layers`` (a head it does not run): nothing is silently dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.errors import BenchError
from latent_edit_bench.instruments.tf_ops import conv_same


def keras_source(names: dict[str, str], key: str) -> str:
    """'blocks.3.sep1.depthwise' with {'blocks.3.sep1': 'separable_conv2d_7'} -> 'separable_conv2d_7.depthwise'."""
    module, _, param = key.rpartition(".")
    if module not in names:
        raise BenchError(f"no Keras layer name for {module!r}")
    return f"{names[module]}.{param}"


def load_keras(net: nn.Module, tensors: dict[str, torch.Tensor], source: str,
               unused_layers: tuple[str, ...] = ()) -> nn.Module:
    names = net.keras_names()
    expected = net.state_dict()
    state, problems = {}, []
    for key, want in expected.items():
        src = keras_source(names, key)
        if src not in tensors:
            problems.append(f"missing {src} (for {key})")
        elif tuple(tensors[src].shape) != tuple(want.shape):
            problems.append(f"{src} {tuple(tensors[src].shape)} != {key} {tuple(want.shape)}")
        else:
            state[key] = tensors[src].float()
    used = {keras_source(names, k) for k in expected}
    unused = sorted(k for k in set(tensors) - used if k.rpartition(".")[0] not in unused_layers)
    if unused:
        problems.append(f"unused tensors {unused[:5]}")
    if problems:
        raise BenchError(f"{source} does not fit {type(net).__name__}: " + "; ".join(problems[:6]))
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


class Conv(nn.Module):
    """A Keras Conv2D as the converted graphs name it (``weight``, ``bias``), TF's 'same' padding by default."""

    def __init__(self, cin: int, cout: int, k: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, stride=1, padding="same"):
        if padding == "same":
            return conv_same(x, self.weight, self.bias, stride)
        return F.conv2d(x, self.weight, self.bias, stride)
