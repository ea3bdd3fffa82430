"""The face formats instruments write and metrics read: landmark schemes, their regions, and the
inter-ocular distance every landmark measure is scaled by. One definition each, below every layer that
uses them (docs/design.md §0), so a metric needs no concrete instrument to read an output.
"""

from __future__ import annotations

import torch

# iBUG 68-point scheme (face-api's `landmarks`, dlib): 17-26 brows, 36-41 and 42-47 the eyes (the
# subject's right eye is on the image's left), 48-67 the mouth (expression lives there)
RIGHT_EYE_68, LEFT_EYE_68 = slice(36, 42), slice(42, 48)
MOUTH_68 = list(range(48, 68))
EYES_BROWS_68 = list(range(17, 27)) + list(range(36, 48))

# regions of MediaPipe's canonical mesh topology (index lists as in human's src/face/facemeshcoords.ts)
LIPS = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 185, 40, 39, 37, 0, 267, 269, 270, 409,
        78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308, 191, 80, 81, 82, 13, 312, 311, 310, 415)
RIGHT_EYE = (246, 161, 160, 159, 158, 157, 173, 33, 7, 163, 144, 145, 153, 154, 155, 133)   # the subject's right
LEFT_EYE = (466, 388, 387, 386, 385, 384, 398, 263, 249, 390, 373, 374, 380, 381, 382, 362)
BROWS = (156, 70, 63, 105, 66, 107, 55, 193, 35, 124, 46, 53, 52, 65,
         383, 300, 293, 334, 296, 336, 285, 417, 265, 353, 276, 283, 282, 295)


def eye_distance(points: torch.Tensor, right, left) -> torch.Tensor:
    """Distance between the two eye centres [N] of points [N, P, D] over all D coordinates (the mesh's
    z too, as its metric always measured); eye regions as index lists or slices."""
    return (points[:, left].mean(1) - points[:, right].mean(1)).norm(dim=-1)


def inter_ocular_68(points: torch.Tensor) -> torch.Tensor:
    """The inter-ocular distance [N] of iBUG-68 landmarks [N, 68, 2]: eye centre to eye centre."""
    return eye_distance(points, RIGHT_EYE_68, LEFT_EYE_68)


def displacement(a: torch.Tensor, b: torch.Tensor, iod: torch.Tensor, points=slice(None)) -> torch.Tensor:
    """Mean over the points of the Euclidean distance between a and b, per sample, divided by iod [N]."""
    return (a[:, points] - b[:, points]).norm(dim=-1).mean(1) / iod
