"""Built-in instruments and attribute names, registered through the ``bench`` entry-point group.

Factories are "module:function" strings, imported only when an instrument is used.
"""

from __future__ import annotations

from .. import hookimpl
from ..attributes import CELEBA_ATTRIBUTES
from ..registry import Entry


@hookimpl
def register_instruments():
    return [
        Entry("celeba-resnet50", "bench.instruments.celeba_regressor:celeba_resnet50",
              "EYE's regressor R: ResNet-50 -> 40 CelebA attributes (needs weights)"),
    ]


@hookimpl
def register_attributes():
    return list(CELEBA_ATTRIBUTES)
