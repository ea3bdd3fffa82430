"""The network editors (latent-transformer, adatrans) and the landmark loss as a composable
regulariser (<method>+hfld), on the embedded DCGAN with the real probe as R.

Fits are tiny (2 shared CPU cores): a few steps at a large lr. Held-out losses are evaluated on
fixed step indices never used in training (the same z and draws), so "the loss decreases" compares
the same batches before and after training.
"""

from __future__ import annotations

import pytest
import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.artifacts import Checkpointer, artifact_path, fit_or_load
from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.methods.adatrans import AdaTrans
from latent_edit_bench.methods.eye import EYE, HFLD
from latent_edit_bench.methods.latent_transformer import LatentTransformer
from latent_edit_bench.methods.regularisers import LandmarkLoss

TORCH_THREADS = 1  # see conftest.py

ATTR = "Male"
HELD_OUT = range(10_000, 10_004)
TINY = {"batch_size": 2, "lr": 1e-2}


# backbone (the embedded DCGAN) and instruments (the real probe) are conftest.py's fixtures


def make_ctx(backbone, instruments, **kw):
    return FitContext(backbone, instruments, attributes=(ATTR,), seed=0,
                      load_instrument=get_plugins().instruments.create, **kw)


def prepare(ed, ctx):
    """The state ``fit`` sets up before its loop (to call ``losses`` outside a fit)."""
    ed._packing, ed._fit_attrs = ed.packing(ctx.backbone), ctx.attributes
    if isinstance(ed, AdaTrans):
        from latent_edit_bench.methods.adatrans import gaussian

        ed._density = gaussian(ctx.latents(ed.config["density_samples"], seed=ctx.seed + 2))


def held_out(ed, ctx, T, term):
    prepare(ed, ctx)
    with torch.no_grad():
        return sum(float(ed.losses(ctx, T, s)[term]) for s in HELD_OUT) / len(HELD_OUT)


# -- the registry spelling -------------------------------------------------------------------------

def test_regularised_names_resolve_and_bad_ones_say_what_is_valid():
    methods = get_plugins().methods
    lt = methods.create("latent-transformer+hfld", steps=3)
    assert isinstance(lt, LatentTransformer) and isinstance(lt, LandmarkLoss) and lt.name == "latent-transformer+hfld"
    assert lt.config["landmark_weight"] == 1e4 and lt.config["steps"] == 3
    assert isinstance(methods.create("adatrans+hfld"), AdaTrans)
    assert "latent-transformer+hfld" in methods and "sefa+hfld" not in methods
    with pytest.raises(BenchError, match=r"unknown regulariser 'lmk'; valid regularisers: hfld"):
        methods.get("latent-transformer+lmk")
    with pytest.raises(BenchError, match=r"unknown method 'nope'; valid methods: .*latent-transformer"):
        methods.get("nope+hfld")
    with pytest.raises(BenchError, match="not trained by a loss"):
        methods.get("sefa+hfld")
    with pytest.raises(BenchError, match="spelt <method>"):
        methods.get("latent-transformer+")
    with pytest.raises(BenchError, match="cannot take it twice"):
        methods.get("hfld+hfld")
    with pytest.raises(BenchError, match="has no option landmark_weight"):
        methods.create("latent-transformer", landmark_weight=1.0)


def test_run_validation_and_presets_know_regularised_names():
    from latent_edit_bench.pipeline.run import make_config, validate

    plugins = get_plugins()
    validate(make_config("latent-transformer,latent-transformer+hfld", "Male"), plugins)
    with pytest.raises(BenchError, match="unknown regulariser"):
        validate(make_config("latent-transformer,latent-transformer+foo", "Male"), plugins)
    # each method owns its presets (Editor.presets); a regularised form adds the loss's own
    config = plugins.methods.preset_config
    assert config("latent-transformer+hfld", "quick") == {**config("latent-transformer", "quick"), "landmark_weight": 1e2}
    assert config("hfld", "quick") == config("baseline+hfld", "quick") == {"steps": 100, "lr": 1.2e-2,
                                                                         "max_strength": 3.0, "landmark_weight": 1e2}
    assert config("adatrans+hfld", "paper") == config("adatrans", "paper") and config("sefa", "paper") == {}


# -- one landmark loss, used by all ----------------------------------------------------------------

class PreRefactorHFLD(EYE):
    """HFLD as it was before the landmark loss became a regulariser (the reference for bit-equality)."""

    name = "hfld"
    config = {**EYE.config, "landmark_weight": 1e4, "landmark_instrument": "faceapi-landmarks"}

    def aux_instruments(self):
        return [self.config["content_instrument"], self.config["landmark_instrument"]]

    def extra_losses(self, ctx, x, x2):
        H = self.aux_net(ctx, self.config["landmark_instrument"])
        with torch.no_grad():
            h = H(x)["landmarks"]
        return {"landmarks": (H(x2)["landmarks"] - h).abs().mean()}

    def weights(self):
        return {**super().weights(), "landmarks": float(self.config["landmark_weight"])}


