"""The plain-checkout path a lent GPU machine uses (no pip install): tools/checkout_env.sh and the
dist-info it generates (tools/checkout_metadata.py)."""

import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import checkout_metadata  # noqa: E402


def test_the_generated_entry_points_are_pyprojects(tmp_path):
    d = checkout_metadata.write(ROOT / "pyproject.toml", tmp_path)
    text = (d / "entry_points.txt").read_text()
    _, points = checkout_metadata.read(ROOT / "pyproject.toml")
    assert text.startswith("[latent_edit_bench]\n") and len(points) >= 4
    for name, target in points.items():
        assert f"{name} = {target}\n" in text


def test_a_pyproject_without_the_entry_point_table_fails_loudly(tmp_path):
    bad = tmp_path / "pyproject.toml"
    bad.write_text('[project]\nname = "x"\nversion = "1"\n[project.entry-points.bench]\na = "b"\n')
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "checkout_metadata.py"), str(bad), str(tmp_path)],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "entry-points.latent_edit_bench" in res.stderr
    assert not list(tmp_path.glob("*.dist-info"))


def test_a_python_without_the_package_imports_it_and_finds_every_plugin(tmp_path):
    """A fresh interpreter that sees this environment's dependencies (torch, pluggy, ...) but neither the
    installed package nor its metadata: after sourcing checkout_env.sh, the package imports from the
    checkout and its plugins register through the generated entry points."""
    env_dir = tmp_path / "plain"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                        text=True).strip())
    deps = tmp_path / "deps"         # this environment's packages, less the package's own install
    deps.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.startswith(("latent_edit_bench", "latent-edit-bench", "__editable__")):
            (deps / entry.name).symlink_to(entry)
    (site / "deps.pth").write_text(f"{deps}\n")
    hidden = subprocess.run([str(py), "-c", "import latent_edit_bench.methods"], capture_output=True)
    assert hidden.returncode != 0, "the plain interpreter must not see the installed package"
    script = (f'ROOT={ROOT} PY={py} SITE={tmp_path / "site"}; . "$ROOT/tools/checkout_env.sh" || exit 9; '
              f'printf "%s" "$CHECKOUT_NOTES"; '
              f'"$PY" -c "from latent_edit_bench.plugins import get_plugins; import latent_edit_bench.methods.eye as e; '
              f'from latent_edit_bench.assets import asset_path; '
              f'print(sorted(get_plugins().methods.names()), e.__file__, asset_path(\'dcgan-digiface\'))"')
    # cwd outside the checkout: an editable install leaves an egg-info in its root that would be found
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "generated dist-info" in res.stdout and "linked from the checkout" in res.stdout
    assert "'baseline'" in res.stdout and "'hfld'" in res.stdout and "'ganspace'" in res.stdout
    eye_file, asset = res.stdout.split()[-2:]
    assert eye_file.startswith(str(tmp_path / "site" / "latent_edit_bench" / "methods")) and Path(asset).is_file()
