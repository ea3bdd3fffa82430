"""``topk``: the paper's relative change ratio r_j = |mean ΔR_j| / |mean ΔR_k| (Tables I-III).

ΔR_j = R_j(edit) - R_j(original) per sample; k is the target. A ratio of means, so its interval and the
method-vs-baseline test come from the paired bootstrap.
"""

from __future__ import annotations

import numpy as np

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.errors import BenchError
from latent_edit_bench.contracts.metric import EditSet, Metric, Quantity, mean_of

from .common import scored, target_index


def ratio(attr: str, j: str, table: str) -> Quantity:
    dj, dk = f"d.{j}", f"d.{attr}"
    return Quantity(f"r.{j}", lambda m: np.abs(m[dj]) / np.abs(m[dk]), (dj, dk),
                    label=f"|Δ{j}| / |Δ{attr}|", better="lower", table=table)


class TopK(Metric):
    name = "topk"
    title = "Relative change of the other attributes (Tables I-III)"
    needs = ("attributes",)
    config = {"k": 5}          # how many ratios the report shows (largest first); the summary keeps all
    only: tuple[str, ...] | None = None     # restrict to these attributes (None: every one the instrument scores)
    table = "I-III"

    def __init__(self, **overrides):
        super().__init__(**overrides)
        k = self.config.get("k", 1)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise BenchError(f"metric {self.name!r}: option k must be a positive integer, got {k!r}")

    def measure(self, s: EditSet):
        target_index(s)        # the target must be scored: it is every ratio's denominator
        names = [a for a in scored(s.original["attributes"]) if self.only is None or a in self.only or a == s.attr]
        d = s.edited["attributes"] - s.original["attributes"]
        return {f"d.{a}": d[:, CELEBA_ATTRIBUTES.index(a)] for a in names}

    def quantities(self, attr, columns):
        others = [c[2:] for c in columns if c.startswith("d.") and c != f"d.{attr}"]
        qs = [ratio(attr, j, self.table) for j in others]
        if self.only is None:
            qs.append(mean_of(f"d.{attr}", "delta_k", label=f"R_k(edit) - R_k(original) ({attr})", table=self.table))
        return qs
