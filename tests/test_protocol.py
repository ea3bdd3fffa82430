"""The matched edit protocol (bisection on each method's own strength) and ``bench fit``.

The bisection is checked exactly on a real, analytically known pipeline (``Ramp``: a generator whose
image is a constant grey tanh(w_0), an instrument scoring its mean brightness through a sigmoid, an
editor adding strength to w_0), then on the real DCGAN with ``probe`` and a fitted InterFaceGAN.
"""

from __future__ import annotations

import math

import pytest
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.contracts.backbone import Backbone
from latent_edit_bench.contracts.instrument import Instrument, Output
from latent_edit_bench.contracts.method import Editor, FitContext, as_strength
from latent_edit_bench.pipeline.session import Session
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.pipeline.protocol import DEFAULT_TOL, matched_edit, native_edit
from latent_edit_bench.methods.interfacegan import InterFaceGAN
from conftest import usable_probe

TORCH_THREADS = 1
K, ATTR = 4.0, "Pale_Skin"


class Ramp(Backbone):
    """Image = tanh(w_0) everywhere: brightness is a known monotone function of the latent."""
    name, resolution, z_dim, latent_dim, n_layers, edit_space = "ramp", 8, 1, 1, 1, "z"

    def to_edit(self, z):
        return z[:, None, :]

    def synthesize(self, latents):
        return torch.tanh(latents[:, 0, :1])[:, :, None, None].expand(-1, 3, 8, 8)


class Brightness(Instrument):
    name = "brightness"
    outputs = (Output("attributes", (40,), (0.0, 1.0), "probability", CELEBA_ATTRIBUTES),)

    def forward(self, images):
        out = torch.full((images.shape[0], 40), float("nan"), dtype=images.dtype)
        out[:, CELEBA_ATTRIBUTES.index(ATTR)] = torch.sigmoid(K * images.mean((1, 2, 3)))
        return {"attributes": out}


class Shift(Editor):
    """w_0 + sign * strength, strength in [-1, 1]."""
    name, config = "shift", {"sign": 1.0}

    def fit(self, ctx):
        pass

    def edit(self, latents, attr, strength):
        return latents + self.config["sign"] * as_strength(strength, latents)

    def strength_range(self, attr):
        return (-1.0, 1.0)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass

    @property
    def attributes(self):
        return (ATTR,)


def ramp_score(w0):
    return torch.sigmoid(K * torch.tanh(torch.as_tensor(w0, dtype=torch.float64)))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_bisection_reaches_exactly_where_reachable(sign):
    ctx = FitContext(Ramp(), {"brightness": Brightness()}, attributes=(ATTR,))
    w0 = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.5, 3.0])
    lat = w0[:, None, None]
    ed = Shift(sign=sign)
    for target in (0.0, 1.0, 0.5):
        edited, achieved, reached, s = matched_edit(ed, ctx, lat, ATTR, target, steps=20)
        ends = torch.stack([ramp_score(w0 + sign * e) for e in (-1.0, 1.0)], 1)   # R at the range ends
        best = ends.gather(1, (ends - target).abs().argmin(1, keepdim=True))[:, 0]
        crossed = (ends.min(1).values <= target) & (target <= ends.max(1).values)
        reachable = crossed | ((best - target).abs() <= DEFAULT_TOL)
        # the ends straddling the tolerance band would make "reached" ambiguous: keep the fixture clear
        assert torch.all(((best[~crossed] - target).abs() - DEFAULT_TOL).abs() > 0.01)
        assert torch.equal(reached, reachable), (target, best, achieved)
        truth = ramp_score(edited[:, 0, 0])                         # recomputed independently
        assert torch.allclose(achieved.double(), truth, atol=1e-6)
        assert torch.all((truth[reached] - target).abs() <= DEFAULT_TOL)
        assert torch.all(s.abs() <= 1.0)
        already = (ramp_score(w0) - target).abs() < DEFAULT_TOL / 2   # past the aim: left unedited
        assert torch.all(s[already] == 0) and already.any()
        if target == 0.5:
            assert torch.all((truth[crossed] - 0.5).abs() < 1e-4) and crossed.sum() >= 3   # a bisection
        unreach = ~reachable
        assert torch.all((truth[unreach] - target).abs() > DEFAULT_TOL)
        # unreachable: the range end towards the target
        want = (ends - target).abs().argmin(1).float() * 2 - 1
        assert torch.equal(s[unreach], want[unreach])
    assert torch.equal(native_edit(ed, lat, ATTR, 0.25), lat + sign * 0.25)


