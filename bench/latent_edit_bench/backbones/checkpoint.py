"""The one in-memory StyleGAN2 checkpoint every weight format is read into, and the networks it rebuilds.

A :class:`StyleGAN2Checkpoint` holds rosinality-named state dicts (the names of :mod:`.stylegan2`);
the constructor arguments are inferred from tensor shapes (:func:`generator_kwargs`,
:func:`discriminator_kwargs`), so no format needs to store them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from latent_edit_bench.backbones.stylegan2 import Discriminator, Generator, stylegan2_channels
from latent_edit_bench.errors import BenchError


@dataclass
class StyleGAN2Checkpoint:
    """A checkpoint in our (rosinality) names; ``*_kwargs`` rebuild the modules of :mod:`.stylegan2`."""

    g_ema: dict
    g_kwargs: dict
    latent_avg: torch.Tensor | None = None
    g: dict | None = None
    d: dict | None = None
    d_kwargs: dict | None = None
    source: str = ""          # the format read: "rosinality", "stylegan2-ada" or "latent-edit-bench"


# -- shapes -> constructor arguments ----------------------------------------------------------------


def _multiplier(channels: dict[int, int]) -> int:
    """rosinality's channel_multiplier if ``channels`` is its table for one (else 2, with explicit channels)."""
    size = max(channels)
    for cm in (1, 2, 4):
        if stylegan2_channels(size, cm) == channels:
            return cm
    return 2


def generator_kwargs(state: dict, source="checkpoint") -> dict:
    """Generator(**kwargs) arguments from a rosinality generator state dict."""
    try:
        n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
        style_dim, z_dim = state["style.1.weight"].shape
        n_up = len([k for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
        channels = {4: int(state["conv1.conv.weight"].shape[1])}
        for k in range(n_up):
            channels[8 * 2 ** k] = int(state[f"convs.{2 * k}.conv.weight"].shape[1])
    except (KeyError, AttributeError, ValueError) as e:
        raise BenchError(f"{source}: not a StyleGAN2 generator state dict (rosinality layout): "
                         f"no usable {e}") from None
    if n_up < 1:
        raise BenchError(f"{source}: StyleGAN2 generator below 8 px (no to_rgbs layers)")
    kwargs = dict(size=4 * 2 ** n_up, style_dim=int(style_dim), n_mlp=n_mlp, channel_multiplier=_multiplier(channels),
                  channels=channels)
    if z_dim != style_dim:
        kwargs["z_dim"] = int(z_dim)
    return kwargs


def discriminator_kwargs(state: dict, source="checkpoint") -> dict:
    """Discriminator(**kwargs) arguments from a rosinality discriminator state dict."""
    try:
        n_blocks = len([k for k in state if re.fullmatch(r"convs\.\d+\.conv1\.0\.weight", k)])
        size = 4 * 2 ** n_blocks
        channels = {size: int(state["convs.0.0.weight"].shape[0])}
        for k in range(1, n_blocks + 1):
            channels[size // 2 ** k] = int(state[f"convs.{k}.conv2.1.weight"].shape[0])
        stddev_feat = int(state["final_conv.0.weight"].shape[1]) - channels[4]
    except (KeyError, AttributeError, ValueError) as e:
        raise BenchError(f"{source}: not a StyleGAN2 discriminator state dict (rosinality layout): "
                         f"no usable {e}") from None
    return dict(size=size, channel_multiplier=_multiplier(channels), channels=channels, stddev_feat=stddev_feat)


# -- checkpoint -> modules --------------------------------------------------------------------------

def load_strict(module: torch.nn.Module, state: dict, what: str, source) -> None:
    """``load_state_dict(strict=True)`` with a message that names the file and the mismatch."""
    ours = module.state_dict()
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    wrong = [f"{k} {list(state[k].shape)} (expected {list(v.shape)})" for k, v in ours.items()
             if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or wrong:
        def show(keys):
            return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")
        parts = [f"missing keys: {show(missing)}" if missing else "",
                 f"unexpected keys: {show(unexpected)}" if unexpected else "",
                 f"wrong shapes: {show(wrong)}" if wrong else ""]
        raise BenchError(f"{source}: '{what}' does not match a {type(module).__name__} "
                         f"({'; '.join(p for p in parts if p)})")
    module.load_state_dict(state, strict=True)


def build_generator(kwargs: dict, state: dict, latent_avg: torch.Tensor | None = None, source: str = "checkpoint",
                    what: str = "g_ema") -> Generator:
    """Generator(**kwargs) with ``state`` loaded strictly; ``latent_avg`` from the checkpoint or the
    mean of 10,000 mapped samples (seed 0) when the checkpoint has none."""
    g = Generator(**kwargs)
    load_strict(g, state, what, source)
    with torch.no_grad():
        g.latent_avg.copy_(latent_avg.reshape(-1) if latent_avg is not None else g.mean_latent(10000, seed=0)[0])
    return g.eval()


def build_discriminator(kwargs: dict, state: dict, source: str = "checkpoint") -> Discriminator:
    d = Discriminator(**kwargs)
    load_strict(d, state, "d", source)
    return d.eval()
