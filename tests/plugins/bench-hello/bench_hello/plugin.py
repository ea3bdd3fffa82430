"""An external plugin: a tiny linear "generator" backbone and one extra attribute name."""

import torch
from torch import nn

from latent_edit_bench import api
from latent_edit_bench.contracts.backbone import Backbone


class LinearBackbone(Backbone):
    """z (8-D) -> a 16x16 image through one fixed random linear map and tanh."""

    name, resolution, z_dim, latent_dim, n_layers, edit_space = "hello-linear", 16, 8, 8, 1, "z"

    def __init__(self, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(3 * 16 * 16, 8, generator=g), requires_grad=False)

    def to_edit(self, z):
        return z[:, None, :]

    def synthesize(self, latents):
        return torch.tanh(latents[:, 0] @ self.weight.T).view(-1, 3, 16, 16)


@api.hookimpl
def register_backbones():
    return [api.Entry("hello-linear", LinearBackbone, "external test plugin: random linear map")]


@api.hookimpl
def register_attributes():
    return ["Hello_World"]
