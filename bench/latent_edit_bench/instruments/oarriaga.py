"""oarriaga/face_classification's emotion and gender nets (MIT), as shipped by npm @vladmandic/human, in PyTorch.

    oarriaga-emotion   7 emotions (DeepFace order)   Xception-like, 2 residual blocks (128, 256), 64 px grey
    oarriaga-gender    P(male)                       mini-Xception, 4 residual blocks (16 .. 128), 64 px grey

These are judges: networks other than the ones methods train against (face-api's, fer's) that
measure the same attributes. The emotion net is not fer's: same author and data set (FER2013), but a
wider net (205k parameters against 58k) with its own weights. The gender net is oarriaga's mini-Xception
trained on IMDB-WIKI's IMDB face crops (with margin: it wants looser crops than face-api's nets).

Preprocessing is human's (src/gear/emotion.ts, ssrnet-gender.ts): the face crop is stretched to
64 x 64 with TF's legacy bilinear resize (no square padding), turned grey with weights
(0.2989, 0.5870, 0.1140) on [0, 1] RGB, then mapped to [-1, 1]. Batch norms are folded into the conv
biases in the source graph. Each residual block: a 1x1 stride-2 conv shortcut; two separable 3x3 convs
(ReLU between) and a 3x3 stride-2 'same' max-pool. Parity with the original TF.js graphs:
tools/parity/human_reference/, tests/test_human_nets.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.instruments.faceapi import DEEPFACE_LABELS
from latent_edit_bench.instruments.tf_ops import conv_same, max_pool_same, resize_bilinear_tf
from latent_edit_bench.instruments.tfjs_graph import Conv, load_keras

GREY = (0.2989, 0.5870, 0.1140)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D (depthwise 3x3 'same', pointwise 1x1) with the following batch norm folded in."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise = nn.Parameter(torch.zeros(cin, 1, 3, 3))
        self.weight = nn.Parameter(torch.zeros(cout, cin, 1, 1))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x):
        return F.conv2d(conv_same(x, self.depthwise, None, 1, groups=x.shape[1]), self.weight, self.bias)


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int, pre_activation: bool):
        super().__init__()
        self.pre_activation = pre_activation  # the emotion net applies ReLU before the first separable conv
        self.shortcut = Conv(cin, cout, 1)
        self.sep1 = SeparableConv(cin, cout)
        self.sep2 = SeparableConv(cout, cout)

    def forward(self, x):
        out = self.sep1(F.relu(x) if self.pre_activation else x)
        out = self.sep2(F.relu(out))
        out = max_pool_same(out, 3, 2)
        return out + self.shortcut(x, 2)


class XceptionNet(nn.Module):
    """Two stem convs ('valid'), residual blocks, a 3x3 conv to the classes, global average, softmax."""

    input_size = 64

    def __init__(self, stem: tuple[int, int], stem_stride: int, widths: tuple[int, ...], n_classes: int,
                 pre_activation: bool):
        super().__init__()
        self.stem_stride = stem_stride
        self.conv1 = Conv(1, stem[0], 3)
        self.conv2 = Conv(stem[0], stem[1], 3)
        cins = (stem[1],) + widths[:-1]
        self.blocks = nn.ModuleList(ResidualBlock(cin, cout, pre_activation and i > 0)
                                    for i, (cin, cout) in enumerate(zip(cins, widths)))
        self.classifier = Conv(widths[-1], n_classes, 3)

    def forward(self, x):
        """x [B, 1, 64, 64] grey in [-1, 1] -> logits [B, n_classes]."""
        x = F.relu(self.conv1(x, self.stem_stride, "valid"))
        x = F.relu(self.conv2(x, 1, "valid"))
        for block in self.blocks:
            x = block(x)
        return self.classifier(x).mean((2, 3))

    def keras_names(self) -> dict[str, str]:
        """our module -> Keras layer in the converted file (the graph's own numbering)."""
        names = {"conv1": "conv2d_1", "conv2": "conv2d_2", "classifier": f"conv2d_{3 + len(self.blocks)}"}
        for i in range(len(self.blocks)):
            names[f"blocks.{i}.shortcut"] = f"conv2d_{3 + i}"
            names[f"blocks.{i}.sep1"] = f"separable_conv2d_{2 * i + 1}"
            names[f"blocks.{i}.sep2"] = f"separable_conv2d_{2 * i + 2}"
        return names


def emotion_net() -> XceptionNet:
    return XceptionNet((32, 64), 2, (128, 256), 7, pre_activation=True)


def gender_net() -> XceptionNet:
    return XceptionNet((8, 8), 1, (16, 32, 64, 128), 2, pre_activation=False)


def load_net(asset: str) -> XceptionNet:
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path

    net = {"oarriaga-emotion": emotion_net, "oarriaga-gender": gender_net}[asset]()
    return load_keras(net, load_file(str(asset_path(asset))), f"asset {asset!r}")


def to_grey_input(images: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> [B, 1, size, size] grey in [-1, 1], as human feeds these nets.

    Resize and the grey weighting are linear, so they commute with [0, 1] -> [-1, 1]: 2 (sum w c01) - 1
    = sum w c + (sum w - 1), where c = 2 c01 - 1 (sum w = 0.9999, not 1)."""
    x = resize_bilinear_tf(images, size) if images.shape[-2:] != (size, size) else images
    w = torch.tensor(GREY, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True) + (sum(GREY) - 1)


class OarriagaInstrument(Instrument):
    differentiable = True

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        self.net = load_net(self.assets[0]) if net is None else net

    def train(self, mode: bool = True):
        return super().train(False)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        p = next(self.net.parameters())
        return to_grey_input(images.to(device=p.device, dtype=p.dtype), self.net.input_size)


class OarriagaEmotion(OarriagaInstrument):
    name = "oarriaga-emotion"
    assets = ("oarriaga-emotion",)
    outputs = (Output("emotion", (7,), (0.0, 1.0), "probability", labels=DEEPFACE_LABELS,
                      description="oarriaga's FER2013 emotion softmax (DeepFace's label order); the face crop is "
                                  "stretched to 64 x 64 grey"),)

    def forward(self, images):
        return {"emotion": torch.softmax(self.net(self.prepare(images)), dim=1)}


class OarriagaGender(OarriagaInstrument):
    name = "oarriaga-gender"
    assets = ("oarriaga-gender",)
    outputs = (Output("male", (), (0.0, 1.0), "probability",
                      description="P(male): oarriaga's IMDB gender softmax, index 1 ('man'); 64 x 64 grey"),)

    def forward(self, images):
        return {"male": torch.softmax(self.net(self.prepare(images)), dim=1)[:, 1]}


def emotion(**_options) -> OarriagaEmotion:
    return OarriagaEmotion()


def gender(**_options) -> OarriagaGender:
    return OarriagaGender()
