"""The editing-method contract, and the store of fitted artifacts.

A method is an :class:`Editor`: ``fit(ctx)`` learns what it needs (directions, a network...) from a
:class:`FitContext`; ``edit(latents, attr, strength)`` moves edit-space latents along attribute
``attr`` by ``strength`` in the method's own unit, inside ``strength_range(attr)``. What ``fit``
learnt is ``state_dict()`` (tensors and plain python only), which :func:`fit_or_load` stores as
safetensors under ``cache_dir/<method>/<key>.safetensors`` with a JSON sidecar. The key hashes
everything that determines a fit (:func:`key_inputs`), so a second fit with the same inputs loads,
and any change refits. Long fits save partial state through :class:`Checkpointer` and resume.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.batched import map_batches
from latent_edit_bench.errors import BenchError
from latent_edit_bench.registry import configure

logger = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1   # bump when the stored layout changes: old artifacts then miss the cache


# -- fingerprints and keys -------------------------------------------------------------------------

def module_fingerprint(module: torch.nn.Module) -> str:
    """sha256 of a module's class, parameter/buffer names, dtypes, shapes and bytes."""
    h = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}".encode())
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(o):
    if isinstance(o, (tuple, set, frozenset)):
        return sorted(o) if isinstance(o, (set, frozenset)) else list(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, torch.device):
        return str(o)
    raise TypeError(f"not JSON-serialisable in a method config: {o!r}")


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
        for a in self.attributes:
            if a not in CELEBA_ATTRIBUTES:
                raise BenchError(f"unknown attribute {a!r}; valid: {', '.join(CELEBA_ATTRIBUTES)}")

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
    """

    name: str = "editor"
    config: dict = {}
    joint_fit: bool = False

    def __init__(self, **overrides):
        self.config = configure("method", self.name, type(self).config, overrides)
        self.artifact_path: Path | None = None   # where fit_or_load stored/loaded the artifact
        self.cache_hit = False

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
        raise BenchError(f"layer range {[lo, hi]} is outside the backbone's {n_layers} layers")
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


# -- artifact files --------------------------------------------------------------------------------

def _split(obj, prefix: str, tensors: dict):
    """Replace tensors in a nested structure by {"__tensor__": key}, collecting them in ``tensors``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        if not all(isinstance(k, str) for k in obj):
            raise TypeError(f"artifact dict keys must be str at {prefix!r}")
        return {k: _split(v, f"{prefix}.{k}" if prefix else k, tensors) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_split(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"artifact values must be tensors or plain python; got {type(obj).__name__} at {prefix!r}")


def _join(obj, tensors: dict):
    if isinstance(obj, dict):
        if set(obj) == {"__tensor__"}:
            return tensors[obj["__tensor__"]]
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


class CorruptArtifact(BenchError):
    """An artifact file that does not parse or does not match the sha256 its sidecar recorded."""


def save_artifact(path: Path, state: dict, meta: dict | None = None) -> None:
    """Write ``state`` atomically to ``path`` (.safetensors) plus a human-readable ``.json`` sidecar.

    The structure lives in the safetensors header (one file, replaced atomically), so a kill at any
    moment leaves either the old or the new artifact; the sidecar is a copy for people plus the file's
    sha256, which :func:`load_artifact` checks (a kill between the two replaces leaves a stale sha256:
    the artifact then reads as corrupt and is refitted, never used wrongly).
    """
    from safetensors.torch import save_file

    from latent_edit_bench.assets import sha256_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict = {}
    doc = {"format": ARTIFACT_FORMAT, "state": _split(state, "", tensors), "meta": meta or {}}
    text = json.dumps(doc, sort_keys=True, indent=1, default=_json_default)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata={"bench": text})
    digest = sha256_file(tmp)
    os.replace(tmp, path)
    side = sidecar(path)
    tmp = side.with_name(side.name + f".tmp{os.getpid()}")
    # the sha256 cannot live in the file it hashes: the sidecar carries it
    tmp.write_text(json.dumps({**doc, "sha256": digest}, sort_keys=True, indent=1, default=_json_default) + "\n")
    os.replace(tmp, side)


