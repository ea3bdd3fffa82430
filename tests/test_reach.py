"""Issue #4: on the embedded backbone the matched protocol reaches its targets for most samples.

Every method is fitted for Male and Bald on the DCGAN with ``probe`` as R: the closed-form ones
with the quick preset, EYE/HFLD with the quick preset's lr (3e-3) and strength range (±3) but
``EYE_STEPS`` steps instead of 400 (the suite's time budget). N held-out samples (seed 1000) are
matched-edited to R_k = 0 and to R_k = 1; each edit is rendered and scored again here, and a sample
counts as reached when |R_k - target| <= tol, i.e. when the achieved change R_k(edit) - R_k(w)
is within tol of the asked change target - R_k(w).

``MOST`` lists the (method, attribute, target) combinations asserted to reach for most samples
(> 0.5); every other combination is in ``SHORT`` with the lower bound asserted for it and the reason
it falls short. Measured fractions are in the comments; the closed-form methods' equal the quick
preset's table in docs/methods.md (same fits, same 32 samples). About 2.5 minutes on 2 idle cores.
"""

from __future__ import annotations

import math

import pytest
import torch

from bench.attributes import CELEBA_ATTRIBUTES
from bench.instruments.probe import CALIBRATION
from bench.method import FitContext, fit_or_load
from bench.plugins import get_plugins
from bench.presets import method_config
from bench.protocol import DEFAULT_TOL, matched_edit

TORCH_THREADS = 2
N, SEED = 32, 1000
ATTRS = ("Male", "Bald")
METHODS = ("baseline", "hfld", "ganspace", "interfacegan", "sefa")
EYE_STEPS = 200

# reached by most samples (fraction > 0.5); the measured fraction in the comment
MOST = {
    ("baseline", "Male", 1.0),       # 0.81
    ("ganspace", "Male", 1.0),       # 0.69
    ("interfacegan", "Male", 1.0),   # 0.91
    ("sefa", "Male", 1.0),           # 0.88
    ("ganspace", "Bald", 0.0),       # 0.81
    ("sefa", "Bald", 0.0),           # 0.75
    ("hfld", "Male", 1.0),           # 0.59 (quick preset: landmark weight 1e2)
}
MALE0 = ("face-api's gender net scores 99% of DCGAN faces above 0.1 (1% quantile 0.11 over 2048 samples); "
         "inside the ranges where faces stay faces few samples get there")
HFLD = ("hfld's landmark term resists the edit: in the test's 200 steps T learns Bald more slowly than "
        "baseline's (0.41 at the preset's 400 steps, N = 32)")
BALD1 = "Bald <= 0.76 for every image by the probe's definition (test_bald_one_is_beyond_the_probe)"
# every other combination: (lower bound asserted, why it falls short); 0.0 = no claim
SHORT = {
    ("baseline", "Male", 0.0): (0.0, MALE0),                  # 0.00
    ("ganspace", "Male", 0.0): (0.1, MALE0),                  # 0.22
    ("interfacegan", "Male", 0.0): (0.05, MALE0),             # 0.16
    ("sefa", "Male", 0.0): (0.0, MALE0 + "; SeFa's chosen component raises Male only"),   # 0.00
    ("baseline", "Bald", 0.0): (0.35, f"T after {EYE_STEPS} of the quick preset's 400 steps (400: 0.72)"),   # 0.50
    ("interfacegan", "Bald", 0.0): (0.4, "the SVM normal is a weaker Bald direction than GANSpace's and "
                                         "SeFa's components: half the samples"),   # 0.53
    ("hfld", "Male", 0.0): (0.0, MALE0),                                               # 0.00
    ("hfld", "Bald", 0.0): (0.2, HFLD),                                                # 0.31
    **{(m, "Bald", 1.0): (0.0, BALD1) for m in METHODS},                              # 0.00
}


def config(method: str) -> dict:
    cfg = method_config("quick", method)
    if method in ("baseline", "hfld"):
        cfg["steps"] = EYE_STEPS
    return cfg


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    plugins = get_plugins()
    if "probe" not in plugins.instruments:
        pytest.skip("probe not registered")
    backbone = plugins.backbones.create("dcgan")
    ctx = FitContext(backbone, {"probe": plugins.instruments.create("probe")}, attributes=ATTRS, seed=0,
                     device=torch.device("cpu"), cache_dir=tmp_path_factory.mktemp("cache"),
                     attribute_instrument="probe")
    lat = ctx.latents(N, seed=SEED)
    out = {}
    for name in METHODS:
        ed = fit_or_load(plugins.methods.create(name, **config(name)), ctx)
        for attr in ATTRS:
            r0 = ctx.score_latents(lat, attr)
            lo, hi = ed.strength_range(attr)
            for target in (0.0, 1.0):
                edited, _, _, s = matched_edit(ed, ctx, lat, attr, target)
                assert torch.all((s >= lo - 1e-6) & (s <= hi + 1e-6))
                truth = ctx.score_latents(edited, attr)            # rendered and scored again
                change_err = ((truth - r0) - (target - r0)).abs()   # achieved vs asked change of R_k
                frac = float((change_err <= DEFAULT_TOL).float().mean())
                out[(name, attr, target)] = (frac, truth)
                print(f"{name} {attr} -> {target:g}: reached {frac:.2f}; R_k {float(r0.mean()):.2f} -> "
                      f"{float(truth.mean()):.2f}; |s| {float(s.abs().mean()):.2f} of {hi:.2f}")
    return out


def test_every_combination_is_claimed_or_explained():
    combos = {(m, a, t) for m in METHODS for a in ATTRS for t in (0.0, 1.0)}
    assert MOST | set(SHORT) == combos and not MOST & set(SHORT)


@pytest.mark.slow
def test_most_samples_reach(reach):
    bad = {k: round(reach[k][0], 3) for k in MOST if not reach[k][0] > 0.5}
    assert not bad, f"combinations below 'most samples': {bad}"


@pytest.mark.slow
def test_short_combinations_hold_their_floor(reach):
    bad = {k: (round(reach[k][0], 3), floor, why) for k, (floor, why) in SHORT.items() if reach[k][0] < floor}
    assert not bad, bad


def test_bald_one_is_beyond_the_probe():
    """Bald = sigmoid((f - centre) / scale) with f = -|hair colour - skin colour| <= 0, so no image
    scores above sigmoid(-centre / scale) = 0.76 < 1 - tol: Bald -> 1 cannot be reached by any edit.
    A flat image (hair and skin the same colour) sits at the ceiling; noise images stay under it."""
    centre, scale = CALIBRATION["Bald"]
    ceiling = 1 / (1 + math.exp(centre / scale))
    assert ceiling < 1 - DEFAULT_TOL
    probe = get_plugins().instruments.create("probe")
    flat = torch.tensor([[-0.6, 0.1, 0.5], [0.2, 0.0, -0.3]])[:, :, None, None].expand(-1, -1, 64, 64)
    noise = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    k = CELEBA_ATTRIBUTES.index("Bald")
    with torch.no_grad():
        bald = probe(torch.cat([flat, noise]))["attributes"][:, k]
    assert torch.allclose(bald[:2], torch.tensor(ceiling), atol=1e-4) and torch.all(bald <= ceiling + 1e-6)


@pytest.mark.slow
def test_bald_one_stays_under_the_ceiling(reach):
    centre, scale = CALIBRATION["Bald"]
    ceiling = 1 / (1 + math.exp(centre / scale))
    for name in METHODS:
        frac, truth = reach[(name, "Bald", 1.0)]
        assert frac == 0.0 and float(truth.max()) <= ceiling + 1e-5
