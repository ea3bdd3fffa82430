"""KID and FID against independent references: a naive double loop for the unbiased MMD^2, closed
forms of the Frechet distance, and the behaviour on same / shifted distributions and on real samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latent_edit_bench.backbones.plugin import dcgan_digiface
from latent_edit_bench.backbones.stylegan2 import Generator
from latent_edit_bench.trainers.kid import fid, frechet_distance, kid, polynomial_mmd2, quality_table


def naive_mmd2(x, y):
    """Unbiased MMD^2 written from its definition, one kernel evaluation at a time."""
    d = x.shape[1]

    def k(a, b):
        return (sum(a[t] * b[t] for t in range(d)) / d + 1) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_naive_double_loop():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(0.5, 1.5, size=(7, 3))
    assert polynomial_mmd2(x, y) == pytest.approx(naive_mmd2(x, y), rel=1e-12, abs=1e-12)
    # one subset holding every sample is the plain estimate
    x2 = rng.normal(size=(6, 3))
    y2 = rng.normal(size=(6, 3)) + 1
    assert kid(x2, y2, n_subsets=1, subset_size=6)[0] == pytest.approx(naive_mmd2(x2, y2),
                                                                     rel=1e-12)


def test_kid_near_zero_for_same_distribution_and_positive_for_shifted():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(400, 16)), rng.normal(size=(400, 16))
    same, same_std = kid(a, b, n_subsets=20, subset_size=200)
    shifted, _ = kid(a, b + 0.5, n_subsets=20, subset_size=200)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 20 * max(abs(same), same_std)


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(2)
    # commuting covariances (shared eigenvectors): Tr term = sum (sqrt a - sqrt b)^2
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    ea, eb = np.array([1.0, 2.0, 0.5, 3.0]), np.array([0.2, 4.0, 1.0, 1.0])
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(ea) - np.sqrt(eb)) ** 2)
    got = frechet_distance(mu1, q @ np.diag(ea) @ q.T, mu2, q @ np.diag(eb) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)
    # non-commuting 2x2: Tr sqrt(M) = sqrt(tr M + 2 sqrt(det M)) for M = S1 S2 (positive eigenvalues)
    s1, s2 = np.array([[2.0, 0.3], [0.3, 0.5]]), np.array([[1.0, -0.4], [-0.4, 2.0]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    expected = np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert frechet_distance([0, 0], s1, [0, 0], s2) == pytest.approx(expected, rel=1e-9)


def test_fid_of_samples_approaches_the_gaussians():
    rng = np.random.default_rng(3)
    s1, s2 = np.diag([1.0, 2.0, 0.5]), np.diag([0.5, 0.5, 2.0])
    mu2 = np.array([1.0, 0.0, -1.0])
    x = rng.multivariate_normal(np.zeros(3), s1, size=20000)
    y = rng.multivariate_normal(mu2, s2, size=20000)
    assert fid(x, y) == pytest.approx(frechet_distance(np.zeros(3), s1, mu2, s2), abs=0.05)


def test_quality_table_on_the_dcgan():
    # features: 4x4 area-pooled pixels (48-D); a random-init StyleGAN2 is far from the DCGAN,
    # two DCGAN sets are close
    def pooled(images):
        return F.adaptive_avg_pool2d(images, 4).flatten(1)

    torch.manual_seed(0)
    student = Generator(16, style_dim=32, n_mlp=2, max_channels=16).eval()
    q = quality_table(student, dcgan_digiface(), n=128, seed=0, feature_fn=pooled, n_subsets=10, subset_size=100)
    assert set(q) >= {"kid", "kid_std", "fid", "floor", "floor_std", "floor_fid", "n"}
    # (at n=128 the floor's sampling error is far above its subset std: compare with the student instead)
    assert q["kid"] > 10 * abs(q["floor"]) and q["kid"] > 3 * q["kid_std"]
    assert q["fid"] > 10 * q["floor_fid"]


def test_descriptor_features_are_face_api_descriptors():
    from latent_edit_bench.instruments import faceapi
    from latent_edit_bench.trainers.kid import descriptor_features

    images = torch.rand(2, 3, 64, 64) * 2 - 1
    feats = descriptor_features(images)
    assert feats.shape == (2, 128) and np.isfinite(feats).all()
    direct = faceapi.descriptor()(images)["descriptor"].double().numpy()
    np.testing.assert_allclose(feats, direct, atol=1e-6)
