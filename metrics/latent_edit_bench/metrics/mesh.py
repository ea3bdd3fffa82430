"""``mesh``: how far MediaPipe's 468 face-mesh points move, in inter-ocular distances of the original face.

The dense counterpart of ``landmarks`` (68 iBUG points): same unit, regions from the mesh topology
(bench/latent_edit_bench/faces.py): lips (40 points), eyes (2 x 16) and brows (28). The inter-ocular
distance is between the centres of the two eye rings. Opt-in (``--metrics ...,mesh``): it runs
``mediapipe-facemesh`` on every image.
"""

from __future__ import annotations

from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of
from latent_edit_bench.faces import BROWS, LEFT_EYE, LIPS, RIGHT_EYE, displacement, eye_distance

EYES_BROWS = list(RIGHT_EYE + LEFT_EYE + BROWS)


class Mesh(Metric):
    name = "mesh"
    title = "Face-mesh displacement (468 points)"
    needs = ("mesh",)

    def measure(self, s: EditSet):
        o, e = s.original["mesh"], s.edited["mesh"]
        iod = eye_distance(o, list(RIGHT_EYE), list(LEFT_EYE))
        return {"displacement": displacement(o, e, iod), "mouth": displacement(o, e, iod, list(LIPS)),
                "eyes_brows": displacement(o, e, iod, EYES_BROWS)}

    def quantities(self, attr, columns):
        t = dict(better="lower", table="mesh")
        unit = "(inter-ocular distances)"
        return [mean_of("displacement", label=f"mesh displacement, original vs edit, 468 points {unit}", **t),
                mean_of("mouth", label=f"lip mesh displacement {unit}", **t),
                mean_of("eyes_brows", label=f"eye and brow mesh displacement {unit}", **t)]
