"""`bench invert`, step 1: one photo in, its face crops out, aligned as the backbone's own samples are.

Crops are aligned by a similarity transform (scale, rotation, shift) that puts the photo's 68 face-api
landmarks onto the mean landmarks of the backbone's renders (:func:`alignment_template`). That is FFHQ's
recipe (eyes and mouth to fixed places) with the template measured instead of hard-coded, so it holds for
the embedded DCGAN (DigiFace-1M crops, face filling the frame) as for a user's FFHQ StyleGAN2. A photo
that is already an aligned crop is used as it is; otherwise BlazeFace finds every face (or ``--box`` says
where one is), and each crop is aligned from the landmarks inside its box and checked against the
template (refused, exit 2, if it does not fit). :func:`align_faces` is the seam where a face detector plugs in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from latent_edit_bench.errors import BenchError

# landmark points used to fit the similarity transform: brows, nose, eyes, mouth (27 jaw points vary with
# pose and hair far more than the inner face, and pull a crop towards the chin)
INNER = list(range(17, 68))


class NotAligned(BenchError):
    """A photo could not be turned into an aligned crop (no detector yet, face not where expected)."""


@dataclass
class Template:
    """Where the backbone puts a face: mean landmarks [68, 2] in fractions of the output side, and the
    spread of its own samples around them (the tolerance for an already-aligned crop)."""

    landmarks: np.ndarray
    resolution: int
    max_scale: float      # |log scale| of a similarity fit, worst of the backbone's samples
    max_angle: float      # degrees
    max_shift: float      # fraction of the side


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (Umeyama 1991) mapping points src -> dst: 2x3 matrix [sR | t]."""
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    D = np.diag([1.0, d])
    rot = u @ D @ vt
    scale = (sig * np.diag(D)).sum() / (s0 ** 2).sum(1).mean()
    A = scale * rot
    return np.concatenate([A, (md - A @ ms)[:, None]], 1)


