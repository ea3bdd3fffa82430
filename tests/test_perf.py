"""`bench perf` (its timings, --precision and --estimate), the official-loop reference it times against,
and tools/gpu/gpu_check.sh --smoke."""

import csv
import math
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from latent_edit_bench.cli import cli
from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.errors import BenchError
from latent_edit_bench.methods.eye import step_generator
from latent_edit_bench.perf import hours, rates, work
from latent_edit_bench.perf.reference import ReferenceEYE
from latent_edit_bench.pipeline.run import make_config
from latent_edit_bench.plugins import get_plugins

ROOT = Path(__file__).resolve().parents[1]
TORCH_THREADS = 1   # conftest pins this; on 2 shared cores, 2 threads under load run 20-60x slower
# the subprocesses likewise: their timings are not checked, only that they finish and write finite numbers
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def check_perf_rows(rows: list[dict]) -> None:
    """`bench perf --quick --backbones dcgan --device cpu`'s CSV: parts a, b, c with finite rates and ratios."""
    assert [r["part"] for r in rows] == ["a", "b", "c"] and {r["backbone"] for r in rows} == {"dcgan"}
    for r in rows:
        assert math.isfinite(float(r["rate"])) and float(r["rate"]) > 0
        assert math.isfinite(float(r["seconds"])) and float(r["seconds"]) > 0
    for r in rows[1:]:   # (b) against (a), (c) ours against the reference
        assert math.isfinite(float(r["ratio"])) and float(r["ratio"]) > 0
        assert r["meets_goal"] == "n/a (CPU)"


@pytest.mark.parametrize("method", ["baseline", "hfld"])
def test_reference_loop_computes_our_loss_terms(method):
    """Same z, targets and T in: the official-structure loop gives methods/latent_edit_bench/methods/eye.py's terms and T-gradient."""
    pl = get_plugins()
    bb = pl.backbones.create("dcgan").eval()
    ed = pl.methods.create(method, steps=1, lr=3e-3)
    ctx = FitContext(bb, {"probe": pl.instruments.create("probe").eval()}, attributes=("Male", "Bald"), seed=3,
                     attribute_instrument="probe", load_instrument=pl.instruments.create)
    T = (0.3 * torch.randn(2, bb.n_layers, bb.latent_dim, generator=torch.Generator().manual_seed(0))).requires_grad_(True)
    step = 5
    ours = ed.losses(ctx, T, step, D=None)
    g = step_generator(ctx.seed * 7919 + ed.config["seed"], step)   # the draws of ed.losses, replayed
    z, target = torch.randn(4, bb.z_dim, generator=g), torch.rand(4, 2, generator=g)
    ref = ReferenceEYE.from_editor(ed, ctx)
    flags = [p.requires_grad for m in ref._nets() for p in m.parameters()]
    with ref:   # the official set-up: the nets trainable, so backward also reaches their parameters
        assert all(p.requires_grad for m in ref._nets() for p in m.parameters())
        theirs = ref.losses(z=z, target=target, T=T)
        assert ours.keys() == theirs.keys() == ({"reg", "content"} | ({"landmarks"} if method == "hfld" else set()))
        for k in ours:
            assert torch.allclose(ours[k], theirs[k], rtol=1e-5, atol=1e-6), (k, ours[k], theirs[k])
        w = ed.weights()
        (g_ours,) = torch.autograd.grad(sum(w[k] * v for k, v in ours.items()), [T])
        (g_ref,) = torch.autograd.grad(sum(w[k] * v for k, v in theirs.items()), [T])
    assert torch.allclose(g_ours, g_ref, rtol=1e-4, atol=1e-6)
    assert [p.requires_grad for m in ref._nets() for p in m.parameters()] == flags   # restored on exit


