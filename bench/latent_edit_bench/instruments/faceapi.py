"""face-api's networks (npm @vladmandic/face-api 1.7.15, MIT) ported to PyTorch, and their instruments.

    faceapi-landmarks    68 iBUG landmarks        FaceLandmark68Net  (dense blocks of separable convs), 112 px
    faceapi-expression   7 expressions            FaceExpressionNet  (same trunk, its own weights), 112 px
    faceapi-age-gender   age (years), P(male)     AgeGenderNet       (TinyXception), 112 px
    faceapi-descriptor   128-D face descriptor    FaceRecognitionNet (dlib's ResNet-34-like), 150 px

Every image is taken to be the face crop (the instruments have no detector). Preprocessing is
face-api's ``NetInput.toBatchTensor``: zero-pad to a centred square (the odd pixel goes bottom/right),
TF's legacy bilinear resize (align_corners and half_pixel_centers both false), subtract the RGB mean,
divide by 255. Convolutions reproduce TF 'same' padding, which is asymmetric for stride 2 (the extra
row/column goes bottom/right). Weights come from tools/convert/convert_faceapi.py (manifest names, TF layouts);
parity with the original TF.js models is tested in tests/test_faceapi.py.
"""

from __future__ import annotations

from latent_edit_bench.attributes import EMOTION_LABELS
import functools

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.instrument import Instrument, Output

MEAN_RGB = (122.782, 117.001, 104.298)
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
DEEPFACE_LABELS = EMOTION_LABELS
DEEPFACE_FROM_FACEAPI = (3, 5, 4, 1, 2, 6, 0)  # emotion[:, i] = expression[:, DEEPFACE_FROM_FACEAPI[i]]


# -- TF semantics --------------------------------------------------------------------------------

def _same_pads(x: torch.Tensor, k: int, s: int) -> list[int]:
    """TF 'same' padding (left, right, top, bottom): out = ceil(n / s); the odd pad goes after."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
        total = max((-(-n // s) - 1) * s + k - n, 0)
        pads += [total // 2, total - total // 2]
    return pads


def max_pool_same(x: torch.Tensor, k: int = 3, s: int = 2) -> torch.Tensor:
    """TF/Keras max pooling with 'same' padding (-inf pad, the odd one after). Written as max_pool2d's own
    padding where it can be: pads (p, p) or (p, p + 1) per axis are ``padding=p`` with ``ceil_mode``,
    whose last window then reaches one row past the input and is clipped, as a -inf row would leave it.
    No padded copy of the activations (on the CPU that copy cost as much as the pooling)."""
    left, right, top, bottom = _same_pads(x, k, s)
    if max(left, top) <= k // 2 and right - left in (0, 1) and bottom - top in (0, 1):
        return F.max_pool2d(x, k, s, padding=(top, left), ceil_mode=True)
    return F.max_pool2d(F.pad(x, (left, right, top, bottom), value=float("-inf")), k, s)


def conv_same(x, weight, bias, stride, groups=1):
    """conv2d with TF 'same' padding; symmetric cases use conv2d's own padding (no padded copy)."""
    left, right, top, bottom = _same_pads(x, weight.shape[-1], stride)
    if left == right and top == bottom:
        return F.conv2d(x, weight, bias, stride, (top, left), groups=groups)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, bias, stride, groups=groups)


