"""Distilling a StyleGAN2 from the embedded DCGAN: a tiny CPU run, exact resume (also after a kill),
the log, the checkpoint format, export -> load -> same renders, and the pieces of the loss."""

from __future__ import annotations

import csv
import math
import shutil

import pytest
import torch
import torch.nn.functional as F

from latent_edit_bench.backbones.formats import read_rosinality
from latent_edit_bench.backbones.plugin import dcgan_digiface
from latent_edit_bench.backbones.stylegan2 import Generator
from latent_edit_bench.errors import BenchError
from latent_edit_bench.trainers.kid import QualityReference
from latent_edit_bench.trainers.stylegan2 import train_stylegan2
from latent_edit_bench.trainers.stylegan2_export import export_stylegan2, load_safetensors_stylegan2
from latent_edit_bench.trainers.stylegan2_losses import ema_beta, r1_penalty

# tiny but complete: every regulariser runs, style mixing on, EMA ramp-up in effect
TINY = dict(batch_size=4, size=16, max_channels=32, style_dim=32, n_mlp=2, r1_every=2, pl_weight=2.0, pl_every=2,
            device="cpu", seed=3, log_every=1, snapshot_every=100, n_sample=4, progress=False)


@pytest.fixture(scope="module")
def dcgan():
    return dcgan_digiface()


@pytest.fixture(scope="module")
def straight(tmp_path_factory, dcgan):
    """4 steps in one call, with the quality hook every 2 steps (on 4x4-pooled pixels: cheap features)."""
    out = tmp_path_factory.mktemp("straight")
    ref = QualityReference(dcgan, n=16, size=16, feature_fn=lambda x: F.adaptive_avg_pool2d(x, 4).flatten(1),
                           n_subsets=2, subset_size=8)
    result = train_stylegan2(out, steps=4, teacher=dcgan, eval_every=2, eval_fn=lambda g, step: ref.measure(g),
                             **TINY)
    return out, result


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _state(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_run_writes_checkpoint_log_and_samples(straight):
    out, result = straight
    assert result.step == 4
    state = _state(out / "checkpoint.pt")     # weights_only: tensors and plain data only
    assert state["step"] == 4 and set(state) >= {"g", "g_ema", "d", "g_optim", "d_optim", "rng_cpu", "config"}
    rows = _rows(out / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for r in rows:
        for k in ("d_loss", "g_loss", "r1", "pl", "real_score", "fake_score"):
            assert math.isfinite(float(r[k])), (k, r)
    assert (out / "samples_0000004.png").is_file()
    quality = _rows(out / "quality.csv")
    assert [int(r["step"]) for r in quality] == [2, 4]
    assert all(math.isfinite(float(r[k])) for r in quality for k in ("kid", "kid_std", "fid", "floor"))
    # G_ema moved off G's initial weights, and is not G itself
    g, g_ema = state["g"], state["g_ema"]
    assert not torch.equal(g["style.1.weight"], g_ema["style.1.weight"])
    # rosinality's reader (what `bench sample --weights` uses) reads the training checkpoint
    ckpt = read_rosinality(out / "checkpoint.pt")
    assert ckpt.g_kwargs["size"] == 16 and ckpt.d_kwargs["size"] == 16


@pytest.mark.slow
def test_resume_is_exact_even_after_a_kill(straight, tmp_path, dcgan):
    # (the straight run also evaluated quality: that must not disturb training either)
    out_a, _ = straight
    out = tmp_path / "pieces"
    train_stylegan2(out, steps=2, teacher=dcgan, **TINY)
    shutil.copy(out / "checkpoint.pt", tmp_path / "at2.pt")
    train_stylegan2(out, steps=3, teacher=dcgan, **TINY)
    # a kill after step 3 but before its snapshot: the folder has step 3's log row, step 2's checkpoint
    shutil.copy(tmp_path / "at2.pt", out / "checkpoint.pt")
    assert len(_rows(out / "log.csv")) == 3
    train_stylegan2(out, steps=4, teacher=dcgan, **TINY)

    a, b = _state(out_a / "checkpoint.pt"), _state(out / "checkpoint.pt")
    for net in ("g_ema", "g", "d"):
        for k, v in a[net].items():
            assert torch.equal(v, b[net][k]), f"{net}.{k} differs after resume"
    assert a["mean_path_length"] == b["mean_path_length"]
    rows_a, rows_b = _rows(out_a / "log.csv"), _rows(out / "log.csv")
    assert [r["step"] for r in rows_b] == ["1", "2", "3", "4"]     # the redone step is logged once
    for ra, rb in zip(rows_a, rows_b):
        assert {k: v for k, v in ra.items() if k != "sec_per_step"} == \
               {k: v for k, v in rb.items() if k != "sec_per_step"}


def test_resume_refuses_other_settings(straight, tmp_path, dcgan):
    out, _ = straight
    other = tmp_path / "other"
    shutil.copytree(out, other)
    with pytest.raises(BenchError, match="lr"):
        train_stylegan2(other, steps=5, teacher=dcgan, **{**TINY, "lr": 0.001})


def test_export_load_renders_like_g_ema(straight, tmp_path):
    out, _ = straight
    path = export_stylegan2(out / "checkpoint.pt", tmp_path / "student.safetensors", n_latent_avg=500)
    backbone = load_safetensors_stylegan2(path)
    state = _state(out / "checkpoint.pt")
    G = Generator(**state["g_kwargs"])
    G.load_state_dict(state["g_ema"])
    G.eval()
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = G.synthesis(G.mapping(z), noise_mode="const")
        got = backbone.synthesize(backbone.to_edit(z))
        assert torch.equal(got, expected)
        assert torch.equal(backbone.generator.latent_avg, G.mean_latent(500, seed=0)[0])
        assert backbone.n_layers == 2 * 4 - 2 and backbone.discriminator is not None
        D = backbone.discriminator
        assert all(torch.equal(D.state_dict()[k], v) for k, v in state["d"].items())


def test_refusals(tmp_path, dcgan):
    with pytest.raises(BenchError, match="CUDA"):
        train_stylegan2(tmp_path / "x", steps=1, teacher=dcgan, mixed_precision="bf16", **TINY)
    with pytest.raises(BenchError, match="not implemented"):
        train_stylegan2(tmp_path / "x", steps=1, teacher=dcgan, ada=True, **TINY)
    with pytest.raises(BenchError, match="multiple of 4"):
        train_stylegan2(tmp_path / "x", steps=1, teacher=dcgan, **{**TINY, "batch_size": 6})
    with pytest.raises(BenchError, match="not an exported"):
        from safetensors.torch import save_file
        save_file({"a": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
        load_safetensors_stylegan2(tmp_path / "plain.safetensors")


def test_ema_beta_matches_stylegan2_ada():
    # training_loop.py: ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup); beta = 0.5 ** (batch / ema_nimg)
    assert ema_beta(32, 10**6, 10, 0.05) == pytest.approx(0.5 ** (32 / 10_000))
    assert ema_beta(32, 64_000, 10, 0.05) == pytest.approx(0.5 ** (32 / 3_200))
    assert ema_beta(32, 0, 10, 0.05) == 0.0          # first step: G_ema := G
    assert ema_beta(32, 0, 10, None) == pytest.approx(0.5 ** (32 / 10_000))


def test_r1_penalty_of_a_linear_critic():
    # D(x) = <a, x> per sample: grad = a everywhere, so E||grad||^2 = ||a||^2
    a = torch.randn(1, 3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    pred = (x * a).sum([1, 2, 3])[:, None]
    assert r1_penalty(pred, x).item() == pytest.approx(a.square().sum().item(), rel=1e-6)
