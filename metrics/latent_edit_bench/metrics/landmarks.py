"""``landmarks``: how far the 68 facial landmarks move, in inter-ocular distances of the original face.

iBUG 68-point scheme: 17-26 brows, 36-41 and 42-47 the eyes, 48-67 the mouth (expression lives there).
"""

from __future__ import annotations

from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of

MOUTH = list(range(48, 68))
EYES_BROWS = list(range(17, 27)) + list(range(36, 48))


def displacement(a, b, iod, points=slice(None)):
    """Mean over the points of the Euclidean distance, per sample, divided by iod [N]."""
    return (a[:, points] - b[:, points]).norm(dim=-1).mean(1) / iod


class Landmarks(Metric):
    name = "landmarks"
    title = "Landmark displacement"
    needs = ("landmarks",)

    def measure(self, s: EditSet):
        o, e = s.original["landmarks"], s.edited["landmarks"]
        iod = (o[:, 42:48].mean(1) - o[:, 36:42].mean(1)).norm(dim=-1)   # eye centre to eye centre
        return {"displacement": displacement(o, e, iod), "mouth": displacement(o, e, iod, MOUTH),
                "eyes_brows": displacement(o, e, iod, EYES_BROWS)}

    def quantities(self, attr, columns):
        t = dict(better="lower", table="landmarks")
        unit = "(inter-ocular distances)"
        return [mean_of("displacement", label=f"landmark displacement, original vs edit {unit}", **t),
                mean_of("mouth", label=f"mouth landmark displacement {unit}", **t),
                mean_of("eyes_brows", label=f"eye and brow landmark displacement {unit}", **t)]
