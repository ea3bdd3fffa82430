"""``identity``: cosine similarity of the face descriptors (does the edit keep the person?)."""

from __future__ import annotations

import torch.nn.functional as F

from bench.metric import EditSet, Metric, mean_of


class Identity(Metric):
    name = "identity"
    title = "Identity (descriptor cosine similarity)"
    needs = ("descriptor",)

    def measure(self, s: EditSet):
        o, a, b = s.original["descriptor"], s.x0["descriptor"], s.x1["descriptor"]
        return {"cos_x0_x1": F.cosine_similarity(a, b, dim=1), "cos_orig_x0": F.cosine_similarity(o, a, dim=1),
                "cos_orig_x1": F.cosine_similarity(o, b, dim=1)}

    def quantities(self, attr, columns):
        t = dict(better="higher", table="identity")
        return [mean_of("cos_x0_x1", label="descriptor cosine similarity X0 vs X1", **t),
                mean_of("cos_orig_x0", label="descriptor cosine similarity original vs X0", **t),
                mean_of("cos_orig_x1", label="descriptor cosine similarity original vs X1", **t)]