def test_reference_step_moves_T():
    pl = get_plugins()
    bb = pl.backbones.create("dcgan").eval()
    ed = pl.methods.create("baseline", steps=1, lr=3e-3)
    ctx = FitContext(bb, {"probe": pl.instruments.create("probe").eval()}, attributes=("Male",), attribute_instrument="probe",
                     load_instrument=pl.instruments.create)
    with ReferenceEYE.from_editor(ed, ctx) as ref:
        T0 = ref.T.detach().clone()
        loss = ref.step()
    assert math.isfinite(loss) and not torch.equal(T0, ref.T.detach())


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    out = tmp_path / "gpu"
    env = {**ENV, "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "tools" / "gpu" / "gpu_check.sh"), str(out), "--smoke"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    for name in ("imports", "cuda_tests", "perf_cpu", "precision_cpu", "run_smoke"):
        assert f"{name} rc=0" in summary, summary
    assert "hfld step" in summary      # the perf table is appended
    assert re.search(r"fp16\s+attributes\s+Male\s", summary)   # and the precision table (bench perf --precision)
    # its perf_cpu part is `bench perf --quick --backbones dcgan --device cpu --out perf_cpu.csv`
    check_perf_rows(list(csv.DictReader((out / "perf_cpu.csv").open())))
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.tar.gz", "perf_cpu.csv", "summary.txt"]   # <= 8 come back
    with tarfile.open(out / "gpu_check.tar.gz") as tar:
        names = set(tar.getnames())
        for f in ("env.txt", "imports.log", "cuda_tests.log", "perf_cpu.log", "precision_cpu.log", "run_smoke.log",
                  "summary.txt",
                  "smoke_run/manifest.json", "smoke_run/summary.csv"):
            assert f"gpu_check/{f}" in names, sorted(names)
        assert "GPU goals" in tar.extractfile("gpu_check/perf_cpu.log").read().decode()


PERF_CSV = ("backbone,device,part,rate\nstylegan2-256,cuda,a,200\nstylegan2-256,cuda,b,100\n"
            "stylegan2-256,cuda,c,20\n")


def test_estimate_scales_with_the_work_and_the_rates(tmp_path):
    """`bench perf --estimate`'s counts and hours (formerly tools/gpu_hours.py)."""
    pl = get_plugins()
    perf = tmp_path / "perf.csv"
    perf.write_text(PERF_CSV)
    r = rates(perf, "stylegan2-256")

    def counts(attrs="Male", fit_seeds=1, **kw):
        return work(make_config("baseline,sefa", attrs, "paper", n=100, fit_seeds=fit_seeds, **kw), pl)

    one, two = counts(), counts(fit_seeds=2)
    assert one["eye_steps"] == 50_000 and two["eye_steps"] == 100_000 and two["edit_units"] == 2 * one["edit_units"]
    assert two["scored"] == 2 * one["scored"] and two["measured"] - 100 == 2 * (one["measured"] - 100)
    # EYE fits one T per fit seed for both attributes (`bench run --fit joint`), sefa one direction per attribute
    joint, per = counts("Male,Bald"), counts("Male,Bald", fit="per-attribute")
    assert joint["eye_steps"] == 50_000 and per["eye_steps"] == 100_000 and joint["fits"] == 1 and per["fits"] == 2
    assert joint["scored"] == per["scored"] == 2 * one["scored"] and joint["edit_units"] == per["edit_units"] == 4
    assert counts(levels="0.1")["measured"] - 100 == (one["measured"] - 100) // 3   # 2 signed levels, not 6
    h, slow = hours(one, r), hours(one, {k: v / 2 for k, v in r.items()})
    assert h["eye_fits"] == pytest.approx(50_000 / 20 / 3600) and h["low"] < h["high"]
    assert slow["low"] == pytest.approx(2 * h["low"]) and slow["high"] == pytest.approx(2 * h["high"])
    with pytest.raises(BenchError, match="no part"):
        rates(perf, "dcgan")


def test_estimate_on_the_command_line(tmp_path):
    perf = tmp_path / "perf.csv"
    perf.write_text(PERF_CSV)
    res = CliRunner().invoke(cli, ["perf", "--estimate", str(perf), "--methods", "baseline,sefa", "--attrs", "Male",
                                   "-n", "100", "--fit-seeds", "1"])
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    assert lines[0] == "rates on cuda (stylegan2-256): (a) 200 images/s, (b) 100 images/s, (c) 20 steps/s"
    assert lines[1].startswith("work: 1 EYE/HFLD fits (50,000 steps), 2 edit units, ")
    assert lines[2].startswith("device-hours: EYE/HFLD fits 0.7; whole run ")
    # usage errors exit 2 with one line: an option of another form, both forms, a bad name, rates missing
    for args, msg in [(["--estimate", str(perf), "--iters", "3"], "--iters is only for timing"),
                      (["--methods", "sefa"], "--methods is only for --estimate"),
                      (["--precision", "--estimate", str(perf)], "give one"),
                      (["--estimate", str(perf), "--methods", "nope"], "nope"),
                      (["--estimate", str(perf), "--backbones", "dcgan"], "no part(s) a, b, c for backbone 'dcgan'")]:
        res = CliRunner().invoke(cli, ["perf", *args])
        assert res.exit_code == 2 and msg in res.output and "Traceback" not in res.output, (args, res.output)


def test_precision_on_the_command_line(tmp_path):
    """`bench perf --precision` (formerly tools/precision.py): one row per output (attributes per attribute)."""
    out = tmp_path / "precision.csv"
    res = CliRunner().invoke(cli, ["perf", "--precision", "--device", "cpu", "-n", "4", "--batch-size", "4",
                                   "--dtype", "bf16", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("dcgan, 4 samples (seed 5), cpu, batch 4; |half - fp32|")
    rows = list(csv.DictReader(out.open()))
    assert {r["dtype"] for r in rows} == {"bf16"}
    outputs = [r["output"] for r in rows]
    assert "Male" in {r["column"] for r in rows if r["output"] == "attributes"}
    assert {"emotion", "landmarks", "descriptor"} <= set(outputs)
    assert all(float(r["max"]) >= float(r["p95"]) >= 0 for r in rows)
