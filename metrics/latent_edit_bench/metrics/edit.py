"""``edit``: did the edit happen? The target's R_k before and after, and the achieved change."""

from __future__ import annotations

from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of

from .common import target_index


class Edit(Metric):
    name = "edit"
    title = "Achieved edit of the target attribute"
    needs = ("attributes",)

    def measure(self, s: EditSet):
        k = target_index(s)
        r0, r1 = s.original["attributes"][:, k], s.edited["attributes"][:, k]
        return {"orig": r0, "edited": r1, "change": r1 - r0}

    def quantities(self, attr, columns):
        t = dict(table="edit")
        return [mean_of("orig", label="R_k(original)", **t),
                mean_of("edited", label="R_k(edited)", **t),
                mean_of("change", label="achieved change R_k(edited) - R_k(original)", **t)]