def test_hfld_is_eye_plus_the_regulariser_bit_for_bit(backbone, instruments):
    ctx = make_ctx(backbone, instruments)
    kw = {**TINY, "steps": 3, "landmark_weight": 1e2}
    fits = [cls(**kw) for cls in (PreRefactorHFLD, HFLD, get_plugins().methods.get("baseline+hfld").load())]
    for ed in fits:
        ed.fit(ctx)
    assert fits[0].log["terms"] == fits[1].log["terms"] == ["loss", "reg", "content", "landmarks"]
    for ed in fits[1:]:
        assert torch.equal(ed.T, fits[0].T) and torch.equal(ed.log["values"], fits[0].log["values"])
    assert HFLD.config == PreRefactorHFLD.config      # the same cache key as before


@pytest.mark.slow
@pytest.mark.parametrize("base", ["baseline", "latent-transformer", "adatrans"])
def test_weight_zero_is_the_plain_method_bit_for_bit(backbone, instruments, base):
    methods = get_plugins().methods
    ctx = make_ctx(backbone, instruments)
    plain = methods.create(base, steps=3, **TINY)
    zero = methods.create(f"{base}+hfld", steps=3, landmark_weight=0.0, **TINY)
    plain.fit(ctx)
    zero.fit(ctx)
    assert zero.log["terms"] == plain.log["terms"] and "landmarks" not in zero.log["terms"]
    assert torch.equal(zero.T, plain.T) and torch.equal(zero.log["values"], plain.log["values"])
    assert "faceapi-landmarks" not in zero.instruments_used(ctx)
    on = methods.create(f"{base}+hfld", **TINY)
    assert "faceapi-landmarks" in on.instruments_used(ctx)


@pytest.mark.parametrize("base", ["latent-transformer", "adatrans"])
def test_the_landmark_term_reaches_the_network(backbone, instruments, base):
    ed = get_plugins().methods.create(f"{base}+hfld", batch_size=2)
    ctx = make_ctx(backbone, instruments)
    g = torch.Generator().manual_seed(0)
    T = ed.init_params(ctx, g).requires_grad_(True)
    prepare(ed, ctx)
    terms = ed.losses(ctx, T, 0)
    assert set(terms) == set(ed.weights()) and "landmarks" in terms and terms["landmarks"].item() > 0
    (grad,) = torch.autograd.grad(terms["landmarks"], [T])
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


# -- learning and editing --------------------------------------------------------------------------

FITS = {"latent-transformer": {"steps": 30, "batch_size": 4, "lr": 3e-2, "preserve_attrs": []},
        "adatrans": {"steps": 30, "batch_size": 4, "lr": 3e-2, "preserve_attrs": [], "n_steps": 2}}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FITS))
def test_fit_reduces_its_loss_and_moves_r_k_as_requested(backbone, instruments, name):
    ctx = make_ctx(backbone, instruments)
    ed = get_plugins().methods.create(name, **FITS[name])
    ed.fit(ctx)
    g = torch.Generator().manual_seed(int(ed.config["seed"]) * 1_000_003 + int(ctx.seed))   # the fit's init, replayed
    T0 = ed.init_params(ctx, g)
    assert not torch.equal(ed.T, T0) and torch.isfinite(ed.history("loss")).all()
    before, after = held_out(ed, ctx, T0, "cls"), held_out(ed, ctx, ed.T, "cls")
    assert after < before - 0.02, (before, after)
    lat = ctx.latents(16, seed=5)
    base = ctx.score_latents(lat, ATTR)
    s = 1.0 if name == "latent-transformer" else 2.0     # adatrans: two steps
    up, down = (ctx.score_latents(ed.edit(lat, ATTR, v), ATTR) for v in (s, -s))
    assert (up - base).mean() > 0.05 and (down - base).mean() < -0.05, ((up - base).mean(), (down - base).mean())
    assert torch.equal(ed.edit(lat, ATTR, 0.0), lat)


def test_edits_are_batched_and_continuous_in_strength(backbone, instruments):
    ctx = make_ctx(backbone, instruments)
    lat = ctx.latents(3, seed=5)
    for name, s in (("latent-transformer", [0.5, -1.0, 0.0]), ("adatrans", [1.5, -2.0, 0.0])):
        ed = get_plugins().methods.create(name, steps=1, **TINY)
        ed.fit(ctx)
        batched = ed.edit(lat, ATTR, torch.tensor(s))
        single = torch.cat([ed.edit(lat[i:i + 1], ATTR, s[i]) for i in range(3)])
        torch.testing.assert_close(batched, single, atol=1e-6, rtol=0)
        near = ed.edit(lat[:1], ATTR, s[0] + 1e-4)
        assert (near - batched[:1]).abs().max() < 1e-2     # no jump at a fractional strength
        with pytest.raises(BenchError, match="not fitted"):
            ed.edit(lat, "Bald", 1.0)


# -- resume ----------------------------------------------------------------------------------------

