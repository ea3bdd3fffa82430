"""face-api's four instruments: face crops in, landmarks, expressions, age/gender or a descriptor out.

    faceapi-landmarks    68 iBUG landmarks        FaceLandmark68Net  (dense blocks of separable convs), 112 px
    faceapi-expression   7 expressions            FaceExpressionNet  (same trunk, its own weights), 112 px
    faceapi-age-gender   age (years), P(male)     AgeGenderNet       (TinyXception), 112 px
    faceapi-descriptor   128-D face descriptor    FaceRecognitionNet (dlib's ResNet-34-like), 150 px

Every image is taken to be the face crop (the instruments have no detector). Preprocessing is
face-api's ``NetInput.toBatchTensor``: zero-pad to a centred square (the odd pixel goes bottom/right),
TF's legacy bilinear resize, subtract the RGB mean, divide by 255. The nets are in faceapi_nets.py, TF's op
semantics in tf_ops.py; parity with the original TF.js models is tested in tests/test_faceapi.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from latent_edit_bench.attributes import EMOTION_LABELS
from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.instruments.faceapi_nets import load_net
from latent_edit_bench.instruments.tf_ops import resize_bilinear_tf

MEAN_RGB = (122.782, 117.001, 104.298)
EXPRESSION_LABELS = ("neutral", "happy", "sad", "angry", "fearful", "disgusted", "surprised")
DEEPFACE_LABELS = EMOTION_LABELS
DEEPFACE_FROM_FACEAPI = (3, 5, 4, 1, 2, 6, 0)  # emotion[:, i] = expression[:, DEEPFACE_FROM_FACEAPI[i]]


# -- preprocessing (face-api's NetInput) -----------------------------------------------------------

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