class Bump(Instrument):
    """R = sigmoid(12 (0.3 - m^2)) of the mean brightness m = tanh(w_0): a peak at w_0 = 0, not monotone."""
    name = "bump"
    outputs = Brightness.outputs

    def forward(self, images):
        out = torch.full((images.shape[0], 40), float("nan"), dtype=images.dtype)
        out[:, CELEBA_ATTRIBUTES.index(ATTR)] = torch.sigmoid(12 * (0.3 - images.mean((1, 2, 3)) ** 2))
        return {"attributes": out}


def test_scan_finds_the_first_crossing_of_a_non_monotone_score():
    """R rises over the peak and falls again inside [-1, 1]: both range ends can miss the aim while
    the middle crosses it. The edit must be the crossing nearest to s = 0 (computed analytically)."""
    ctx = FitContext(Ramp(), {"bump": Bump()}, attributes=(ATTR,))
    w0 = torch.tensor([-1.1, -0.5, 0.0, 0.4, 1.0, 1.5], dtype=torch.float64)
    lat = w0[:, None, None].float()
    R = lambda w: torch.sigmoid(12 * (0.3 - torch.tanh(torch.as_tensor(w, dtype=torch.float64)) ** 2))  # noqa: E731
    for target in (1.0, 0.0):
        aim = 1 - DEFAULT_TOL / 2 if target else DEFAULT_TOL / 2
        logit = math.log(aim / (1 - aim))
        w_aim = math.atanh(math.sqrt(0.3 - logit / 12))          # |w| where R = aim
        # crossings s = ±w_aim - w0 inside [-1, 1]; the first is the one nearest to 0
        cand = torch.stack([w_aim - w0, -w_aim - w0], 1)
        cand = torch.where(cand.abs() <= 1, cand, torch.full_like(cand, float("inf")))
        first = cand.gather(1, cand.abs().argmin(1, keepdim=True))[:, 0]
        already = (R(w0) >= aim) if target else (R(w0) <= aim)
        edited, achieved, reached, s = matched_edit(Shift(), ctx, lat, ATTR, target, steps=20)
        truth = R(edited[:, 0, 0])
        assert torch.allclose(achieved.double(), truth, atol=1e-5)
        crossing = torch.isfinite(first) & ~already
        assert torch.allclose(s[crossing].double(), first[crossing], atol=1e-4), (target, s, first)
        assert torch.all(reached[crossing]) and torch.all(s[already] == 0)
        ends_miss = crossing & ~(((R(w0 - 1) - aim) * (R(w0) - aim) <= 0) | ((R(w0 + 1) - aim) * (R(w0) - aim) <= 0))
        if target:
            assert ends_miss.sum() >= 2            # w0 = -0.5 and 0.4: only the middle of the range crosses
        gone = ~crossing & ~already                # no crossing in range: the scanned point nearest the target
        assert torch.all(~reached[gone])
        if target:                                 # w0 = 1.5: the peak is out of reach; R is highest at s = -1
            assert gone[5] and s[5] == -1.0 and abs(float(achieved[5]) - float(R(0.5))) < 1e-5


