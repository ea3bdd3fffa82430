"""Built-in backbones, registered through the ``bench`` entry-point group like any plugin."""

from __future__ import annotations

from safetensors.torch import load_file

from .. import hookimpl
from ..assets import asset_path
from ..registry import Entry


def dcgan_digiface(**_options):
    from .dcgan import DCGANBackbone, DCGANGenerator

    gen = DCGANGenerator()
    gen.load_state_dict(load_file(str(asset_path("dcgan-digiface"))), strict=True)
    return DCGANBackbone(gen, name="dcgan")


@hookimpl
def register_backbones():
    return [
        Entry("dcgan", dcgan_digiface,
              "embedded default: DigiFace-1M DCGAN, 64 px, edit space z (100-D); no download"),
    ]
