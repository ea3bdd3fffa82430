"""The command line: output files, and user errors exiting 2 with a message instead of a traceback."""

import numpy as np
import pytest
from PIL import Image

from conftest import run_bench


def test_sample_writes_grid(tmp_path):
    out = tmp_path / "grid.png"
    res = run_bench("sample", "--backbone", "dcgan", "-n", "6", "--seed", "3", "--ncol", "3", "-o", str(out))
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
    (["sample", "-o", "/dev/null/x.png"], "its parent '/dev/null' is not a directory"),
    (["sample", "-o", "grid.txt"], "name it with one of .png, .jpg"),
    (["sample", "--weights", "g.pt"], "backbone 'dcgan' brings its own weights and takes no --weights"),
    (["run", "--methods", "sefa", "--attrs", "Male,Male", "--out", "/tmp/never-written"],
     "an attribute is named twice in --attrs"),
    (["zoo", "fetch", "nope"], "valid zoo entries: "),
    # a --set value of the wrong kind, refused before any work (it used to fail the method mid-run)
    (["run", "--methods", "sefa", "--set", "sefa.top_k=abc", "--out", "/tmp/never-written"],
     "option top_k must be an integer (default 10), got 'abc'"),
    (["run", "--methods", "sefa", "--set", "sefa.max_sigmas=true", "--out", "/tmp/never-written"],
     "option max_sigmas must be a number"),
])
def test_usage_errors_exit_2_without_traceback(args, needle, bench_cli, tmp_path):
    res = bench_cli(*args, cwd=tmp_path)   # in-process: an unexpected exception would fail the test itself
    assert res.exit_code == 2, (res.stdout, res.stderr)
    assert needle in res.stderr



def test_missing_zoo_file_says_where_to_put_it(tmp_path):
    env = {"BENCH_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    res = run_bench("sample", "--backbone", "stylegan2-ffhq256-nvidia", env=env)
    assert res.returncode == 2
    assert str(tmp_path / "zoo" / "ffhq-res256-mirror-paper256-noaug.pkl") in res.stderr
    assert "bench zoo fetch stylegan2-ffhq256-nvidia" in res.stderr
    listing = run_bench("zoo", "list", env=env)
    assert listing.returncode == 0 and "550000.pt" in listing.stdout and "missing" in listing.stdout


def test_weights_directory_says_a_checkpoint_file_is_expected(tmp_path, bench_cli):
    res = bench_cli("sample", "--backbone", "stylegan2", "--weights", tmp_path)   # in-process: a traceback fails
    assert res.exit_code == 2
    assert f"{str(tmp_path)!r} is a directory; a checkpoint file is expected" in res.stderr
    assert "does not exist" not in res.stderr


def test_writable_dir_names_the_file_in_the_way(tmp_path):
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.fs import writable_dir

    (tmp_path / "f").write_text("")
    with pytest.raises(BenchError, match=r"'.*f' is not a directory"):
        writable_dir(tmp_path / "f" / "run")
    with pytest.raises(BenchError, match="it is not a directory"):
        writable_dir(tmp_path / "f")


@pytest.mark.parametrize("failed, code", [([], 0), (["exploding", "nans"], 1)])
def test_run_exits_1_naming_failed_methods(monkeypatch, tmp_path, failed, code):
    """`bench run` maps the manifest's failed methods to exit 1 (usage errors stay 2); the run itself is
    stubbed out and writes only the manifest a real run would leave."""
    import json

    from click.testing import CliRunner

    import latent_edit_bench.pipeline.run
    from latent_edit_bench.cli import cli

    class FakeRun:
        def __init__(self, cfg, out, **kw):
            self.out, self.failed = out, failed

        def execute(self):
            self.out.mkdir(parents=True, exist_ok=True)
            status = {m: {"status": "failed" if m in failed else "done"} for m in ["sefa", *failed]}
            (self.out / "manifest.json").write_text(json.dumps({"methods": status}))
            return self.out

    monkeypatch.setattr(latent_edit_bench.pipeline.run, "Run", FakeRun)
    import latent_edit_bench.reports.html                      # the report of the stubbed run: an empty page is enough here
    monkeypatch.setattr(latent_edit_bench.reports.html, "render_report", lambda runs, path: path)
    out = tmp_path / "r"
    res = CliRunner().invoke(cli, ["run", "--methods", "sefa", "--attrs", "Male", "--out", str(out),
                                   "--device", "cpu", "--cache", str(tmp_path / "c")])
    assert res.exit_code == code, res.output
    if failed:
        last = res.stderr.strip().splitlines()[-1]
        assert last.startswith("FAILED: exploding, nans")
        assert str(out / "report.html") in last and str(out / "manifest.json") in last
    else:
        assert "FAILED" not in res.output


def test_failed_line_without_report_points_at_the_manifest(tmp_path):
    from latent_edit_bench.cli import failed_line

    line = failed_line(["hfld"], tmp_path, report=False)
    assert line.startswith("FAILED: hfld") and "report.html" not in line and "manifest.json" in line
