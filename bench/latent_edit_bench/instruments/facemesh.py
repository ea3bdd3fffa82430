"""MediaPipe Face Mesh (468 points, 192 px; Apache-2.0), as shipped by npm @vladmandic/human, in PyTorch.

Kartynnik et al. 2019, "Real-time facial surface geometry from monocular video on mobile GPUs": a
residual trunk of depthwise-separable blocks with PReLU (192 -> 6 px), then two of the graph's three
heads: the mesh (468 x (x, y, z), x and y in input pixels, z relative depth in the same scale) and
the face flag (a logit that the crop holds a face; sigmoid). The contour head (133 points) is in the
converted file but not run.

Input: the face crop in [0, 1] RGB, 192 x 192. Human crops with tf.image.cropAndResize, which for the
whole crop is bilinear with aligned corners; the instrument does the same for any H x W (stretching,
as human does), including TF.js-wasm's float32 edge case (see ``crop_and_resize_tf``). Parity with the original TF.js graph: tools/parity/human_reference/, tests/test_human_nets.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.instruments.tf_ops import conv_same
from latent_edit_bench.instruments.tfjs_graph import Conv, load_keras

INPUT_SIZE = 192
N_POINTS = 468
from latent_edit_bench.faces import BROWS, LEFT_EYE, LIPS, RIGHT_EYE  # noqa: E402,F401  (the mesh's regions, re-exported)

# the mesh points at iBUG-68 anchors: eye corners (36, 39, 42, 45) and mouth corners (48, 54)
IBUG_ANCHORS = {36: 33, 39: 133, 42: 362, 45: 263, 48: 61, 54: 291}


class PReLU(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(c))

    def forward(self, x):
        return F.prelu(x, self.alpha)


class Block(nn.Module):
    """depthwise 3x3 -> pointwise 1x1 (+ folded BN), plus the input (max-pooled and zero-padded in
    channels when striding), then PReLU."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.stride, self.pad_channels = stride, cout - cin
        self.depthwise = nn.Parameter(torch.zeros(cin, 1, 3, 3))
        self.pointwise = Conv(cin, cout)
        self.act = PReLU(cout)

    def forward(self, x):
        out = self.pointwise(conv_same(x, self.depthwise, None, self.stride, groups=x.shape[1]))
        short = F.max_pool2d(x, 2, 2) if self.stride == 2 else x
        if self.pad_channels:
            short = F.pad(short, (0, 0, 0, 0, 0, self.pad_channels))
        return self.act(out + short)


class Head(nn.Module):
    """A head after the trunk: stride-2 block, two blocks, 1x1 conv to 32 + PReLU, one block, 3x3 stride-3 conv."""

    def __init__(self, n_out: int, n_blocks: int):
        super().__init__()
        self.blocks = nn.ModuleList([Block(128, 128, 2)] + [Block(128, 128) for _ in range(n_blocks - 1)])
        self.reduce, self.reduce_act = Conv(128, 32), PReLU(32)
        self.block32 = Block(32, 32)
        self.out = Conv(32, n_out, 3)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        x = self.block32(self.reduce_act(self.reduce(x)))
        return self.out(x, 3, "valid").flatten(1)


class FaceMesh(nn.Module):
    """[B, 3, 192, 192] in [0, 1] -> (mesh [B, 468, 3] in input pixels, face-flag logit [B])."""

    TRUNK = ([(16, 16, 1)] * 2 + [(16, 32, 2)] + [(32, 32, 1)] * 2 + [(32, 64, 2)] + [(64, 64, 1)] * 2
             + [(64, 128, 2)] + [(128, 128, 1)] * 2 + [(128, 128, 2)] + [(128, 128, 1)] * 2)

    def __init__(self):
        super().__init__()
        self.stem, self.stem_act = Conv(3, 16, 3), PReLU(16)
        self.trunk = nn.ModuleList(Block(*spec) for spec in self.TRUNK)
        self.mesh = Head(N_POINTS * 3, 3)
        self.face_flag = Head(1, 1)

    def forward(self, x):
        x = self.stem_act(self.stem(x, 2))
        for block in self.trunk:
            x = block(x)
        return self.mesh(x).view(-1, N_POINTS, 3), self.face_flag(x)[:, 0]

    def keras_names(self) -> dict[str, str]:
        names = {"stem": "conv2d_1", "stem_act": "p_re_lu_1"}
        for i in range(len(self.trunk)):  # Keras numbering: depthwise_conv2d_k, conv2d_{k+1}, p_re_lu_{k+1}
            k = i + 1
            names.update({f"trunk.{i}": f"depthwise_conv2d_{k}", f"trunk.{i}.pointwise": f"conv2d_{k + 1}",
                          f"trunk.{i}.act": f"p_re_lu_{k + 1}"})
        # mesh head: depthwise 15-18, conv 16-21, PReLU 16-20; face flag: depthwise 23-24, conv 28-31, PReLU 26-28
        for head, dw, conv, act in (("mesh", (15, 16, 17), (16, 17, 18), (16, 17, 18)),
                                    ("face_flag", (23,), (28,), (26,))):
            for j, (d, c, a) in enumerate(zip(dw, conv, act)):
                names.update({f"{head}.blocks.{j}": f"depthwise_conv2d_{d}",
                              f"{head}.blocks.{j}.pointwise": f"conv2d_{c}", f"{head}.blocks.{j}.act": f"p_re_lu_{a}"})
            c, a, d = conv[-1] + 1, act[-1] + 1, dw[-1] + 1
            names.update({f"{head}.reduce": f"conv2d_{c}", f"{head}.reduce_act": f"p_re_lu_{a}",
                          f"{head}.block32": f"depthwise_conv2d_{d}", f"{head}.block32.pointwise": f"conv2d_{c + 1}",
                          f"{head}.block32.act": f"p_re_lu_{a + 1}", f"{head}.out": f"conv2d_{c + 2}"})
        return names


