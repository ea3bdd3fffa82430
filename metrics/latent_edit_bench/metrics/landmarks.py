"""``landmarks``: how far the 68 facial landmarks move, in inter-ocular distances of the original face.

iBUG 68-point scheme: 17-26 brows, 36-41 and 42-47 the eyes, 48-67 the mouth (expression lives there).
"""

from __future__ import annotations

from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of
from latent_edit_bench.faces import EYES_BROWS_68 as EYES_BROWS, MOUTH_68 as MOUTH, displacement, inter_ocular_68


class Landmarks(Metric):
    name = "landmarks"
    title = "Landmark displacement"
    needs = ("landmarks",)

    def measure(self, s: EditSet):
        o, e = s.original["landmarks"], s.edited["landmarks"]
        iod = inter_ocular_68(o)
        return {"displacement": displacement(o, e, iod), "mouth": displacement(o, e, iod, MOUTH),
                "eyes_brows": displacement(o, e, iod, EYES_BROWS)}

    def quantities(self, attr, columns):
        t = dict(better="lower", table="landmarks")
        unit = "(inter-ocular distances)"
        return [mean_of("displacement", label=f"landmark displacement, original vs edit {unit}", **t),
                mean_of("mouth", label=f"mouth landmark displacement {unit}", **t),
                mean_of("eyes_brows", label=f"eye and brow landmark displacement {unit}", **t)]
