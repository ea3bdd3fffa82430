"""Built-in backbones, registered like any plugin (a module of hookimpls).

Factories are named as "module:function" strings so `bench list` imports nothing heavy.
"""

from __future__ import annotations

from latent_edit_bench.hookspecs import hookimpl
from latent_edit_bench.errors import BenchError, MissingAsset
from latent_edit_bench.registry import Entry
from latent_edit_bench.zoo import ZOO


def no_weights(name: str, weights) -> None:
    """An embedded or zoo backbone brings its own weights: a --weights given to it would be silently unused."""
    if weights:
        raise BenchError(f"backbone {name!r} brings its own weights and takes no --weights (got {weights!r}); "
                         f"--weights goes with --backbone stylegan2")


def dcgan_digiface(weights: str | None = None, **_options):
    no_weights("dcgan", weights)
    from safetensors.torch import load_file

    from latent_edit_bench.assets import asset_path
    from latent_edit_bench.backbones.dcgan import DCGANBackbone, DCGANGenerator

    gen = DCGANGenerator()
    gen.load_state_dict(load_file(str(asset_path("dcgan-digiface"))), strict=True)
    return DCGANBackbone(gen, name="dcgan")


def stylegan2(weights: str | None = None, truncation: float = 1.0, name: str = "stylegan2", **_options):
    """A StyleGAN2 from a rosinality .pt or NVIDIA .pkl file, or a zoo name."""
    from latent_edit_bench.zoo import resolve
    from latent_edit_bench.backbones.formats import load_stylegan2

    if not weights:
        raise BenchError("backbone 'stylegan2' needs --weights PATH (a rosinality .pt or NVIDIA .pkl) "
                         f"or a zoo name: {', '.join(n for n, e in ZOO.items() if e.kind == 'stylegan2')}")
    return load_stylegan2(resolve(weights), truncation=truncation, name=name)


EMBEDDED_SG2 = ("stylegan2-64", "stylegan2-64-d")   # register names: G_ema (+ metadata), D


def stylegan2_64(truncation: float = 1.0, name: str = "stylegan2-64", weights: str | None = None, **_options):
    """The embedded 64-px StyleGAN2 (bench/latent_edit_bench/assets, trained from the DCGAN), once its weights are registered."""
    no_weights(name, weights)
    from latent_edit_bench.assets import asset_path, register
    from latent_edit_bench.backbones.formats import load_stylegan2
    from latent_edit_bench.backbones.stylegan2 import EMBEDDED_64

    missing = [n for n in EMBEDDED_SG2 if n not in register()]
    if missing:
        raise MissingAsset(
            "backbone 'stylegan2-64' has no weights yet: bench/latent_edit_bench/assets/register.toml has no "
            f"{' / '.join(repr(n) for n in missing)} entry. Train them on a GPU with tools/gpu/train_stylegan2_gpu.sh "
            "and register the two files it writes (docs/train-stylegan2.md), or use --backbone dcgan")
    g_path = asset_path(EMBEDDED_SG2[0])
    asset_path(EMBEDDED_SG2[1])   # D's file: its sha256 is checked against the register too
    bb = load_stylegan2(g_path, truncation=truncation, name=name)
    g = bb.generator
    got = dict(size=g.size, style_dim=g.style_dim, n_mlp=g.n_mlp, z_dim=g.z_dim, channels=dict(g.channels))
    if got != EMBEDDED_64:
        raise BenchError(f"{g_path} is not the embedded 64-px StyleGAN2's architecture: {got} != {EMBEDDED_64}")
    bb.assets = EMBEDDED_SG2
    return bb


def _zoo_stylegan2(zoo_name: str):
    def factory(truncation: float = 1.0, weights: str | None = None, **_options):
        no_weights(zoo_name, weights)
        return stylegan2(weights=zoo_name, truncation=truncation, name=zoo_name)
    return factory


@hookimpl
def register_backbones():
    return [
        Entry("dcgan", dcgan_digiface,
              "embedded default: DigiFace-1M DCGAN, 64 px, edit space z (100-D); no download"),
        Entry("stylegan2", stylegan2, "StyleGAN2 from --weights (rosinality .pt / NVIDIA .pkl), edit space W+"),
        Entry("stylegan2-64", stylegan2_64, "embedded StyleGAN2 trained from the DCGAN, 64 px, edit space W+ "
              "(10 x 512), with D; weights not trained yet (docs/train-stylegan2.md)"),
    ] + [
        Entry(e.name, _zoo_stylegan2(e.name), f"StyleGAN2 from the zoo file {e.filename} (fetch it yourself: bench zoo list)")
        for e in ZOO.values() if e.kind == "stylegan2"
    ]
