"""Fault injection on tiny runs: kills in the middle of a write, flipped and truncated files, missing
index files, a full and a read-only file system, hostile images, concurrent runs on one cache.

After every repair the same command must give byte-identical tables to an undisturbed run; every fault a
user can see is one line (exit 2 where the input or the machine is at fault, never a traceback). The
table in docs/run-format.md ("Faults") lists the same cases.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import SMALL_FITS, set_args

TINY = ["run", "--methods", "sefa,interfacegan", "--attrs", "Male", "-n", "8", "--reference", "sefa",
        "--fit-seeds", "1", "--levels", "0.1", "--metrics", "edit", *set_args(SMALL_FITS)]
CSVS = ("summary.csv", "seeds.csv", "comparison.csv", "ranking.csv", "power.csv", "validity.csv")
PARQUETS = ("measurements.parquet", "samples.parquet")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(run folder, fit cache) of one undisturbed tiny run: the reference every repair must reproduce."""
    from click.testing import CliRunner

    from latent_edit_bench.cli import cli

    root = tmp_path_factory.mktemp("tiny")
    out, cache = root / "run", root / "cache"
    res = CliRunner().invoke(cli, TINY + ["--out", str(out), "--cache", str(cache)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return out, cache


def assert_same_tables(out: Path, ref: Path) -> None:
    for name in CSVS:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    for name in PARQUETS:
        pd.testing.assert_frame_equal(pd.read_parquet(out / name), pd.read_parquet(ref / name))


def copy_run(tiny, tmp_path) -> tuple[Path, Path]:
    out, cache = tmp_path / "run", tmp_path / "cache"
    shutil.copytree(tiny[0], out)
    shutil.copytree(tiny[1], cache)
    return out, cache


def one_line_error(res, *needles) -> None:
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error: ")]
    assert res.exit_code == 2, res.output
    assert len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    for n in needles:
        assert n in errors[0], errors[0]


def corrupted(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.corrupt-*"))


# -- kills in the middle of a write -------------------------------------------------------------------

# `bench` in a process that SIGKILLs itself at one write (KILL_AT: the end of the file's path): "fsync" leaves
# that file's temporary copy half written (the data that reached the disk), "replace" leaves it whole but not
# yet renamed into place.
KILLER = r"""
import os, signal, sys
target, how = os.environ["KILL_AT"], os.environ["KILL_HOW"]
fsync, replace = os.fsync, os.replace
def die():
    os.kill(os.getpid(), signal.SIGKILL)
def killing_fsync(fd):
    name = os.readlink(f"/proc/self/fd/{fd}")
    if how == "fsync" and ".tmp" in name and name.rsplit(".tmp", 1)[0].endswith(target):
        os.truncate(name, os.path.getsize(name) // 2)
        die()
    fsync(fd)
def killing_replace(src, dst, *a, **k):
    if how == "replace" and str(dst).endswith(target):
        die()
    replace(src, dst, *a, **k)
os.fsync, os.replace = killing_fsync, killing_replace
from latent_edit_bench.cli import cli
sys.exit(cli())
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")
@pytest.mark.parametrize("target, how, fresh", [
    ("summary.csv", "fsync", False),           # a finished run re-summarising (it used to leave 0 bytes)
    ("measurements.parquet", "replace", False),   # whole but not renamed: the rerun sweeps it
    ("units.json", "fsync", True),             # the first write of a fresh run (manifest.json is written the same way)
    ("interfacegan/seed0/Male.safetensors", "fsync", True),   # the second edit unit: the first is done
])
def test_a_kill_mid_write_leaves_no_half_file_and_the_rerun_is_identical(tiny, tmp_path, bench_cli, target,
                                                                         how, fresh):
    """The same command after the kill resumes: finished units are not redone (their files untouched),
    the tables are byte-identical to an undisturbed run's."""
    out, cache = copy_run(tiny, tmp_path)
    if fresh:
        shutil.rmtree(out)
    cmd = [sys.executable, "-c", KILLER, *TINY, "--out", str(out), "--cache", str(cache)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "KILL_AT": target, "KILL_HOW": how})
    assert proc.returncode == -signal.SIGKILL, f"never reached the write of {target}: {proc.stderr[-1500:]}"
    for name in CSVS + PARQUETS:   # what a later command reads is the old file or none, never a part
        if (out / name).exists():
            assert (out / name).read_bytes() == (tiny[0] / name).read_bytes(), name
    done = {p: p.stat().st_mtime_ns for p in (out / "units").rglob("*.safetensors")} if (out / "units").exists() else {}
    res = bench_cli(*TINY, "--out", out, "--cache", cache)
    assert res.exit_code == 0, res.output
    assert_same_tables(out, tiny[0])
    assert all(p.stat().st_mtime_ns == t for p, t in done.items()), "a finished unit was redone"
    if target.startswith("interfacegan"):
        assert _unit(out) in done and "sefa: ladder edits" not in res.output
    assert not list(out.glob("*.tmp*")), "the rerun leaves no temporary file at the top of the folder"


# -- flipped, truncated and missing files -------------------------------------------------------------

def _flip(path: Path, n: int = 40) -> None:
    data = bytearray(path.read_bytes())
    for i in np.random.default_rng(0).choice(len(data), n, replace=False):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _unit(out: Path) -> Path:
    return out / "units" / "sefa" / "seed0" / "Male.safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("damage, quarantined", [
    (lambda out: _flip(_unit(out)), "Male.corrupt-"),
    # a truncated index (used to: JSONDecodeError) and a truncated unit it no longer vouches for (SafetensorError)
    (lambda out: (_truncate(_unit(out)), _truncate(out / "units.json")), ("units.corrupt-", "Male.corrupt-")),
    (lambda out: _truncate(out / "manifest.json"), "manifest.corrupt-"),     # used to: JSONDecodeError
    (lambda out: _truncate(out / "validity.csv"), "validity.corrupt-"),
    (lambda out: (out / "summary.csv").write_bytes(b""), None),             # rewritten from the units
    (lambda out: _truncate(out / "measurements.parquet"), None),
], ids=["unit-flipped", "unit-and-units.json-truncated", "manifest-truncated",
        "validity-truncated", "summary-emptied", "measurements-truncated"])
