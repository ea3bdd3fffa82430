"""The 468-point mesh as HFLD's landmark net (by name, no change to methods/latent_edit_bench/methods/eye.py) and as a metric."""

from __future__ import annotations

import numpy as np
import torch

from latent_edit_bench.instruments import facemesh as fm
from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.contracts.metric import EditSet
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.metrics.mesh import Mesh

TORCH_THREADS = 1


def test_hfld_trains_against_the_mesh_when_named():
    from latent_edit_bench.methods.eye import HFLD

    plugins = get_plugins()
    backbone = plugins.backbones.create("dcgan")
    ctx = FitContext(backbone, {"probe": plugins.instruments.create("probe")}, attributes=("Male",), seed=0,
                     load_instrument=plugins.instruments.create)
    ed = HFLD(batch_size=2, landmark_instrument="mediapipe-facemesh")
    T = (0.02 * torch.randn(1, 1, 100, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    terms = ed.losses(ctx, T, 0)
    assert terms["landmarks"].item() > 0
    (g,) = torch.autograd.grad(terms["landmarks"], [T])
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    assert "mediapipe-facemesh" in ed.instruments_used(ctx)


def test_mesh_on_generated_faces_lands_on_the_face():
    plugins = get_plugins()
    x = plugins.backbones.create("dcgan").sample(4, 0)
    out = plugins.instruments.create("mediapipe-facemesh")(x)
    pts = out["mesh"]
    assert pts.shape == (4, 468, 2) and torch.equal(pts, out["landmarks"])
    assert (out["face_score"] > 0.5).all()
    # eyes above the lips, the subject's right eye on the image's left, all inside the image
    eye_y = pts[:, list(fm.RIGHT_EYE + fm.LEFT_EYE), 1].mean(1)
    assert (eye_y < pts[:, list(fm.LIPS), 1].mean(1)).all()
    assert (pts[:, list(fm.RIGHT_EYE), 0].mean(1) < pts[:, list(fm.LEFT_EYE), 0].mean(1)).all()
    assert ((pts > 0) & (pts < 1)).float().mean() > 0.95


def test_mesh_metric_in_inter_ocular_distances():
    g = torch.Generator().manual_seed(0)
    o = torch.rand(3, 468, 2, generator=g)
    o[:, list(fm.RIGHT_EYE)] = torch.tensor([0.3, 0.4])
    o[:, list(fm.LEFT_EYE)] = torch.tensor([0.7, 0.4])         # inter-ocular distance 0.4
    e = o.clone()
    e[:, list(fm.LIPS), 1] += 0.04                             # only the lips move, by 0.1 IOD
    s = EditSet("m", "Male", {"mesh": o}, {"mesh": e}, reached=torch.ones(3, dtype=torch.bool),
                strength=torch.zeros(3), level=0.2)
    cols = Mesh().measure(s)
    assert torch.allclose(cols["mouth"], torch.full((3,), 0.1))
    assert torch.allclose(cols["eyes_brows"], torch.zeros(3))
    assert torch.allclose(cols["displacement"], torch.full((3,), 0.1 * len(fm.LIPS) / 468))
    assert {q.name for q in Mesh().quantities("Male", list(cols))} == {"displacement", "mouth", "eyes_brows"}
    assert len(set(fm.LIPS)) == 40 and len(set(fm.RIGHT_EYE + fm.LEFT_EYE + fm.BROWS)) == 60
    assert max(fm.LIPS + fm.BROWS + fm.LEFT_EYE + fm.RIGHT_EYE) < 468 and np.all(np.array(fm.LIPS) >= 0)