def _params(M: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(|log scale|, |angle| in degrees, translation) of a similarity matrix."""
    scale = math.sqrt(abs(np.linalg.det(M[:, :2])))
    angle = math.degrees(math.atan2(M[1, 0], M[0, 0]))
    return abs(math.log(scale)), abs(angle), M[:, 2]


@torch.no_grad()
def alignment_template(backbone, landmarks_inst, n: int = 64, seed: int = 0, batch_size: int = 32) -> Template:
    """Measure the backbone's alignment: mean landmarks of ``n`` renders and how far its own samples stray."""
    images = backbone.sample(n, seed, batch_size=batch_size)
    lm = landmarks_inst.measure(images, batch_size)["landmarks"].double().numpy()    # fractions (square)
    mean = np.median(lm, 0)          # a few renders break up and get wild landmarks: the median ignores them
    params = np.array([_params(similarity(one[INNER], mean[INNER]))[:2] for one in lm])
    shifts = np.abs(lm[:, INNER].mean(1) - mean[INNER].mean(0)).max(1)
    # tolerances: 1.5x the 90th percentile of the backbone's own samples (the worst are broken renders),
    # floored so a 64-sample estimate never rejects an ordinary crop (10 % in size, 5 degrees, 3 % of the side)
    q = np.quantile(np.column_stack([params, shifts]), 0.9, axis=0)
    return Template(mean, backbone.resolution, max(1.5 * q[0], math.log(1.1)), max(1.5 * q[1], 5.0),
                    max(1.5 * q[2], 0.03))


def _landmarks_px(landmarks_inst, rgb: np.ndarray) -> np.ndarray:
    from latent_edit_bench.instruments.faceapi import landmarks_to_pixels
    from latent_edit_bench.images import to_tensor

    h, w = rgb.shape[:2]
    lm = landmarks_inst.measure(to_tensor(rgb))["landmarks"][0].double()
    return landmarks_to_pixels(lm, h, w).numpy()


def check_aligned(landmarks_frac: np.ndarray, template: Template) -> str | None:
    """None if landmarks (fractions of a square crop's side) fit the template; else the reason."""
    M = similarity(landmarks_frac[INNER], template.landmarks[INNER])
    ls, ang, _ = _params(M)
    shift = np.abs(template.landmarks[INNER].mean(0) - landmarks_frac[INNER].mean(0)).max()
    why = []
    if ls > template.max_scale:
        size = 1 / math.sqrt(abs(np.linalg.det(M[:, :2])))     # M maps the photo onto the template
        why.append(f"face {size:.2f}x the expected size")
    if ang > template.max_angle:
        why.append(f"rotated {ang:.0f} degrees")
    if shift > template.max_shift:
        why.append(f"face centre {100 * shift:.0f}% of the side off")
    return "; ".join(why) or None


def warp(rgb: np.ndarray, M: np.ndarray, size: int, supersample: int = 4) -> np.ndarray:
    """Apply the 2x3 similarity M (photo px -> crop px of side ``size``): render at supersample x size
    with bicubic sampling, then reduce with a box filter (a 300-px face shrunk to 64 px must not alias)."""
    big = size * supersample
    S = np.diag([supersample, supersample])
    A, t = S @ M[:, :2], S @ M[:, 2]
    inv = np.linalg.inv(A)
    coeffs = np.concatenate([inv, (-inv @ t)[:, None]], 1).reshape(-1)
    # pixel centres: PIL maps output pixel (x + .5) to input (a(x + .5) + ...): same convention both ways
    img = Image.fromarray(rgb).transform((big, big), Image.AFFINE, tuple(coeffs), resample=Image.BICUBIC,
                                         fillcolor=(0, 0, 0))
    return np.asarray(img.reduce(supersample))


def detected_boxes(rgb: np.ndarray, detector, min_score: float = 0.5, loose: float = 1.3) -> list[tuple]:
    """Square boxes (x, y, size) around every face BlazeFace finds, ``loose`` x its box's longer side
    (face-api's landmark net wants the whole face in view; the crop is then aligned from landmarks)."""
    image = torch.as_tensor(np.array(rgb, dtype=np.float32)).permute(2, 0, 1) / 127.5 - 1   # a copy: rgb may be read-only
    boxes = []
    for det in detector.detect(image, min_score=min_score):
        x0, y0, x1, y1 = det.box
        side = loose * max(x1 - x0, y1 - y0)
        boxes.append(((x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side))
    return sorted(boxes)   # left to right, as bench measure numbers faces


def align_faces(rgb: np.ndarray, template: Template, landmarks_inst, boxes=None, name: str = "photo",
                detector=None) -> list[np.ndarray]:
    """The seam: one photo (H x W x 3 uint8) -> aligned crops (size x size x 3 uint8), one per face.

    ``boxes``: [(x, y, size), ...] face boxes in photo pixels (the user's ``--box``). Without boxes, a
    photo that is already an aligned crop of one face is used as it is; otherwise ``detector``
    (BlazeFace) finds every face. No face, or none that aligns: :class:`NotAligned` (exit 2), never a
    misaligned projection.
    """
    size = template.resolution
    if not boxes:
        h, w = rgb.shape[:2]
        why = "not a square face crop"
        if abs(h - w) <= 0.02 * max(h, w):
            crop = np.asarray(Image.fromarray(rgb).resize((size, size), Image.LANCZOS)) if (h, w) != (size, size) else rgb
            why = check_aligned(_landmarks_px(landmarks_inst, crop) / size, template)
            if not why:
                return [crop]
        if detector is None:
            raise NotAligned(f"{name}: no face aligned as the backbone expects ({why}); pass --box X,Y,SIZE "
                             f"(the face's square in photo pixels) to align it from its landmarks")
        boxes = detected_boxes(rgb, detector)
        if not boxes:
            raise NotAligned(f"{name}: no face found (BlazeFace) and the photo is {why}; "
                             f"pass --box X,Y,SIZE if there is a face the detector missed")
    crops = []
    for x, y, s in boxes:
        # landmarks inside the box (face-api's landmark net is trained on detector boxes), then align the
        # whole photo onto the template from them, so the crop may extend past the box
        side = 2 * size                              # the box at 2x the crop's side, for the landmark net
        first = warp(rgb, np.array([[side / s, 0, -x * side / s], [0, side / s, -y * side / s]]), side)
        lm = _landmarks_px(landmarks_inst, first) * s / side + np.array([x, y])   # back to photo px
        M = similarity(lm[INNER], template.landmarks[INNER] * size)
        crop = warp(rgb, M, size)
        # refine once: the landmarks of the aligned crop are more accurate than the box's
        lm2 = _landmarks_px(landmarks_inst, crop)
        M = similarity(lm2[INNER], template.landmarks[INNER] * size) @ np.vstack([M, [0, 0, 1]])
        crop = warp(rgb, M, size)
        why = check_aligned(_landmarks_px(landmarks_inst, crop) / size, template)
        if why:
            raise NotAligned(f"{name}: no face could be aligned inside box {x},{y},{s} ({why}); check the box")
        crops.append(crop)
    return crops
