"""``identity``: cosine similarity of the face descriptors of original and edit (does the edit keep the person?)."""

from __future__ import annotations

import torch.nn.functional as F

from latent_edit_bench.contracts.metric import EditSet, Metric, mean_of


class Identity(Metric):
    name = "identity"
    title = "Identity (descriptor cosine similarity)"
    needs = ("descriptor",)

    def measure(self, s: EditSet):
        return {"cos": F.cosine_similarity(s.original["descriptor"], s.edited["descriptor"], dim=1)}

    def quantities(self, attr, columns):
        return [mean_of("cos", label="descriptor cosine similarity, original vs edit", better="higher",
                        table="identity")]
