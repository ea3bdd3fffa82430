"""DCGAN generator (Radford et al. 2016), 64 px, in the layout of PyPI ``gan-face-generate``.

z [B, 100] -> 4x4x512 -> 8x8x256 -> 16x16x128 -> 32x32x64 -> 64x64x3, transposed convs with
batch-norm (always in eval mode here) and ReLU, tanh output in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from latent_edit_bench.contracts.backbone import Backbone


class UpBlock(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, stride: int, padding: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 4, stride, padding, bias=False)
        self.norm = nn.BatchNorm2d(out_ch)
        self.act = nn.ReLU()


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int = 100, ngf: int = 64, channels: int = 3):
        super().__init__()
        widths = [ngf * 8, ngf * 4, ngf * 2, ngf]
        ins = [z_dim] + widths[:-1]
        self.blocks = nn.ModuleList(
            UpBlock(i, o, stride=1 if k == 0 else 2, padding=0 if k == 0 else 1)
            for k, (i, o) in enumerate(zip(ins, widths))
        )
        self.to_rgb = nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z[:, :, None, None]
        for block in self.blocks:
            x = block(x)
        return torch.tanh(self.to_rgb(x))


class DCGANBackbone(Backbone):
    """A DCGAN as a backbone: its z is the edit space (one layer), no discriminator."""

    edit_space = "z"
    n_layers = 1
    resolution = 64
    assets = ("dcgan-digiface",)

    def __init__(self, generator: DCGANGenerator, name: str = "dcgan"):
        super().__init__()
        self.name = name
        self.generator = generator.eval()
        self.z_dim = self.latent_dim = generator.blocks[0].conv.in_channels

    def train(self, mode: bool = True):
        # batch-norm statistics are part of the frozen model: never switch them to batch mode
        return super().train(False)

    def to_edit(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, None, :]

    def synthesize(self, latents: torch.Tensor) -> torch.Tensor:
        return self.generator(latents[:, 0])

    def style_weights(self) -> torch.Tensor:
        # SeFa on a style-less generator factorises the first layer (as for PGGAN):
        # ConvTranspose2d weight [z_dim, C, 4, 4] -> A [C*16, z_dim], so that A @ z is layer 1's pre-activation.
        w = self.generator.blocks[0].conv.weight
        return w.reshape(w.shape[0], -1).T

    def early_activation(self, latents: torch.Tensor) -> torch.Tensor:
        return self.generator.blocks[0](latents[:, 0, :, None, None]).flatten(1)
