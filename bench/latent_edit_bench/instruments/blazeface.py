"""MediaPipe BlazeFace (back-camera model, 256 px; Apache-2.0), as shipped by npm @vladmandic/human, in PyTorch.

BlazeFace (Bazarevsky et al. 2019): a 5x5 stride-2 conv, then BlazeBlocks (depthwise 3x3 + pointwise
1x1 + residual, ReLU); a stride-2 block max-pools its shortcut and zero-pads its channels. Two SSD
heads: 16x16 cells x 2 anchors and 8x8 cells x 6 anchors = 896 anchors, each with a score logit and
16 regressors (box centre offset, box size, 6 keypoints: right eye, left eye, nose, mouth, right ear,
left ear, all in input pixels relative to the anchor centre).

``BlazeFace.forward`` returns the raw outputs in human's order (the 512 16x16 anchors first);
``detect`` letterboxes a photo to 256 px, decodes, runs NMS and maps boxes back to photo pixels.
Parity with the original TF.js graph: tools/parity/human_reference/, tests/test_human_nets.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.instruments.tf_ops import conv_same, resize_bilinear_tf
from latent_edit_bench.instruments.tfjs_graph import load_keras

INPUT_SIZE = 256
KEYPOINTS = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")  # the subject's right/left


class Pointwise(nn.Module):
    def __init__(self, cin: int, cout: int, k: int = 1):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(cout, cin, k, k))
        self.bias = nn.Parameter(torch.zeros(cout))

    def forward(self, x, stride=1):
        return conv_same(x, self.weight, self.bias, stride)


class Depthwise(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.depthwise = nn.Parameter(torch.zeros(c, 1, 3, 3))

    def forward(self, x, stride=1):
        return conv_same(x, self.depthwise, None, stride, groups=x.shape[1])


class BlazeBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.stride, self.pad_channels = stride, cout - cin
        self.depthwise = nn.Parameter(torch.zeros(cin, 1, 3, 3))
        self.pointwise = Pointwise(cin, cout)

    def forward(self, x):
        out = self.pointwise(conv_same(x, self.depthwise, None, self.stride, groups=x.shape[1]))
        short = F.max_pool2d(x, 2, 2) if self.stride == 2 else x  # even sizes: TF 'same' pads nothing
        if self.pad_channels:
            short = F.pad(short, (0, 0, 0, 0, 0, self.pad_channels))
        return F.relu(out + short)


class BlazeFace(nn.Module):
    """[B, 3, 256, 256] in [-1, 1] -> (score logits [B, 896], regressors [B, 896, 16])."""

    # (cin, cout, stride) of the 31 blocks at 128, 64, 32 and 16 px
    LAYOUT = ([(24, 24, 1)] * 7 + [(24, 24, 2)] + [(24, 24, 1)] * 7 + [(24, 48, 2)] + [(48, 48, 1)] * 7
              + [(48, 96, 2)] + [(96, 96, 1)] * 7)

    def __init__(self):
        super().__init__()
        self.stem = Pointwise(3, 24, 5)
        self.blocks = nn.ModuleList(BlazeBlock(*spec) for spec in self.LAYOUT)
        self.cls16, self.reg16 = Pointwise(96, 2), Pointwise(96, 32)
        self.down8 = Depthwise(96)  # then conv8 + ReLU: a stride-2 block without a residual, to 8 x 8
        self.conv8 = Pointwise(96, 96)
        self.cls8, self.reg8 = Pointwise(96, 6), Pointwise(96, 96)

    def forward(self, x):
        x = F.relu(self.stem(x, 2))
        for block in self.blocks:
            x = block(x)
        b = x.shape[0]
        cls16, reg16 = self.cls16(x), self.reg16(x)
        x = F.relu(self.conv8(self.down8(x, 2)))
        cls8, reg8 = self.cls8(x), self.reg8(x)

        def flat(t, n):  # NHWC order: (row, column, anchor)
            return t.permute(0, 2, 3, 1).reshape(b, -1, n)

        scores = torch.cat([flat(cls16, 1), flat(cls8, 1)], 1)[..., 0]
        return scores, torch.cat([flat(reg16, 16), flat(reg8, 16)], 1)

    def keras_names(self) -> dict[str, str]:
        names = {"stem": "conv2d", "cls16": "conv2d_33", "reg16": "conv2d_35", "cls8": "conv2d_34",
                 "reg8": "conv2d_36", "conv8": "re_lu_31", "down8": "depthwise_conv2d_31"}
        for i in range(len(self.blocks)):
            names[f"blocks.{i}"] = "depthwise_conv2d" if i == 0 else f"depthwise_conv2d_{i}"
            names[f"blocks.{i}.pointwise"] = f"conv2d_{i + 1}"
        return names


def anchors(device=None) -> torch.Tensor:
    """Anchor centres [896, 2] in input pixels, in the order of BlazeFace's outputs (human's generateAnchors)."""
    out = []
    for stride, per_cell in ((INPUT_SIZE // 16, 2), (INPUT_SIZE // 8, 6)):
        n = INPUT_SIZE // stride
        c = (torch.arange(n, dtype=torch.float32) + 0.5) * stride
        yy, xx = torch.meshgrid(c, c, indexing="ij")
        out.append(torch.stack([xx, yy], -1).reshape(-1, 1, 2).expand(-1, per_cell, 2).reshape(-1, 2))
    return torch.cat(out).to(device)


def decode(scores: torch.Tensor, regressors: torch.Tensor) -> dict[str, torch.Tensor]:
    """Raw outputs -> score (sigmoid) [B, 896], boxes (x0, y0, x1, y1) [B, 896, 4] and keypoints
    [B, 896, 6, 2], in input pixels (as human's decodeBoxes; keypoints offset from the anchor)."""
    a = anchors(scores.device).to(regressors.dtype)
    centre, size = regressors[..., 0:2] + a, regressors[..., 2:4]
    boxes = torch.cat([centre - size / 2, centre + size / 2], -1)
    keypoints = regressors[..., 4:16].unflatten(-1, (6, 2)) + a[:, None, :]
    return {"score": torch.sigmoid(scores), "boxes": boxes, "keypoints": keypoints}


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression (tf.image.nonMaxSuppression): indices, best first."""
    order = scores.argsort(descending=True).tolist()
    area = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    keep: list[int] = []
    for i in order:
        if keep:
            k = torch.tensor(keep)
            lo = torch.maximum(boxes[k, :2], boxes[i, :2])
            hi = torch.minimum(boxes[k, 2:], boxes[i, 2:])
            inter = (hi - lo).clamp(min=0).prod(-1)
            iou = inter / (area[k] + area[i] - inter).clamp(min=1e-9)
            if (iou > iou_threshold).any():
                continue
        keep.append(i)
    return keep


@dataclass
class Detection:
    box: tuple[float, float, float, float]   # x0, y0, x1, y1 in photo pixels
    score: float
    keypoints: torch.Tensor                  # [6, 2] (x, y) photo pixels, KEYPOINTS order


def letterbox(image: torch.Tensor, size: int = INPUT_SIZE) -> tuple[torch.Tensor, float, tuple[float, float]]:
    """[B, 3, H, W] -> centred on a black (-1) square, resized to ``size``; returns (x, scale, (left, top))
    so that photo = input / scale - (left, top)."""
    h, w = image.shape[-2:]
    d = max(h, w)
    left, top = (d - w) // 2, (d - h) // 2
    x = F.pad(image, (left, d - w - left, top, d - h - top), value=-1.0)
    return resize_bilinear_tf(x, size) if d != size else x, size / d, (float(left), float(top))


class BlazeFaceDetector(Instrument):
    """Instrument view: per image, the 896 decoded candidates (differentiable); ``detect`` for boxes."""

    name = "mediapipe-blazeface"
    assets = ("mediapipe-blazeface",)
    differentiable = True
    outputs = (
        Output("score", (896,), (0.0, 1.0), "probability", description="face score per anchor (sigmoid)"),
        Output("boxes", (896, 4), None, "pixels of the letterboxed 256-px input", labels=("x0", "y0", "x1", "y1")),
        Output("keypoints", (896, 6, 2), None, "pixels of the letterboxed 256-px input", labels=("x", "y"),
               description="eyes, nose, mouth, ears: " + ", ".join(KEYPOINTS)),
    )

    def __init__(self, net: BlazeFace | None = None):
        super().__init__()
        self.net = load_net() if net is None else net

    def train(self, mode: bool = True):
        return super().train(False)

    def forward(self, images):
        self.check_images(images)
        p = next(self.net.parameters())
        x, _, _ = letterbox(images.to(device=p.device, dtype=p.dtype))
        return decode(*self.net(x))

    @torch.no_grad()
    def detect(self, image: torch.Tensor, min_score: float = 0.5, iou_threshold: float = 0.3,
               max_faces: int = 20) -> list[Detection]:
        """One photo [3, H, W] in [-1, 1] -> its faces, best first, in photo pixels."""
        p = next(self.net.parameters())
        x, scale, (left, top) = letterbox(image[None].to(device=p.device, dtype=p.dtype))
        out = {k: v[0].float().cpu() for k, v in decode(*self.net(x)).items()}
        cand = (out["score"] >= min_score).nonzero()[:, 0]
        keep = [cand[i].item() for i in nms(out["boxes"][cand], out["score"][cand], iou_threshold)][:max_faces]
        shift = torch.tensor([left, top])
        return [Detection(box=tuple((out["boxes"][i].view(2, 2) / scale - shift).flatten().tolist()),
                          score=out["score"][i].item(), keypoints=out["keypoints"][i] / scale - shift)
                for i in keep]


def load_net() -> BlazeFace:
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path

    return load_keras(BlazeFace(), load_file(str(asset_path("mediapipe-blazeface"))), "asset 'mediapipe-blazeface'")


def blazeface(**_options) -> BlazeFaceDetector:
    return BlazeFaceDetector()