def test_a_damaged_run_file_is_moved_aside_and_redone(tiny, tmp_path, bench_cli, damage, quarantined):
    out, cache = copy_run(tiny, tmp_path)
    damage(out)
    res = bench_cli(*TINY, "--out", out, "--cache", cache)
    assert res.exit_code == 0, res.output
    assert_same_tables(out, tiny[0])
    for prefix in [quarantined] if isinstance(quarantined, str) else quarantined or []:
        assert any(n.startswith(prefix) for n in corrupted(out)), corrupted(out)
    assert bench_cli("report", out, "-o", tmp_path / "r.html").exit_code == 0


@pytest.mark.slow
def test_two_faults_a_flipped_artifact_without_its_sidecar_is_refitted_not_trusted(tiny, tmp_path, bench_cli):
    """The case that once gave silently wrong numbers: 40 flipped bytes and no sidecar to check them."""
    _, cache = copy_run(tiny, tmp_path)
    artifact = next((cache / "sefa").glob("*[0-9a-f].safetensors"))
    _flip(artifact)
    artifact.with_suffix(".json").unlink()
    out = tmp_path / "again"
    res = bench_cli(*TINY, "--out", out, "--cache", cache)
    assert res.exit_code == 0, res.output
    assert_same_tables(out, tiny[0])
    assert corrupted(cache / "sefa"), "the damaged artifact is kept aside for inspection"


@pytest.mark.parametrize("name", ["units.json", "manifest.json"])
def test_status_and_report_name_a_corrupt_index_in_one_line(tiny, tmp_path, bench_cli, name):
    out, _ = copy_run(tiny, tmp_path)
    _truncate(out / name)
    one_line_error(bench_cli("status", out), name, "bench run")
    if name == "manifest.json":
        one_line_error(bench_cli("report", out, "-o", tmp_path / "r.html"), name, "bench run")


