"""The store of fitted artifacts: safetensors files with JSON sidecars, keyed by what determines a fit.

What an editor's ``fit`` learnt is its ``state_dict()`` (tensors and plain python only), which
:func:`fit_or_load` stores under ``cache_dir/<method>/<key>.safetensors`` with a JSON sidecar. The key
hashes everything that determines a fit (:func:`key_inputs`), so a second fit with the same inputs
loads, and any change refits. A file that fails its sha256 is quarantined and refitted; long fits
save partial state through :class:`Checkpointer` and resume.

Editors and fit contexts are duck-typed here (no import of :mod:`.method`, which builds a
:class:`Checkpointer` for every context): the store reads only their documented attributes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import torch

from latent_edit_bench.errors import BenchError, CorruptFile
from latent_edit_bench.fs import atomic, folder_lock, read_json, write_text
from latent_edit_bench.fs import quarantine as fs_quarantine

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
    tensors: dict = {}
    doc = {"format": ARTIFACT_FORMAT, "state": _split(state, "", tensors), "meta": meta or {}}
    text = json.dumps(doc, sort_keys=True, indent=1, default=_json_default)
    with atomic(path) as tmp:
        save_file(tensors, str(tmp), metadata={"bench": text})
        digest = sha256_file(tmp)
    # the sha256 cannot live in the file it hashes: the sidecar carries it
    write_text(sidecar(path), json.dumps({**doc, "sha256": digest}, sort_keys=True, indent=1, default=_json_default) + "\n")


def load_artifact(path: Path) -> tuple[dict, dict]:
    """(state, meta) from an artifact written by :func:`save_artifact`; safetensors and JSON only, no code.

    Raises :class:`CorruptArtifact` if the file does not parse, or its sha256 differs from the sidecar's,
    or there is no sidecar sha256 to check it against (not verified: the caller refits, never trusts).
    """
    from safetensors import safe_open

    from latent_edit_bench.assets import sha256_file

    path = Path(path)
    side = sidecar(path)
    try:
        recorded = read_json(side).get("sha256")
    except FileNotFoundError:
        raise CorruptArtifact(f"{path}: not verified (its sidecar {side.name} is missing)") from None
    except (OSError, CorruptFile, AttributeError) as e:
        raise CorruptArtifact(f"{side}: unreadable sidecar ({e})") from None
    if recorded is None:
        raise CorruptArtifact(f"{path}: not verified ({side.name} records no sha256)")
    if sha256_file(path) != recorded:
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
    path = Path(path)
    bad = fs_quarantine(path, warn=False)
    try:
        os.replace(sidecar(path), sidecar(bad))
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

def key_inputs(editor, ctx) -> dict:
    """Everything that determines a fit of ``editor`` (an :class:`~.method.Editor`) in ``ctx`` (a
    :class:`~.method.FitContext`); its canonical JSON hashes to the cache key."""
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


def artifact_key(editor, ctx) -> str:
    return hashlib.sha256(canonical_json(key_inputs(editor, ctx)).encode()).hexdigest()


def artifact_path(editor, ctx) -> Path:
    return Path(ctx.cache_dir) / editor.name / f"{artifact_key(editor, ctx)}.safetensors"


def fit_or_load(editor, ctx, refit: bool = False, checkpoint_every: int = 1):
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
    path.parent.mkdir(parents=True, exist_ok=True)
    # one lock per artifact: a second run on a shared cache waits for the first's fit, then loads it
    with folder_lock(path.with_suffix(".lock"), on_wait=lambda: logger.warning(
            "%s: another process is fitting this artifact; waiting for it, then loading it", path)):
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
