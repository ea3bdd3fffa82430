"""The floors of docs/design.md §0, enforced: import-linter's contracts in pyproject.toml (layers, what
methods and metrics may not know, who builds the plugin manager, no import cycles; imports inside
functions count), checked on the four roots of the namespace as a plain checkout sees them."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOTS = os.pathsep.join(str(ROOT / f) for f in ("bench", "methods", "metrics", "reports"))
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]


def lint(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": ROOTS}
    return subprocess.run(LINT, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_every_floor_holds():
    res = lint(ROOT)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert "0 broken" in res.stdout and "kept" in res.stdout


def test_the_check_fails_on_a_broken_floor(tmp_path):
    """The same contracts on a copy of the config, plus one the code breaks (the pipeline imports the
    contracts): the linter must say BROKEN, so a test that passes means the floors were checked."""
    config = (ROOT / "pyproject.toml").read_text() + '''
[[tool.importlinter.contracts]]
name = "a floor the code breaks: the pipeline may not know the contracts"
type = "forbidden"
source_modules = ["latent_edit_bench.pipeline"]
forbidden_modules = ["latent_edit_bench.contracts"]
'''
    (tmp_path / "pyproject.toml").write_text(config)
    res = lint(tmp_path)
    assert res.returncode != 0 and "BROKEN" in res.stdout, res.stdout[-2000:]
