"""The command line: output files, and user errors exiting 2 with a message instead of a traceback."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

BENCH = [sys.executable, "-m", "bench.cli"]


def run(*args, **kw):
    return subprocess.run(BENCH + list(args), capture_output=True, text=True, timeout=300, **kw)


def test_sample_writes_grid(tmp_path):
    out = tmp_path / "grid.png"
    res = run("sample", "--backbone", "dcgan", "-n", "6", "--seed", "3", "--ncol", "3", "-o", str(out))
    assert res.returncode == 0, res.stderr
    img = np.asarray(Image.open(out))
    assert img.shape == (2 * 66 + 2, 3 * 66 + 2, 3)  # 64 px tiles, 2 px padding
    assert img.std() > 20  # not a blank canvas


@pytest.mark.parametrize("args, needle", [
    (["sample", "--backbone", "nope"], "valid backbones: dcgan"),
    (["sample", "-n", "0"], "-n"),
    (["sample", "--device", "cuda:0"], "no CUDA GPU"),
    (["sample", "--device", "potato"], "valid: auto, cpu"),
    (["sample", "-o", "/proc/forbidden/x.png"], "cannot write"),
    (["sample", "--backbone", "stylegan2"], "needs --weights"),
    (["sample", "--backbone", "stylegan2", "--weights", "/no/such.pt"], "no such file"),
    (["zoo", "fetch", "nope"], "valid zoo entrys"),
])
def test_usage_errors_exit_2_without_traceback(args, needle):
    res = run(*args)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert needle in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_zoo_file_says_where_to_put_it(tmp_path):
    env = {"BENCH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = run("sample", "--backbone", "stylegan2-ffhq256-nvidia", env=env)
    assert res.returncode == 2
    assert str(tmp_path / "zoo" / "ffhq-res256-mirror-paper256-noaug.pkl") in res.stderr
    assert "bench zoo fetch stylegan2-ffhq256-nvidia" in res.stderr
    listing = run("zoo", "list", env=env)
    assert listing.returncode == 0 and "550000.pt" in listing.stdout and "missing" in listing.stdout
