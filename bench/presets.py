"""Fit/evaluation presets: per-method config overrides plus the number of evaluation samples N.

``quick`` is for CPU smoke runs (the methods' defaults or smaller); ``paper`` follows the paper's
schedule for EYE/HFLD (SPEC section 2: 50k steps, batch 4, lr 1e-4) and N = 1000 samples; the
closed-form methods keep their defaults there (their documented settings).
"""

from __future__ import annotations

import copy

from .errors import BenchError

_EYE_PAPER = {"steps": 50_000, "batch_size": 4, "lr": 1e-4}   # = methods.eye.PAPER_PRESET
_EYE_QUICK = {"steps": 50}

PRESETS = {
    "quick": {
        "n_eval": 32,
        "methods": {
            "sefa": {"n_samples": 16, "top_k": 5},               # 160 renders: seconds with probe on CPU
            "ganspace": {"n_samples": 16, "top_k": 5, "n_pca_samples": 256},
            "interfacegan": {"n_samples": 128, "ratio": 0.08},       # 8% of 128: ~10 per side for the SVM
            "interfacegan-cond": {"n_samples": 128, "ratio": 0.08},
            "baseline": _EYE_QUICK,
            "hfld": _EYE_QUICK,
        },
    },
    "paper": {
        "n_eval": 1000,
        "methods": {"baseline": _EYE_PAPER, "hfld": _EYE_PAPER},
    },
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise BenchError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def method_config(preset_name: str, method: str) -> dict:
    """The config overrides of ``method`` under a preset ({} = the method's defaults)."""
    return preset(preset_name)["methods"].get(method, {})
