"""`bench run --executor`: every fit and edit unit a job on a real engine (a single-node Slurm started by
the session fixture ``local_slurm``; submitit's local subprocesses only where Slurm cannot start), the
summary byte for byte the local run's, a killed job resubmitted, `bench status`, resume."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from latent_edit_bench.cli import cli
from latent_edit_bench.pipeline.executors import SubmititExecutor
from latent_edit_bench.pipeline.units import Ledger, Unit, unit_states, verify
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.worker import work
from latent_edit_bench.pipeline.run import Run, make_config
from latent_edit_bench.pipeline.session import Session
from conftest import SMALL_FITS, set_args

pytest.importorskip("submitit")

TORCH_THREADS = 1   # the jobs run with --cpus-per-job 1: one torch thread, so the float sums match
# the smallest sweep with every kind of unit: sefa (closed form), 1 attribute, 2 fit seeds, 8 samples,
# one level a side, the metrics that need only the attribute instrument (one net to load per job)
SWEEP = dict(methods="sefa", attrs="Male", n=8, fit_seeds=2, levels=(0.1,),
             overrides={"sefa": SMALL_FITS["sefa"]}, metrics=("edit", "topk"))
CLI_SWEEP = ["run", "--methods", "sefa", "--attrs", "Male", "-n", "8", "--fit-seeds", "2", "--levels", "0.1",
             *set_args({"sefa": SMALL_FITS["sefa"]}), "--metrics", "edit,topk", "--device", "cpu",
             "--no-report"]
RESULTS = ("summary.csv", "seeds.csv", "comparison.csv", "ranking.csv", "samples.parquet", "measurements.parquet")


def files(out: Path) -> dict:
    """Relative path -> bytes of every result file and unit (everything but logs, times and ledgers)."""
    keep = [out / f for f in RESULTS] + sorted((out / "units").rglob("*")) + sorted((out / "trajectories").rglob("*"))
    return {str(p.relative_to(out)): p.read_bytes() for p in keep if p.is_file()}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, cache):
    t0 = time.perf_counter()
    out = Run(make_config(**SWEEP), tmp_path_factory.mktemp("local") / "run", session=Session(get_plugins()), cache_dir=cache,
              log=lambda s: None).execute()
    return out, time.perf_counter() - t0


@pytest.fixture(scope="module")
def engine(request):
    """("slurm", None) with the session's single-node Slurm, else ("submitit-local", why Slurm is not here)."""
    from slurm_local import unavailable

    why = unavailable()
    if os.environ.get("BENCH_TEST_ENGINE") == "submitit-local":   # check the fallback where Slurm runs
        return "submitit-local", "BENCH_TEST_ENGINE=submitit-local"
    if why is None:
        request.getfixturevalue("local_slurm")
        return "slurm", None
    return "submitit-local", why


def worker_pids(job: str, engine: str) -> list[int]:
    """The processes running the job's Python: Slurm's step tasks (not the batch script or srun), or
    for submitit's local executor the worker itself, whose pid is the job id."""
    if engine != "slurm":
        return [int(job)]
    res = subprocess.run(["scontrol", "listpids", job], capture_output=True, text=True)
    rows = [line.split() for line in res.stdout.splitlines()[1:]]
    return [int(r[0]) for r in rows if len(r) >= 3 and r[2] != "batch"]


