"""The units of a run and their ledger: what a run is made of, what is done, and the in-process executor.

A run is a set of independent units (:class:`Unit`): the shared originals, the fits (one per (method,
fit seed) covering all the run's attributes for a method that fits jointly, ``Editor.joint_fit``; else
one per (method, attribute, fit seed)), and one edit unit per (method, attribute, fit seed), which needs
its fit and the originals. :class:`LocalExecutor` does them one after another in this process (the
default); ``executors.SubmititExecutor`` submits each as a job. Every unit's state is kept in
``<run>/units.json`` (:class:`Ledger`), which ``bench status`` reads (:func:`unit_states`).

This module knows the run only through the methods it calls (``run_unit``, ``unit_path``,
``method_failed``, ``cache_dir``): the run imports it, never the other way round.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from latent_edit_bench.errors import BenchError, CorruptFile, environment_fault
from latent_edit_bench.fs import read_index, read_json, write_text

STATES = ("pending", "running", "done", "failed", "skipped")


@dataclass(frozen=True)
class Unit:
    """One independent piece of a run. ``kind``: "originals", "fit" or "edit".

    ``fit_attrs``: for a method that fits jointly, the attribute set its one fit per seed covers (sorted,
    as the cache key hashes it); such a fit unit has ``attr`` None and the id ``fit/<method>/seed<k>``,
    and its edit units (one per attribute, as always) need it. Empty for per-attribute fits."""

    kind: str
    method: str | None = None
    attr: str | None = None
    seed: int | None = None
    fit_attrs: tuple = ()

    @property
    def id(self) -> str:
        if self.kind == "originals":
            return self.kind
        tail = "" if self.attr is None else f"/{self.attr}"
        return f"{self.kind}/{self.method}/seed{self.seed}{tail}"

    @property
    def fit(self) -> "Unit":
        """The fit unit whose artifact this (fit or edit) unit uses."""
        if self.fit_attrs:
            return Unit("fit", self.method, None, self.seed, self.fit_attrs)
        return Unit("fit", self.method, self.attr, self.seed)

    @property
    def needs(self) -> tuple["Unit", ...]:
        """The units whose files this one reads."""
        if self.kind == "edit":
            return (Unit("originals"), self.fit)
        return ()

    @property
    def attrs_label(self) -> str:
        """The attribute, or a joint fit's attribute set ("Bald,Male")."""
        return self.attr if self.attr is not None else ",".join(self.fit_attrs)

    @property
    def stage(self) -> str:
        """How the manifest names where a method failed (e.g. "fit Male seed 0", "fit Bald,Male seed 0")."""
        return f"{self.kind} {self.attrs_label} seed {self.seed}"

    @classmethod
    def from_id(cls, uid: str, fit_attrs=()) -> "Unit":
        """The unit of ``uid``; ``fit_attrs``: the run's attribute set when the unit's method fits jointly."""
        if uid == "originals":
            return cls("originals")
        kind, method, seed, *attr = uid.split("/")
        return cls(kind, method, attr[0] if attr else None, int(seed.removeprefix("seed")), tuple(sorted(fit_attrs)))


def all_units(methods, attrs, fit_seeds, joint=()) -> list[Unit]:
    """Every unit of a run, in the order the local executor does them. ``joint``: the methods that fit one
    artifact per fit seed for all ``attrs`` (their fit unit comes before the seed's edit units)."""
    out = [Unit("originals")]
    for m in methods:
        for s in fit_seeds:
            if m in joint:
                fa = tuple(sorted(attrs))
                out.append(Unit("fit", m, None, int(s), fa))
                out += [Unit("edit", m, a, int(s), fa) for a in attrs]
                continue
            for a in attrs:
                out += [Unit("fit", m, a, int(s)), Unit("edit", m, a, int(s))]
    return out


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _is_ledger(doc) -> bool:
    return isinstance(doc, dict) and all(isinstance(r, dict) for r in doc.values())


def _resume_hint(out: Path) -> str:
    return f"`bench run --out {out}` with the run's options moves it aside and redoes what it held"


def read_ledger(path: Path) -> dict[str, dict]:
    """units.json as {unit id: record}, for readers beside a running driver; a file that does not parse or
    is not such a mapping is a CorruptFile naming it and the fix."""
    path = Path(path)
    try:
        units = read_json(path)
    except CorruptFile as e:
        raise CorruptFile(path, e.why, _resume_hint(path.parent)) from None
    if not _is_ledger(units):
        raise CorruptFile(path, "not a units.json mapping of unit ids to records", _resume_hint(path.parent))
    return units


