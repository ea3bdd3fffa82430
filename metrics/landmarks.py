"""``landmarks``: how far the 68 facial landmarks move, in inter-ocular distances of the original face.

iBUG 68-point scheme: 17-26 brows, 36-41 and 42-47 the eyes, 48-67 the mouth (expression lives there).
"""

from __future__ import annotations

from bench.metric import EditSet, Metric, mean_of

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
        o, a, b = s.original["landmarks"], s.x0["landmarks"], s.x1["landmarks"]
        iod = (o[:, 42:48].mean(1) - o[:, 36:42].mean(1)).norm(dim=-1)   # eye centre to eye centre
        return {"x0_x1": displacement(a, b, iod), "orig_x0": displacement(o, a, iod),
                "orig_x1": displacement(o, b, iod), "x0_x1_mouth": displacement(a, b, iod, MOUTH),
                "x0_x1_eyes_brows": displacement(a, b, iod, EYES_BROWS)}

    def quantities(self, attr, columns):
        t = dict(better="lower", table="landmarks")
        return [
            mean_of("x0_x1", label="landmark displacement X0 vs X1 (inter-ocular distances)", **t),
            mean_of("orig_x0", label="landmark displacement original vs X0 (inter-ocular distances)", **t),
            mean_of("orig_x1", label="landmark displacement original vs X1 (inter-ocular distances)", **t),
            mean_of("x0_x1_mouth", label="mouth landmark displacement X0 vs X1 (inter-ocular distances)", **t),
            mean_of("x0_x1_eyes_brows",
                    label="eye and brow landmark displacement X0 vs X1 (inter-ocular distances)", **t),
        ]
