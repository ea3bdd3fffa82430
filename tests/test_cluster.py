"""`bench run --executor`: every fit and edit unit a job on a real engine (a single-node Slurm started by
the session fixture ``local_slurm``; submitit's local subprocesses only where Slurm cannot start), the
summary byte for byte the local run's, a killed job resubmitted, `bench status`, resume."""

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import cli
from bench.executors import SubmititExecutor, unit_states
from bench.run import Run, make_config

pytest.importorskip("submitit")

TORCH_THREADS = 1   # the jobs run with --cpus-per-job 1: one torch thread, so the float sums match
# the smallest sweep with every kind of unit: sefa (closed form), 1 attribute, 2 fit seeds, 8 samples,
# one level a side, the metrics that need only the attribute instrument (one net to load per job)
SWEEP = dict(methods="sefa", attrs="Male", n=8, fit_seeds=2, levels=(0.1,),
             overrides={"sefa": {"n_samples": 16, "top_k": 3}}, metrics=("edit", "topk"), n_boot=200)
RESULTS = ("summary.csv", "seeds.csv", "comparison.csv", "ranking.csv", "samples.parquet", "measurements.parquet")


def files(out: Path) -> dict:
    """Relative path -> bytes of every result file and unit (everything but logs, times and ledgers)."""
    keep = [out / f for f in RESULTS] + sorted((out / "units").rglob("*")) + sorted((out / "trajectories").rglob("*"))
    return {str(p.relative_to(out)): p.read_bytes() for p in keep if p.is_file()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, cache):
    t0 = time.perf_counter()
    out = Run(make_config(**SWEEP), tmp_path_factory.mktemp("local") / "run", cache_dir=cache, progress=False,
              log=lambda s: None).execute()
    return out, time.perf_counter() - t0


@pytest.fixture(scope="module")
def engine(request):
    """("slurm", None) with the session's single-node Slurm, else ("submitit-local", why Slurm is not here)."""
    from slurm_local import unavailable

    why = unavailable()
    if why is None:
        request.getfixturevalue("local_slurm")
        return "slurm", None
    return "submitit-local", why


def kill_one_edit_job(out: Path, engine: str, seen: dict) -> None:
    """Wait until `bench status` shows an edit unit running, then SIGKILL its job's processes."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if (out / "manifest.json").exists():
            status = {r["unit"]: r for r in unit_states(out)}
            running = [r for u, r in status.items() if u.startswith("edit/") and r["state"] == "running"]
            if running:
                unit, job = running[0]["unit"], running[0]["job_id"]
                seen["status"] = {u: r["state"] for u, r in status.items()}
                if engine == "slurm":   # every process of the job: the batch shell, srun and the worker
                    subprocess.run(["scancel", "--signal=KILL", "--full", job], check=True)
                else:                   # submitit's local jobs: the job id is the worker's pid
                    subprocess.run(["kill", "-9", job], check=True)
                seen["killed"] = (unit, job)
                return
        time.sleep(0.1)


def test_sweep_on_the_engine_equals_the_local_run_and_survives_a_killed_job(engine, local_run, cache, tmp_path):
    name, why = engine
    out = tmp_path / "dist"
    ex = SubmititExecutor(name, cpus_per_job=1, max_attempts=3, device="cpu", poll_s=0.3, results_timeout_s=1,
                          max_live=2)
    seen: dict = {}
    out.mkdir()
    killer = threading.Thread(target=kill_one_edit_job, args=(out, name, seen), daemon=True)
    killer.start()
    t0 = time.perf_counter()
    Run(make_config(**SWEEP), out, cache_dir=tmp_path / "cache", progress=False, log=lambda s: None,
        executor=ex).execute()
    wall = time.perf_counter() - t0
    killer.join(5)
    local_out, local_wall = local_run
    print(f"\nsmall sweep: local {local_wall:.1f} s, {name} {wall:.1f} s (machine shared; not a benchmark)")

    # a worker killed mid-job was resubmitted, and `bench status` showed it running before
    assert "killed" in seen, "no edit job was caught running"
    unit, job = seen["killed"]
    assert seen["status"][unit] == "running"
    rec = json.loads((out / "units.json").read_text())[unit]
    assert rec["state"] == "done" and rec["attempts"] == 2 and f"job {job} ended without a result" in rec["lost"]
    # nothing lost or duplicated: the same files, byte for byte, and no temporary leftovers
    mine, theirs = files(out), files(local_out)
    assert sorted(mine) == sorted(theirs)
    assert [f for f in mine if mine[f] != theirs[f]] == []
    assert not list(out.rglob("*.tmp*"))
    states = unit_states(out)
    assert {r["state"] for r in states} == {"done"} and len(states) == 5   # originals, 2 fits, 2 edits
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["methods"]["sefa"]["status"] == "ok"
    assert sorted(manifest["methods"]["sefa"]["fits"]) == ["0", "1"]
    if why is not None:
        pytest.skip(f"ran through submitit's local executor, not Slurm: {why}")

    # the same command again: nothing to do, nothing submitted
    before = (out / "units.json").read_text()
    Run(make_config(**SWEEP), out, cache_dir=tmp_path / "cache", progress=False, log=lambda s: None,
        executor=ex).execute()
    assert (out / "units.json").read_text() == before
    assert files(out) == mine