class Ledger:
    """``<run>/units.json``: per unit its state, attempts, job, error and the sha256 of the file it
    wrote. Only the driver (the ``bench run`` holding ``.lock``) writes it, atomically; ``bench status``
    reads it while the run goes."""

    def __init__(self, out: Path, repair: bool = True):
        """``repair``: the driver's ledger. A units.json that does not parse is quarantined (no record then
        vouches for any unit file: each is moved aside and redone; the temporary files a killed driver left
        are swept by ``Run.execute``). Readers beside a running driver (rescore) pass False: a corrupt file
        is then a CorruptFile naming it."""
        self.path = Path(out) / "units.json"
        if repair:
            self.units: dict[str, dict] = read_index(self.path, valid=_is_ledger)
        else:
            self.units = read_ledger(self.path) if self.path.exists() else {}
        self._deferred = 0

    def get(self, uid: str) -> dict:
        return self.units.get(uid, {})

    def update(self, uid: str, **fields) -> dict:
        rec = self.units.setdefault(uid, {})
        rec.update(fields, updated=_now())
        if not self._deferred:
            self.save()
        return rec

    def save(self) -> None:
        write_text(self.path, json.dumps(self.units, indent=1, sort_keys=True))

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Updates inside are written once, at the end (a job array's ids all or none)."""
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1
            if not self._deferred:
                self.save()

    def intact(self, uid: str, path: Path) -> bool:
        """Whether ``path`` has the sha256 recorded for ``uid``. A unit without a record (units.json lost,
        or a file it never wrote) is not verified: False, so the run redoes it rather than trust it."""
        from latent_edit_bench.assets import sha256_file

        want = self.get(uid).get("sha256")
        return want is not None and sha256_file(path) == want


def unit_file(run, unit: Unit, record: dict) -> Path:
    """The file a finished unit wrote: its unit file, or (a fit) its artifact in the cache."""
    if unit.kind == "fit":
        return Path(run.cache_dir) / record["artifact_in_cache"]
    return run.unit_path(None if unit.kind == "originals" else unit.method, unit.attr, unit.seed)


def verify(run, unit: Unit, record: dict) -> str | None:
    """None if the file ``record`` reports exists with the sha256 the job computed (and, for a fit, the
    one its sidecar recorded); else what is wrong. Run by the driver before the unit is used."""
    from latent_edit_bench.assets import sha256_file
    from latent_edit_bench.contracts.artifacts import sidecar

    path = unit_file(run, unit, record)
    if not path.exists():
        return f"{path} is missing"
    got = sha256_file(path)
    if got != record.get("sha256"):
        return f"{path}: sha256 {got[:12]} differs from the {str(record.get('sha256'))[:12]} the job reported"
    if unit.kind == "fit":
        try:
            side = read_json(sidecar(path)).get("sha256")
        except (OSError, CorruptFile, AttributeError) as e:
            return f"{sidecar(path)}: unreadable ({e})"
        if side != got:
            return f"{path}: sha256 differs from the one in {sidecar(path).name}"
    return None


# -- executors ------------------------------------------------------------------------------------

OnEvent = Callable[[Unit, str, dict], None]   # (unit, state, fields for units.json)


class LocalExecutor:
    """Every unit in this process, in order (the default)."""

    name = "local"

    def describe(self) -> dict:
        return {"name": self.name}

    def execute(self, run, units: list[Unit], on_event: OnEvent) -> None:
        for u in units:
            if u.method is not None and run.method_failed(u.method):
                on_event(u, "skipped", {"error": f"{u.method} failed earlier"})
                continue
            on_event(u, "running", {"engine": "local", "job_id": None, "host": socket.gethostname(),
                                    "pid": os.getpid()})
            t0 = time.perf_counter()
            try:
                record = run.run_unit(u)
            except Exception as e:   # one method's failure must not cost the others their results
                if u.kind == "originals" or environment_fault(e) is not None:
                    raise   # a full disk is the machine's fault, not the method's: stop the run, keep its work
                on_event(u, "failed", {"error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc(limit=8)})
                continue
            on_event(u, "done", {**record, "seconds": round(time.perf_counter() - t0, 2)})


# -- bench status ---------------------------------------------------------------------------------

def driver_running(out: Path) -> bool:
    """Whether a ``bench run`` holds the run folder's lock now."""
    try:
        import fcntl
    except ImportError:
        return False
    lock = Path(out) / ".lock"
    if not lock.exists():
        return False
    with open(lock) as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def unit_states(out: Path) -> list[dict]:
    """One row per unit of the run in ``out``: id, state, attempts, engine, job id, error, log, seconds.

    Read from the folder alone (manifest.json, units.json and the unit files): an edit unit or the
    originals whose file is there is done; a unit with no record yet is pending."""
    out = Path(out)
    man = out / "manifest.json"
    if not man.exists():
        raise BenchError(f"{out} is not a run folder (no manifest.json); pass the folder `bench run` wrote")
    try:   # read only: the driver alone quarantines (status may run beside it)
        manifest = read_json(man)
        cfg = manifest["config"]
    except CorruptFile as e:
        raise CorruptFile(man, e.why, _resume_hint(out)) from None
    except (KeyError, TypeError):
        raise CorruptFile(man, "no run config in it", _resume_hint(out)) from None
    records = Ledger(out, repair=False).units
    seeds = manifest.get("seeds", {}).get("fit") or [cfg["seed"] + k for k in range(int(cfg["fit_seeds"]))]
    units = all_units(cfg["methods"], cfg["attrs"], seeds, joint=manifest.get("joint_fits", ()))
    rows = []
    for u in units:
        rec = records.get(u.id, {})
        state = rec.get("state", "pending")
        if u.kind != "fit":
            path = out / "units" / ("original.safetensors" if u.kind == "originals"
                                    else f"{u.method}/seed{u.seed}/{u.attr}.safetensors")
            if path.exists():
                state = "done"
        if u.kind == "fit" and not rec and any(
                (out / "units" / u.method / f"seed{u.seed}" / f"{e.attr}.safetensors").exists()
                for e in units if e.kind == "edit" and e.fit == u):
            state = "done"   # a folder from before units.json: an edit unit proves its fit
        rows.append({"unit": u.id, "state": state, "attempts": rec.get("attempts", 1 if rec else 0),
                     "engine": rec.get("engine"), "job_id": rec.get("job_id"), "error": rec.get("error"),
                     "lost": rec.get("lost"), "log": rec.get("log"), "seconds": rec.get("seconds")})
    return rows
