"""The one backbone interface every method edits through.

A backbone is a generator with a latent *edit space*: W+ for StyleGAN2 ([B, n_latent, 512]),
z for a DCGAN ([B, 1, z_dim]: one "layer"). Methods only ever see this interface:

    z = bb.sample_z(n, seed)          # seeded, identical on every device
    w = bb.to_edit(z)                 # [B, n_layers, latent_dim], the space methods edit
    x = bb.synthesize(w)              # differentiable, images in [-1, 1], on bb's device
    x = bb.render(w, batch_size=64)   # no-grad batched rendering -> CPU float32

plus the hooks particular methods need: ``style_weights()`` (SeFa), ``early_activation()``
(GANSpace on backbones without W) and ``discriminator`` (EYE's adversarial term; None if absent).
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from latent_edit_bench.errors import BenchError

from latent_edit_bench.batched import map_batches


class Backbone(nn.Module, abc.ABC):
    name: str = "backbone"
    resolution: int          # output images are [B, 3, resolution, resolution]
    z_dim: int               # width of the sampling latent z
    latent_dim: int          # width of one edit-space layer
    n_layers: int            # number of editable layers (W+ layers; 1 for z-space)
    edit_space: str          # "w+" or "z"
    assets: tuple = ()       # names in bench/latent_edit_bench/assets/register.toml its weights came from (provenance)

    # -- sampling -----------------------------------------------------------------------------
    def sample_z(self, n: int, seed: int) -> torch.Tensor:
        """n standard-normal latents from ``seed``; drawn on the CPU so every device gets the same z."""
        g = torch.Generator().manual_seed(int(seed))
        return torch.randn(n, self.z_dim, generator=g).to(self.device)

    @abc.abstractmethod
    def to_edit(self, z: torch.Tensor) -> torch.Tensor:
        """Map sampling latents to the edit space: [B, z_dim] -> [B, n_layers, latent_dim]."""

    @abc.abstractmethod
    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        """Edit-space latents -> images in [-1, 1]; differentiable; noise held constant."""

    # -- method hooks -------------------------------------------------------------------------
    def style_weights(self) -> torch.Tensor | None:
        """Matrix A [m, latent_dim] whose top right-singular vectors SeFa uses (None if unsupported)."""
        return None

    def early_activation(self, latents: torch.Tensor) -> torch.Tensor | None:
        """An early feature map [B, ...] for GANSpace on backbones without W (None if unsupported)."""
        return None

    @property
    def discriminator(self) -> nn.Module | None:
        """The backbone's discriminator when it has one. Subclasses assign ``self.discriminator = module``
        (nn.Module registers it as a submodule, so it follows ``.to()``); unassigned means None."""
        return self._modules.get("discriminator")

    def random_discriminator(self, seed: int) -> nn.Module:
        """A seeded, randomly initialised discriminator matching this generator's widths (what the official
        EYE code's D effectively is: built, never loaded), frozen. Only architectures that define one have it."""
        raise BenchError(f"random_d is only supported on StyleGAN2 backbones, not {self.name!r} "
                         f"(a random discriminator for this architecture would be an invention, not the "
                         f"official behaviour)")

    # -- conveniences -------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        for t in self.parameters():
            return t.device
        return torch.device("cpu")

    def render(self, latents: torch.Tensor, batch_size: int = 32, dtype: torch.dtype | None = None,
               progress: bool = False) -> torch.Tensor:
        """Render edit-space latents in batches on this backbone's device; returns CPU float32.

        ``dtype`` (e.g. torch.float16 on a GPU) renders under autocast; never use bf16 on CPU
        (it is emulated and 20-280x slower there).
        """
        if latents.shape[0] == 0:
            return torch.empty(0, 3, self.resolution, self.resolution)
        return map_batches(self.synthesize, latents, batch_size, device=self.device, out="cpu", dtype=dtype,
                           progress=progress, desc=f"render {self.name}").float()

    def sample(self, n: int, seed: int, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
        """n images from ``seed`` (CPU float32, [-1, 1])."""
        with torch.no_grad():
            w = self.to_edit(self.sample_z(n, seed))
        return self.render(w, batch_size=batch_size, progress=progress)
