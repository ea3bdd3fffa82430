"""Closed-form editing methods (SeFa, GANSpace, InterFaceGAN) and the fitted-artifact store, on the
embedded DCGAN with a real attribute instrument.

The instrument is ``Tone``: mean brightness -> Pale_Skin, mean redness (R - G) -> Rosy_Cheeks, mapped to
[0, 1] by a sigmoid centred on the DCGAN's sample median (constants measured on 256 samples, seed 123);
every other column is NaN, so a method that reads any column but its target fails. ``probe`` (three face-api
networks, ~20 ms an image here) would make the mechanical tests take minutes on 2 cores; it is used where
it matters, test_probe_interfacegan (Male conditioned on the gesture attributes), skipped only where the
face-api files it is built from are missing.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, GESTURE_ATTRIBUTES
from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.contracts.artifacts import (Checkpointer, artifact_key, artifact_path, fit_or_load, load_artifact,
                                                  sidecar)
from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.methods.ganspace import GANSpace
from latent_edit_bench.methods.interfacegan import InterFaceGAN, InterFaceGANCond
from latent_edit_bench.methods.sefa import SeFa, sefa_directions
from conftest import usable_probe

TORCH_THREADS = 1  # see conftest.py

ROOT = Path(__file__).resolve().parents[1]
PALE, ROSY = "Pale_Skin", "Rosy_Cheeks"


class Tone(Instrument):
    name = "tone"
    outputs = (Output("attributes", (40,), (0.0, 1.0), "probability", CELEBA_ATTRIBUTES),)

    def forward(self, images):
        brightness = images.mean((1, 2, 3))
        redness = (images[:, 0] - images[:, 1]).mean((1, 2))
        cols = torch.tensor([CELEBA_ATTRIBUTES.index(PALE), CELEBA_ATTRIBUTES.index(ROSY)], device=images.device)
        out = torch.full((images.shape[0], 40), float("nan"), dtype=images.dtype, device=images.device)
        vals = torch.stack([torch.sigmoid((brightness + 0.36) / 0.24), torch.sigmoid((redness - 0.13) / 0.08)], 1)
        return {"attributes": out.index_copy(1, cols, vals)}


def make_ctx(backbone, attrs=(PALE,), seed=0, cache_dir=None, **kw):
    return FitContext(backbone, {"tone": Tone()}, attributes=attrs, seed=seed, cache_dir=cache_dir, **kw)


def test_methods_are_registered():
    methods = get_plugins().methods
    for name, cls in [("sefa", SeFa), ("ganspace", GANSpace), ("interfacegan", InterFaceGAN),
                      ("interfacegan-cond", InterFaceGANCond)]:
        ed = methods.create(name)
        assert isinstance(ed, cls) and ed.name == name and ed.config == cls.config
    assert methods.create("sefa", top_k=3).config["top_k"] == 3
    with pytest.raises(BenchError, match="no option"):
        methods.create("sefa", topk=3)


def test_sefa_matches_numpy_eigh_and_edits(backbone):
    A = backbone.style_weights().detach().double().numpy()
    ref_vals, ref_vecs = np.linalg.eigh(A.T @ A)
    ref_vals, ref_vecs = ref_vals[::-1], ref_vecs[:, ::-1]
    vals, dirs = sefa_directions(backbone.style_weights())
    np.testing.assert_allclose(vals.numpy(), ref_vals, rtol=1e-9)
    top = 20   # well-separated leading eigenvalues: vectors are defined up to sign
    cos = np.abs(np.sum(dirs.numpy()[:top] * ref_vecs[:, :top].T, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-8)
    assert np.all(np.diff(vals.numpy()) <= 0)

    ctx = make_ctx(backbone)
    ed = SeFa(top_k=4, n_samples=32)
    ed.fit(ctx)
    a = ed.per_attr[PALE]
    assert len(a["effects"]) == 4 and abs(a["effects"][a["component"]]) == max(map(abs, a["effects"]))
    assert torch.allclose(a["direction"], a["sign"] * dirs[a["component"]].float())
    lat = ctx.latents(32, seed=7)          # held out from the choice set
    h = a["sigma"]   # the probe step: the measured effect must hold on fresh samples
    up, down = (ctx.score_latents(ed.edit(lat, PALE, s), PALE).mean() for s in (h, -h))
    assert float(up - down) / (2 * h) > 0.5 * a["effect"] > 0
    lo, hi = ed.strength_range(PALE)
    assert lo == -hi and hi == pytest.approx(3 * a["sigma"])


def test_ganspace_components(backbone):
    ctx = make_ctx(backbone)
    ed = GANSpace(n_components=10, n_pca_samples=256, top_k=3, n_samples=32)
    ed.fit(ctx)
    s = ed.shared
    c = s["components"].double()
    assert s["space"] == "activation" and c.shape == (10, 8192)
    torch.testing.assert_close(c @ c.T, torch.eye(10, dtype=torch.float64), atol=1e-5, rtol=0)
    v = s["variance"]
    assert torch.all(v[:-1] >= v[1:]) and v[0] == v.max() and 0 < s["variance_ratio"].sum() <= 1
    # the first component explains the most variance of fresh activations, too
    lat = ctx.latents(256, seed=3)
    with torch.no_grad():
        y = backbone.early_activation(lat).double()
    proj_var = ((y - y.mean(0)) @ c.T).var(0)
    assert int(proj_var.argmax()) == 0
    torch.testing.assert_close(s["directions"].norm(dim=1), torch.ones(10), atol=1e-5, rtol=0)
    a = ed.per_attr[PALE]
    assert a["layer_range"] == [0, 1] and 0 <= a["component"] < 3
    lat = ctx.latents(32, seed=7)
    assert ctx.score_latents(ed.edit(lat, PALE, 2.0), PALE).mean() > ctx.score_latents(lat, PALE).mean()


@pytest.mark.parametrize("n, f", [(600, 2000), (300, 40)])
def test_ganspace_pca_equals_an_svd(n, f):
    """pca() eigen-decomposes the smaller of the Gram matrix and the covariance; it must give an SVD's
    components (up to sign, which it fixes: each component's largest entry positive), variances and
    variance ratios (over all the variance, not the kept components')."""
    from latent_edit_bench.methods.ganspace import pca

    x = torch.randn(n, f, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * torch.linspace(3, 0.1, f)
    p = pca(x, 20)
    _, sv, vh = torch.linalg.svd(x - x.mean(0), full_matrices=False)
    var = sv ** 2 / (n - 1)
    c = p["components"]
    assert c.shape == (20, f)
    torch.testing.assert_close((c * vh[:20]).sum(1).abs(), torch.ones(20, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(p["variance"], var[:20], atol=1e-12 * float(var[0]), rtol=0)
    torch.testing.assert_close(p["variance_ratio"], var[:20] / var.sum(), atol=1e-12, rtol=0)
    assert bool((c.gather(1, c.abs().argmax(1, keepdim=True)) > 0).all())
    torch.testing.assert_close(pca(-x, 20)["components"], c, atol=1e-12, rtol=0)   # the sign is the data's


def test_w_space_paths_on_a_small_stylegan2():
    """The W+ code paths (GANSpace PCA of w, layer-range choice, SeFa on modulation weights) on a tiny
    random StyleGAN2: no FFHQ weights exist here, but the mechanics do not depend on them."""
    from latent_edit_bench.backbones.stylegan2 import Generator, StyleGAN2Backbone

    torch.manual_seed(0)
    g = Generator(16, style_dim=32, n_mlp=2, channel_multiplier=1, max_channels=16)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():   # move the parameters off their init so that every layer matters
        for name, t in g.state_dict().items():
            if not name.endswith("kernel"):
                t.add_(0.3 * torch.randn(t.shape, generator=gen))
    bb = StyleGAN2Backbone(g.eval(), name="tiny")
    ctx = make_ctx(bb)
    gs = GANSpace(n_components=8, n_pca_samples=256, top_k=3, n_samples=32)
    gs.fit(ctx)
    c = gs.shared["components"].double()
    assert gs.shared["space"] == "w" and c.shape == (8, 32)
    torch.testing.assert_close(c @ c.T, torch.eye(8, dtype=torch.float64), atol=1e-5, rtol=0)
    assert torch.equal(gs.shared["directions"], gs.shared["components"])
    a = gs.per_attr[PALE]
    assert a["layer_range"] in ([0, 6], [0, 2], [2, 4], [4, 6]) and len(a["effects"][0]) == 4
    lat = ctx.latents(4, seed=2)
    moved = (gs.edit(lat, PALE, 1.0) - lat).norm(dim=-1)          # [4, n_layers]
    lo, hi = a["layer_range"]
    assert torch.all(moved[:, lo:hi] > 0) and torch.all(moved[:, :lo] == 0) and torch.all(moved[:, hi:] == 0)

    A = bb.style_weights().detach().double().numpy()
    ref = np.linalg.eigh(A.T @ A)[1][:, ::-1]
    sf = SeFa(top_k=3, n_samples=32)
    sf.fit(ctx)
    d = sf.per_attr[PALE]["direction"].double().numpy()
    assert abs(abs(d @ ref[:, sf.per_attr[PALE]["component"]]) - 1) < 1e-6


@pytest.mark.slow
def test_interfacegan_separates_and_edits(backbone):
    ctx = make_ctx(backbone, attrs=(PALE, ROSY))
    ed = InterFaceGAN(n_samples=512)
    ed.fit(ctx)
    for attr in (PALE, ROSY):
        a = ed.per_attr[attr]
        n = a["direction"].double()
        assert abs(float(n.norm()) - 1) < 1e-6
        # re-derive the top/bottom 2% sets independently and check the stored boundary separates them
        x, r = ctx.latents(512)[:, 0].double(), ctx.score_latents(ctx.latents(512), attr)
        order = torch.argsort(r, descending=True)
        top, bottom = x[order[:10]], x[order[-10:]]
        acc = torch.cat([(top @ n + a["intercept"]) > 0, (bottom @ n + a["intercept"]) < 0]).double().mean()
        assert acc > 0.9
        held = ctx.latents(64, seed=11)
        gain = ctx.score_latents(ed.edit(held, attr, 2.0), attr) - ctx.score_latents(held, attr)
        assert gain.mean() > 0.05
    # batched strengths, differentiable in the strength
    s = torch.tensor([1.0, -1.0], requires_grad=True)
    out = ed.edit(ctx.latents(2, seed=1), PALE, s)
    out.sum().backward()
    assert s.grad is not None and torch.allclose(s.grad, ed.per_attr[PALE]["direction"].sum().expand(2))


def test_interfacegan_cond_is_orthogonal_to_conditions(backbone):
    ctx = make_ctx(backbone, attrs=(PALE,))
    ed = InterFaceGANCond(n_samples=512, condition_on=[ROSY])
    ed.fit(ctx)
    a = ed.per_attr[PALE]
    plain = InterFaceGAN(n_samples=512)
    plain.fit(make_ctx(backbone, attrs=(ROSY,)))
    for cond in (a["condition_normals"][0], plain.per_attr[ROSY]["direction"]):
        cos = float(a["direction"].double() @ cond.double()) / float(cond.double().norm())
        assert abs(cos) < 1e-5
    assert a["condition_on"] == [ROSY] and a["cos_to_unconditioned"] > 0.5
    # the default conditions are the gesture attributes, which Tone does not score: a clear error, no NaN
    with pytest.raises(BenchError, match="does not score attribute 'Smiling'"):
        InterFaceGANCond(n_samples=64).fit(make_ctx(backbone))


class CountingInterFaceGAN(InterFaceGAN):
    fits = 0
    attribute_fits = 0

    def fit(self, ctx):
        type(self).fits += 1
        super().fit(ctx)

    def fit_attribute(self, ctx, attr, shared):
        type(self).attribute_fits += 1
        return super().fit_attribute(ctx, attr, shared)


def test_cache_hit_and_key(backbone, tmp_path):
    CountingInterFaceGAN.fits = 0
    ctx = make_ctx(backbone, cache_dir=tmp_path)
    first = fit_or_load(CountingInterFaceGAN(n_samples=128), ctx)
    path = artifact_path(first, ctx)
    assert path.exists() and sidecar(path).exists() and path.parent.name == "interfacegan"
    assert not first.cache_hit and CountingInterFaceGAN.fits == 1
    second = fit_or_load(CountingInterFaceGAN(n_samples=128), make_ctx(backbone, cache_dir=tmp_path))
    assert second.cache_hit and CountingInterFaceGAN.fits == 1
    assert torch.equal(second.per_attr[PALE]["direction"], first.per_attr[PALE]["direction"])
    assert second.strength_range(PALE) == first.strength_range(PALE)
    _, meta = load_artifact(path)
    assert meta["key_inputs"]["seed"] == 0 and meta["key_inputs"]["config"]["n_samples"] == 128

    key = artifact_key(CountingInterFaceGAN(n_samples=128), ctx)
    assert key == path.stem
    changed_bb = copy.deepcopy(backbone)
    with torch.no_grad():
        changed_bb.generator.to_rgb.weight[0, 0, 0, 0] += 1e-3
    variants = [
        artifact_key(CountingInterFaceGAN(n_samples=128), make_ctx(backbone, seed=1)),
        artifact_key(CountingInterFaceGAN(n_samples=256), ctx),
        artifact_key(CountingInterFaceGAN(n_samples=128), make_ctx(backbone, attrs=(PALE, ROSY))),
        artifact_key(CountingInterFaceGAN(n_samples=128), make_ctx(changed_bb)),
        artifact_key(InterFaceGANCond(n_samples=128), ctx),
    ]
    assert len(set(variants + [key])) == len(variants) + 1


def test_resume_after_kill_is_identical(backbone, tmp_path):
    attrs = (PALE, ROSY)

    def kill_after_first_attribute(n_saves):
        if n_saves == 2:   # save 1: shared part; save 2: first attribute
            raise KeyboardInterrupt("killed")

    CountingInterFaceGAN.attribute_fits = 0
    with pytest.raises(KeyboardInterrupt):
        fit_or_load(CountingInterFaceGAN(n_samples=256),
                    make_ctx(backbone, attrs, cache_dir=tmp_path / "a", on_checkpoint=kill_after_first_attribute))
    ctx = make_ctx(backbone, attrs, cache_dir=tmp_path / "a")
    path = artifact_path(CountingInterFaceGAN(n_samples=256), ctx)
    partial = path.with_name(path.stem + ".partial.safetensors")
    assert not path.exists() and partial.exists()
    assert list(Checkpointer(partial).load()["attrs"]) == [PALE]
    resumed = fit_or_load(CountingInterFaceGAN(n_samples=256), ctx)
    assert CountingInterFaceGAN.attribute_fits == 2     # PALE before the kill, only ROSY after it
    assert path.exists() and not partial.exists()

    whole = fit_or_load(InterFaceGAN(n_samples=256), make_ctx(backbone, attrs, cache_dir=tmp_path / "b"))
    a, b = resumed.state_dict(), whole.state_dict()
    for attr in attrs:
        for k, v in b["attrs"][attr].items():
            assert (torch.equal(a["attrs"][attr][k], v) if torch.is_tensor(v) else a["attrs"][attr][k] == v), k
    assert (tmp_path / "a" / "interfacegan" / path.name).read_bytes() == \
        (tmp_path / "b" / "interfacegan" / path.name).read_bytes()


PLUGIN_PKG = ROOT / "tests" / "plugins" / "bench-random-direction"


def test_docs_example_runs(backbone, tmp_path):
    text = (ROOT / "docs" / "writing-a-method.md").read_text()
    code = re.search(r"```python\n# random_direction\.py\n(.*?)```", text, re.S).group(1)
    # the doc's code IS the external test package's module, and its pyproject the package's, whole
    assert code == (PLUGIN_PKG / "bench_random_direction" / "random_direction.py").read_text()
    toml = re.search(r"```toml\n# pyproject\.toml\n(.*?)```", text, re.S).group(1)
    assert toml == (PLUGIN_PKG / "pyproject.toml").read_text()
    ns: dict = {}
    exec(compile(code, "docs/writing-a-method.md", "exec"), ns)
    ed = ns["RandomDirection"](seed=3)
    fit_or_load(ed, make_ctx(backbone, cache_dir=tmp_path))
    lat = backbone.to_edit(backbone.sample_z(4, 0))
    out = ed.edit(lat, PALE, 1.0)
    assert out.shape == lat.shape and torch.allclose((out - lat).norm(dim=-1), torch.ones(4, 1), atol=1e-5)
    assert ed.strength_range(PALE) == (-3.0, 3.0)
    assert ns["register_methods"]()[0].name == "random-direction"


def test_probe_interfacegan(backbone):
    """The real use: R = probe, target Male, conditioned on the gesture attributes (one render of 128)."""
    probe = usable_probe()
    ctx = FitContext(backbone, {"probe": probe}, attributes=("Male",), seed=0)
    plain, cond = InterFaceGAN(n_samples=128, ratio=0.08), InterFaceGANCond(n_samples=128, ratio=0.08)
    plain.fit(ctx)
    cond.fit(ctx)                        # same ctx: the samples are rendered and scored once
    assert plain.per_attr["Male"]["accuracy"] > 0.9
    c = cond.per_attr["Male"]
    assert c["condition_on"] == list(GESTURE_ATTRIBUTES)
    normals = c["condition_normals"].double()
    assert torch.all((normals @ c["direction"].double()).abs() < 1e-5)
    held = ctx.latents(32, seed=11)
    base = ctx.score_latents(held, "Male").mean()
    for ed in (plain, cond):
        assert ctx.score_latents(ed.edit(held, "Male", 2.0), "Male").mean() > base


@pytest.mark.slow
def test_external_method_package_through_the_cli(tmp_path):
    """pip-install the docs' random-direction plugin into a private folder; `bench list` and `bench fit` use it."""
    import os
    import subprocess
    import sys

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(PLUGIN_PKG)], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    bench = [sys.executable, "-m", "latent_edit_bench.cli"]
    listing = subprocess.run(bench + ["list"], capture_output=True, text=True, env=env, timeout=300)
    assert "random-direction" in listing.stdout and "[random_direction]" in listing.stdout
    fit = [*bench, "fit", "--methods", "random-direction", "--attrs", "Male", "--cache", str(tmp_path / "cache")]
    first = subprocess.run(fit, capture_output=True, text=True, env=env, timeout=300)
    assert first.returncode == 0, first.stderr
    assert list((tmp_path / "cache" / "random-direction").glob("*.safetensors"))
    second = subprocess.run(fit, capture_output=True, text=True, env=env, timeout=300)
    assert second.returncode == 0 and "cache hit" in second.stdout


# -- cache integrity: a damaged artifact costs a refit, never the method --------------------------

def _same_state(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same_state(x, y) for x, y in zip(a, b))
    return a == b


def test_truncated_artifact_is_quarantined_and_refitted(backbone, tmp_path, caplog):
    import logging

    first = fit_or_load(SeFa(n_samples=16, top_k=3), make_ctx(backbone, cache_dir=tmp_path))
    path = first.artifact_path
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING, logger="latent_edit_bench.contracts.artifacts"):
        again = fit_or_load(SeFa(n_samples=16, top_k=3), make_ctx(backbone, cache_dir=tmp_path))
    assert not again.cache_hit and again.artifact_path == path
    bad = list(path.parent.glob(f"{path.stem}.corrupt-*.safetensors"))
    assert len(bad) == 1 and bad[0].read_bytes() == whole[: len(whole) // 2] and sidecar(bad[0]).exists()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage() and str(bad[0]) in warnings[0].getMessage()
    state, _ = load_artifact(path)
    assert _same_state(state, first.state_dict())
    third = fit_or_load(SeFa(n_samples=16, top_k=3), make_ctx(backbone, cache_dir=tmp_path))
    assert third.cache_hit and _same_state(third.state_dict(), first.state_dict())


def test_artifact_sha256_is_recorded_checked_and_required(backbone, tmp_path):
    """A flipped byte, a sidecar without a sha256 and a missing sidecar all mean "not verified": refused
    (the run refits), never loaded as a cache hit."""
    import json

    from latent_edit_bench.assets import sha256_file
    from latent_edit_bench.contracts.artifacts import CorruptArtifact

    ed = fit_or_load(SeFa(n_samples=16, top_k=3), make_ctx(backbone, cache_dir=tmp_path))
    path, side = ed.artifact_path, sidecar(ed.artifact_path)
    doc = json.loads(side.read_text())
    assert doc["sha256"] == sha256_file(path)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF                     # a flipped bit in the tensor bytes: still parses, wrong numbers
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifact, match="sha256"):
        load_artifact(path)
    side.write_text(json.dumps({k: v for k, v in doc.items() if k != "sha256"}))
    with pytest.raises(CorruptArtifact, match="records no sha256"):
        load_artifact(path)
    side.unlink()
    with pytest.raises(CorruptArtifact, match="sidecar .* is missing"):
        load_artifact(path)
    side.write_text("{not json")
    with pytest.raises(CorruptArtifact, match="sidecar"):
        load_artifact(path)
