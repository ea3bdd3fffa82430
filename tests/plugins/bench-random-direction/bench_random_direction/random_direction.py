import zlib

import torch

from latent_edit_bench import api
from latent_edit_bench.contracts.method import PerAttributeEditor, add_direction, layer_mask


class RandomDirection(PerAttributeEditor):
    name = "random-direction"
    config = {"seed": 0, "max_strength": 3.0}   # everything that determines the fit: it enters the cache key

    def fit_attribute(self, ctx, attr, shared):
        # one seeded direction per attribute, independent of the order of attributes (resume stays exact)
        g = torch.Generator().manual_seed(self.config["seed"] * 1_000_003 + zlib.crc32(attr.encode()))
        d = torch.randn(ctx.backbone.latent_dim, generator=g)
        return {"direction": d / d.norm(), "layers": layer_mask(ctx.backbone.n_layers)}

    def edit(self, latents, attr, strength):
        self.check_attr(attr)
        a = self.per_attr[attr]
        return add_direction(latents, a["direction"], strength, a["layers"])

    def strength_range(self, attr):
        return (-self.config["max_strength"], self.config["max_strength"])


@api.hookimpl
def register_methods():
    return [api.Entry("random-direction", RandomDirection, "a random unit direction per attribute")]
