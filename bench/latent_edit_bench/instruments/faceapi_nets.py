"""face-api's four networks (npm @vladmandic/face-api 1.7.15, MIT) as torch modules, and loading their weights.

Parameter names mirror the TF.js manifest ('/' -> '.'); weights come from tools/convert/convert_faceapi.py
(manifest names, TF layouts), converted to torch layouts on loading.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.errors import BenchError
from latent_edit_bench.instruments.tf_ops import conv_same, max_pool_same


# -- layers (parameter names mirror the TF.js manifest, '/' -> '.') --------------------------------

class Conv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int):
        super().__init__()
        self.filters = nn.Parameter(torch.zeros(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, stride=1, padding="same"):
        if padding == "same":
            return conv_same(x, self.filters, self.bias, stride)
        return F.conv2d(x, self.filters, self.bias, stride)


class SeparableConv(nn.Module):
    """tf.separableConv2d (depthwise 3x3, then pointwise 1x1) + bias."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise_filter = nn.Parameter(torch.zeros(cin, 1, 3, 3))
        self.pointwise_filter = nn.Parameter(torch.zeros(cout, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, stride=1):
        x = conv_same(x, self.depthwise_filter, None, stride, groups=x.shape[1])
        return F.conv2d(x, self.pointwise_filter, self.bias)


class FC(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(cout, cin))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return F.linear(x, self.weights, self.bias)


# -- FaceLandmark68Net / FaceExpressionNet ---------------------------------------------------------

class DenseBlock4(nn.Module):
    def __init__(self, cin: int, cout: int, first: bool = False):
        super().__init__()
        self.conv0 = Conv(cin, cout, 3) if first else SeparableConv(cin, cout)
        self.conv1 = SeparableConv(cout, cout)
        self.conv2 = SeparableConv(cout, cout)
        self.conv3 = SeparableConv(cout, cout)

    def forward(self, x):
        out1 = F.relu(self.conv0(x, 2))
        out2 = self.conv1(out1)
        out3 = self.conv2(F.relu(out1 + out2))
        out4 = self.conv3(F.relu(out1 + out2 + out3))
        return F.relu(out1 + out2 + out3 + out4)


class FaceFeatureNet(nn.Module):
    """FaceFeatureExtractor (4 dense blocks, 112 -> 7 px, avg-pool) + one fc layer: raw outputs."""

    input_size = 112

    def __init__(self, n_out: int):
        super().__init__()
        self.dense0 = DenseBlock4(3, 32, first=True)
        self.dense1 = DenseBlock4(32, 64)
        self.dense2 = DenseBlock4(64, 128)
        self.dense3 = DenseBlock4(128, 256)
        self.fc = FC(256, n_out)

    def forward(self, x):
        x = self.dense3(self.dense2(self.dense1(self.dense0(x))))
        return self.fc(F.avg_pool2d(x, 7, 2).flatten(1))


# -- AgeGenderNet (TinyXception) -----------------------------------------------------------------

class ReductionBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.separable_conv0 = SeparableConv(cin, cout)
        self.separable_conv1 = SeparableConv(cout, cout)
        self.expansion_conv = Conv(cin, cout, 1)

    def forward(self, x, activate_input=True):
        out = self.separable_conv0(F.relu(x) if activate_input else x)
        out = self.separable_conv1(F.relu(out))
        out = max_pool_same(out, 3, 2)
        return out + self.expansion_conv(x, 2)


class MainBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.separable_conv0 = SeparableConv(c, c)
        self.separable_conv1 = SeparableConv(c, c)
        self.separable_conv2 = SeparableConv(c, c)

    def forward(self, x):
        out = self.separable_conv0(F.relu(x))
        out = self.separable_conv1(F.relu(out))
        return self.separable_conv2(F.relu(out)) + x


class AgeGenderNet(nn.Module):
    """-> (age [B] years, gender logits [B, 2]; index 0 = male)."""

    input_size = 112

    def __init__(self, n_main_blocks: int = 2):
        super().__init__()
        self.entry_flow = nn.ModuleDict(dict(conv_in=Conv(3, 32, 3), reduction_block_0=ReductionBlock(32, 64),
                                             reduction_block_1=ReductionBlock(64, 128)))
        self.middle_flow = nn.ModuleDict({f"main_block_{i}": MainBlock(128) for i in range(n_main_blocks)})
        self.exit_flow = nn.ModuleDict(dict(reduction_block=ReductionBlock(128, 256),
                                            separable_conv=SeparableConv(256, 512)))
        self.fc = nn.ModuleDict(dict(age=FC(512, 1), gender=FC(512, 2)))

    def forward(self, x):
        e = self.entry_flow
        x = F.relu(e.conv_in(x, 2))
        x = e.reduction_block_1(e.reduction_block_0(x, activate_input=False))
        for block in self.middle_flow.values():
            x = block(x)
        x = self.exit_flow.reduction_block(x)
        x = F.relu(self.exit_flow.separable_conv(x))
        x = F.avg_pool2d(x, 7, 2).flatten(1)
        return self.fc.age(x)[:, 0], self.fc.gender(x)


# -- FaceRecognitionNet ----------------------------------------------------------------------------

class Scale(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.weights = nn.Parameter(torch.zeros(c))
        self.biases = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return x * self.weights[:, None, None] + self.biases[:, None, None]


class ConvLayer(nn.Module):
    """conv + bias, then the per-channel affine 'scale' layer (dlib's folded batch norm)."""

    def __init__(self, cin: int, cout: int, k: int = 3):
        super().__init__()
        self.conv = Conv(cin, cout, k)
        self.scale = Scale(cout)

    def forward(self, x, stride=1, padding="same", relu=True):
        x = self.scale(self.conv(x, stride, padding))
        return F.relu(x) if relu else x


class Residual(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool = False):
        super().__init__()
        self.down = down
        self.conv1 = ConvLayer(cin, cout)
        self.conv2 = ConvLayer(cout, cout)

    def forward(self, x):
        if not self.down:
            return F.relu(self.conv2(self.conv1(x), relu=False) + x)
        out = self.conv2(self.conv1(x, 2, "valid"), relu=False)
        short = F.avg_pool2d(x, 2, 2)
        if short.shape[1] != out.shape[1]:  # widen the shortcut with zero channels
            short = F.pad(short, (0, 0, 0, 0, 0, out.shape[1] - short.shape[1]))
        dh, dw = short.shape[-2] - out.shape[-2], short.shape[-1] - out.shape[-1]
        if dh or dw:  # 'valid' conv lost a row/column the pool kept: zeros bottom/right
            out = F.pad(out, (0, dw, 0, dh))
        return F.relu(short + out)


class FaceRecognitionNet(nn.Module):
    """150 px -> 128-D descriptor."""

    input_size = 150
    LAYOUT = (("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
              ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
              ("conv64_3", 64, 64, False), ("conv128_down", 64, 128, True), ("conv128_1", 128, 128, False),
              ("conv128_2", 128, 128, False), ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False),
              ("conv256_2", 256, 256, False), ("conv256_down_out", 256, 256, True))

    def __init__(self):
        super().__init__()
        self.conv32_down = ConvLayer(3, 32, 7)
        for name, cin, cout, down in self.LAYOUT:
            self.add_module(name, Residual(cin, cout, down))
        self.fc = nn.Parameter(torch.zeros(128, 256))

    def forward(self, x):
        x = F.max_pool2d(self.conv32_down(x, 2, "valid"), 3, 2)
        for name, *_ in self.LAYOUT:
            x = getattr(self, name)(x)
        return F.linear(x.mean((2, 3)), self.fc)


# -- loading ---------------------------------------------------------------------------------------

def tf_to_torch(name: str, t: torch.Tensor) -> torch.Tensor:
    """TF.js layouts -> torch: conv HWIO -> OIHW, depthwise [kh, kw, C, 1] -> [C, 1, kh, kw],
    fc [in, out] -> [out, in]."""
    if t.ndim == 4:
        return t.permute(2, 3, 0, 1) if name.endswith("depthwise_filter") else t.permute(3, 2, 0, 1)
    return t.t() if t.ndim == 2 else t


def load_tfjs(net: nn.Module, tensors: dict[str, torch.Tensor], source: str = "weights") -> nn.Module:
    """Load manifest-named TF.js tensors into ``net``; every name and shape must match."""
    state = {k.replace("/", "."): tf_to_torch(k, v).float().contiguous() for k, v in tensors.items()}
    expected = net.state_dict()
    missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    wrong = sorted(f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
                   for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        raise BenchError(f"{source} does not fit {type(net).__name__}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}, wrong shapes {wrong[:5]}")
    net.load_state_dict(state, strict=True)
    return net.eval().requires_grad_(False)


def load_net(asset: str) -> nn.Module:
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path

    net = {"faceapi-landmark68": lambda: FaceFeatureNet(136), "faceapi-expression": lambda: FaceFeatureNet(7),
           "faceapi-age-gender": AgeGenderNet, "faceapi-recognition": FaceRecognitionNet}[asset]()
    return load_tfjs(net, load_file(str(asset_path(asset))), source=f"asset {asset!r}")