CONTOUR_LAYERS = tuple([f"depthwise_conv2d_{k}" for k in (19, 20, 21, 22)] + [f"conv2d_{k}" for k in range(22, 28)]
                       + [f"p_re_lu_{k}" for k in range(21, 26)])


def load_net() -> FaceMesh:
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path

    return load_keras(FaceMesh(), load_file(str(asset_path("mediapipe-facemesh"))), "asset 'mediapipe-facemesh'",
                      unused_layers=CONTOUR_LAYERS)


def _crop_taps(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """tf.image.cropAndResize of the whole axis, as TF.js-wasm computes it: in = i * ((n_in - 1) / (n_out - 1))
    in float32, taps floor/ceil, and a sample whose float32 position lands past n_in - 1 (it happens: 191 *
    float32(62 / 191) > 62) takes the extrapolation value 0 instead. Returns (lo, hi, frac, outside)."""
    scale = torch.tensor(n_in - 1, dtype=torch.float32) / torch.tensor(n_out - 1, dtype=torch.float32)
    pos = torch.arange(n_out, dtype=torch.float32) * scale
    outside = pos > n_in - 1
    lo = pos.floor().clamp(max=n_in - 1)
    return lo.long(), pos.ceil().clamp(max=n_in - 1).long(), pos - lo, outside


def crop_and_resize_tf(x: torch.Tensor, size: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, C, size, size]: bilinear with aligned corners, TF.js-wasm's float32 edge included
    (samples past the edge are 0 in [0, 255] pixels, i.e. -1 here, as x is in [-1, 1])."""
    for axis in (-2, -1):
        lo, hi, frac, outside = (t.to(x.device) for t in _crop_taps(x.shape[axis], size))
        shape = (-1, 1) if axis == -2 else (-1,)
        x = torch.lerp(x.index_select(axis, lo), x.index_select(axis, hi), frac.to(x.dtype).view(shape))
        if outside.any():
            x = x.masked_fill(outside.view(shape), -1.0)
    return x


def to_network_input(images: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] in [-1, 1] -> [B, 3, 192, 192] in [0, 1], as human crops a face (cropAndResize / 255)."""
    if images.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        images = crop_and_resize_tf(images, INPUT_SIZE)
    return (images + 1) / 2


class FaceMeshInstrument(Instrument):
    name = "mediapipe-facemesh"
    assets = ("mediapipe-facemesh",)
    differentiable = True
    outputs = (
        Output("landmarks", (N_POINTS, 2), (0.0, 1.0), "fraction of the image's width / height", labels=("x", "y"),
               description="MediaPipe's 468 face-mesh points; the crop is stretched to 192 x 192, so x is a "
                           "fraction of the width and y of the height (not clamped)"),
        Output("mesh", (N_POINTS, 2), (0.0, 1.0), "fraction of the image's width / height", labels=("x", "y"),
               description="the same points under their own name, so a run can give them a role ('mesh') "
                           "beside a 68-point 'landmarks' instrument"),
        Output("depth", (N_POINTS,), None, "fraction of the 192-px input", description="relative depth z / 192"),
        Output("face_score", (), (0.0, 1.0), "probability", description="the mesh net's face flag (sigmoid)"),
    )

    def __init__(self, net: FaceMesh | None = None):
        super().__init__()
        self.net = load_net() if net is None else net

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, images):
        self.check_images(images)
        p = next(self.net.parameters())
        x = to_network_input(images.to(device=p.device, dtype=p.dtype))
        mesh, flag = self.net(x)
        # as human's transformRawCoords: a point at input pixel p sits at fraction p / 192 of the crop
        xy = mesh[..., :2] / INPUT_SIZE
        return {"landmarks": xy, "mesh": xy, "depth": mesh[..., 2] / INPUT_SIZE,
                "face_score": torch.sigmoid(flag)}


def facemesh(**_options) -> FaceMeshInstrument:
    return FaceMeshInstrument()
