"""``judge``: did the edit change the attribute, or only the network it was trained against?

Methods train against the attribute instrument R (the "trainer"); the ladder drives R_k to each level.
A judge (bench/latent_edit_bench/instruments/judge.py) scores the same attribute with a different network. Per sample:

    trainer.change   R_k(edit) - R_k(original)
    judge.change     J(edit) - J(original)
    fooled           1 when the judge moved 0 or against the target's direction (J change x sign(level) <= 0):
                     the trainer says reached, the judge disagrees. Its mean is the fraction of reached
                     samples (the run keeps reached samples only); times n, the count.

and, on the originals of the same samples, the trainer-judge Pearson correlation (a function of column
means: E[tj], E[t], E[j], E[t^2], E[j^2]), so it gets the run's bootstrap interval like every quantity.
Beside them, the emotion disturbance measured by a second emotion network. Where no judge scores the
attribute (Bald, hair colours, ... offline), the metric says so in its one row. Whether the judge itself sees
the attribute on the run's backbone is measured apart (validity.csv, docs/validity.md); where it is not
shown to, the report marks these quantities not validated instead of presenting them as a verdict.
"""

from __future__ import annotations

import numpy as np
import torch

from latent_edit_bench.presets import DEFAULT_EMOTION_JUDGE, DEFAULT_JUDGES
from latent_edit_bench.contracts.metric import EditSet, Metric, Quantity, mean_of

from .common import target_index


def _corr(m):
    cov = m["o.tj"] - m["o.t"] * m["o.j"]
    var = (m["o.tt"] - m["o.t"] ** 2) * (m["o.jj"] - m["o.j"] ** 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return cov / np.sqrt(var)


class Judge(Metric):
    name = "judge"
    title = "Independent judge: the target measured by a network the methods do not train against"
    needs = ("attributes", "judge", "judge_emotion")
    config = {"judges": {}, "emotion": DEFAULT_EMOTION_JUDGE, "trainer": None}

    def spec(self, attr: str) -> str | None:
        return {**DEFAULT_JUDGES, **self.config["judges"]}.get(attr)

    def measure(self, s: EditSet):
        if self.config["trainer"] is None:
            self.config["trainer"] = s.instruments.get("attributes")
        k = target_index(s)
        t0, t1 = s.original["attributes"][:, k], s.edited["attributes"][:, k]
        j0, j1 = s.original["judge"][:, k], s.edited["judge"][:, k]
        e0, e1 = (100 * x["judge_emotion"] for x in (s.original, s.edited))
        cols = {"trainer.change": t1 - t0, "emotion.disturbance": (e1 - e0).abs().mean(1)}
        if torch.isfinite(j0).all():
            sign = 1.0 if s.level >= 0 else -1.0
            cols |= {"judge.orig": j0, "judge.edited": j1, "judge.change": j1 - j0,
                     "fooled": ((j1 - j0) * sign <= 0).float(),
                     "o.t": t0, "o.j": j0, "o.tj": t0 * j0, "o.tt": t0 * t0, "o.jj": j0 * j0}
        return cols

    def quantities(self, attr, columns):
        trainer = self.config["trainer"] or "attribute instrument"
        t = dict(table="judge")
        qs = [mean_of("trainer.change", label=f"achieved change, trainer ({trainer})", **t)]
        spec = self.spec(attr)
        if spec is None or (columns and "judge.change" not in columns):
            qs.append(Quantity("no_judge", lambda m: m["trainer.change"] * np.nan, ("trainer.change",),
                               label=f"no independent judge offline for {attr} (only {trainer} measures it)", **t))
        else:
            qs += [
                mean_of("judge.change", label=f"achieved change, judge ({spec})", **t),
                mean_of("fooled", label="fooled the trainer: reached by the trainer, judge moved <= 0 (fraction)",
                        better="lower", **t),
                Quantity("agreement", _corr, ("o.t", "o.j", "o.tj", "o.tt", "o.jj"),
                         label="trainer-judge agreement on the originals (Pearson r, same samples)", **t),
                mean_of("judge.orig", label=f"judge(original) ({spec})", **t),
                mean_of("judge.edited", label=f"judge(edited) ({spec})", **t),
            ]
        qs.append(mean_of("emotion.disturbance", label=f"emotion disturbance, second emotion net "
                                                       f"({self.config['emotion']}), pp", better="lower", **t))
        return qs
