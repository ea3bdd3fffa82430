"""``emotion``: how much the edit moves the expression, in percentage points of the emotion scores (Table V).

Per sample the 7 emotion probabilities (DeepFace order) ×100 of X0 and X1; the headline
``disturbance`` is the per-sample mean over emotions of |E(X1) - E(X0)| (paired, SPEC 5), beside the
paper's set-level |mean E(X1) - mean E(X0)| per emotion.
"""

from __future__ import annotations

import numpy as np

from bench.measure import DEEPFACE_EMOTIONS
from bench.metric import EditSet, Metric, Quantity, mean_of


class Emotion(Metric):
    name = "emotion"
    title = "Emotion disturbance (Table V)"
    needs = ("emotion",)
    # the emotion instrument named in labels; None: taken from the EditSet at measure time
    # (a summarise without measure, e.g. from a run folder, passes the manifest's instruments["emotion"])
    config = {"instrument": None}

    def measure(self, s: EditSet):
        if self.config["instrument"] is None:
            self.config["instrument"] = s.instruments.get("emotion")
        e0, e1, eo = (100 * t["emotion"] for t in (s.x0, s.x1, s.original))
        cols = {}
        for i, emo in enumerate(DEEPFACE_EMOTIONS):
            cols |= {f"x0.{emo}": e0[:, i], f"x1.{emo}": e1[:, i], f"abs.{emo}": (e1[:, i] - e0[:, i]).abs(),
                     f"abs_orig_x0.{emo}": (e0[:, i] - eo[:, i]).abs(),
                     f"abs_orig_x1.{emo}": (e1[:, i] - eo[:, i]).abs()}
        cols["disturbance"] = (e1 - e0).abs().mean(1)
        return cols

    def quantities(self, attr, columns):
        inst, t = self.config["instrument"] or "emotion instrument", dict(table="V")
        qs = [mean_of("disturbance", label=f"emotion disturbance ({inst}), pp", better="lower", **t)]
        for emo in DEEPFACE_EMOTIONS:
            x0, x1 = f"x0.{emo}", f"x1.{emo}"
            qs += [
                mean_of(f"abs.{emo}", f"paired.{emo}", label=f"mean |E(X1) - E(X0)| {emo} ({inst}), pp",
                        better="lower", **t),
                Quantity(f"set.{emo}", lambda m, a=x0, b=x1: np.abs(m[b] - m[a]), (x0, x1),
                         label=f"|mean E(X1) - mean E(X0)| {emo} ({inst}), pp", better="lower", **t),
                mean_of(x0, label=f"mean E(X0) {emo} ({inst}), %", **t),
                mean_of(x1, label=f"mean E(X1) {emo} ({inst}), %", **t),
            ]
        return qs
