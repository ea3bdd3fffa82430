"""DeepFace's emotion model (PyPI deepface 0.0.103, pytorch engine): the instrument ``deepface-emotion``.

The network and its weights are DeepFace's own: we construct deepface's ``EmotionModel`` (48x48 gray
in [0, 1] -> softmax over angry, disgust, fear, happy, sad, surprise, neutral) and load the user's
``$DEEPFACE_HOME/.deepface/weights/facial_expression_model_weights.pth`` into it, strictly, with
``torch.load(weights_only=True)``. DeepFace ships no weights and downloads them when they are
absent; we never let it: the file is checked before deepface's model is built, and loaded by us.

Preprocessing replicates ``DeepFace.analyze(img, actions=['emotion'], detector_backend='skip')`` for
a whole batch (each image is taken to be the face): RGB -> BGR, /255 (float64, as extract_faces
normalises), letterbox to 224 (``cv2.resize`` linear to fit, centred zero pad, float32), cv2
BGR->gray, ``cv2.resize`` linear to 48. :func:`preprocess` is that, cv2 call for cv2 call, one image
at a time on the CPU (the reference); the instrument runs :func:`to_network_input`, the same steps
as batched torch ops on the images' device (cv2's linear resize is half-pixel bilinear without
antialiasing, as ``F.interpolate``; the two agree within 1e-5, tests/test_deepface.py), so it is
differentiable and nothing leaves the GPU. Parity with ``analyze``: tests/test_deepface.py.
"""

from __future__ import annotations

from latent_edit_bench.attributes import EMOTION_LABELS
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from latent_edit_bench.errors import BenchError, MissingAsset
from latent_edit_bench.contracts.instrument import Instrument, Output

DEEPFACE_VERSION = "0.0.103"
DEEPFACE_LABELS = EMOTION_LABELS
WEIGHTS_NAME = "facial_expression_model_weights.pth"
GRAY_WEIGHTS = (0.299, 0.587, 0.114)   # cv2.COLOR_BGR2GRAY on RGB channels
LETTERBOX = 224   # analyze() resizes every face to the demography models' input first
INPUT_SIZE = 48


def weights_path() -> Path:
    """Where DeepFace looks for the pytorch weights (deepface.commons.folder_utils.get_deepface_home)."""
    home = os.getenv("DEEPFACE_HOME", default=os.path.expanduser("~"))
    return Path(home) / ".deepface" / "weights" / WEIGHTS_NAME


def emotion_model_class():
    """deepface's own torch module, imported with the pytorch engine (never TensorFlow)."""
    os.environ["DEEPFACE_BACKEND_ENGINE"] = "pytorch"  # unset, deepface prefers TensorFlow when installed
    try:
        from deepface.models.demography.pytorch.Emotion import EmotionModel
    except ImportError as e:
        raise BenchError(f"deepface-emotion needs deepface=={DEEPFACE_VERSION} (and werkzeug): "
                         f"pip install 'latent-edit-bench[deepface]' ({e})") from None
    return EmotionModel


def load_net(path: Path | None = None) -> torch.nn.Module:
    path = weights_path() if path is None else Path(path)
    if not path.is_file():  # checked before deepface is touched: it would download the file
        raise MissingAsset(
            f"deepface-emotion needs DeepFace's pytorch emotion weights: put {WEIGHTS_NAME} at {path} "
            f"(set DEEPFACE_HOME to change the folder; the file is published in serengil/deepface_models "
            f"releases v1.0). It is never downloaded automatically",
            short=f"deepface-emotion weights not found (put them at {path} to use it)")
    net = emotion_model_class()()
    state = torch.load(path, map_location="cpu", weights_only=True)  # a plain state_dict; no code runs
    try:
        net.load_state_dict(state, strict=True)
    except (RuntimeError, AttributeError) as e:
        raise BenchError(f"{path} is not a DeepFace emotion state_dict: {e}") from None
    return net.eval().requires_grad_(False)


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """uint8 or [0, 1] float RGB images [B, H, W, 3] -> network input [B, 1, 48, 48] float32 in [0, 1],
    step for step as DeepFace.analyze with detector_backend='skip'."""
    import cv2

    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        rgb = rgb / 255.0   # float64, like extract_faces(normalize_face=True)
    h, w = rgb.shape[1:3]
    factor = min(LETTERBOX / h, LETTERBOX / w)
    size = (int(w * factor), int(h * factor))                # cv2 dsize is (width, height)
    top, left = (LETTERBOX - size[1]) // 2, (LETTERBOX - size[0]) // 2
    out = np.empty((rgb.shape[0], 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    for i, img in enumerate(rgb):
        bgr = np.ascontiguousarray(img[:, :, ::-1], dtype=np.float64)
        box = np.zeros((LETTERBOX, LETTERBOX, 3), np.float32)
        box[top:top + size[1], left:left + size[0]] = cv2.resize(bgr, size)
        gray = cv2.cvtColor(box, cv2.COLOR_BGR2GRAY)
        out[i, 0] = cv2.resize(gray, (INPUT_SIZE, INPUT_SIZE))
    return out


def to_network_input(images: torch.Tensor, gray_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Images [B, 3, H, W] in [-1, 1] -> network input [B, 1, 48, 48] in [0, 1]: :func:`preprocess` as
    batched torch ops. Gray first, then the letterbox resize: both are linear, so the order changes only
    rounding (within 1e-5 of cv2's order, test), and one channel is resized instead of three."""
    x = (images.float().clamp(-1, 1) + 1) / 2
    if gray_weights is None:
        gray_weights = torch.tensor(GRAY_WEIGHTS, device=images.device).view(1, 3, 1, 1)
    gray = (x * gray_weights.to(x.dtype)).sum(1, keepdim=True)
    h, w = x.shape[-2:]
    factor = min(LETTERBOX / h, LETTERBOX / w)
    sw, sh = int(w * factor), int(h * factor)
    top, left = (LETTERBOX - sh) // 2, (LETTERBOX - sw) // 2
    fit = F.interpolate(gray, size=(sh, sw), mode="bilinear", align_corners=False)
    box = F.pad(fit, (left, LETTERBOX - sw - left, top, LETTERBOX - sh - top))   # zeros: the letterbox
    return F.interpolate(box, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)


class DeepFaceEmotion(Instrument):
    name = "deepface-emotion"
    assets = ()               # user-supplied: $DEEPFACE_HOME/.deepface/weights/facial_expression_model_weights.pth
    differentiable = True
    outputs = (Output("emotion", (7,), (0.0, 1.0), "probability", labels=DEEPFACE_LABELS,
                      description="DeepFace's emotion CNN (pytorch engine) on the whole image as the face, "
                                  "preprocessed as analyze(detector_backend='skip'); analyze's % / 100"),)

    def __init__(self, net: torch.nn.Module | None = None):
        super().__init__()
        self.net = load_net() if net is None else net
        self.register_buffer("gray_weights", torch.tensor(GRAY_WEIGHTS).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True):
        return super().train(False)  # dropout stays off

    def forward(self, images):
        self.check_images(images)
        p = next(self.net.parameters())
        x = to_network_input(images.to(p.device), self.gray_weights).to(p.dtype)
        return {"emotion": self.net(x)}


def deepface_emotion(**_options) -> DeepFaceEmotion:
    return DeepFaceEmotion()
