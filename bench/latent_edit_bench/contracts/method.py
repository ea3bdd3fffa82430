"""The editing-method contract: :class:`Editor`, what a fit may use (:class:`FitContext`), the editor bases.

A method is an :class:`Editor`: ``fit(ctx)`` learns what it needs (directions, a network...) from a
:class:`FitContext`; ``edit(latents, attr, strength)`` moves edit-space latents along attribute
``attr`` by ``strength`` in the method's own unit, inside ``strength_range(attr)``. What ``fit``
learnt is ``state_dict()`` (tensors and plain python only), which the artifact store
(:mod:`latent_edit_bench.contracts.artifacts`) caches. A method trained by a loss is a
:class:`TrainableEditor`, which declares the hooks the registered regularisers (``<method>+hfld``) call.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES, check_attributes
from latent_edit_bench.batched import map_batches
from latent_edit_bench.contracts.artifacts import Checkpointer
from latent_edit_bench.errors import BenchError
from latent_edit_bench.registry import configure

__all__ = ["FitContext", "Editor", "TrainableEditor", "PerAttributeEditor", "DirectionEditor",
           "as_strength", "layer_mask", "add_direction", "finite_difference"]


# -- the fit context -------------------------------------------------------------------------------

@dataclass
class FitContext:
    """Everything a method may use to fit: the backbone, shared instruments, seed and cache.

    ``instruments`` are loaded once by the caller and shared by every method of a run.
    ``attribute_instrument`` names the one whose "attributes" output ([B, 40], CelebA order) is R;
    left None, the first instrument with such an output is used.
    """

    backbone: Any
    instruments: dict = field(default_factory=dict)
    attributes: tuple = ()
    seed: int = 0
    device: Any = None                 # None: the backbone's device
    cache_dir: Path | str | None = None
    progress: bool = False
    attribute_instrument: str | None = None
    checkpointer: "Checkpointer | None" = None             # set by fit_or_load for the running fit
    on_checkpoint: Callable[[int], None] | None = None      # called after each checkpoint save (tests)
    memo: dict = field(default_factory=dict)                # shared samples/scores within one run
    # loads a named instrument that is not in ``instruments`` yet (a run passes its session's
    # ``instrument``); loaded instruments join ``instruments``, so every method of a run shares one copy
    load_instrument: Callable[[str], Any] | None = None
    batch_size: int = 16               # images per batch when scoring many latents (the session's; 16 suits a CPU)
    dtype: Any = None                  # render/score precision for no-grad scoring (None: float32)

    def __post_init__(self):
        self.attributes = tuple(self.attributes)
        check_attributes(self.attributes, what="the fit's attributes")

    def instrument(self, name: str):
        """The instrument ``name`` from the shared pool, loaded on first use."""
        if name not in self.instruments:
            if self.load_instrument is None:
                raise BenchError(f"instrument {name!r} is not in this fit context (it has: "
                                 f"{', '.join(self.instruments) or 'none'}) and the context has no "
                                 f"load_instrument; pass a Session's instrument, e.g. "
                                 f"FitContext(..., load_instrument=session.instrument)")
            self.instruments[name] = self.load_instrument(name).eval()
        return self.instruments[name]

    # the attribute regressor R
    @property
    def scorer_name(self) -> str:
        if self.attribute_instrument is not None:
            if self.attribute_instrument not in self.instruments:
                raise BenchError(f"attribute instrument {self.attribute_instrument!r} is not loaded; "
                                 f"loaded: {', '.join(self.instruments) or '(none)'}")
            return self.attribute_instrument
        for name, inst in self.instruments.items():
            if any(o.name == "attributes" for o in inst.outputs):
                return name
        raise BenchError("no loaded instrument has an 'attributes' output (e.g. 'probe')")

    @property
    def scorer(self):
        return self.instruments[self.scorer_name]

    def score(self, images: torch.Tensor) -> torch.Tensor:
        """R(images): [B, 40] in [0, 1], differentiable; NaN where R does not score an attribute."""
        s = self.scorer
        dev = next((p.device for p in s.parameters()), images.device)
        return s(images.to(dev))["attributes"]

    def score_attr(self, images: torch.Tensor, attr: str) -> torch.Tensor:
        """R_k(images) [B]; raises BenchError if R does not score ``attr`` (never a silent NaN)."""
        return self._column(self.score(images), attr)

    def score_attrs(self, images: torch.Tensor, attrs, check: bool = True) -> torch.Tensor:
        """R_k(images) for each k in ``attrs``: [B, len(attrs)], differentiable. Uses the scorer's
        ``score_attribute(images, attr)`` per attribute where it has one (same numbers; the probe's full
        forward runs every net for all its attributes), else the full forward's columns.

        ``check``: raise BenchError if an attribute is not scored (NaN). The check reads the scores on
        the host (a device sync), so a loop scoring the same attributes every step checks once."""
        s = self.scorer
        dev = next((p.device for p in s.parameters()), images.device)
        images = images.to(dev)
        one = getattr(s, "score_attribute", None)
        if one is not None:
            r = torch.stack([one(images, a) for a in attrs], 1)
        else:
            full = s(images)["attributes"]
            # basic indexing per column: a list index would copy an index tensor to the device
            r = torch.stack([full[:, CELEBA_ATTRIBUTES.index(a)] for a in attrs], 1)
        if check:
            bad = [a for a, c in zip(attrs, torch.isnan(r).any(0).tolist()) if c]
            if bad:
                raise BenchError(f"instrument {self.scorer_name!r} does not score attribute(s) {', '.join(bad)}")
        return r

    # seeded samples and their scores, computed once per context
    @property
    def dev(self) -> torch.device:
        return torch.device(self.device) if self.device is not None else self.backbone.device

    def latents(self, n: int, seed: int | None = None) -> torch.Tensor:
        """n edit-space latents [n, L, D] from ``seed`` (default: the context's seed), on the CPU."""
        seed = self.seed if seed is None else seed
        key = ("latents", n, seed)
        if key not in self.memo:
            with torch.no_grad():
                self.memo[key] = self.backbone.to_edit(self.backbone.sample_z(n, seed)).cpu()
        return self.memo[key]

    @torch.no_grad()
    def score_all(self, latents: torch.Tensor, batch_size: int | None = None) -> torch.Tensor:
        """R(G(latents)) [n, 40] on the CPU, rendered and scored in batches without grad."""
        return map_batches(lambda lat: self.score(self.backbone.synthesize(lat)).float(), latents,
                           batch_size or self.batch_size, device=self.dev, out="cpu", dtype=self.dtype)

    def _column(self, scores: torch.Tensor, attr: str) -> torch.Tensor:
        r = scores[:, CELEBA_ATTRIBUTES.index(attr)]
        if torch.isnan(r).any():
            raise BenchError(f"instrument {self.scorer_name!r} does not score attribute {attr!r}")
        return r

    @torch.no_grad()
    def score_latents(self, latents: torch.Tensor, attr: str, batch_size: int | None = None) -> torch.Tensor:
        """R_k(G(latents)) [n] on the CPU (no grad). Uses the scorer's ``score_attribute(images, attr)``
        where it has one (same numbers, only the work that attribute needs)."""
        one = getattr(self.scorer, "score_attribute", None)
        if one is None:
            return self._column(self.score_all(latents, batch_size), attr)
        dev = next((p.device for p in self.scorer.parameters()), self.dev)
        return map_batches(lambda lat: one(self.backbone.synthesize(lat).to(dev), attr).float(), latents,
                           batch_size or self.batch_size, device=self.dev, out="cpu", dtype=self.dtype)

    def base_scores(self, n: int, attr: str, seed: int | None = None) -> torch.Tensor:
        """R_k of the n seeded samples, computed once per (n, seed, attribute) and shared by the fits of a
        run. Per attribute, not all 40 at once: a run fits one attribute at a time, and the probe then
        runs only the net that attribute needs (a third of its full forward for Male or Bald)."""
        seed = self.seed if seed is None else seed
        key = ("scores", n, seed, attr)
        if key not in self.memo:
            self.memo[key] = self.score_latents(self.latents(n, seed), attr)
        return self.memo[key]

    def checkpoint(self) -> "Checkpointer":
        return self.checkpointer or Checkpointer(None, on_save=self.on_checkpoint)


# -- the editor contract ---------------------------------------------------------------------------

class Editor(abc.ABC):
    """A latent editing method. Subclasses set ``name`` and default ``config`` and implement the rest.

    ``config`` holds everything that determines the fit (it enters the cache key); constructor
    keyword arguments override its defaults, and unknown ones are an error.

    ``joint_fit``: True for a method whose one fit learns every attribute together (EYE's T [A, L, D],
    a* ~ U(0,1)^A): a run then fits it once per fit seed for all its attributes (``bench run --fit
    per-attribute`` still fits it per attribute). False (the default): the run fits each attribute alone,
    as a method whose attributes are independent (directions, per-attribute networks) needs.

    ``limits``: what each option may hold, ``{option: check}`` with the checks of
    :mod:`latent_edit_bench.options` (``at_least(1)``, ``positive``, ...), run when the editor is built:
    ``bench run`` builds every editor first, so an out-of-range ``--set`` exits 2 before any work.

    ``presets``: the method's own settings under each run preset, ``{"quick": {option: value}, "paper":
    {...}}`` over ``config`` (``bench run --preset``; ``--set`` overrides both). A preset the method does
    not list runs it with its defaults.
    """

    name: str = "editor"
    config: dict = {}
    limits: dict = {}   # {option: check} (latent_edit_bench.options); every class's in the MRO applies
    presets: dict = {}
    joint_fit: bool = False
    takes_regularisers: bool = False   # True on a TrainableEditor: the registry then allows <method>+<regulariser>

    def __init__(self, **overrides):
        limits = {k: c for cls in reversed(type(self).__mro__) for k, c in vars(cls).get("limits", {}).items()}
        self.config = configure("method", self.name, type(self).config, overrides, limits)
        self.artifact_path: Path | None = None   # where fit_or_load stored/loaded the artifact
        self.cache_hit = False

    def check_backbone(self, backbone) -> None:
        """Raise BenchError if the config cannot work on ``backbone`` (e.g. a layer range past its
        ``n_layers``). The run calls it once the backbone is loaded, before any fit."""

    def instruments_used(self, ctx: FitContext) -> list[str]:
        """Names of the instruments whose weights the fit depends on (they enter the cache key).

        Default: the attribute instrument R (none if the context has none: the fit cannot use it)."""
        try:
            return [ctx.scorer_name]
        except BenchError:
            return []

    @abc.abstractmethod
    def fit(self, ctx: FitContext) -> None:
        """Learn the artifacts for every attribute in ``ctx.attributes``."""

    @abc.abstractmethod
    def edit(self, latents: torch.Tensor, attr: str, strength) -> torch.Tensor:
        """latents [B, L, D] -> edited latents; ``strength`` a scalar or [B] tensor; differentiable."""

    @abc.abstractmethod
    def strength_range(self, attr: str) -> tuple[float, float]:
        """(lo, hi) of meaningful strengths for ``attr``, in the method's own unit."""

    def native_strength(self, ctx: FitContext, latents: torch.Tensor, attr: str, target: float) -> torch.Tensor:
        """The "native" protocol's strength towards ``target`` (0 or 1), [B]: by default the end of
        the strength range on the target's side (directions point towards the attribute)."""
        lo, hi = self.strength_range(attr)
        return torch.full((latents.shape[0],), float(hi if target >= 0.5 else lo))

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """The fitted artifacts: nested dicts/lists of tensors and plain python values."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None:
        ...

    @property
    def attributes(self) -> tuple[str, ...]:
        """Attributes this editor was fitted for."""
        return ()

    def check_attr(self, attr: str) -> None:
        if attr not in self.attributes:
            raise BenchError(f"method {self.name!r} was not fitted for {attr!r}; fitted: "
                             f"{', '.join(self.attributes) or '(nothing: call fit)'}")


class TrainableEditor(Editor):
    """An editor trained by a loss, which can therefore take the registered regularisers
    (``--methods my-method+hfld``; :mod:`latent_edit_bench.methods.regularisers`).

    A regulariser is a mixin put before the editor's class: it extends :meth:`aux_instruments`,
    :meth:`extra_losses` and :meth:`weights` through ``super()`` and fetches its nets with :meth:`aux_net`. The editor's loss must therefore add
    ``weights()[k] * extra_losses(ctx, x, x2)[k]`` for every term k, and load ``aux_instruments()``
    before fitting. The defaults are those of the plain method: no extra terms, no extra nets.
    """

    takes_regularisers = True

    def aux_instruments(self) -> list[str]:
        """Names of the instruments the loss uses besides R (a regulariser adds its own)."""
        return []

    def aux_net(self, ctx: FitContext, name: str):
        """The instrument ``name`` (one of ``aux_instruments()``) on the fit's device, for a loss term.
        An editor may override it to hand out nets it already moved (EYE does, once per fit)."""
        return ctx.instrument(name).to(ctx.dev)

    def extra_losses(self, ctx: FitContext, x: torch.Tensor, x2: torch.Tensor) -> dict[str, torch.Tensor]:
        """{term: unweighted value} of the regularisers, x the renders of the original latents and x2 of
        the edited ones (only x2 should carry gradients)."""
        return {}

    def weights(self) -> dict[str, float]:
        """{term: weight} of every loss term the editor sums (its own and the regularisers')."""
        return {}

    def instruments_used(self, ctx: FitContext) -> list[str]:
        # the aux nets are loaded into the shared pool here, so their weights enter the cache key
        for n in self.aux_instruments():
            ctx.instrument(n)
        return sorted(set(super().instruments_used(ctx)) | set(self.aux_instruments()))


def as_strength(strength, latents: torch.Tensor) -> torch.Tensor:
    """A scalar or [B] strength as a [B, 1, 1] tensor on the latents' device and dtype."""
    s = torch.as_tensor(strength, dtype=latents.dtype, device=latents.device)
    if s.dim() == 0:
        s = s.expand(latents.shape[0])
    return s.reshape(-1, 1, 1)


class PerAttributeEditor(Editor):
    """An editor fitted from one shared computation plus one independent fit per attribute.

    ``fit`` checkpoints after the shared part and after every attribute, and resumes from the last
    checkpoint; every part must be a deterministic function of (ctx, config) for resume to be exact.
    The state is ``{"shared": ..., "attrs": {attr: ...}}``.
    """

    def __init__(self, **overrides):
        super().__init__(**overrides)
        self.shared: dict = {}
        self.per_attr: dict = {}

    def fit_shared(self, ctx: FitContext) -> dict:
        return {}

    @abc.abstractmethod
    def fit_attribute(self, ctx: FitContext, attr: str, shared: dict) -> dict:
        ...

    def fit(self, ctx: FitContext) -> None:
        ck = ctx.checkpoint()
        state = ck.load()
        if state is None:
            state = {"shared": self.fit_shared(ctx), "attrs": {}}
            ck.save(state)
        from tqdm.auto import tqdm

        for attr in tqdm(ctx.attributes, desc=f"fit {self.name}", unit="attr", disable=not ctx.progress):
            if attr not in state["attrs"]:
                state["attrs"][attr] = self.fit_attribute(ctx, attr, state["shared"])
                ck.save(state)
        self.load_state_dict(state)

    def state_dict(self) -> dict:
        return {"shared": self.shared, "attrs": self.per_attr}

    def load_state_dict(self, state: dict) -> None:
        self.shared, self.per_attr = state["shared"], dict(state["attrs"])

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(self.per_attr)


class DirectionEditor(PerAttributeEditor):
    """A linear editor: each fitted attribute has a unit ``direction``, a layer mask ``layers`` and
    ``sigma``, the sample spread along the direction; strength is in latent units, its range is
    ``max_sigmas`` sigmas either way. Subclasses only decide how the direction is found."""

    def check_backbone(self, backbone) -> None:
        layer_mask(backbone.n_layers, self.config.get("layers"))

    def edit(self, latents, attr, strength):
        self.check_attr(attr)
        a = self.per_attr[attr]
        return add_direction(latents, a["direction"], strength, a["layers"])

    def strength_range(self, attr):
        self.check_attr(attr)
        r = self.config["max_sigmas"] * self.per_attr[attr]["sigma"]
        return (-r, r)


def layer_mask(n_layers: int, layers=None) -> torch.Tensor:
    """[n_layers] 0/1 mask of the edited layers: ``layers`` None = all, or a [lo, hi) pair."""
    m = torch.zeros(n_layers)
    lo, hi = (0, n_layers) if layers is None else (int(layers[0]), int(layers[1]))
    if not 0 <= lo < hi <= n_layers:
        raise BenchError(f"layer range {[lo, hi]} is outside the backbone's {n_layers} layers; "
                         f"give a [lo, hi) pair with 0 <= lo < hi <= {n_layers}")
    m[lo:hi] = 1.0
    return m


def add_direction(latents: torch.Tensor, direction: torch.Tensor, strength, mask: torch.Tensor) -> torch.Tensor:
    """latents + strength * direction on the masked layers; batched, differentiable, on latents' device."""
    d = direction.to(latents)[None, None, :] * mask.to(latents)[None, :, None]
    return latents + as_strength(strength, latents) * d


def finite_difference(ctx: FitContext, latents: torch.Tensor, attr: str,
                      edit: Callable[[torch.Tensor, float], torch.Tensor], h: float) -> float:
    """Mean d R_k / d strength at 0, by central difference (R_k(edit(+h)) - R_k(edit(-h))) / 2h."""
    up = ctx.score_latents(edit(latents, h), attr)
    down = ctx.score_latents(edit(latents, -h), attr)
    return float((up - down).mean() / (2 * h))
