"""The plugin host: built-ins come through the entry-point group; an external package is found the same way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench
from bench.errors import BenchError, UnknownName
from bench.plugins import Plugins, make_plugin_manager
from bench.registry import Entry, Registry

HERE = Path(__file__).parent
BENCH = [sys.executable, "-m", "bench.cli"]


def run_bench(*args, env=None):
    return subprocess.run(BENCH + list(args), capture_output=True, text=True, env=env, timeout=300)


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
    with pytest.raises(BenchError, match="not a bench.Entry"):
        Registry("metric", [("p1", [("x", dict)])])


def test_string_factories_import_lazily():
    reg = Registry("thing", [("p", [Entry("od", "collections:OrderedDict")])])
    assert reg.create("od", a=1) == {"a": 1}


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
    assert bench.Entry is Entry and callable(bench.hookimpl)
