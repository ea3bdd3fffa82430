"""Built-in instruments and attribute names, registered through the ``bench`` entry-point group."""

from __future__ import annotations

from .. import hookimpl
from ..attributes import CELEBA_ATTRIBUTES


@hookimpl
def register_instruments():
    return []


@hookimpl
def register_attributes():
    return list(CELEBA_ATTRIBUTES)
