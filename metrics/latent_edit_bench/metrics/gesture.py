"""``gesture``: the relative change ratio of the gesture attributes (the paper's Table IV)."""

from __future__ import annotations

from latent_edit_bench.attributes import GESTURE_ATTRIBUTES

from .topk import TopK


class Gesture(TopK):
    """TopK restricted to Smiling, Mouth_Slightly_Open, Narrow_Eyes (the target's own Δ is kept for the ratio)."""

    name = "gesture"
    title = "Relative change of the gesture attributes (Table IV)"
    config = {}
    only = GESTURE_ATTRIBUTES
    table = "IV"
