"""The plain-checkout path (a lent GPU machine, no pip install): one PYTHONPATH line, no generated
metadata, no links. A fresh copy of the tracked files, an interpreter that sees this environment's
dependencies but not the installed package, and `python -m latent_edit_bench` lists the plugins and
does a tiny run."""

import os
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

from conftest import SMALL_FITS, set_args

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("bench", "methods", "metrics", "reports")


def source_files() -> list[str]:
    """The four folders' files as a checkout has them: git's list (tracked and not ignored) in a clone,
    else (an exported copy without .git) every file less build products."""
    res = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", *FOLDERS],
                         cwd=ROOT, capture_output=True)
    if res.returncode == 0:
        return [f.decode() for f in res.stdout.split(b"\0") if f]
    skip = ("__pycache__", "build", ".egg-info")
    return [str(p.relative_to(ROOT)) for f in FOLDERS for p in (ROOT / f).rglob("*")
            if p.is_file() and not any(s in part for part in p.relative_to(ROOT).parts for s in skip)]


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """(python, checkout, env): a venv without the package, a `git archive` copy of the working tree's
    tracked files, and the environment with the one PYTHONPATH line."""
    tmp = tmp_path_factory.mktemp("plain")
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    deps = tmp / "deps"         # this environment's packages, less the package's own install
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("latent_edit_bench", "latent-edit-bench", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    (site / "deps.pth").write_text(f"{deps}\n")
    checkout = tmp / "checkout"
    checkout.mkdir()
    for rel in source_files():
        src, dst = ROOT / rel, checkout / rel
        if src.is_file():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    hidden = subprocess.run([str(py), "-c", "import latent_edit_bench.plugins"], capture_output=True, env=env, cwd=tmp)
    assert hidden.returncode != 0, "the plain interpreter must not see the installed package"
    env["PYTHONPATH"] = os.pathsep.join(str(checkout / f) for f in FOLDERS)   # the one line (README, docs/design.md)
    return py, checkout, env


def test_a_plain_checkout_lists_every_plugin(plain):
    py, checkout, env = plain
    res = subprocess.run([str(py), "-m", "latent_edit_bench", "list"], capture_output=True, text=True, env=env,
                         cwd=checkout.parent, timeout=300)
    assert res.returncode == 0, res.stderr
    for name in ("dcgan", "probe", "baseline", "hfld", "ganspace", "emotion", "identity"):
        assert name in res.stdout, name
    where = subprocess.run([str(py), "-c", "import latent_edit_bench.methods.eye as e; print(e.__file__)"],
                           capture_output=True, text=True, env=env, cwd=checkout.parent)
    assert where.stdout.strip() == str(checkout / "methods" / "latent_edit_bench" / "methods" / "eye.py")


@pytest.mark.slow
def test_a_plain_checkout_does_a_tiny_run(plain, tmp_path):
    py, checkout, env = plain
    out = tmp_path / "run"
    res = subprocess.run([str(py), "-m", "latent_edit_bench", "run", "--methods", "sefa", "--attrs", "Male", "-n", "8",
                          "--fit-seeds", "2", "--levels", "0.1", *set_args({"sefa": SMALL_FITS["sefa"]}),
                          "--metrics", "edit,emotion", "--out", str(out), "--cache", str(tmp_path / "cache")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (out / "summary.csv").stat().st_size > 0 and (out / "report.html").is_file()