def test_matched_interfacegan_on_dcgan_probe():
    ctx = FitContext(get_plugins().backbones.create("dcgan"), {"probe": usable_probe()}, attributes=("Male",))
    ed = InterFaceGAN(n_samples=96, ratio=0.1)
    ed.fit(ctx)
    lat = ctx.latents(8, seed=21)
    r0 = ctx.score_latents(lat, "Male")
    out = {}
    for target in (0.0, 1.0):
        edited, achieved, reached, s = matched_edit(ed, ctx, lat, "Male", target)
        truth = ctx.score_latents(edited, "Male")                # render + score again, independently
        assert torch.allclose(truth, achieved, atol=1e-4)
        assert torch.all((truth[reached] - target).abs() <= DEFAULT_TOL)
        lo, hi = ed.strength_range("Male")
        assert torch.all((s >= lo - 1e-6) & (s <= hi + 1e-6))
        out[target] = (truth, reached)
        print(f"interfacegan Male target {target}: reached {int(reached.sum())}/8; R0 {r0.mean():.3f} -> {truth.mean():.3f}")
    assert (out[1.0][0] - r0).mean() > 0.1 and (r0 - out[0.0][0]).mean() > 0.1
    assert (out[1.0][0] - out[0.0][0]).mean() > 0.3
    assert (out[1.0][1].sum() + out[0.0][1].sum()) >= 1   # reach fractions are reported, not pinned


@pytest.mark.parametrize("args, needle", [
    (["--methods", "nope"], "valid methods: adatrans, baseline, ganspace"),
    (["--methods", "sefa", "--attrs", "Bogus"], "unknown attribute 'Bogus'; valid: 5_o_Clock_Shadow"),
    (["--methods", "sefa", "--instrument", "nope"], "valid instruments"),
    (["--methods", "sefa", "--attrs", "Male,Eyeglasses"], "does not support 'Eyeglasses'; supported: Bald"),
    (["--methods", "sefa", "--fit-seeds", "0"], "--fit-seeds must be at least 1"),
])
def test_fit_usage_errors(args, needle, bench_cli):
    res = bench_cli("fit", *args)   # in-process: a traceback fails the test
    assert res.exit_code == 2 and needle in res.stderr, res.stderr


@pytest.mark.slow
def test_fit_cli_stores_then_hits_cache(tmp_path, bench_cli):
    args = ["fit", "--methods", "sefa", "--attrs", "Male", "--fit-seeds", "1", "--cache", str(tmp_path), "--device",
            "cpu"]
    first = bench_cli(*args)
    assert first.exit_code == 0, first.stderr
    assert "sefa: fitted, stored" in first.stdout
    second = bench_cli(*args)
    assert second.exit_code == 0, second.stderr
    assert "sefa: cache hit, loaded" in second.stdout
    assert len(list((tmp_path / "sefa").glob("*.safetensors"))) == 1
    # what `bench fit` stored is what `bench run` loads (same per-attribute, per-seed key)
    from latent_edit_bench.pipeline.run import Run, make_config

    r = Run(make_config("sefa", "Male", fit_seeds=1), tmp_path / "run", session=Session(get_plugins()), cache_dir=tmp_path,
            log=lambda s: None)
    r._load_models()
    assert r.fit("sefa", "Male", 0).cache_hit


# -- the ladder ------------------------------------------------------------------------------------

LEVELS = (-0.3, -0.2, -0.1, 0.1, 0.2, 0.3)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_ladder_reaches_every_reachable_level_and_records_the_rest(sign):
    """On the analytic ramp: each (level, sample) lands within tol of R_k(orig) + level where the range
    allows it (checked against the closed form), and is marked unreached exactly where it does not."""
    from latent_edit_bench.pipeline.protocol import LADDER_TOL, ladder_edit

    ctx = FitContext(Ramp(), {"brightness": Brightness()}, attributes=(ATTR,))
    w0 = torch.tensor([-2.0, -0.6, -0.1, 0.2, 0.7, 1.4, 3.0])
    lat = w0[:, None, None]
    lad = ladder_edit(Shift(sign=sign), ctx, lat, ATTR, LEVELS)   # the default refinement steps
    r0 = ramp_score(w0)
    assert lad.latents.shape == (len(LEVELS), len(w0), 1, 1)
    for li, level in enumerate(LEVELS):
        target = r0 + level
        truth = ramp_score(lad.latents[li, :, 0, 0])                 # recomputed independently
        assert torch.allclose(lad.achieved[li].double(), truth, atol=1e-5)
        assert torch.allclose(lad.target[li].double(), target, atol=1e-6)
        # reachable: the target lies between R at the two range ends (R is monotone in s here)
        lo, hi = ramp_score(w0 - 1), ramp_score(w0 + 1)
        inside = (lo <= target) & (target <= hi)
        assert torch.all(lad.reached[li][inside]), (level, truth, target)
        assert torch.all((truth[inside] - target[inside]).abs() <= LADDER_TOL / 10)   # where refining stops
        beyond = (target < lo - LADDER_TOL) | (target > hi + LADDER_TOL)
        assert torch.all(~lad.reached[li][beyond]) and (beyond.any() or level in (-0.1, 0.1))
        # the edit goes the right way: towards presence raises R, towards absence lowers it
        assert torch.all(torch.sign(truth[inside] - r0[inside]) == math.copysign(1, level))
    assert torch.all(lad.strength.abs() <= 1.0)


