"""``emotion``: how much the edit moves the expression, in percentage points of the emotion scores (Table V).

Per sample the 7 emotion probabilities (DeepFace order) ×100 of the original and the edit; the
headline ``disturbance`` is the per-sample mean over emotions of |E(edit) - E(original)| (paired,
SPEC 5), beside the paper's set-level |mean E(edit) - mean E(original)| per emotion.
"""

from __future__ import annotations

import numpy as np

from latent_edit_bench.attributes import EMOTION_LABELS as DEEPFACE_EMOTIONS
from latent_edit_bench.contracts.metric import EditSet, Metric, Quantity, mean_of


class Emotion(Metric):
    name = "emotion"
    title = "Emotion disturbance (Table V)"
    needs = ("emotion",)
    # the emotion instrument named in labels; None: taken from the EditSet at measure time
    config = {"instrument": None}

    def measure(self, s: EditSet):
        if self.config["instrument"] is None:
            self.config["instrument"] = s.instruments.get("emotion")
        e0, e1 = (100 * t["emotion"] for t in (s.original, s.edited))
        cols = {}
        for i, emo in enumerate(DEEPFACE_EMOTIONS):
            cols |= {f"before.{emo}": e0[:, i], f"after.{emo}": e1[:, i], f"abs.{emo}": (e1[:, i] - e0[:, i]).abs()}
        cols["disturbance"] = (e1 - e0).abs().mean(1)
        return cols

    def quantities(self, attr, columns):
        inst, t = self.config["instrument"] or "emotion instrument", dict(table="V")
        qs = [mean_of("disturbance", label=f"emotion disturbance ({inst}), pp", better="lower", **t)]
        for emo in DEEPFACE_EMOTIONS:
            b, a = f"before.{emo}", f"after.{emo}"
            qs += [
                mean_of(f"abs.{emo}", f"paired.{emo}", label=f"mean |E(edit) - E(orig)| {emo} ({inst}), pp",
                        better="lower", **t),
                Quantity(f"set.{emo}", lambda m, a=a, b=b: np.abs(m[a] - m[b]), (b, a),
                         label=f"|mean E(edit) - mean E(orig)| {emo} ({inst}), pp", better="lower", **t),
                mean_of(b, label=f"mean E(orig) {emo} ({inst}), %", **t),
                mean_of(a, label=f"mean E(edit) {emo} ({inst}), %", **t),
            ]
        return qs