def wait_stopped(pids: list[int], timeout: float = 2.0) -> None:
    """Until every process is in state T: kill() queues SIGSTOP, a thread running on another core stops a
    moment later."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        states = []
        for pid in pids:
            try:
                states.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
            except OSError:   # gone already
                states.append("T")
        if all(s in "tT" for s in states):
            return
        time.sleep(0.01)


def kill_one_edit_job(out: Path, engine: str, seen: dict) -> None:
    """Watch `bench status` (recording the units it shows running) until an edit unit's job runs its
    Python, then kill that process mid-job, as the kernel's OOM killer or a lost node would.

    The worker is frozen first (SIGSTOP) and killed only if it has not yet written its result; one
    already past that point is thawed and the next job tried, because killing it then changes nothing.
    The kill is a SIGKILL to the process itself: `scancel` would cancel the job, and a cancel sends
    SIGCONT and SIGTERM and waits KillWait seconds, long enough for a short job to finish its work."""
    t0, tried = time.monotonic(), set()
    while time.monotonic() - t0 < 120:
        if (out / "manifest.json").exists():
            rows = unit_states(out)
            seen.setdefault("running", set()).update(r["unit"] for r in rows if r["state"] == "running")
            ledger = json.loads((out / "units.json").read_text()) if (out / "units.json").exists() else {}
            for r in rows:
                job = r["job_id"]
                if not (r["unit"].startswith("edit/") and job) or job in tried:
                    continue
                pids = worker_pids(job, engine)
                if not pids:
                    continue      # queued, or its Python not started yet
                tried.add(job)
                for pid in pids:
                    os.kill(pid, signal.SIGSTOP)
                wait_stopped(pids)
                result = Path(ledger[r["unit"]]["folder"]) / f"{job}_0_result.pkl"   # submitit's name for it
                if result.exists():
                    for pid in pids:
                        os.kill(pid, signal.SIGCONT)
                    seen.setdefault("too_late", []).append(job)
                    continue
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                seen["killed"] = (r["unit"], job)
                return
        time.sleep(0.1)


def start_driver_and_kill_it(out: Path, cache: Path, engine: str) -> dict:
    """`bench run --executor ENGINE` in a subprocess, SIGKILLed once it has submitted the first jobs (the
    jobs go on); returns units.json as the dead driver left it."""
    cmd = [sys.executable, "-m", "latent_edit_bench.cli", *CLI_SWEEP, "--executor", engine, "--cpus-per-job", "1",
           "--out", str(out), "--cache", str(cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ledger = out / "units.json"
    t0 = time.monotonic()
    try:
        while time.monotonic() - t0 < 120 and proc.poll() is None:
            if ledger.exists() and any(u.startswith("fit/") for u in json.loads(ledger.read_text())):
                break
            time.sleep(0.1)
    finally:
        proc.kill()
        proc.wait()
    return json.loads(ledger.read_text())


@pytest.mark.slow   # ~45 s on a quiet 2-core machine: Slurm start, 5 jobs, a resubmission, a local run
def test_sweep_on_the_engine_equals_the_local_run_and_survives_a_killed_job(engine, local_run, tmp_path):
    """Driver killed after submitting, rerun: it follows the jobs already queued instead of resubmitting
    them; then an edit job is SIGKILLed mid-way and resubmitted; the files equal the local run's."""
    name, why = engine
    out, cache = tmp_path / "dist", tmp_path / "cache"
    t0 = time.perf_counter()
    first = start_driver_and_kill_it(out, cache, name) if name == "slurm" else {}
    ex = SubmititExecutor(name, work=work, cpus_per_job=1, max_attempts=3, device="cpu", poll_s=0.3, results_timeout_s=1,
                          max_live=None if name == "slurm" else 2)
    seen: dict = {}
    killer = threading.Thread(target=kill_one_edit_job, args=(out, name, seen), daemon=True)
    killer.start()
    logs: list = []
    Run(make_config(**SWEEP), out, session=Session(get_plugins()), cache_dir=cache, log=logs.append, executor=ex).execute()
    wall = time.perf_counter() - t0
    killer.join(5)
    local_out, local_wall = local_run
    print(f"\nsmall sweep: local {local_wall:.1f} s, {name} {wall:.1f} s (machine shared; not a benchmark)")

    ledger = json.loads((out / "units.json").read_text())
    # the rerun followed the jobs the killed driver had submitted: same job ids, one attempt each
    followed = [u for u, r in first.items() if r.get("job_id")]
    if name == "slurm":   # its first submission: one job array, recorded in one write
        assert sorted(followed) == ["fit/sefa/seed0/Male", "fit/sefa/seed1/Male", "originals"]
    for u in followed:
        assert ledger[u]["job_id"] == first[u]["job_id"] and ledger[u]["attempts"] == 1, (u, ledger[u])
        assert any(line.startswith(f"{u}: following job {first[u]['job_id']}") for line in logs)
    # `bench status` showed units running while it went; a worker killed mid-job was resubmitted
    assert seen.get("running"), "bench status never showed a unit running"
    assert "killed" in seen, f"no edit job was caught running before its result (too late: {seen.get('too_late')})"
    unit, job = seen["killed"]
    rec = ledger[unit]
    assert rec["state"] == "done" and rec["attempts"] == 2 and f"job {job} ended without a result" in rec["lost"]
    # nothing lost or duplicated: the same files, byte for byte, and no temporary leftovers
    mine, theirs = files(out), files(local_out)
    assert sorted(mine) == sorted(theirs)
    assert [f for f in mine if mine[f] != theirs[f]] == []
    assert not list(out.rglob("*.tmp*"))
    states = unit_states(out)
    assert {r["state"] for r in states} == {"done"} and len(states) == 5   # originals, 2 fits, 2 edits
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["methods"]["sefa"]["status"] == "ok" and manifest["platform"]["executor"]["name"] == name
    assert sorted(manifest["methods"]["sefa"]["fits"]) == ["0", "1"]
    if why is not None:
        pytest.skip(f"ran through submitit's local executor, not Slurm: {why}")

    # the same command again: nothing to do, nothing submitted
    before = (out / "units.json").read_text()
    Run(make_config(**SWEEP), out, session=Session(get_plugins()), cache_dir=cache, log=lambda s: None, executor=ex).execute()
    assert (out / "units.json").read_text() == before
    assert files(out) == mine


