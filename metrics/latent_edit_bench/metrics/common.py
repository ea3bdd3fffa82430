"""Helpers shared by the attribute metrics: the target's index and the attributes the instrument scores."""

from __future__ import annotations

import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, check_attributes
from latent_edit_bench.errors import BenchError


def attr_index(attr: str) -> int:
    check_attributes([attr])
    return CELEBA_ATTRIBUTES.index(attr)


def scored(attributes: torch.Tensor) -> list[str]:
    """Attributes the instrument scores: columns of [N, 40] without NaN (unsupported ones are all NaN)."""
    ok = torch.isfinite(attributes).all(0).tolist()
    return [a for a, s in zip(CELEBA_ATTRIBUTES, ok) if s]


def target_index(s) -> int:
    """Index of the EditSet's target attribute, which the attribute instrument must score."""
    k = attr_index(s.attr)
    if s.attr not in scored(s.original["attributes"]):
        raise BenchError(f"target attribute {s.attr!r} is not scored by the attribute instrument "
                         f"({s.instruments.get('attributes', '?')}); scored: "
                         f"{', '.join(scored(s.original['attributes'])) or '(none)'}")
    return k