def test_ladder_scans_and_refines_only_what_can_still_change():
    """A sample stops scanning once every level has crossed its target, and a pair stops refining once
    it is within tol / 10: the same brackets as a full scan, in fewer renders."""
    from latent_edit_bench.pipeline.protocol import LADDER_TOL, ladder_edit

    class Counting(FitContext):
        scored = 0

        def score_latents(self, latents, attr, batch_size=None):
            Counting.scored += latents.shape[0]
            return super().score_latents(latents, attr, batch_size)

    ctx = Counting(Ramp(), {"brightness": Brightness()}, attributes=(ATTR,))
    w0 = torch.tensor([-0.3, -0.1, 0.0, 0.2])   # R near 0.5: +-0.1 is crossed within a few grid steps
    lad = ladder_edit(Shift(), ctx, w0[:, None, None], ATTR, (-0.1, 0.1), grid=8, steps=0)
    # closed form: the strength where each level is crossed, in grid steps of 1/8; a sample scans both
    # sides up to the step where its last level crosses, after r0 for everyone
    r0 = ramp_score(w0)
    s_t = torch.stack([torch.atanh(torch.logit(r0 + lv) / K) - w0 for lv in (-0.1, 0.1)])
    last = torch.ceil(s_t.abs() * 8).amax(0)
    assert last.max() < 8 and Counting.scored == len(w0) + 2 * int(last.sum())
    assert torch.all(lad.reached)
    scan, Counting.scored = Counting.scored, 0
    lad = ladder_edit(Shift(), ctx, w0[:, None, None], ATTR, (-0.1, 0.1), grid=8, steps=50)
    truth = ramp_score(lad.latents[:, :, 0, 0])
    assert torch.all((truth - lad.target.double()).abs() <= LADDER_TOL / 10)
    assert Counting.scored - scan <= 8 * 3   # 8 pairs: false position is within tol / 10 in a few steps, not 50


def test_ladder_takes_the_crossing_nearest_to_zero_on_a_non_monotone_score():
    from latent_edit_bench.pipeline.protocol import LADDER_TOL, ladder_edit

    ctx = FitContext(Ramp(), {"bump": Bump()}, attributes=(ATTR,))
    w0 = torch.tensor([-0.5, 0.4], dtype=torch.float64)
    R = lambda w: torch.sigmoid(12 * (0.3 - torch.tanh(torch.as_tensor(w, dtype=torch.float64)) ** 2))  # noqa: E731
    lad = ladder_edit(Shift(), ctx, w0[:, None, None].float(), ATTR, (0.1,), steps=8)
    target = R(w0) + 0.1
    w_t = torch.atanh(torch.sqrt(0.3 - torch.logit(target) / 12))   # |w| where R = target
    cand = torch.stack([w_t - w0, -w_t - w0], 1)                      # both crossings; the nearer one wins
    first = cand.gather(1, cand.abs().argmin(1, keepdim=True))[:, 0]
    assert torch.all(lad.reached[0])
    # the nearer crossing (the other one is ~0.6 away), to the search's precision in R (tol / 10)
    assert torch.allclose(lad.strength[0].double(), first, atol=0.02)
    assert torch.all((R(w0 + lad.strength[0].double()) - target).abs() <= LADDER_TOL / 10)
