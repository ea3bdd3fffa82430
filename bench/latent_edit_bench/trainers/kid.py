"""Sample quality of a generator against the DCGAN it was distilled from: KID and FID on feature vectors.

KID (Binkowski et al. 2018, "Demystifying MMD GANs"): the unbiased estimate of MMD^2 with the cubic
polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over ``n_subsets`` random subsets of
``subset_size`` from each set (as clean-fid and the TF-GAN implementation do); the spread over the
subsets is reported as ``kid_std``. FID (Heusel et al. 2017): the Frechet distance between Gaussians
fitted to the two feature sets.

Features: any ``feature_fn(images [B, 3, H, W] in [-1, 1]) -> [B, d]``. The default is the 128-D face
descriptor of face-api's recognition network (instrument ``faceapi-descriptor``): faces, not ImageNet
classes, so it sees what matters here and needs no Inception weights (none can be had offline).
KID values on these features are small numbers (the kernel is close to 1 for short vectors) and are
comparable only with numbers computed on the same features; the *floor* — KID between two
independent sample sets of the DCGAN itself — gives the scale: a student at the floor is as close to
the DCGAN as the DCGAN is to itself at this sample size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import linalg

from latent_edit_bench.errors import BenchError

FeatureFn = Callable[[torch.Tensor], "np.ndarray | torch.Tensor"]

# seeds of the DCGAN reference sets: far from the training stream and from user seeds
REFERENCE_SEED_A = 7_000_001
REFERENCE_SEED_B = 7_000_002


# -- the estimators ------------------------------------------------------------------------------

def _as_features(x) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2:
        raise BenchError(f"features must be [N, d], got shape {list(x.shape)}")
    return x.astype(np.float64, copy=False)


def polynomial_mmd2(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> float:
    """Unbiased MMD^2 between samples x [m, d] and y [n, d] with k(a, b) = (a.b / d + coef0)^degree."""
    x, y = _as_features(x), _as_features(y)
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    if m < 2 or n < 2:
        raise BenchError(f"MMD needs at least 2 samples per set, got {m} and {n}")
    kxx = (x @ x.T / d + coef0) ** degree
    kyy = (y @ y.T / d + coef0) ** degree
    kxy = (x @ y.T / d + coef0) ** degree
    # drop the diagonal (k(x_i, x_i)) from the within-set means: that is what makes it unbiased
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
                 - 2 * kxy.mean())


def kid(x, y, n_subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID between feature sets x and y: (mean, std) of the unbiased MMD^2 over ``n_subsets`` subsets of
    ``min(subset_size, len(x), len(y))`` drawn without replacement from each set."""
    x, y = _as_features(x), _as_features(y)
    if x.shape[1] != y.shape[1]:
        raise BenchError(f"feature widths differ: {x.shape[1]} vs {y.shape[1]}")
    m = min(subset_size, x.shape[0], y.shape[0])
    rng = np.random.default_rng(seed)
    values = [polynomial_mmd2(x[rng.choice(x.shape[0], m, replace=False)],
                              y[rng.choice(y.shape[0], m, replace=False)]) for _ in range(n_subsets)]
    return float(np.mean(values)), float(np.std(values))


def gaussian_stats(x) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of features x [N, d]."""
    x = _as_features(x)
    return x.mean(0), np.cov(x, rowvar=False)


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)), as in the FID reference code."""
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # singular product (fewer samples than dimensions): regularise as the reference code does
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real   # sqrtm of a product of PSD matrices is real up to round-off
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(x, y) -> float:
    return frechet_distance(*gaussian_stats(x), *gaussian_stats(y))


# -- features ------------------------------------------------------------------------------------

_descriptor = None