def test_a_unit_file_changed_after_it_was_recorded_is_moved_aside_and_redone(local_run, cache, tmp_path):
    src, _ = local_run
    out = tmp_path / "copy"
    shutil.copytree(src, out)
    unit = out / "units" / "sefa" / "seed1" / "Male.safetensors"
    good = unit.read_bytes()
    unit.write_bytes(good[:-8] + b"\x00" * 8)       # still parses: only the sha256 tells
    run = Run(make_config(**SWEEP), out, session=Session(get_plugins()), cache_dir=cache, log=lambda s: None)
    record = json.loads((out / "units.json").read_text())["edit/sefa/seed1/Male"]
    assert "differs from the" in verify(run, Unit("edit", "sefa", "Male", 1), record)   # what the driver checks
    run.execute()
    assert unit.read_bytes() == good
    assert len(list(unit.parent.glob("Male.corrupt-*.safetensors"))) == 1
    assert [f for f in RESULTS if (out / f).read_bytes() != (src / f).read_bytes()] == []


def test_a_fit_already_in_the_cache_needs_no_job(local_run, cache, tmp_path):
    run = Run(make_config(**SWEEP), tmp_path / "r", session=Session(get_plugins()), cache_dir=cache, log=lambda s: None)
    run._load_models()
    unit = Unit("fit", "sefa", "Male", 1)
    record = run.cached_fit(unit)        # what SubmititExecutor checks before submitting a fit
    assert record["cache_hit"] and verify(run, unit, record) is None
    assert run.cached_fit(Unit("fit", "sefa", "Male", 7)) is None     # fit seed 7 was never fitted


def test_a_joint_fit_is_one_job_per_seed_that_every_attributes_edit_job_waits_for(tmp_path):
    """baseline (EYE) fits one T for Male and Bald per fit seed: one fit unit per seed, the only fit each edit
    unit needs; once fitted it is in the cache, so a rerun's driver submits no fit job for it."""
    cfg = make_config(methods="baseline", attrs="Male,Bald", n=8, fit_seeds=1, levels=(0.1,), metrics=("edit",),
                      overrides={"baseline": {"steps": 5}})
    cache = tmp_path / "cache"
    run = Run(cfg, tmp_path / "r", session=Session(get_plugins()), cache_dir=cache, log=lambda s: None)
    run.ledger = Ledger(run.out)
    units = run.todo()
    fit = Unit("fit", "baseline", None, 0, ("Bald", "Male"))
    assert [u.id for u in units] == ["originals", "fit/baseline/seed0", "edit/baseline/seed0/Male",
                                     "edit/baseline/seed0/Bald"]
    assert all(u.needs == (Unit("originals"), fit) for u in units if u.kind == "edit")
    run._load_models()
    assert run.cached_fit(fit) is None
    record = run.run_unit(fit)                        # what the fit job does
    assert verify(run, fit, record) is None and not record["cache_hit"]
    cached = run.cached_fit(fit)                      # what SubmititExecutor checks before submitting it
    assert cached["artifact_in_cache"] == record["artifact_in_cache"] and verify(run, fit, cached) is None


