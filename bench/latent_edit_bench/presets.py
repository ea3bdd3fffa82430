"""Run presets: the number of evaluation samples N and fit seeds K of ``quick`` and ``paper``, and the
run's default judges. Each method owns its settings under each preset (``Editor.presets``, read with
``plugins.methods.preset_config``): ``quick`` for CPU runs on the embedded DCGAN, ``paper`` the
paper's schedule for EYE/HFLD (SPEC section 2) and the official ones where a method has them.
"""

from __future__ import annotations

import copy

from latent_edit_bench.errors import BenchError

# The independent judge of each attribute (an instrument output no method trains against; --judge adds
# or replaces), and of the emotion: run defaults, read by the judge instrument and the judge metric.
DEFAULT_JUDGES = {"Male": "oarriaga-gender.male", "Smiling": "oarriaga-emotion.emotion[happy]"}
DEFAULT_EMOTION_JUDGE = "oarriaga-emotion"

PRESETS = {   # the methods' own settings under each preset: Editor.presets
    "quick": {"n_eval": 32, "fit_seeds": 3},
    "paper": {"n_eval": 1000, "fit_seeds": 3},
}


def preset(name: str) -> dict:
    if name not in PRESETS:
        raise BenchError(f"unknown preset {name!r}; valid presets: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
