"""Built-in backbones, registered through the ``bench`` entry-point group like any plugin.

Factories are named as "module:function" strings so `bench list` imports nothing heavy.
"""

from __future__ import annotations

from .. import hookimpl
from ..errors import BenchError
from ..registry import Entry
from ..zoo import ZOO


def dcgan_digiface(**_options):
    from safetensors.torch import load_file

    from ..assets import asset_path
    from .dcgan import DCGANBackbone, DCGANGenerator

    gen = DCGANGenerator()
    gen.load_state_dict(load_file(str(asset_path("dcgan-digiface"))), strict=True)
    return DCGANBackbone(gen, name="dcgan")


def stylegan2(weights: str | None = None, truncation: float = 1.0, name: str = "stylegan2", **_options):
    """A StyleGAN2 from a rosinality .pt or NVIDIA .pkl file, or a zoo name."""
    from ..zoo import resolve
    from .formats import load_stylegan2

    if not weights:
        raise BenchError("backbone 'stylegan2' needs --weights PATH (a rosinality .pt or NVIDIA .pkl) "
                         f"or a zoo name: {', '.join(n for n, e in ZOO.items() if e.kind == 'stylegan2')}")
    return load_stylegan2(resolve(weights), truncation=truncation, name=name)


def _zoo_stylegan2(zoo_name: str):
    def factory(truncation: float = 1.0, **_options):
        return stylegan2(weights=zoo_name, truncation=truncation, name=zoo_name)
    return factory


@hookimpl
def register_backbones():
    return [
        Entry("dcgan", dcgan_digiface,
              "embedded default: DigiFace-1M DCGAN, 64 px, edit space z (100-D); no download"),
        Entry("stylegan2", stylegan2, "StyleGAN2 from --weights (rosinality .pt / NVIDIA .pkl), edit space W+"),
    ] + [
        Entry(e.name, _zoo_stylegan2(e.name), f"StyleGAN2 from the zoo file {e.filename} (fetch it yourself: bench zoo list)")
        for e in ZOO.values() if e.kind == "stylegan2"
    ]