def descriptor_features(images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """face-api 128-D descriptors of images in [-1, 1] ([B, 3, H, W], any size): [B, 128] float64.

    The instrument is created on first use (from its module: KID's features are fixed, not a plugin
    choice) and moved to the images' device.
    """
    global _descriptor
    if _descriptor is None:
        from latent_edit_bench.instruments import faceapi

        _descriptor = faceapi.descriptor().eval()
    _descriptor.to(images.device)
    return _as_features(_descriptor.measure(images, batch_size=batch_size)["descriptor"])


# -- sample sets ---------------------------------------------------------------------------------

def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    # the student is trained on DCGAN samples area-downsampled to its size: compare at that size
    return images if images.shape[-1] == size else F.interpolate(images, size=(size, size), mode="area")


@torch.no_grad()
def dcgan_images(dcgan, n: int, seed: int, size: int | None = None, batch_size: int = 64) -> torch.Tensor:
    """n DCGAN samples from ``seed`` (CPU float32, [-1, 1]), area-resized to ``size``."""
    out = []
    for i in range(0, n, batch_size):
        z = dcgan.sample_z(min(batch_size, n - i), seed * 1_000_003 + i)
        x = dcgan.synthesize(dcgan.to_edit(z))
        out.append(_resize(x, size or x.shape[-1]).float().cpu())
    return torch.cat(out)


@torch.no_grad()
def student_images(student, n: int, seed: int, batch_size: int = 64) -> torch.Tensor:
    """n samples of a Backbone (its own truncation and constant noise) or of a bare StyleGAN2
    ``Generator`` (no truncation, constant noise: what the benchmark renders), CPU float32."""
    from latent_edit_bench.contracts.backbone import Backbone

    if isinstance(student, Backbone):
        return student.sample(n, seed, batch_size=batch_size)
    device = next(student.parameters()).device
    g = torch.Generator().manual_seed(int(seed))
    z = torch.randn(n, student.z_dim, generator=g)
    out = []
    for zb in z.split(batch_size):
        out.append(student.synthesis(student.mapping(zb.to(device)), noise_mode="const").float().cpu())
    return torch.cat(out)


def _features(feature_fn: FeatureFn, images: torch.Tensor, device) -> np.ndarray:
    return _as_features(feature_fn(images.to(device)))


class QualityReference:
    """Features of two independent DCGAN sets A and B (computed once) and the floor KID(A, B)."""

    def __init__(self, dcgan, n: int = 1000, size: int | None = None, feature_fn: FeatureFn | None = None,
                 n_subsets: int = 100, subset_size: int = 1000, device=None):
        if n < 2:
            raise BenchError(f"quality needs at least 2 samples, got n={n}")
        self.n, self.n_subsets, self.subset_size = n, n_subsets, subset_size
        self.feature_fn = feature_fn or descriptor_features
        self.device = torch.device(device) if device is not None else dcgan.device
        self.size = size
        self.a = _features(self.feature_fn, dcgan_images(dcgan, n, REFERENCE_SEED_A, size), self.device)
        self.b = _features(self.feature_fn, dcgan_images(dcgan, n, REFERENCE_SEED_B, size), self.device)
        self.floor, self.floor_std = kid(self.a, self.b, n_subsets, subset_size)
        self.floor_fid = fid(self.a, self.b)

    def measure(self, student, seed: int = 0) -> dict:
        """KID / FID of ``n`` student samples (seed ``seed``) against DCGAN set A, with the floor."""
        feats = _features(self.feature_fn, student_images(student, self.n, seed), self.device)
        value, std = kid(self.a, feats, self.n_subsets, self.subset_size)
        return {"kid": value, "kid_std": std, "fid": fid(self.a, feats), "floor": self.floor,
                "floor_std": self.floor_std, "floor_fid": self.floor_fid, "n": self.n}


def quality_table(student, dcgan, n: int = 1000, seed: int = 0, feature_fn: FeatureFn | None = None,
                  n_subsets: int = 100, subset_size: int = 1000) -> dict:
    """KID(DCGAN vs student) and the floor KID(DCGAN set A vs independent DCGAN set B), plus FIDs.

    ``student``: a StyleGAN2 backbone or bare Generator; DCGAN samples are area-resized to its
    resolution. Returns {'kid', 'kid_std', 'fid', 'floor', 'floor_std', 'floor_fid', 'n'}.
    """
    size = getattr(student, "resolution", None) or student.size
    device = next(student.parameters()).device
    ref = QualityReference(dcgan, n=n, size=size, feature_fn=feature_fn, n_subsets=n_subsets,
                           subset_size=subset_size, device=device)
    return ref.measure(student, seed=seed)


def format_quality(q: dict) -> str:
    return (f"KID {q['kid']:.6f} +- {q['kid_std']:.6f} (floor {q['floor']:.6f} +- {q['floor_std']:.6f}), "
            f"FID {q['fid']:.4f} (floor {q['floor_fid']:.4f}), n={q['n']}")
