"""The backbones `bench perf` times: the embedded DCGAN and a seeded random StyleGAN2 of the paper's shape."""

from __future__ import annotations

from pathlib import Path

import torch

from latent_edit_bench.errors import BenchError

BACKBONES = ("dcgan", "stylegan2-256")


def random_stylegan2(size: int = 256, channel_multiplier: int = 2, seed: int = 0, discriminator: bool = False):
    """A seeded random-weight StyleGAN2 of the paper's shape (256 px, config F widths: 14 W+ layers)."""
    from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, StyleGAN2Backbone

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        g = Generator(size, channel_multiplier=channel_multiplier)
        d = Discriminator(size, channels=dict(g.channels)) if discriminator else None
    return StyleGAN2Backbone(g.eval(), d, name=f"stylegan2-{size}-random")


def write_random_stylegan2(path, size: int = 256, channel_multiplier: int = 2, seed: int = 0) -> Path:
    """The random StyleGAN2 (with a random D) as a safetensors file, for ``bench run --backbone stylegan2
    --weights PATH``: no random backbone is registered, and a file goes through the real loading path."""
    from latent_edit_bench.backbones.formats import write_safetensors

    bb = random_stylegan2(size, channel_multiplier, seed, discriminator=True)
    return write_safetensors(path, bb.generator, d=bb.discriminator)


def check_backbone(name: str) -> None:
    if name not in BACKBONES:
        raise BenchError(f"bench perf: unknown backbone {name!r}; valid: {', '.join(BACKBONES)}")


def make_backbone(name: str, plugins):
    check_backbone(name)
    return random_stylegan2() if name == "stylegan2-256" else plugins.backbones.create("dcgan")
