"""`bench perf`, the official-loop reference it times against, and tools/gpu_check.sh --smoke."""

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

from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.perf import load_reference
from latent_edit_bench.methods.eye import step_generator

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
    ref = load_reference().ReferenceEYE.from_editor(ed, ctx)
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
    with load_reference().ReferenceEYE.from_editor(ed, ctx) as ref:
        T0 = ref.T.detach().clone()
        loss = ref.step()
    assert math.isfinite(loss) and not torch.equal(T0, ref.T.detach())


@pytest.mark.slow
def test_gpu_check_smoke(tmp_path):
    out = tmp_path / "gpu"
    env = {**ENV, "PYTHON": sys.executable}
    res = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh"), str(out), "--smoke"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    summary = (out / "summary.txt").read_text()
    for name in ("imports", "cuda_tests", "perf_cpu", "precision_cpu", "run_smoke"):
        assert f"{name} rc=0" in summary, summary
    assert "hfld step" in summary      # the perf table is appended
    assert re.search(r"fp16\s+attributes\s+Male\s", summary)   # and the precision table (tools/precision.py)
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
