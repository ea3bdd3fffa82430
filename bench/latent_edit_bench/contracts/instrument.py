"""The instrument contract: measuring networks shared by methods (as losses) and metrics.

An instrument takes a batch of images in [-1, 1] — any size, device and dtype — and returns a
dict of named tensors, each with batch as the first dimension. It is differentiable wherever
``differentiable`` is True, so methods can train against it. Each instrument declares what it
outputs (:class:`Output`) and where its weights came from (asset names in the register,
``bench/latent_edit_bench/assets/register.toml``).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import torch
from torch import nn

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.batched import map_batches
from latent_edit_bench.errors import BenchError


def supported_attributes(instrument, default=CELEBA_ATTRIBUTES) -> tuple:
    """The attributes an attribute instrument scores: its ``supported_attributes`` where it declares them
    (the probe scores a subset, NaN elsewhere), else ``default`` (a full CelebA classifier: all 40)."""
    return tuple(getattr(instrument, "supported_attributes", default))


def require_supported(instrument, attrs, name: str | None = None) -> None:
    """Raise BenchError unless ``instrument`` scores every attribute in ``attrs`` (never a silent NaN/zero);
    ``name``: how to call it in the message (default: its ``name``)."""
    supported = supported_attributes(instrument)
    bad = [a for a in ([attrs] if isinstance(attrs, str) else attrs) if a not in supported]
    if bad:
        raise BenchError(f"instrument {name or getattr(instrument, 'name', '?')!r} does not support "
                         f"{', '.join(repr(a) for a in bad)}; supported: {', '.join(supported)}")


@dataclass(frozen=True)
class Output:
    name: str              # key in the returned dict
    shape: tuple           # per-sample shape, e.g. (68, 2) or (7,)
    range: tuple           # (low, high) of the values; None for unbounded
    unit: str              # e.g. "probability", "fraction of image width", "years"
    labels: tuple = ()     # names along the last dimension, when it is categorical
    description: str = ""


class Instrument(nn.Module, abc.ABC):
    name: str = "instrument"
    outputs: tuple[Output, ...] = ()
    assets: tuple[str, ...] = ()         # asset names in the register
    differentiable: bool = True

    @abc.abstractmethod
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images [B, 3, H, W] in [-1, 1] -> {output name: tensor [B, ...]}."""

    def check_images(self, images: torch.Tensor) -> None:
        """BenchError unless ``images`` is a batch of RGB images [B, 3, H, W] (every forward's first line)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise BenchError(f"{self.name} expects images [B, 3, H, W], got {tuple(images.shape)}")

    def output(self, name: str) -> Output:
        for o in self.outputs:
            if o.name == name:
                return o
        raise BenchError(f"instrument {self.name!r} has no output {name!r}; it has: "
                         + ", ".join(o.name for o in self.outputs))

    @torch.no_grad()
    def measure(self, images: torch.Tensor, batch_size: int = 64) -> dict[str, torch.Tensor]:
        """Batched no-grad measurement on the instrument's device; CPU float32 results."""
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        return {k: v.float() for k, v in map_batches(self, images, batch_size, device=device, out="cpu").items()}
