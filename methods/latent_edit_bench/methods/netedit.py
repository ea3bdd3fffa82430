"""Shared parts of the network editors (``latent-transformer``, ``adatrans``).

Both train a small network per attribute against R with EYE's loop (:meth:`latent_edit_bench.methods.eye.EYE._fit`:
seeded per-step draws, Adam, checkpoints of step + parameters + Adam moments, exact resume). That
loop trains one tensor, so a network's parameters live packed in one flat vector per attribute
(``T`` [A, P]; Adam is elementwise, so this is the same optimiser as one per parameter) and the
forward passes read named views of it (:class:`Packing`). The loss terms are the small functions
below; a regulariser (``+hfld``) adds its own through the ``extra_losses`` hook (a TrainableEditor's).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from latent_edit_bench.contracts.instrument import supported_attributes
from latent_edit_bench.errors import BenchError
from latent_edit_bench.options import Range, attribute_names, optional
from latent_edit_bench.contracts.method import FitContext

from .eye import EYE, _to_device, step_generator
from .eye import content_loss as eye_content_loss


class Packing:
    """Named tensor shapes packed, in order, into one flat vector."""

    def __init__(self, shapes: dict[str, tuple[int, ...]]):
        self.shapes = dict(shapes)
        self.size = sum(math.prod(s) for s in self.shapes.values())

    def unpack(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in self.shapes.items():
            n = math.prod(shape)
            out[name] = flat[i:i + n].view(shape)
            i += n
        return out

    def pack(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.shapes])


def xavier(shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    """Xavier-uniform [out, in] weights from ``g``."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return (2 * torch.rand(shape, generator=g) - 1) * bound


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Equalised-learning-rate linear layer (StyleGAN's, as the latent transformer's): the stored
    weight is scaled by 1/sqrt(fan_in) at use. ``weight`` [..., out, in] broadcasts over x [..., in]."""
    return torch.einsum("...oi,...i->...o", weight, x) / math.sqrt(weight.shape[-1]) + bias


# -- loss terms ------------------------------------------------------------------------------------

def classifier_loss(r2: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """BCE(R_k(G(w')), target); a NaN score turns the loss NaN (the fit's finiteness check) instead of
    failing inside BCE (as EYE's term)."""
    return F.binary_cross_entropy(r2.clamp(0, 1).nan_to_num(0.5), target) + 0 * r2.sum()


def latent_proximity(w2: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """mean (w' - w)^2: the latent transformer's "recon" term (keep the edit small in latent space)."""
    return F.mse_loss(w2, w)


def attribute_preservation(r2: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """mean (R_j(G(w')) - R_j(G(w)))^2 over the preserved attributes j (all but the edited one)."""
    return F.mse_loss(r2, r) if r.shape[1] else r2.sum() * 0


def content_loss(content, f: dict, x2: torch.Tensor) -> torch.Tensor:
    """sum over conv_1..conv_4 of mean (F(G(w')) - F(G(w)))^2: the identity/content term (``f`` = F(G(w)))."""
    return eye_content_loss(content(x2), f)


# -- the base editor -------------------------------------------------------------------------------

class NetworkEditor(EYE):
    """A per-attribute network trained with EYE's loop; subclasses give ``packing`` (parameter
    shapes), ``init_net``, ``attr_losses`` (the terms of one attribute) and ``edit``."""

    limits = {"hidden": Range(lo=0, integer=True), "preserve_attrs": optional(attribute_names)}

    _fit_attrs: tuple = ()     # the attributes of the running fit (``self._attrs`` is set at its end)
    # one network per attribute, each trained alone as in the originals (the preservation term holds every
    # attribute but the edited one): a run fits them per attribute, unlike EYE's one T
    joint_fit = False

    def packing(self, bb) -> Packing:
        raise NotImplementedError

    def init_net(self, bb, g: torch.Generator) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def init_params(self, ctx: FitContext, g: torch.Generator) -> torch.Tensor:
        p = self.packing(ctx.backbone)
        return torch.stack([p.pack(self.init_net(ctx.backbone, g)) for _ in ctx.attributes])

    def discriminator(self, ctx):
        return None     # no D term: the networks are trained against R, preservation and identity terms

    def net(self, attr: str, T: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The named parameters of ``attr``'s network (from ``T``, default the fitted one)."""
        T = self.T if T is None else T
        return self._packing.unpack(T[self._index(attr)])

    def _index(self, attr: str) -> int:
        return (self._fit_attrs or self._attrs).index(attr)

    def fit(self, ctx: FitContext) -> None:
        self._packing, self._fit_attrs = self.packing(ctx.backbone), tuple(ctx.attributes)
        try:
            super().fit(ctx)
        finally:
            self._fit_attrs = ()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self._packing = Packing({k: tuple(v) for k, v in state["shapes"]})

    def state_dict(self) -> dict:
        # a list, not a dict: the artifact's JSON header sorts dict keys, and the packing order matters
        return {**super().state_dict(), "shapes": [[k, list(v)] for k, v in self._packing.shapes.items()]}

    # -- the step ---------------------------------------------------------------------------------
    def preserved(self, ctx: FitContext, attr: str) -> list[str]:
        """The attributes the preservation term holds still: ``preserve_attrs``, or None = every
        attribute R scores (its ``supported_attributes``; all 40 if it does not say) but the edited ones."""
        names = self.config["preserve_attrs"]
        if names is None:
            names = supported_attributes(ctx.scorer)
        return [a for a in names if a not in ctx.attributes]

    def draw(self, ctx: FitContext, T: torch.Tensor, step: int):
        """The step's seeded z and two uniform draws u, v [B, A] (a function of ctx.seed, config seed, step)."""
        cfg, dev = self.config, ctx.dev
        g = step_generator(ctx.seed * 7919 + cfg["seed"], step)
        z = _to_device(torch.randn(cfg["batch_size"], ctx.backbone.z_dim, generator=g), dev)
        u = _to_device(torch.rand(cfg["batch_size"], T.shape[0], generator=g), dev)
        v = _to_device(torch.rand(cfg["batch_size"], T.shape[0], generator=g), dev)
        return z, u, v

    def losses(self, ctx: FitContext, T: torch.Tensor, step: int, D=None, check: bool = True) -> dict:
        """The unweighted terms of one step, averaged over the fitted attributes (``attr_losses`` each)."""
        bb, dev = ctx.backbone, ctx.dev
        z, u, v = self.draw(ctx, T, step)
        content = self.aux_net(ctx, self.config["content_instrument"])
        out: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            w = bb.to_edit(z)
            x = bb.synthesize(w)
            f = content(x)
        for i, attr in enumerate(ctx.attributes):
            scored = [attr, *self.preserved(ctx, attr)]    # R's columns: the edited one first
            with torch.no_grad():
                r = ctx.score_attrs(x, scored, check=check).to(dev)
            ref = {"w": w, "x": x, "f": f, "r": r, "scored": scored, "content": content, "check": check}
            for k, term in self.attr_losses(ctx, self.net(attr, T), ref, u[:, i], v[:, i]).items():
                out[k] = out.get(k, 0) + term / len(ctx.attributes)
        return out

    def attr_losses(self, ctx: FitContext, net: dict, ref: dict, u: torch.Tensor, v: torch.Tensor) -> dict:
        """The terms of one attribute: ``net`` its parameters, ``ref`` the originals (w, x, content
        features f, R scores r of ``scored``), u and v [B] the step's uniform draws."""
        raise NotImplementedError

    def edited_terms(self, ctx: FitContext, ref: dict, w2: torch.Tensor, target=None) -> dict:
        """The terms an edited latent w2 pays: classifier (if ``target`` [B] is given), attribute
        preservation, identity (content) and the regularisers' (``extra_losses``)."""
        x2 = ctx.backbone.synthesize(w2)
        r, x = ref["r"], ref["x"]
        r2 = ctx.score_attrs(x2, ref["scored"], check=ref["check"]).to(r.device)
        out = {} if target is None else {"cls": classifier_loss(r2[:, 0], target)}
        out["attr"] = attribute_preservation(r2[:, 1:], r[:, 1:])
        out["identity"] = content_loss(ref["content"], ref["f"], x2)
        out.update(self.extra_losses(ctx, x, x2))
        return out

    def weights(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.config["weights"].items()}


def check_positive(name: str, cfg: dict, *keys: str) -> None:
    for k in keys:
        if not float(cfg[k]) > 0:
            raise BenchError(f"method {name!r}: {k} must be positive, got {cfg[k]}")