def test_report_plan_and_the_api_read_only_the_tables_the_run_wrote(tiny, tmp_path, bench_cli):
    from latent_edit_bench import api
    from latent_edit_bench.errors import BenchError

    out, _ = copy_run(tiny, tmp_path)
    rows = (out / "summary.csv").read_text().splitlines(keepends=True)
    (out / "summary.csv").write_text("".join(rows[: len(rows) // 2]))   # still parses: only the hash tells
    one_line_error(bench_cli("report", out, "-o", tmp_path / "r.html"), "summary.csv", "sha256", "bench run")
    with pytest.raises(BenchError, match="summary.csv is not the file the run wrote"):
        api.load_run(out)
    (out / "power.csv").write_text((out / "power.csv").read_text() + "\n")   # (the tiny run's has no rows)
    one_line_error(bench_cli("plan", out), "power.csv", "sha256", "bench run")


def test_report_of_an_unfinished_run_says_how_to_resume(tiny, tmp_path, bench_cli):
    out, _ = copy_run(tiny, tmp_path)
    (out / "summary.csv").unlink()
    one_line_error(bench_cli("report", out, "-o", tmp_path / "r.html"), "has not finished", "resumes",
                   "bench status")


# -- the machine's faults: full, read-only, no permission ---------------------------------------------

def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                                                capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (root only, where mounting is allowed; else the test skips)."""
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("needs root and permission to mount a tmpfs")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_blames_no_method_and_the_rerun_is_identical(tiny, tmp_path, small_disk,
                                                                              bench_cli):
    _, cache = copy_run(tiny, tmp_path)
    filler = small_disk / "filler"
    free = shutil.disk_usage(small_disk).free
    filler.write_bytes(b"\0" * (free - 48 * 1024))   # room for the manifest and a few units, not the run
    out = small_disk / "run"
    res = bench_cli(*TINY, "--out", out, "--cache", cache)
    one_line_error(res, "disk is full", "ENOSPC", "resumes")
    assert "FAILED" not in res.output
    methods = json.loads((out / "manifest.json").read_text())["methods"] if (out / "manifest.json").exists() else {}
    assert all(m.get("status") != "failed" for m in methods.values()), methods
    filler.unlink()
    res = bench_cli(*TINY, "--out", out, "--cache", cache)
    assert res.exit_code == 0, res.output
    assert_same_tables(out, tiny[0])


def test_a_read_only_folder_is_refused_in_one_line(tiny, tmp_path, small_disk, bench_cli):
    assert subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True).returncode == 0
    one_line_error(bench_cli(*TINY, "--out", small_disk / "run", "--cache", tmp_path / "c"), "cannot write",
                   "Read-only file system")
    one_line_error(bench_cli("report", tiny[0], "-o", small_disk / "r.html"), "cannot write", "Read-only")


@pytest.mark.slow
def test_permission_denied_inside_a_unit_stops_the_run_without_blaming_the_method(tiny, tmp_path, bench_cli,
                                                                                  monkeypatch):
    """Root ignores file modes, so the fault is injected where the unit writes its file."""
    from latent_edit_bench.pipeline import run

    out, cache = tmp_path / "run", copy_run(tiny, tmp_path)[1]
    shutil.rmtree(tmp_path / "run")

    def denied(path, tensors):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(run, "save_tensors", denied)
    res = bench_cli(*TINY, "--out", out, "--cache", cache)
    one_line_error(res, "permission denied", "EACCES", str(out / "units"))
    assert "FAILED" not in res.output
    monkeypatch.undo()
    assert bench_cli(*TINY, "--out", out, "--cache", cache).exit_code == 0
    assert_same_tables(out, tiny[0])


def test_bench_report_to_a_device_is_refused(tiny, bench_cli):
    one_line_error(bench_cli("report", tiny[0], "-o", "/dev/full"), "not a regular file")


# -- images -----------------------------------------------------------------------------------------

def test_images_are_read_in_every_mode_or_refused_naming_it(tmp_path):
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.images import read_rgb

    rgb = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    grey16 = np.linspace(0, 65535, 24 * 32).reshape(24, 32).astype(np.uint16)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    got = read_rgb(tmp_path / "g16.png")
    assert got.shape == (24, 32, 3) and got.min() == 0 and got.max() == 255   # was: all white
    assert np.abs(got[..., 0].astype(int) - np.round(grey16 / 257)).max() <= 1
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "a.png")
    assert (read_rgb(tmp_path / "a.png") == rgb).all()
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.tif")
    assert np.abs(read_rgb(tmp_path / "c.tif").astype(int) - rgb).max() <= 1
    Image.fromarray(rgb).quantize(256).save(tmp_path / "p.png")
    assert np.abs(read_rgb(tmp_path / "p.png").astype(int) - rgb).mean() < 12   # a palette's colours, near
    Image.fromarray(rgb[..., 0]).save(tmp_path / "l.png")
    assert (read_rgb(tmp_path / "l.png") == rgb[..., :1]).all()
    Image.fromarray(rgb[..., 0].astype(np.float32)).save(tmp_path / "f.tif")
    with pytest.raises(BenchError, match="image mode 'F'"):
        read_rgb(tmp_path / "f.tif")
    (tmp_path / "t.png").write_bytes((tmp_path / "a.png").read_bytes()[:120])
    with pytest.raises(BenchError, match="cannot read .*t.png"):
        read_rgb(tmp_path / "t.png")


def test_a_decompression_bomb_is_refused_before_decoding_unless_the_limit_is_raised(tmp_path, bench_cli):
    from latent_edit_bench.cli.common import MAX_PIXELS_OPTION
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.images import MAX_PIXELS, read_rgb

    bomb = tmp_path / "bomb.png"
    Image.new("1", (12000, 9000)).save(bomb)        # 108 MP (324 MB as RGB) in a file of ~20 KB
    assert bomb.stat().st_size < 1_000_000
    one_line_error(bench_cli("measure", bomb, "-o", tmp_path), "108,000,000 pixels", "--max-pixels 108000000")
    small = tmp_path / "small.png"
    Image.new("RGB", (32, 24)).save(small)
    with pytest.raises(BenchError, match="768 pixels, over the limit of 700"):
        read_rgb(small, max_pixels=700)
    assert read_rgb(small, max_pixels=768).shape == (24, 32, 3)
    # the CLI's default is the library's
    assert [p.default for p in MAX_PIXELS_OPTION(lambda: None).__click_params__] == [MAX_PIXELS]


# -- shared caches ----------------------------------------------------------------------------------

def test_concurrent_fits_of_one_artifact_fit_once_the_second_waits_and_loads(backbone, tmp_path):
    from latent_edit_bench.contracts.artifacts import fit_or_load
    from latent_edit_bench.contracts.method import FitContext, PerAttributeEditor

    fits = []

    class Slow(PerAttributeEditor):
        name = "slow"

        def fit_attribute(self, ctx, attr, shared):
            fits.append(attr)
            time.sleep(1.0)
            return {"v": 1.0}

        def edit(self, latents, attr, strength):
            return latents

        def strength_range(self, attr):
            return (-1.0, 1.0)

    ctx = FitContext(backbone, {}, attributes=("Male",), seed=0, device="cpu", cache_dir=tmp_path)
    editors = [Slow(), Slow()]
    threads = [threading.Thread(target=fit_or_load, args=(e, ctx)) for e in editors]
    for t in threads:
        t.start()
        time.sleep(0.2)
    for t in threads:
        t.join(30)
    assert fits == ["Male"]
    assert sorted(e.cache_hit for e in editors) == [False, True]


def test_files_are_created_with_the_users_umask(tmp_path):
    """A cache shared by a group (umask 002) needs group-writable files; safetensors alone creates 0600."""
    code = ("import os, sys, torch; os.umask(0o002)\n"
            "from latent_edit_bench.contracts.artifacts import save_artifact\n"
            "from latent_edit_bench.fs import save_tensors, write_text\n"
            "d = sys.argv[1]\n"
            "save_artifact(f'{d}/a.safetensors', {'t': torch.zeros(2)})\n"
            "save_tensors(f'{d}/u.safetensors', {'t': torch.zeros(2)})\n"
            "write_text(f'{d}/m.json', '{}')\n")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=120)
    modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    assert modes == {"a.safetensors": 0o664, "a.json": 0o664, "u.safetensors": 0o664, "m.json": 0o664}


def test_a_hash_index_vouches_only_for_the_files_it_recorded(tmp_path):
    """bench augment's and bench invert's resume check (fs.HashIndex): a file counts as done only if the
    index records its sha256; a changed or unrecorded file is moved aside; a corrupt index vouches for none."""
    from latent_edit_bench.fs import HashIndex

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    index = HashIndex(tmp_path / "index.json")
    index.record(a)
    assert index.check(a) and not index.check(tmp_path / "missing.bin")
    assert not index.check(b) and not b.exists()                    # unrecorded: moved aside, to be redone
    a.write_bytes(b"One")
    assert not HashIndex(tmp_path / "index.json").check(a) and not a.exists()
    a.write_bytes(b"one")
    (tmp_path / "index.json").write_text('{"a.bin": "')              # truncated
    assert not HashIndex(tmp_path / "index.json").check(a)
    assert sorted(p.name.split(".corrupt-")[0] for p in tmp_path.glob("*.corrupt-*")) == ["a", "a", "b", "index"]