def load_artifact(path: Path) -> tuple[dict, dict]:
    """(state, meta) from an artifact written by :func:`save_artifact`; safetensors and JSON only, no code.

    Raises :class:`CorruptArtifact` if the file does not parse or its sha256 differs from the sidecar's.
    """
    from safetensors import safe_open

    from latent_edit_bench.assets import sha256_file

    path = Path(path)
    side = sidecar(path)
    if side.exists():
        try:
            recorded = json.loads(side.read_text()).get("sha256")
        except (OSError, ValueError, AttributeError) as e:
            raise CorruptArtifact(f"{side}: unreadable sidecar ({e})") from None
        # artifacts written before sha256s were recorded have none: they are accepted if they parse
        if recorded is not None and sha256_file(path) != recorded:
            raise CorruptArtifact(f"{path}: sha256 differs from the one recorded in {side.name}")
    try:
        with safe_open(str(path), framework="pt") as f:
            doc = json.loads(f.metadata()["bench"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        state = _join(doc["state"], tensors)
    except Exception as e:   # safetensors' own error type, a truncated header, bad JSON, missing keys...
        raise CorruptArtifact(f"{path}: unreadable artifact ({type(e).__name__}: {e})") from None
    if doc.get("format") != ARTIFACT_FORMAT:
        raise BenchError(f"{path}: artifact format {doc.get('format')}, expected {ARTIFACT_FORMAT}")
    return state, doc["meta"]


def quarantine(path: Path, why: str) -> Path:
    """Move a corrupt artifact and its sidecar aside (``<key>.corrupt-<UTC time>.safetensors``), kept for
    inspection rather than deleted, and warn naming it; returns the new path."""
    import datetime as _dt

    path = Path(path)
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    bad = path.with_name(f"{path.stem}.corrupt-{stamp}{path.suffix}")
    for src, dst in ((path, bad), (sidecar(path), sidecar(bad))):
        try:
            os.replace(src, dst)
        except FileNotFoundError:   # another process quarantined it first, or there was no sidecar
            pass
    logger.warning("corrupt artifact %s (%s); moved to %s, refitting", path, why, bad)
    return bad


def sidecar(path: Path) -> Path:
    return Path(path).with_suffix(".json")


class Checkpointer:
    """Partial state of a long fit, saved atomically every ``every`` saves and loaded on rerun.

    ``path`` None makes it a no-op (fits without a cache dir). ``on_save(n)`` is called after the
    n-th save request, whether or not it was written: tests use it to kill a fit mid-way.
    """

    def __init__(self, path: Path | None, every: int = 1, on_save: Callable[[int], None] | None = None):
        self.path = Path(path) if path is not None else None
        self.every = max(1, int(every))
        self.on_save = on_save
        self.saves = 0
        self.resumed = False

    def load(self) -> dict | None:
        if self.path is None or not self.path.exists():
            return None
        try:
            state, _ = load_artifact(self.path)
        except CorruptArtifact as e:   # a damaged checkpoint only costs the fit its head start
            quarantine(self.path, str(e))
            return None
        self.resumed = True
        return state

    def save(self, state: dict, force: bool = False) -> None:
        self.saves += 1
        if self.path is not None and (force or self.saves % self.every == 0):
            save_artifact(self.path, state, {"partial": True, "saves": self.saves})
        if self.on_save is not None:
            self.on_save(self.saves)

    def clear(self) -> None:
        if self.path is not None:
            for p in (self.path, sidecar(self.path)):
                p.unlink(missing_ok=True)


# -- the store -------------------------------------------------------------------------------------

def key_inputs(editor: Editor, ctx: FitContext) -> dict:
    """Everything that determines a fit; its canonical JSON hashes to the cache key."""
    fps = ctx.memo.setdefault("fingerprints", {})

    def fp(kind, name, module):
        if (kind, name) not in fps:
            custom = getattr(module, "fingerprint", None)
            fps[(kind, name)] = custom() if callable(custom) else module_fingerprint(module)
        return fps[(kind, name)]

    return {
        "format": ARTIFACT_FORMAT,
        "method": editor.name,
        "config": json.loads(canonical_json(editor.config)),
        "backbone": {"name": ctx.backbone.name, "weights": fp("backbone", ctx.backbone.name, ctx.backbone)},
        "instruments": {n: fp("instrument", n, ctx.instruments[n]) for n in sorted(editor.instruments_used(ctx))},
        "seed": int(ctx.seed),
        "attributes": sorted(ctx.attributes),
    }


def artifact_key(editor: Editor, ctx: FitContext) -> str:
    return hashlib.sha256(canonical_json(key_inputs(editor, ctx)).encode()).hexdigest()


def artifact_path(editor: Editor, ctx: FitContext) -> Path:
    return Path(ctx.cache_dir) / editor.name / f"{artifact_key(editor, ctx)}.safetensors"


def fit_or_load(editor: Editor, ctx: FitContext, refit: bool = False, checkpoint_every: int = 1) -> Editor:
    """Load ``editor``'s artifact from the cache if its key is there, else fit (resuming) and store it.

    The key hashes the attribute *set*, so the fit sees it in one order, sorted: a joint fit's seeded
    draws are per column, and (Male, Bald) must be the same fit as (Bald, Male). Without
    ``ctx.cache_dir`` this is a plain ``editor.fit(ctx)`` (in that order too).
    """
    if tuple(ctx.attributes) != tuple(sorted(ctx.attributes)):
        ctx = dataclasses.replace(ctx, attributes=tuple(sorted(ctx.attributes)))
    if ctx.cache_dir is None:
        editor.fit(ctx)
        return editor
    path = artifact_path(editor, ctx)
    if path.exists() and not refit:
        try:
            state, _ = load_artifact(path)
        except CorruptArtifact as e:   # a damaged cache entry must cost a refit, not the method's results
            quarantine(path, str(e))
        else:
            editor.load_state_dict(state)
            editor.artifact_path, editor.cache_hit = path, True
            return editor
    partial = path.with_name(path.stem + ".partial.safetensors")
    ck = Checkpointer(partial, every=checkpoint_every, on_save=ctx.on_checkpoint)
    if refit:
        ck.clear()
    editor.fit(dataclasses.replace(ctx, checkpointer=ck))
    save_artifact(path, editor.state_dict(), {"key_inputs": key_inputs(editor, ctx)})
    ck.clear()
    editor.artifact_path, editor.cache_hit = path, False
    return editor