def exploding_plugins():
    """sefa plus a method whose fit raises (plugins passed in-process: the local executor)."""
    import types

    from latent_edit_bench.api import Entry, hookimpl
    from latent_edit_bench.contracts.method import Editor
    from latent_edit_bench.plugins import Plugins, make_plugin_manager

    class Boom(Editor):
        name = "exploding"

        def fit(self, ctx):
            raise RuntimeError("boom in fit")

        def edit(self, latents, attr, strength):
            return latents

        def strength_range(self, attr):
            return (-1.0, 1.0)

        def state_dict(self):
            return {}

        def load_state_dict(self, state):
            pass

    mod = types.ModuleType("exploding_methods")
    mod.register_methods = hookimpl(lambda: [Entry("exploding", Boom, "raises")])
    return Plugins(make_plugin_manager(extra_plugins=[mod]))


def test_status_shows_every_unit_and_a_failed_units_error(cache, tmp_path):
    out = tmp_path / "failing"
    cfg = make_config(**{**SWEEP, "methods": "sefa,exploding", "reference": "sefa"})
    Run(cfg, out, session=Session(exploding_plugins()), cache_dir=cache, log=lambda s: None).execute()
    res = CliRunner().invoke(cli, ["status", str(out)])
    assert res.exit_code == 0, res.output
    lines = {line.split()[0]: line for line in res.output.splitlines() if line.startswith("  ")}
    assert "done" in lines["originals"] and "done" in lines["edit/sefa/seed1/Male"]
    assert "failed" in lines["fit/exploding/seed0/Male"] and "RuntimeError: boom in fit" in lines["fit/exploding/seed0/Male"]
    assert "skipped" in lines["edit/exploding/seed0/Male"] and "skipped" in lines["fit/exploding/seed1/Male"]
    assert "no bench run is driving it" in res.output and "9 units: 5 done" in res.output
    rows = [json.loads(line) for line in CliRunner().invoke(cli, ["status", "--json", str(out)]).output.splitlines()]
    assert [r["state"] for r in rows if r["unit"].startswith("edit/exploding")] == ["skipped", "skipped"]
    manifest = json.loads((out / "manifest.json").read_text())["methods"]
    assert manifest["exploding"] == {**manifest["exploding"], "status": "failed", "stage": "fit Male seed 0"}


@pytest.mark.parametrize("args, needle", [
    (["run", "--methods", "sefa", "--slurm-partition", "gpu"], "--slurm-partition only apply to --executor slurm"),
    (["run", "--methods", "sefa", "--gpus-per-job", "1"], "--executor slurm or submitit-local"),
    (["run", "--methods", "sefa", "--executor", "submitit-local", "--slurm-param", "account=x"],
     "--slurm-param only apply to --executor slurm"),
    (["run", "--methods", "sefa", "--executor", "slurm", "--slurm-param", "account"], "expected KEY=VALUE"),
    (["run", "--methods", "sefa", "--executor", "submitit-local", "--slurm-setup", "module load cuda"],
     "--slurm-setup only apply to --executor slurm"),
    (["run", "--methods", "sefa", "--executor", "slurm", "--device", "cpu", "--gpus-per-job", "2"],
     "would not use their GPUs"),
    (["run", "--methods", "sefa", "--executor", "pbs"], "'pbs' is not one of 'local', 'slurm', 'submitit-local'"),
    (["status", "."], "is not a run folder"),
])
def test_bad_executor_options_exit_2_before_any_work(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and needle in res.output and "Traceback" not in res.output, res.output


def test_slurm_without_its_commands_says_where_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))   # no sbatch here
    res = CliRunner().invoke(cli, ["run", "--methods", "sefa", "--executor", "slurm"])
    assert res.exit_code == 2 and "sbatch, sacct, scancel not found on PATH" in res.output, res.output


def test_a_submission_slurm_refuses_exits_2_with_sbatchs_reason(engine, tmp_path, monkeypatch):
    """sbatch's own error (here a partition the cluster does not have) ends the run with exit 2 and its
    message, not a submitit traceback."""
    if engine[0] != "slurm":
        pytest.skip(f"needs the test session's Slurm: {engine[1]}")
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, [*CLI_SWEEP, "--executor", "slurm", "--slurm-partition", "nope", "--out", "run"])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    assert "submitting 3 job(s) failed: sbatch: error: Batch job submission failed: Invalid partition name" in res.output
