"""The prepared GPU job that trains the embedded StyleGAN2 (tools/gpu/train_stylegan2_gpu.sh) and its pieces:
the --smoke run of the same script, the checkout environment it imports through, the warm start, the
deadline, the float16 / split export, and the quality bar's parts."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.backbones.plugin import dcgan_digiface
from latent_edit_bench.backbones.formats import load_stylegan2
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.backbones.stylegan2 import EMBEDDED_64, Discriminator, Generator
from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.instrument import Output
from latent_edit_bench.trainers.quality_bar import (EXPRESSION_TV_MAX, KID_FACTOR, LANDMARK_QUANTILE, LANDMARKS_FOUND_MIN, LandmarkGate,
                               floor_noise, label_shares, total_variation)
from latent_edit_bench.trainers.stylegan2 import train_stylegan2
from latent_edit_bench.trainers.stylegan2_export import export_stylegan2

ROOT = Path(__file__).resolve().parents[1]
TORCH_THREADS = 1
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
FILE_LIMIT = 16 * 2 ** 20
TINY = dict(batch_size=4, size=16, max_channels=16, style_dim=32, n_mlp=2, device="cpu", seed=1, log_every=1,
            snapshot_every=100, n_sample=4, progress=False)


@pytest.fixture(scope="module")
def dcgan():
    return dcgan_digiface()


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# -- the script ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("sg2gpu") / "out"
    res = subprocess.run(["bash", str(ROOT / "tools" / "gpu" / "train_stylegan2_gpu.sh"), str(out), "--smoke"],
                         cwd=out.parent, env={**ENV, "PYTHON": sys.executable}, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    return out


@pytest.mark.slow   # ~10 s quiet (one --smoke run shared by the three), 30+ s under load
def test_smoke_writes_at_most_8_small_files(smoke):
    names = sorted(p.name for p in smoke.iterdir())
    assert names == ["kid.csv", "quality_bar.csv", "samples_landmarks.png", "stylegan2_64.safetensors",
                     "stylegan2_64_d.safetensors", "train.log", "train_log.csv"]
    assert all(p.is_file() and p.stat().st_size <= FILE_LIMIT for p in smoke.iterdir())
    log = (smoke / "train.log").read_text()
    assert log.rstrip().endswith("exit 0") and "verdict:" in log and "plan:" in log


@pytest.mark.slow   # ~10 s quiet (one --smoke run shared by the three), 30+ s under load
def test_smoke_weights_load_as_the_embedded_architecture(smoke):
    from safetensors import safe_open

    bb = load_stylegan2(smoke / "stylegan2_64.safetensors")
    g, d = bb.generator, bb.discriminator
    assert (bb.resolution, bb.n_layers, bb.latent_dim, bb.z_dim) == (64, 10, 512, 100)
    assert (g.n_mlp, g.style_dim, g.z_dim) == (EMBEDDED_64["n_mlp"], 512, 100)
    assert d is not None and d(torch.zeros(4, 3, 64, 64)).shape == (4, 1)
    for path, prefix, module in ((smoke / "stylegan2_64.safetensors", "g_ema.", g),
                                 (smoke / "stylegan2_64_d.safetensors", "d.", d)):
        with safe_open(str(path), framework="pt") as f:
            stored = {k[len(prefix):]: f.get_tensor(k) for k in f.keys()}
        expected = module.state_dict()
        assert {k: tuple(v.shape) for k, v in stored.items()} == {k: tuple(v.shape) for k, v in expected.items()}
        assert all(v.dtype == torch.float16 for v in stored.values() if v.is_floating_point())
    x = bb.sample(2, seed=0)
    assert x.shape == (2, 3, 64, 64) and torch.isfinite(x).all()


@pytest.mark.slow   # ~10 s quiet (one --smoke run shared by the three), 30+ s under load
def test_smoke_tables(smoke):
    kid = _rows(smoke / "kid.csv")
    assert len(kid) >= 2 and kid[-1]["phase"] == "exported"
    steps = [int(r["step"]) for r in kid[:-1]]
    assert steps == sorted(steps) and all(np.isfinite(float(r["kid"])) for r in kid)
    assert {r["phase"] for r in kid} <= {"distil", "gan", "exported"}
    bar = {r["criterion"]: r for r in _rows(smoke / "quality_bar.csv")}
    assert {"kid", "landmarks_found", "expression_tv"} <= set(bar)
    assert float(bar["kid"]["threshold"]) > 0 and float(bar["landmarks_found"]["threshold"]) == LANDMARKS_FOUND_MIN
    shares = [float(r["student"]) for k, r in bar.items() if k.startswith("expression_share_")]
    assert len(shares) == 7 and abs(sum(shares) - 1) < 1e-9
    log = _rows(smoke / "train_log.csv")
    assert log and {r["phase"] for r in log} <= {"distil", "gan"}
    from PIL import Image
    im = Image.open(smoke / "samples_landmarks.png")
    assert im.width > 64 * 8   # 8 columns of upscaled samples


@pytest.mark.slow   # ~10 s quiet
def test_a_diverged_run_still_brings_back_its_last_checkpoint(tmp_path, monkeypatch):
    import latent_edit_bench.trainers.stylegan2 as ts

    job = _job()
    real = ts.train_stylegan2

    def diverging(out_dir, **kw):
        r = real(out_dir, **kw)
        if "eval_fn" in kw:   # the main run (the probe has none): it made its steps, then "diverges"
            raise BenchError(f"training diverged at step {r.step + 1} (d_loss nan, g_loss nan)")
        return r

    monkeypatch.setattr(ts, "train_stylegan2", diverging)
    assert job.main([str(tmp_path / "out"), "--smoke"]) == 1
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"stylegan2_64.safetensors", "stylegan2_64_d.safetensors", "kid.csv", "quality_bar.csv"} <= names
    assert _rows(tmp_path / "out" / "kid.csv")[-1]["phase"] == "exported"


def _job():
    sys.path.insert(0, str(ROOT / "tools" / "gpu"))
    try:
        import train_stylegan2_gpu as job
    finally:
        sys.path.remove(str(ROOT / "tools" / "gpu"))
    return job


def test_plan_fills_the_budget_from_the_probes_later_rows():
    job = _job()
    probe = [{"phase": "distil", "sec_per_step": 0.5}, {"phase": "distil", "sec_per_step": 0.1},   # warm-up, then
             {"phase": "gan", "sec_per_step": 0.9}, {"phase": "gan", "sec_per_step": 0.2}]
    p = job.plan(probe, seconds=300, eval_s=3, n_evals=8, distil_share=0.3)
    # 300 s - 8 evaluations of 3 s = 276 s: 30% at 0.1 s a step, 70% at 0.2 s a step
    assert abs(p["distil_steps"] - 828) <= 1 and abs(p["steps"] - (828 + 966)) <= 2    # floored
    assert p["eval_every"] == p["steps"] // 8
    assert p["distil_steps"] * 0.1 + (p["steps"] - p["distil_steps"]) * 0.2 + 8 * 3 <= 300


# the plain-checkout path (tools/gpu/checkout_env.sh) is tested in tests/test_checkout.py


def test_docs_state_the_bar_and_the_command():
    doc = (ROOT / "docs" / "train-stylegan2.md").read_text()
    bar = doc[doc.index("## The quality bar"):]
    assert f"{KID_FACTOR:g} ×" in bar and f"{LANDMARKS_FOUND_MIN:.0%}" in bar
    assert f"{EXPRESSION_TV_MAX:g}" in bar and f"{LANDMARK_QUANTILE:g}" in bar
    assert re.search(r'run\(command="bash tools/gpu/train_stylegan2_gpu\.sh \$OUT", timeout_s=\d+\)', doc)


# -- warm start, deadline, export ------------------------------------------------------------------------

def test_warm_start_lowers_the_paired_loss_and_needs_the_teachers_z(tmp_path, dcgan):
    with pytest.raises(BenchError, match="z_dim 32 != the teacher's 100"):
        train_stylegan2(tmp_path / "x", steps=2, distil_steps=1, teacher=dcgan, **TINY)
    r = train_stylegan2(tmp_path / "w", steps=12, distil_steps=10, z_dim=100, teacher=dcgan, lr=0.01, **TINY)
    phases = [row["phase"] for row in r.log]
    assert phases == ["distil"] * 10 + ["gan"] * 2
    paired = [row["g_loss"] for row in r.log[:10]]
    assert np.mean(paired[-3:]) < 0.7 * np.mean(paired[:3])   # L1 to the DCGAN's image of the same z falls


def test_deadline_stops_gracefully_and_resume_continues(tmp_path, dcgan, monkeypatch):
    import latent_edit_bench.trainers.stylegan2 as ts

    ticks = iter(range(10 ** 6))
    monkeypatch.setattr(ts.time, "monotonic", lambda: float(next(ticks)))   # one tick per deadline check
    evals = []
    r = train_stylegan2(tmp_path, steps=10, teacher=dcgan, deadline=3.0, eval_every=5,
                        eval_fn=lambda g, step: evals.append(step) or {"kid": 0.0}, **TINY)
    assert r.stopped_early and r.step == 3 and evals == [3]       # a last quality row at the step reached
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["step"] == 3 and (tmp_path / "samples_0000003.png").exists()
    monkeypatch.undo()
    r2 = train_stylegan2(tmp_path, steps=5, teacher=dcgan, eval_every=5, eval_fn=lambda g, step: {"kid": 0.0}, **TINY)
    assert r2.step == 5 and not r2.stopped_early
    assert [int(row["step"]) for row in _rows(tmp_path / "quality.csv")] == [3, 5]


def test_split_float16_export_loads_and_checks_the_d_file(tmp_path, dcgan):
    r = train_stylegan2(tmp_path / "run", steps=1, teacher=dcgan, **TINY)
    g_path, d_path = tmp_path / "g.safetensors", tmp_path / "g_d.safetensors"
    export_stylegan2(r.checkpoint, g_path, dtype=torch.float16, d_path=d_path)
    full = export_stylegan2(r.checkpoint, tmp_path / "full.safetensors")
    a, b = load_stylegan2(g_path), load_stylegan2(full)
    assert a.discriminator is not None and all(p.dtype == torch.float32 for p in a.parameters())
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        torch.testing.assert_close(x, y.half().float(), msg=k)           # float16 rounding and nothing else
    with pytest.raises(BenchError, match="discriminator half"):
        load_stylegan2(d_path)
    d_path.write_bytes(d_path.read_bytes()[:-2] + b"\0\0")
    with pytest.raises(BenchError, match="does not match the sha256"):
        load_stylegan2(g_path)
    d_path.unlink()
    with pytest.raises(BenchError, match="g_d.safetensors, which is missing"):
        load_stylegan2(g_path)


# -- the quality bar's parts -------------------------------------------------------------------------------

def test_landmark_gate_finds_reference_like_faces_only():
    rng = np.random.default_rng(0)
    mean = rng.uniform(0.2, 0.8, (68, 2))
    mix = rng.normal(0, 0.02, (6, 136))                     # faces vary along a few directions
    draw = lambda n: (mean.reshape(-1) + rng.normal(0, 1, (n, 6)) @ mix + rng.normal(0, 0.003, (n, 136))).reshape(n, 68, 2)  # noqa: E731
    gate = LandmarkGate(draw(1000), draw(1000))
    assert 0.97 <= gate.found(draw(2000)).mean() <= 1.0
    shuffled = draw(500)[:, rng.permutation(68)]            # points in the wrong places: not a face
    assert gate.found(shuffled).mean() == 0
    moved = draw(10)
    moved[:, 8] += 0.1                                      # the chin 0.1 of the image lower than any face has it
    assert not gate.found(moved).any()


def test_floor_noise_and_label_distances():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 16)), rng.normal(size=(300, 16))
    sd = floor_noise(a, b, permutations=20)
    assert 0 < sd < 0.05
    shares = label_shares(np.eye(7)[[0, 0, 1, 6]])
    np.testing.assert_allclose(shares, [0.5, 0.25, 0, 0, 0, 0, 0.25])
    assert total_variation(shares, shares) == 0 and total_variation([1, 0], [0, 1]) == 1


# -- the W+ methods on a random instance of the embedded architecture --------------------------------------

@pytest.fixture(scope="module")
def embedded_random():
    """EMBEDDED_64 with random weights and its D; off-init perturbation so every layer matters."""
    from latent_edit_bench.backbones.stylegan2 import StyleGAN2Backbone

    torch.manual_seed(0)
    g = Generator(**EMBEDDED_64)
    d = Discriminator(64, channels=dict(g.channels))
    with torch.no_grad():
        g.latent_avg.copy_(g.mean_latent(1000)[0])
    return StyleGAN2Backbone(g, d, name="stylegan2-64-random")


class Brightness(torch.nn.Module):
    """A cheap differentiable R: mean brightness -> Pale_Skin (every other attribute NaN)."""

    outputs = (Output("attributes", (40,), (0.0, 1.0), "probability", CELEBA_ATTRIBUTES),)

    def forward(self, images):
        out = torch.full((images.shape[0], 40), float("nan"), dtype=images.dtype, device=images.device)
        col = torch.tensor([CELEBA_ATTRIBUTES.index("Pale_Skin")], device=images.device)
        return {"attributes": out.index_copy(1, col, torch.sigmoid(4 * images.mean((1, 2, 3)))[:, None])}


def _ctx(bb):
    from latent_edit_bench.contracts.method import FitContext

    return FitContext(bb, {"brightness": Brightness()}, attributes=("Pale_Skin",), seed=0,
                      load_instrument=get_plugins().instruments.create)


def test_ganspace_on_w_of_the_embedded_architecture(embedded_random):
    from latent_edit_bench.methods.ganspace import GANSpace

    ctx = _ctx(embedded_random)
    ed = GANSpace(n_components=8, n_pca_samples=512, top_k=1, n_samples=4, layer_ranges=[[0, 10], [0, 3]])
    ed.fit(ctx)
    s = ed.shared
    assert s["space"] == "w" and s["components"].shape == (8, 512)
    # PCA of mapped W (as in the paper), not of z: the same PCA computed here from W samples
    w = ctx.latents(512, seed=ctx.seed + 1)[:, 0].double()
    _, sv, vh = torch.linalg.svd(w - w.mean(0), full_matrices=False)
    cos = (s["components"].double() * vh[:8]).sum(1).abs()
    torch.testing.assert_close(cos, torch.ones(8, dtype=torch.float64), atol=1e-4, rtol=0)
    lat = ctx.latents(2, seed=5)
    lo, hi = ed.per_attr["Pale_Skin"]["layer_range"]
    moved = (ed.edit(lat, "Pale_Skin", 1.0) - lat).norm(dim=-1)          # [2, 10]
    assert moved.shape == (2, 10) and (moved[:, lo:hi] > 0).all() and (moved[:, hi:] == 0).all()


def test_sefa_on_the_modulation_weights_of_the_embedded_architecture(embedded_random):
    from latent_edit_bench.methods.sefa import SeFa

    bb = embedded_random
    A = bb.style_weights()
    g = bb.generator
    # every styled conv's affine (ToRGB excluded, as in SeFa): 256 x 5 (4..16 px) + 256 + 128 (32 px) + 128 + 64 (64 px)
    assert A.shape == (sum(c.conv.modulation.weight.shape[0] for c in [g.conv1, *g.convs]), 512) == (1856, 512)
    ed = SeFa(top_k=2, n_samples=4)
    ed.fit(_ctx(bb))
    ref = np.linalg.eigh(A.detach().double().numpy().T @ A.detach().double().numpy())[1][:, ::-1]
    a = ed.per_attr["Pale_Skin"]
    assert abs(abs(a["direction"].double().numpy() @ ref[:, a["component"]]) - 1) < 1e-6
    lat = _ctx(bb).latents(2, seed=5)
    assert ((ed.edit(lat, "Pale_Skin", 1.0) - lat).norm(dim=-1) > 0).all()   # all 10 layers by default


@pytest.mark.parametrize("method", ["baseline", "hfld"])
def test_eye_and_hfld_learn_T_of_shape_A_10_512(embedded_random, method):
    from latent_edit_bench.methods.eye import EYE, HFLD

    bb = embedded_random
    ed = (EYE if method == "baseline" else HFLD)(steps=2, batch_size=2, lr=1e-2)
    ed.fit(_ctx(bb))
    assert ed.T.shape == (1, 10, 512)
    terms = ["loss", "reg", "content", "d"] + (["landmarks"] if method == "hfld" else [])
    assert ed.log["terms"] == terms and torch.isfinite(ed.log["values"]).all()   # D term from the backbone's D
    assert not torch.allclose(ed.T, torch.zeros_like(ed.T))
    lat = _ctx(bb).latents(2, seed=5)
    moved = ed.edit(lat, "Pale_Skin", 0.5) - lat
    torch.testing.assert_close(moved, 0.5 * ed.T[0].expand(2, -1, -1))        # w + s T[k] on every layer
    assert bb.synthesize(lat + moved).shape == (2, 3, 64, 64)


def test_the_embedded_backbone_entry(tmp_path, monkeypatch, embedded_random):
    """Registered, refuses clearly without weights, loads registered files of exactly that architecture."""
    import latent_edit_bench.assets as assets
    from latent_edit_bench.assets import sha256_file
    from latent_edit_bench.backbones.formats import SAFETENSORS_FORMAT
    from latent_edit_bench.errors import MissingAsset
    from latent_edit_bench.plugins import get_plugins

    reg = get_plugins().backbones
    assert "stylegan2-64" in reg
    assert "stylegan2-64" not in assets.register()   # no weights yet: the default stays the DCGAN
    with pytest.raises(MissingAsset, match="tools/gpu/train_stylegan2_gpu.sh"):
        reg.create("stylegan2-64")

    g, d = embedded_random.generator, embedded_random.discriminator
    ckpt = tmp_path / "checkpoint.pt"
    torch.save({"format": SAFETENSORS_FORMAT, "g_kwargs": dict(EMBEDDED_64), "d_kwargs": {"size": 64, "channels": EMBEDDED_64["channels"]},
                "g_ema": g.state_dict(), "d": d.state_dict(), "config": {}, "step": 0}, ckpt)
    export_stylegan2(ckpt, tmp_path / "stylegan2_64.safetensors", dtype=torch.float16,
                     d_path=tmp_path / "stylegan2_64_d.safetensors", n_latent_avg=100)
    entries = {name: {"file": f"{stem}.safetensors", "sha256": sha256_file(tmp_path / f"{stem}.safetensors")}
               for name, stem in (("stylegan2-64", "stylegan2_64"), ("stylegan2-64-d", "stylegan2_64_d"))}
    monkeypatch.setattr(assets, "ASSET_DIR", tmp_path)
    monkeypatch.setattr(assets, "register", lambda: entries)
    assets.asset_path.cache_clear()
    try:
        bb = reg.create("stylegan2-64")
        assert (bb.name, bb.n_layers, bb.latent_dim, bb.edit_space) == ("stylegan2-64", 10, 512, "w+")
        assert bb.discriminator is not None and bb.assets == ("stylegan2-64", "stylegan2-64-d")
        x = bb.sample(2, seed=0)
        ref = embedded_random.sample(2, seed=0)
        assert (x - ref).abs().max() < 0.05          # the float16 weights render as the float32 ones, nearly
    finally:
        assets.asset_path.cache_clear()
