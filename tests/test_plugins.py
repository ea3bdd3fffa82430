"""The plugin host: built-ins come through the entry-point group; an external package is found the same way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from latent_edit_bench import api
from latent_edit_bench.errors import BenchError, UnknownName
from latent_edit_bench.plugins import Plugins, make_plugin_manager
from latent_edit_bench.registry import Entry, Registry
from conftest import run_bench

HERE = Path(__file__).parent


def test_builtins_are_entry_point_plugins():
    pm = make_plugin_manager()
    names = {pm.get_name(p) for p in pm.get_plugins()}
    assert {"backbones", "instruments"} <= names  # the names of our own entry points in pyproject.toml
    plugins = Plugins(pm)
    assert "dcgan" in plugins.backbones and plugins.backbones.origin("dcgan") == "backbones"
    assert "Male" in plugins.attributes() and len(plugins.attributes()) >= 40


def test_unknown_name_lists_valid_names():
    reg = Registry("method", [("p", [Entry("a", dict), Entry("b", dict)])])
    with pytest.raises(UnknownName, match=r"unknown method 'c'; valid methods: a, b"):
        reg.get("c")


def test_duplicate_and_malformed_registrations_are_refused():
    with pytest.raises(BenchError, match="registered twice"):
        Registry("metric", [("p1", [Entry("x", dict)]), ("p2", [Entry("x", dict)])])
    with pytest.raises(BenchError, match="not a latent_edit_bench.api.Entry"):
        Registry("metric", [("p1", [("x", dict)])])


def test_string_factories_import_lazily():
    reg = Registry("thing", [("p", [Entry("od", "collections:OrderedDict")])])
    assert reg.create("od", a=1) == {"a": 1}


@pytest.mark.slow
def test_external_plugin_package_is_listed_and_usable(tmp_path):
    """pip-install the throwaway package in tests/plugins into a private folder; `bench` must find it."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(HERE / "plugins" / "bench-hello")], check=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")]))
    listing = run_bench("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "hello-linear" in listing.stdout and "[hello]" in listing.stdout
    assert "Hello_World" in listing.stdout
    out = tmp_path / "hello.png"
    res = run_bench("sample", "--backbone", "hello-linear", "-n", "4", "-o", str(out), env=env)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0
    # without the package on the path it is gone again: the test really depended on the install
    assert "hello-linear" not in run_bench("list").stdout


def test_public_api():
    """latent_edit_bench.api re-exports one definition of each name; every name in __all__ resolves, and
    the package root is a namespace (no __init__.py in any of the four folders)."""
    assert api.Entry is Entry and callable(api.hookimpl)
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="public names"):
        api.no_such_name
    import latent_edit_bench

    assert not hasattr(latent_edit_bench, "__file__") or latent_edit_bench.__file__ is None
    assert len(list(latent_edit_bench.__path__)) >= 1


def test_one_import_namespace(tmp_path):
    """Installed, the package is latent_edit_bench alone (its plugin folders are subpackages): the
    names of unrelated PyPI distributions (bench, metrics, reports) are not taken. pyproject's
    explicit package list covers every package folder."""
    import tomllib

    root = HERE.parent
    probe = ("import importlib.util as u, latent_edit_bench.methods.eye, latent_edit_bench.reports.html; "
             "print([n for n in ('bench', 'methods', 'metrics', 'reports') if u.find_spec(n)])")
    res = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert res.returncode == 0 and res.stdout.strip() == "[]", res.stderr + res.stdout
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = setup["package-dir"]
    # a file's path is its import path: each folder holds latent_edit_bench/<...> under its own root, and
    # the namespace itself has no __init__.py anywhere (PEP 420)
    for pkg, folder in dirs.items():
        assert folder == "/".join((folder.split("/")[0], *pkg.split("."))), (pkg, folder)
    assert not list(root.glob("*/latent_edit_bench/__init__.py"))
    want = {"latent_edit_bench"}
    for pkg, folder in dirs.items():
        for init in (root / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(root / folder).parts
            if not any(part in ("build", "__pycache__") for part in rel):
                want.add(".".join((pkg, *rel)))
    for pkg, patterns in setup["package-data"].items():   # data folders are listed too (templates/)
        want |= {".".join((pkg, *p.split("/")[:-1])) for p in patterns if "/" in p}
    assert set(setup["packages"]) == want


def test_a_plugin_that_does_not_import_fails_alone(tmp_path, monkeypatch, bench_cli):
    """A third-party plugin whose module fails to import is one line naming the entry point and its
    distribution (not pluggy's traceback); `bench list` goes on without it (exit 0), and a command naming
    something it may have provided is refused with that line (exit 2)."""
    d = tmp_path / "bench_broken-0.1.dist-info"
    d.mkdir()
    (d / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-broken\nVersion: 0.1\n")
    (d / "entry_points.txt").write_text("[latent_edit_bench]\nbroken = bench_broken_plugin_module\n")
    (tmp_path / "bench_broken_plugin_module.py").write_text("raise ImportError('needs a library that is not here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from latent_edit_bench.plugins import get_plugins

    get_plugins.cache_clear()        # the session's plugin manager was built before this plugin existed
    try:
        listing = bench_cli("list")
        named = bench_cli("run", "--methods", "broken-method", "--attrs", "Male", "--out", tmp_path / "r")
        versions = get_plugins().versions()
    finally:
        get_plugins.cache_clear()    # and must not keep the broken one for later tests
    line = ("plugin 'broken' = bench_broken_plugin_module (distribution bench-broken 0.1) failed to load: "
            "ImportError: needs a library that is not here")
    assert listing.exit_code == 0 and "sefa" in listing.stdout
    assert [ln for ln in listing.stderr.splitlines() if ln.strip()] == [
        f"Warning: {line}; fix it or uninstall it (pip uninstall bench-broken); skipped"]
    assert named.exit_code == 2 and "unknown method 'broken-method'" in named.stderr and line in named.stderr
    assert "Traceback" not in listing.stderr + named.stderr
    assert "broken" not in {v["plugin"] for v in versions}   # the manifest lists what ran, not what was blocked