@functools.lru_cache(maxsize=64)
def _resize_taps(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (lo, hi) and weights of TF's bilinear resize, align_corners=False, half_pixel_centers=False;
    made once per (size, device), so no call copies them to the device."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor()
    return tuple(t.to(device) for t in (lo.long(), src.ceil().clamp(max=n_in - 1).long(), src - lo))


@functools.lru_cache(maxsize=64)
def _resize_matrix(n_in: int, n_out: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The same resize along one axis as a [n_out, n_in] matrix (two taps per row)."""
    lo, hi, frac = _resize_taps(n_in, n_out, torch.device("cpu"))
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    m[rows, lo] += 1 - frac
    m[rows, hi] += frac
    return m.to(device, dtype)


def resize_bilinear_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """tf.image.resizeBilinear(x, [size, size], false, false) on [B, C, H, W], each axis a lerp between
    two taps. Inputs up to 4x the output size: two matmuls with the axes' tap matrices (4x faster
    than gathering at 64 -> 112 px, and 6x in the backward of a fit's loss, where the gather's is an
    index_put). Larger inputs (photos): gather rows first, then columns (TF.js does columns first:
    same values up to float rounding), which touches only the rows it needs."""
    h, w = x.shape[-2:]
    if max(h, w) <= 4 * size:
        return _resize_matrix(h, size, x.device, x.dtype) @ x @ _resize_matrix(w, size, x.device, x.dtype).T
    lo, hi, frac = _resize_taps(h, size, x.device)
    x = torch.lerp(x.index_select(-2, lo), x.index_select(-2, hi), frac.to(x.dtype)[:, None])
    lo, hi, frac = _resize_taps(w, size, x.device)
    return torch.lerp(x[..., lo], x[..., hi], frac.to(x.dtype))


def pad_to_square(x: torch.Tensor, value: float = 0.0) -> torch.Tensor:
    """face-api's padToSquare(isCenterImage=True): round(d/2) after, the rest before."""
    h, w = x.shape[-2:]
    d = abs(h - w)
    after = (d + 1) // 2  # JS Math.round(d * 0.5)
    if d == 0:
        return x
    return F.pad(x, (d - after, after, 0, 0) if h > w else (0, 0, d - after, after), value=value)


def to_network_input(images: torch.Tensor, size: int, mean: torch.Tensor | None = None) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> face-api's normalised network input [B, 3, size, size].

    face-api pads and resizes 0..255 pixels; both are affine-equivariant, so we pad with -1 (black)
    and resize in [-1, 1], and scale only the small result. ``mean``: MEAN_RGB as [1, 3, 1, 1] on the
    images' device (the instruments pass their buffer)."""
    x = pad_to_square(images, value=-1.0)
    if x.shape[-1] != size:
        x = resize_bilinear_tf(x, size)
    x = (x + 1) * 127.5
    if mean is None:
        mean = torch.tensor(MEAN_RGB, device=x.device).view(1, 3, 1, 1)
    return (x - mean.to(x.dtype)) / 255


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


# -- instruments -----------------------------------------------------------------------------------

class FaceapiInstrument(Instrument):
    """Shared plumbing: images in [-1, 1], any size/device/dtype -> the net's own input."""

    differentiable = True

    def __init__(self, net: nn.Module | None = None):
        super().__init__()
        # channels-last: 1.2-1.6x faster on this CPU (depthwise convs especially), and suits GPUs
        self.net = (load_net(self.assets[0]) if net is None else net).to(memory_format=torch.channels_last)
        self.register_buffer("mean_rgb", torch.tensor(MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # nothing to train; keep eval semantics

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        self.check_images(images)
        p = next(self.net.parameters())
        x = to_network_input(images.to(device=p.device, dtype=p.dtype), self.net.input_size, self.mean_rgb)
        return x.contiguous(memory_format=torch.channels_last)


class FaceapiLandmarks(FaceapiInstrument):
    name = "faceapi-landmarks"
    assets = ("faceapi-landmark68",)
    outputs = (Output("landmarks", (68, 2), (0.0, 1.0), "fraction of the padded square's side", labels=("x", "y"),
                      description="face-api's 68 iBUG landmarks (raw net output, not clamped); the image is "
                                  "centred on a black square first, coordinates are fractions of that square"),)

    def forward(self, images):
        return {"landmarks": self.net(self.prepare(images)).view(-1, 68, 2)}


class FaceapiExpression(FaceapiInstrument):
    name = "faceapi-expression"
    assets = ("faceapi-expression",)
    outputs = (
        Output("expression", (7,), (0.0, 1.0), "probability", labels=EXPRESSION_LABELS,
               description="face-api's expression softmax in face-api's own label order"),
        Output("emotion", (7,), (0.0, 1.0), "probability", labels=DEEPFACE_LABELS,
               description="the same probabilities re-ordered to DeepFace's emotion order"),
    )

    def forward(self, images):
        p = torch.softmax(self.net(self.prepare(images)), dim=1)
        return {"expression": p, "emotion": p[:, list(DEEPFACE_FROM_FACEAPI)]}


class FaceapiAgeGender(FaceapiInstrument):
    name = "faceapi-age-gender"
    assets = ("faceapi-age-gender",)
    outputs = (
        Output("age", (), None, "years", description="face-api's raw age regression (not clamped)"),
        Output("male", (), (0.0, 1.0), "probability", description="P(male): gender softmax, index 0"),
    )

    def forward(self, images):
        age, gender = self.net(self.prepare(images))
        return {"age": age, "male": torch.softmax(gender, dim=1)[:, 0]}


class FaceapiDescriptor(FaceapiInstrument):
    name = "faceapi-descriptor"
    assets = ("faceapi-recognition",)
    outputs = (Output("descriptor", (128,), None, "embedding",
                      description="face-api's 128-D face descriptor (150 px; same person if Euclidean distance "
                                  "< 0.6 by face-api's convention)"),)

    def forward(self, images):
        return {"descriptor": self.net(self.prepare(images))}


def landmarks(**_options) -> FaceapiLandmarks:
    return FaceapiLandmarks()


def expression(**_options) -> FaceapiExpression:
    return FaceapiExpression()


def age_gender(**_options) -> FaceapiAgeGender:
    return FaceapiAgeGender()


def descriptor(**_options) -> FaceapiDescriptor:
    return FaceapiDescriptor()


# -- coordinates ---------------------------------------------------------------------------------------

def landmarks_to_pixels(landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Fractions of the padded square -> (x, y) pixels of the H x W image (pad as in pad_to_square)."""
    d = abs(height - width)
    before = d - (d + 1) // 2
    shift = torch.tensor([before if height > width else 0, before if width > height else 0],
                         dtype=landmarks.dtype, device=landmarks.device)
    return landmarks * max(height, width) - shift
