"""The quality bar a StyleGAN2 distilled from the embedded DCGAN must pass to become the default backbone.

Stated in docs/train-stylegan2.md before any training; the constants below are those numbers, and a
test checks that the doc quotes them. Three checks, each on ``n`` samples (1000 for the verdict):

1. KID on face-api descriptors against DCGAN set A, within ``KID_FACTOR`` of the floor scale.
   The floor is KID(A, B) between two independent DCGAN sets: an unbiased estimate of 0 whose value
   is noise (it can be negative), so it cannot be multiplied as it stands. The scale is therefore
   the floor's own noise level, ``floor_scale = |floor| + 2 * floor_sd``, with ``floor_sd`` the
   standard deviation of KID between two sets of this size from one distribution, estimated by
   re-splitting A and B pooled ``PERMUTATIONS`` times.
2. Landmarks found on at least ``LANDMARKS_FOUND_MIN`` of the samples. The instruments have no face
   detector, and face-api's landmark net returns 68 points for any image, so "found" means: the
   configuration is one the DCGAN's own faces make: its Mahalanobis distance to a Gaussian fitted on
   set A's landmarks (shrunk covariance) is at most the ``LANDMARK_QUANTILE`` quantile of set B's
   distances (so ~99% of DCGAN faces are found). Points may fall outside the image: the chin of ~7%
   of DCGAN faces does.
3. face-api's expression label distribution (argmax of its 7-way softmax) within total variation
   ``EXPRESSION_TV_MAX`` of set A's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.instruments.faceapi import EXPRESSION_LABELS
from latent_edit_bench.trainers.kid import REFERENCE_SEED_A, REFERENCE_SEED_B, dcgan_images, fid, kid, polynomial_mmd2, student_images

KID_FACTOR = 25.0            # KID(student, A) <= KID_FACTOR * floor_scale (docs: a 1-px blur of the DCGAN is ~24)
LANDMARKS_FOUND_MIN = 0.95   # share of samples whose landmarks are found
LANDMARK_QUANTILE = 0.99     # found = Mahalanobis distance within this quantile of DCGAN set B's
EXPRESSION_TV_MAX = 0.10     # total variation between expression label distributions
PERMUTATIONS = 50            # re-splits of A + B for the floor's noise
SHRINKAGE = 0.05             # covariance shrinkage towards its mean variance (136-D from ~1000 samples)


MEASURES = {"descriptor": "faceapi-descriptor", "landmarks": "faceapi-landmarks", "expression": "faceapi-expression"}


@torch.no_grad()
def face_measures(images: torch.Tensor, nets: dict, device, which=tuple(MEASURES),
                  batch_size: int = 100) -> dict[str, np.ndarray]:
    """descriptor [N, 128], landmarks [N, 68, 2] (fractions of the image) and expression [N, 7] (those
    in ``which``) of images in [-1, 1]; ``nets``: instrument name -> instrument (:func:`load_face_nets`)."""
    out = {k: [] for k in which}
    for x in images.split(batch_size):
        x = x.to(device)
        for k in which:
            out[k].append(nets[MEASURES[k]](x)[k].double().cpu())
    return {k: torch.cat(v).numpy() for k, v in out.items()}


def load_face_nets(device) -> dict:
    """face-api's descriptor, landmark and expression nets, from their module: the bar's measures are
    fixed, not a plugin choice."""
    from latent_edit_bench.instruments import faceapi

    make = {"faceapi-descriptor": faceapi.descriptor, "faceapi-landmarks": faceapi.landmarks,
            "faceapi-expression": faceapi.expression}
    return {n: make[n]().to(device).eval() for n in MEASURES.values()}


def floor_noise(a: np.ndarray, b: np.ndarray, permutations: int = PERMUTATIONS, seed: int = 0) -> float:
    """Standard deviation of KID between two sets of this size drawn from one distribution: KID of
    random re-splits of A and B pooled (a permutation null), so it is the noise of the floor itself."""
    pooled, n = np.concatenate([a, b]), len(a)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(permutations):
        i = rng.permutation(len(pooled))
        values.append(polynomial_mmd2(pooled[i[:n]], pooled[i[n:]]))
    return float(np.std(values, ddof=1))


class LandmarkGate:
    """"Landmarks found": a configuration DCGAN faces make (see the module doc)."""

    def __init__(self, fit: np.ndarray, calibrate: np.ndarray, quantile: float = LANDMARK_QUANTILE,
                 shrinkage: float = SHRINKAGE):
        x = fit.reshape(len(fit), -1)
        self.mean = x.mean(0)
        cov = np.cov(x, rowvar=False)
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
        self.precision = np.linalg.inv(cov)
        self.threshold = float(np.quantile(self.distance(calibrate), quantile))

    def distance(self, landmarks: np.ndarray) -> np.ndarray:
        d = landmarks.reshape(len(landmarks), -1) - self.mean
        return np.sqrt(np.einsum("ni,ij,nj->n", d, self.precision, d))

    def found(self, landmarks: np.ndarray) -> np.ndarray:
        return self.distance(landmarks) <= self.threshold


def label_shares(expression: np.ndarray) -> np.ndarray:
    """Share of samples per argmax expression label, in EXPRESSION_LABELS order."""
    return np.bincount(expression.argmax(1), minlength=len(EXPRESSION_LABELS)) / len(expression)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


@dataclass
class BarResult:
    rows: list[dict]            # criterion, student, reference, threshold, passed (quality_bar.csv)
    passed: bool
    kid: dict                   # kid, kid_std, fid, floor, floor_sd, floor_scale, floor_fid, n
    found: np.ndarray           # [n] bool: landmarks found per sample
    landmarks: np.ndarray       # [n, 68, 2] of the student samples
    images: torch.Tensor        # the n student samples (CPU float32)


class BarReference:
    """DCGAN sets A and B (n samples each, seeds of :mod:`latent_edit_bench.trainers.kid`), measured once: the KID floor, the
    landmark gate and the expression shares every student is held against."""

    def __init__(self, dcgan, n: int = 1000, size: int = 64, device=None, nets: dict | None = None):
        if n < 4:
            raise BenchError(f"the quality bar needs n >= 4, got {n}")
        self.n, self.size = n, size
        self.device = torch.device(device) if device is not None else dcgan.device
        self.nets = nets or load_face_nets(self.device)
        self.a = face_measures(dcgan_images(dcgan, n, REFERENCE_SEED_A, size), self.nets, self.device)
        self.b = face_measures(dcgan_images(dcgan, n, REFERENCE_SEED_B, size), self.nets, self.device)
        da, db = self.a["descriptor"], self.b["descriptor"]
        self.floor = kid(da, db, n_subsets=1, subset_size=n)[0]   # subsets of the whole sets: one is enough
        self.floor_sd = floor_noise(da, db)
        self.floor_scale = abs(self.floor) + 2 * self.floor_sd
        self.floor_fid = fid(da, db)
        self.gate = LandmarkGate(self.a["landmarks"], self.b["landmarks"])
        self.shares_a, self.shares_b = label_shares(self.a["expression"]), label_shares(self.b["expression"])

    def kid_of(self, descriptors: np.ndarray) -> dict:
        value = kid(self.a["descriptor"], descriptors, n_subsets=1, subset_size=self.n)[0]
        return {"kid": value, "kid_std": 0.0, "fid": fid(self.a["descriptor"], descriptors), "floor": self.floor,
                "floor_sd": self.floor_sd, "floor_scale": self.floor_scale, "floor_fid": self.floor_fid,
                "n": self.n}

    def eval_fn(self, g_ema, step: int, seed: int = 0) -> dict:
        """train_stylegan2's ``eval_fn``: KID/FID of G_ema's samples against set A, with the floor."""
        x = student_images(g_ema, self.n, seed)
        return self.kid_of(face_measures(x, self.nets, self.device, which=("descriptor",))["descriptor"])

    def bar(self, student, seed: int = 0) -> BarResult:
        """The three checks on ``n`` samples of ``student`` (a backbone or a bare Generator)."""
        x = student_images(student, self.n, seed)
        m = face_measures(x, self.nets, self.device)
        q = self.kid_of(m["descriptor"])
        found = self.gate.found(m["landmarks"])
        found_dcgan = float(self.gate.found(self.b["landmarks"]).mean())
        shares = label_shares(m["expression"])
        tv, tv_floor = total_variation(shares, self.shares_a), total_variation(self.shares_b, self.shares_a)
        kid_limit = KID_FACTOR * self.floor_scale
        rows = [
            {"criterion": "kid", "student": q["kid"], "reference": self.floor, "threshold": kid_limit,
             "passed": q["kid"] <= kid_limit,
             "note": f"KID(student, DCGAN A) <= {KID_FACTOR:g} x floor scale {self.floor_scale:.3g} "
                     f"(|floor| + 2 sd, sd {self.floor_sd:.3g}); reference = floor KID(A, B); n = {self.n}"},
            {"criterion": "fid", "student": q["fid"], "reference": self.floor_fid, "threshold": None, "passed": None,
             "note": "FID on the same descriptors, for information; reference = FID(A, B)"},
            {"criterion": "landmarks_found", "student": float(found.mean()), "reference": found_dcgan,
             "threshold": LANDMARKS_FOUND_MIN, "passed": float(found.mean()) >= LANDMARKS_FOUND_MIN,
             "note": f"share whose 68 points are within Mahalanobis distance of DCGAN set A's landmarks <= the "
                     f"{LANDMARK_QUANTILE:g} quantile of DCGAN set B's; reference = DCGAN set B (~{LANDMARK_QUANTILE:g} "
                     "by construction)"},
            {"criterion": "expression_tv", "student": tv, "reference": tv_floor, "threshold": EXPRESSION_TV_MAX,
             "passed": tv <= EXPRESSION_TV_MAX,
             "note": "total variation of argmax expression label shares vs DCGAN set A; reference = DCGAN B vs A"},
        ]
        rows += [{"criterion": f"expression_share_{label}", "student": float(s), "reference": float(r),
                  "threshold": None, "passed": None, "note": "share of samples; reference = DCGAN set A"}
                 for label, s, r in zip(EXPRESSION_LABELS, shares, self.shares_a)]
        passed = all(r["passed"] for r in rows if r["passed"] is not None)
        return BarResult(rows, passed, q, found, m["landmarks"], x)


def overlay_grid(images: torch.Tensor, landmarks: np.ndarray, found: np.ndarray, ncol: int = 8,
                 scale: int = 4) -> np.ndarray:
    """Samples upscaled ``scale`` x with their landmarks as dots: green where found, red where not."""
    from latent_edit_bench.images import make_grid, to_uint8
    from latent_edit_bench.images import draw_landmarks

    tiles = []
    for rgb, lm, ok in zip(to_uint8(images), landmarks, found):
        im = draw_landmarks(rgb, lm * rgb.shape[0], min_size=rgb.shape[0] * scale,
                            color=(0, 255, 64) if ok else (255, 32, 32))
        tiles.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return make_grid(torch.stack(tiles), ncol=ncol)