@pytest.mark.slow      # 24-27 s each on 2 shared cores under load
@pytest.mark.parametrize("name", ["latent-transformer+hfld", "adatrans"])
def test_resume_after_a_kill_is_exact(backbone, instruments, tmp_path, name):
    class Killed(Exception):
        pass

    def kill(n_saves):
        if n_saves == 1:        # after step 2 (checkpoints every 2 steps)
            raise Killed

    def editor():
        kw = {"landmark_weight": 1e2} if "+" in name else {}
        ed = get_plugins().methods.create(name, steps=4, **kw, **TINY)
        ed.checkpoint_steps = 2
        return ed

    with pytest.raises(Killed):
        fit_or_load(editor(), make_ctx(backbone, instruments, cache_dir=tmp_path / "a", on_checkpoint=kill))
    ctx = make_ctx(backbone, instruments, cache_dir=tmp_path / "a")
    path = artifact_path(editor(), ctx)
    partial = path.with_name(path.stem + ".partial.safetensors")
    assert not path.exists() and Checkpointer(partial).load()["step"] == 2
    resumed = fit_or_load(editor(), ctx)
    assert not resumed.cache_hit and path.exists() and not partial.exists()
    whole = fit_or_load(editor(), make_ctx(backbone, instruments, cache_dir=tmp_path / "b"))
    assert path.read_bytes() == (tmp_path / "b" / name / path.name).read_bytes()
    again = fit_or_load(editor(), make_ctx(backbone, instruments, cache_dir=tmp_path / "a"))
    assert again.cache_hit and torch.equal(again.T, whole.T)
    lat = ctx.latents(4, seed=5)
    assert torch.equal(again.edit(lat, ATTR, 0.7), whole.edit(lat, ATTR, 0.7))


# -- interfacegan(-cond)+hfld: a loss-refined direction instead of (or on top of) the projection -----

@pytest.mark.slow      # 24 s on 2 shared cores under load
def test_interfacegan_cond_takes_the_regulariser(backbone, instruments):
    from latent_edit_bench.methods.regularisers import landmark_loss

    methods = get_plugins().methods
    ctx = make_ctx(backbone, instruments)
    small = {"n_samples": 128, "ratio": 0.1, "condition_on": ["Smiling"]}
    plain = methods.create("interfacegan-cond", **small)
    zero = methods.create("interfacegan-cond+hfld", landmark_weight=0.0, **small)
    on = methods.create("interfacegan-cond+hfld", landmark_weight=1e3, refine_steps=30, **small)
    assert "refine_steps" not in plain.config and on.config["refine_steps"] == 30
    for ed in (plain, zero, on):
        ed.fit(ctx)
    assert torch.equal(zero.per_attr[ATTR]["direction"], plain.per_attr[ATTR]["direction"])
    assert zero.per_attr[ATTR]["sigma"] == plain.per_attr[ATTR]["sigma"] and "refine_log" not in zero.per_attr[ATTR]
    a = on.per_attr[ATTR]
    assert a["refine_terms"] == ["loss", "fidelity", "landmarks"] and 0.5 < a["cos_to_unrefined"] < 1.0
    # held-out samples: the refined direction moves the landmarks less per unit of latent distance
    H = ctx.instrument("faceapi-landmarks")
    lat = ctx.latents(32, seed=7)
    with torch.no_grad():
        x = backbone.synthesize(lat)
        moved = [float(landmark_loss(H, x, backbone.synthesize(ed.edit(lat, ATTR, 2.0)))) for ed in (plain, on)]
    assert moved[1] < 0.9 * moved[0], moved     # measured: 0.0138 -> 0.0104
    # the landmark net's weights enter the cache key (loaded on demand into a fresh pool)
    fresh = FitContext(backbone, {"probe": instruments["probe"]}, attributes=(ATTR,), seed=0, cache_dir="unused",
                      load_instrument=get_plugins().instruments.create)
    assert "faceapi-landmarks" in on.instruments_used(fresh) and artifact_path(on, fresh) != artifact_path(zero, fresh)


def test_network_editors_on_a_small_stylegan2_w_plus(instruments):
    """Per-layer shapes: W+ with several layers (a tiny random StyleGAN2; no FFHQ weights here)."""
    from latent_edit_bench.backbones.stylegan2 import Generator, StyleGAN2Backbone

    torch.manual_seed(0)
    g = Generator(16, style_dim=32, n_mlp=2, channel_multiplier=1, max_channels=16)
    bb = StyleGAN2Backbone(g.eval(), None, name="tiny")
    ctx = FitContext(bb, instruments, attributes=(ATTR,), seed=0, load_instrument=get_plugins().instruments.create)
    lat = ctx.latents(3, seed=1)
    for name, kw in (("latent-transformer", {}), ("latent-transformer", {"hidden": 8}),
                     ("adatrans", {"hidden": 8, "density_samples": 256})):
        ed = get_plugins().methods.create(name, steps=2, **kw, **TINY)
        ed.fit(ctx)
        assert ed.T.shape[0] == 1 and torch.isfinite(ed.history("loss")).all()
        e = ed.edit(lat, ATTR, torch.tensor([1.0, -0.5, 0.0]))
        assert e.shape == lat.shape == (3, bb.n_layers, 32) and torch.equal(e[2], lat[2]) and not torch.equal(e[0], lat[0])
