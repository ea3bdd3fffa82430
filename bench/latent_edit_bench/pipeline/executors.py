"""Where a run's units are done: in the ``bench run`` process (the default), or each as a job on an
existing engine (Slurm, through submitit).

A run is a set of independent units (:class:`Unit`): the shared originals, the fits (one per (method,
fit seed) covering all the run's attributes for a method that fits jointly, ``Editor.joint_fit``; else
one per (method, attribute, fit seed)), and one edit unit per (method, attribute, fit seed), which needs
its fit and the originals. :class:`LocalExecutor` does them one after another in this process.
:class:`SubmititExecutor` submits each unit as a job as soon as the units it needs are done; the jobs
write to the shared run folder and cache (shared storage is the contract), the driver checks every file
a job reports against the sha256 the job computed before anything uses it, resubmits a job that ended
without a result (killed, pre-empted, out of time, node lost) up to ``max_attempts`` times, and keeps
every unit's state in ``<run>/units.json``, which ``bench status`` reads. The engine schedules; the
driver only holds a unit back until its inputs exist.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import socket
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import atomic

ENGINES = ("local", "slurm", "submitit-local")
STATES = ("pending", "running", "done", "failed", "skipped")
_LIVE_SLURM_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")


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


class Ledger:
    """``<run>/units.json``: per unit its state, attempts, job, error and the sha256 of the file it
    wrote. Only the driver (the ``bench run`` holding ``.lock``) writes it, atomically; ``bench status``
    reads it while the run goes."""

    def __init__(self, out: Path):
        self.path = Path(out) / "units.json"
        self.units: dict[str, dict] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self._deferred = 0
        for stale in self.path.parent.glob(self.path.name + ".tmp*"):   # a driver killed mid-write
            stale.unlink(missing_ok=True)

    def get(self, uid: str) -> dict:
        return self.units.get(uid, {})

    def update(self, uid: str, **fields) -> dict:
        rec = self.units.setdefault(uid, {})
        rec.update(fields, updated=_now())
        if not self._deferred:
            self.save()
        return rec

    def save(self) -> None:
        with atomic(self.path) as tmp:
            tmp.write_text(json.dumps(self.units, indent=1, sort_keys=True))

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
        """Whether ``path`` has the sha256 recorded for ``uid`` (a unit without a record passes)."""
        from latent_edit_bench.assets import sha256_file

        want = self.get(uid).get("sha256")
        return want is None or sha256_file(path) == want


# -- the worker side -----------------------------------------------------------------------------

def work(spec: dict, unit: Unit) -> dict:
    """A job's entry point on a worker: rebuild the run from ``spec`` (:meth:`Run.spec`), do ``unit``,
    return its record. An error in the unit is returned, not raised, so the driver tells it apart from
    a job that died (which it resubmits)."""
    import torch

    from latent_edit_bench.pipeline.run import Run, config_from_dict
    from latent_edit_bench.pipeline.session import Session, resolve_device

    t0 = time.perf_counter()
    where = {"host": socket.gethostname(), "pid": os.getpid()}
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    try:
        session = Session(device=resolve_device(spec["device"]), dtype=spec.get("dtype", "fp32"),
                          batch_size=spec["batch_size"])
        run = Run(config_from_dict(spec["config"]), Path(spec["out"]), session=session, cache_dir=spec["cache_dir"])
        record = run.run_unit(unit)
    except Exception as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8), **where}
    return {"ok": True, **record, **where, "seconds": round(time.perf_counter() - t0, 2)}


def unit_file(run, unit: Unit, record: dict) -> Path:
    """The file a finished unit wrote: its unit file, or (a fit) its artifact in the cache."""
    if unit.kind == "fit":
        return Path(run.cache_dir) / record["artifact_in_cache"]
    return run.unit_path(None if unit.kind == "originals" else unit.method, unit.attr, unit.seed)


def verify(run, unit: Unit, record: dict) -> str | None:
    """None if the file ``record`` reports exists with the sha256 the job computed (and, for a fit, the
    one its sidecar recorded); else what is wrong. Run by the driver before the unit is used."""
    from latent_edit_bench.assets import sha256_file
    from latent_edit_bench.contracts.method import sidecar

    path = unit_file(run, unit, record)
    if not path.exists():
        return f"{path} is missing"
    got = sha256_file(path)
    if got != record.get("sha256"):
        return f"{path}: sha256 {got[:12]} differs from the {str(record.get('sha256'))[:12]} the job reported"
    if unit.kind == "fit":
        try:
            side = json.loads(sidecar(path).read_text()).get("sha256")
        except (OSError, ValueError) as e:
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
                if u.kind == "originals":
                    raise
                on_event(u, "failed", {"error": f"{type(e).__name__}: {e}",
                                       "traceback": traceback.format_exc(limit=8)})
                continue
            on_event(u, "done", {**record, "seconds": round(time.perf_counter() - t0, 2)})


class SubmititExecutor:
    """Every unit a job through submitit: ``engine`` "slurm" (sbatch; the driver runs where Slurm's
    client commands do, the run folder and cache on storage the nodes share) or "submitit-local"
    (submitit's local subprocesses, at most ``max_live`` at once).

    ``device``: the device name each job resolves on its node ("auto": the node's GPU if it has one).
    ``threads``: torch threads per job (default ``cpus_per_job``); on the CPU, float sums depend on it.
    ``results_timeout_s``: how long submitit waits for a finished job's result file to appear (slow
    shared file systems) before the job counts as ended without a result.
    """

    def __init__(self, engine: str = "slurm", folder: Path | None = None, partition: str | None = None,
                 gpus_per_job: int = 0, cpus_per_job: int = 1, mem_gb: float | None = None, time_min: int = 240,
                 params: dict | None = None, max_attempts: int = 3, device: str | None = None,
                 threads: int | None = None, max_live: int | None = None, poll_s: float = 1.0,
                 results_timeout_s: float = 15.0, setup: list | tuple = (), dtype: str = "fp32"):
        if engine not in ("slurm", "submitit-local"):
            raise BenchError(f"unknown engine {engine!r}; valid: slurm, submitit-local")
        self.engine, self.folder, self.partition = engine, folder, partition
        self.gpus_per_job, self.cpus_per_job, self.mem_gb, self.time_min = gpus_per_job, cpus_per_job, mem_gb, time_min
        self.params, self.max_attempts, self.device = dict(params or {}), max_attempts, device
        self.dtype = dtype            # the jobs' --dtype (the driver may be on a CPU, which refuses half)
        self.threads = threads or cpus_per_job
        self.max_live = max_live if max_live is not None else (
            None if engine == "slurm" else max(1, (os.cpu_count() or 1) // max(1, cpus_per_job)))
        self.poll_s, self.results_timeout_s, self.setup = poll_s, results_timeout_s, list(setup)
        self.check()

    name = property(lambda self: self.engine)

    def describe(self) -> dict:
        """For the manifest: where the jobs ran (each unit's host is in units.json)."""
        return {"name": self.engine, "device": self.device, "partition": self.partition,
                "gpus_per_job": self.gpus_per_job, "cpus_per_job": self.cpus_per_job, "threads": self.threads}

    def check(self) -> None:
        """Fail before any work where the engine cannot be used, saying what to install."""
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise BenchError(f"--executor {self.engine} needs submitit: pip install 'latent-edit-bench[cluster]'") from None
        if self.engine == "slurm":
            missing = [c for c in ("sbatch", "sacct", "scancel") if shutil.which(c) is None]
            if missing:
                raise BenchError(f"--executor slurm: {', '.join(missing)} not found on PATH; run bench where "
                                 f"Slurm's client commands are (a login node), or use --executor local")
        if self.max_attempts < 1:
            raise BenchError(f"--max-attempts must be at least 1, got {self.max_attempts}")

    def _submitter(self, folder: Path, job_name: str):
        import submitit

        if self.engine == "slurm":
            ex = submitit.SlurmExecutor(folder=folder, max_num_timeout=0)
            opts = dict(job_name=job_name, time=int(self.time_min), nodes=1, ntasks_per_node=1,
                        cpus_per_task=int(self.cpus_per_job), stderr_to_stdout=True)
            if self.partition:
                opts["partition"] = self.partition
            if self.gpus_per_job:
                opts["gpus_per_node"] = int(self.gpus_per_job)
            if self.mem_gb:
                opts["mem"] = f"{int(self.mem_gb * 1024)}M"
            if self.params:
                opts["additional_parameters"] = dict(self.params)
            if self.setup:   # shell lines before python starts, e.g. "module load cuda/12.4"
                opts["setup"] = list(self.setup)
            ex.update_parameters(**opts)
        else:
            ex = submitit.LocalExecutor(folder=folder)
            ex.update_parameters(timeout_min=int(self.time_min), gpus_per_node=int(self.gpus_per_job))
        return ex

    def _reattach(self, rec: dict):
        """The live Slurm job a previous driver submitted for a unit, or None."""
        import submitit

        if self.engine != "slurm" or rec.get("engine") != "slurm" or rec.get("state") not in ("pending", "running"):
            return None
        if not rec.get("job_id") or not rec.get("folder"):
            return None
        job = submitit.SlurmJob(folder=rec["folder"], job_id=str(rec["job_id"]))
        if job.paths.result_pickle.exists() or job.get_info(mode="force").get("State") in _LIVE_SLURM_STATES:
            return job
        return None

    def execute(self, run, units: list[Unit], on_event: OnEvent) -> None:
        from submitit.core.utils import FailedJobError, UncompletedJobError

        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S") + f"-{os.getpid()}"
        # a folder per driver: Slurm job ids restart on a fresh controller, so old result files must not match
        folder = Path(self.folder or run.out / "jobs").absolute() / stamp
        ex = self._submitter(folder, f"bench-{run.cfg.run_id}")
        spec = run.spec(device=self.device, threads=self.threads, dtype=self.dtype)
        todo = set(units)
        needs = {u: [d for d in u.needs if d in todo] for u in units}
        waiting, live, done, attempts = list(units), {}, set(), {u: 0 for u in units}
        looked_up: set = set()   # fit units whose cache entry was checked

        for u in list(waiting):   # a previous driver's jobs that still run: wait for them, do not resubmit
            job = self._reattach(run.ledger.get(u.id))
            if job is not None:
                waiting.remove(u)
                live[u] = job
                attempts[u] = 1
                run.log(f"{u.id}: following job {job.job_id} submitted by an earlier bench run")

        def lost(u: Unit, why: str) -> None:
            if attempts[u] < self.max_attempts:
                _remove_partial_writes(run, u)
                waiting.append(u)
                run.log(f"{u.id}: {why}; resubmitting (attempt {attempts[u] + 1} of {self.max_attempts})")
                on_event(u, "pending", {"error": None, "lost": why})
            else:
                failed(u, {"error": f"{why} (attempt {attempts[u]} of {self.max_attempts})"})

        def failed(u: Unit, info: dict) -> None:
            if u.kind == "originals":
                raise RuntimeError(f"the originals job failed: {info.get('error')}")
            on_event(u, "failed", info)

        try:
            while waiting or live:
                for u in list(waiting):
                    if u.method is not None and run.method_failed(u.method):
                        waiting.remove(u)
                        on_event(u, "skipped", {"error": f"{u.method} failed earlier"})
                ready = [u for u in waiting if all(d in done for d in needs[u])]
                cached = [u for u in ready if u.kind == "fit" and u not in looked_up]
                for u in cached:                 # in the cache already: no job
                    looked_up.add(u)
                    record = run.cached_fit(u)
                    if record is not None and verify(run, u, record) is None:
                        ready.remove(u)
                        waiting.remove(u)
                        done.add(u)
                        on_event(u, "done", {**record, "engine": "cache", "job_id": None})
                if self.max_live is not None:
                    ready = ready[:max(0, self.max_live - len(live))]
                if ready:
                    self._submit(run, ex, spec, ready, live, attempts, folder, on_event)
                    for u in ready:
                        waiting.remove(u)
                moved = bool(ready or cached)
                for u, job in list(live.items()):
                    if not job.done():
                        if _is_running(job.state) and run.ledger.get(u.id).get("state") != "running":
                            on_event(u, "running", {})
                        continue
                    moved = True
                    del live[u]
                    job._results_timeout_s = self.results_timeout_s
                    try:
                        record = job.result()
                    except FailedJobError as e:   # the job's Python failed outside the unit (import, unpickling)
                        failed(u, {"error": f"job {job.job_id} failed: {_last_line(str(e))}",
                                   "traceback": str(e)[-4000:]})
                        continue
                    except UncompletedJobError:   # died without a result: killed, pre-empted, out of time
                        # (after FailedJobError, its subclass: a failure would otherwise be retried as lost)
                        lost(u, f"job {job.job_id} ended without a result (state {job.state})")
                        continue
                    if not record.get("ok"):
                        failed(u, {k: record.get(k) for k in ("error", "traceback", "host")})
                        continue
                    why = verify(run, u, record)
                    if why is not None:
                        lost(u, why)
                        continue
                    done.add(u)
                    on_event(u, "done", {k: v for k, v in record.items() if k != "ok"})
                if not moved:
                    time.sleep(self.poll_s)
        except BaseException:
            # the jobs go on without the driver: rerunning the same command follows them (Slurm)
            run.log(f"driver stopped with {len(live)} job(s) still queued or running; "
                    f"rerun the same command to resume")
            raise

    def _submit(self, run, ex, spec, ready, live, attempts, folder, on_event) -> None:
        from submitit.core.utils import FailedJobError, FailedSubmissionError

        try:
            if len(ready) > 1:
                with ex.batch():   # one job array: one sbatch call
                    jobs = [ex.submit(work, spec, u) for u in ready]
            else:
                jobs = [ex.submit(work, spec, ready[0])]
        except (FailedJobError, FailedSubmissionError, OSError) as e:   # sbatch refused, or found no cluster
            raise BenchError(f"--executor {self.engine}: submitting {len(ready)} job(s) failed: "
                             f"{_last_line(str(e)) or type(e).__name__}. Check the Slurm options (--slurm-partition, "
                             f"--slurm-param, ...) and that this machine reaches the cluster's controller; the "
                             f"units already done are kept: rerun the same command to go on") from None
        with run.ledger.batch():
            for u, job in zip(ready, jobs):
                attempts[u] += 1
                live[u] = job
                on_event(u, "pending", {"engine": self.engine, "job_id": str(job.job_id), "folder": str(folder),
                                        "log": str(job.paths.stdout), "attempts": attempts[u]})


def _is_running(state: str) -> bool:
    return str(state).upper() in ("RUNNING", "COMPLETING")


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip() and not set(line.strip()) <= {"-"}]
    errs = [line for line in lines if ("Error" in line or "Exception" in line) and not line.startswith(" ")]
    return (errs or lines or [""])[-1].strip()[:300]


def _remove_partial_writes(run, unit: Unit) -> None:
    """Temporary files a killed job left beside the unit's file (``atomic`` names them ``<name>.tmp*``)."""
    if unit.kind == "fit":
        return   # the artifact store's partial checkpoints are how a killed fit resumes: keep them
    path = run.unit_path(None if unit.kind == "originals" else unit.method, unit.attr, unit.seed)
    for p in path.parent.glob(path.name + ".tmp*"):
        p.unlink(missing_ok=True)


def make_executor(name: str, **opts):
    """The executor ``--executor name`` asks for; options that only one engine takes are refused elsewhere."""
    if name == "local":
        return LocalExecutor()
    if name in ("slurm", "submitit-local"):
        return SubmititExecutor(name, **opts)
    raise BenchError(f"unknown executor {name!r}; valid: {', '.join(ENGINES)}")


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
    manifest = json.loads(man.read_text())
    cfg = manifest["config"]
    ledger = Ledger(out)
    seeds = manifest.get("seeds", {}).get("fit") or [cfg["seed"] + k for k in range(int(cfg["fit_seeds"]))]
    units = all_units(cfg["methods"], cfg["attrs"], seeds, joint=manifest.get("joint_fits", ()))
    rows = []
    for u in units:
        rec = ledger.get(u.id)
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
