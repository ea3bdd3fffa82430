"""``edit``: did the edit happen? The achieved target R_k at 0 and 1, and the search's success rate."""

from __future__ import annotations

from bench.metric import EditSet, Metric, mean_of

from .common import target_index


class Edit(Metric):
    name = "edit"
    title = "Achieved edit of the target attribute"
    needs = ("attributes",)

    def measure(self, s: EditSet):
        k = target_index(s)
        r0, r1 = s.x0["attributes"][:, k], s.x1["attributes"][:, k]
        reached0, reached1 = s.reached0.to(r0.dtype), s.reached1.to(r0.dtype)
        return {"achieved0": r0, "achieved1": r1, "change": r1 - r0, "orig": s.original["attributes"][:, k],
                "reached0": reached0, "reached1": reached1, "reached_both": reached0 * reached1}

    def quantities(self, attr, columns):
        t = dict(table="edit")
        return [
            mean_of("orig", label="R_k(original)", **t),
            mean_of("achieved0", label="R_k(X0) (target 0)", **t),
            mean_of("achieved1", label="R_k(X1) (target 1)", **t),
            mean_of("change", label="R_k(X1) - R_k(X0)", better="higher", **t),
            mean_of("reached0", label="success rate (target 0 reached)", better="higher", **t),
            mean_of("reached1", label="success rate (target 1 reached)", better="higher", **t),
            mean_of("reached_both", label="success rate (both targets reached)", better="higher", **t),
        ]
