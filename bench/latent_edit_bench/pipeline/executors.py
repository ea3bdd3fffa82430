"""Where a run's units are done, beyond this process: each unit a job on an existing engine (Slurm, or
submitit's local subprocesses), through submitit.

:class:`SubmititExecutor` submits each unit as a job as soon as the units it needs are done; the jobs
write to the shared run folder and cache (shared storage is the contract), the driver checks every file
a job reports against the sha256 the job computed before anything uses it, resubmits a job that ended
without a result (killed, pre-empted, out of time, node lost) up to ``max_attempts`` times, and keeps
every unit's state in ``<run>/units.json`` (``units.Ledger``), which ``bench status`` reads. The engine
schedules; the driver only holds a unit back until its inputs exist. What a job runs (``work``) is given
by the caller: ``latent_edit_bench.worker.work``, an entry point that builds the plugins on the node.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from latent_edit_bench.errors import BenchError, EnvironmentFault
from latent_edit_bench.pipeline.units import LocalExecutor, OnEvent, Unit, verify

ENGINES = ("local", "slurm", "submitit-local")
_LIVE_SLURM_STATES = ("PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED")

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
                 results_timeout_s: float = 15.0, setup: list | tuple = (), dtype: str = "fp32",
                 work: Callable[[dict, Unit], dict] | None = None):
        if engine not in ("slurm", "submitit-local"):
            raise BenchError(f"unknown engine {engine!r}; valid: slurm, submitit-local")
        if work is None:
            raise BenchError("SubmititExecutor needs work=: what a job runs (latent_edit_bench.worker.work)")
        self.work = work              # a job's entry point: (spec, unit) -> record; pickled by reference
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
                        if record.get("environment"):   # a full or read-only disk: no method to blame
                            raise EnvironmentFault(f"{u.id} on {record.get('host')}: {record['environment']}")
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
                    jobs = [ex.submit(self.work, spec, u) for u in ready]
            else:
                jobs = [ex.submit(self.work, spec, ready[0])]
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
