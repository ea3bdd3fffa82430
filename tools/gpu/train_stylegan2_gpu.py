"""Train the embedded 64-px StyleGAN2 from the DCGAN within a wall-clock budget; run by tools/gpu/train_stylegan2_gpu.sh.

    python tools/gpu/train_stylegan2_gpu.py OUT [--smoke] [--budget-s 450]

On one H100/H200 (the default): a short timing probe, then one `train_stylegan2` run whose first
steps are a paired warm start (G(z) = DCGAN(z) on the DCGAN's own z: L1 + the vgg16-stlpips
content distance, D trained alongside) and the rest adversarial StyleGAN2 training, bf16 autocast,
KID against the DCGAN floor and a checkpoint every N steps, and a hard deadline. Step counts are
set from the probe so the run ends inside the budget; the deadline stops it gracefully if the probe
was optimistic. Then the quality bar of docs/train-stylegan2.md (bench/latent_edit_bench/trainers/quality_bar.py) on the
exported (float16) weights.

OUT receives at most 8 files (what comes back from a lent GPU machine, each <= 16 MiB):
stylegan2_64.safetensors (G_ema, float16, names D's file), stylegan2_64_d.safetensors (D, float16),
kid.csv (KID over training + the exported weights' row), quality_bar.csv, samples_landmarks.png,
train_log.csv; the shell wrapper adds train.log (this script's output).

--smoke: the same code path on the CPU with tiny widths and sample counts, in seconds (tests).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

T0 = time.monotonic()

FILE_LIMIT = 16 * 2 ** 20
SMOKE_CHANNELS = {4: 16, 8: 16, 16: 16, 32: 8, 64: 8}


def log(msg: str) -> None:
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def settings(smoke: bool) -> dict:
    """train_s: a cap on the training time (the smoke run trains ~3 s; the real one fills the budget)."""
    if smoke:
        return dict(device="cpu", mixed_precision=None, batch_size=4, n=16, probe_steps=2, train_s=3.0,
                    channels=SMOKE_CHANNELS, reserve_s=0, n_evals=2, lr=0.002)
    return dict(device="cuda", mixed_precision="bf16", batch_size=64, n=1000, probe_steps=20, train_s=None,
                channels=None, reserve_s=45, n_evals=8, lr=0.0025)


def plan(probe_log: list[dict], seconds: float, eval_s: float, n_evals: int, distil_share: float) -> dict:
    """Step counts that fill ``seconds``: ``distil_share`` of the training time for the warm start.
    Seconds per step of each phase: its last probe row (the later rows are past the warm-up)."""
    by_phase = {r["phase"]: float(r["sec_per_step"]) for r in probe_log}
    train_s = max(seconds - n_evals * eval_s, 0.0)
    distil = int(distil_share * train_s / by_phase["distil"])
    gan = int((1 - distil_share) * train_s / by_phase["gan"])
    steps = max(distil + gan, 2)
    return {"distil_steps": max(distil, 1), "steps": steps, "eval_every": max(steps // n_evals, 1),
            "sec_per_step": by_phase}


def probe_generator(run_dir: Path, device):
    """G_ema of a train_stylegan2 folder's checkpoint (to time one KID evaluation)."""
    import torch

    from latent_edit_bench.backbones.stylegan2 import Generator

    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    g = Generator(**state["g_kwargs"])
    g.load_state_dict(state["g_ema"])
    return g.eval().to(device)


def write_csv(path: Path, rows: list[dict]) -> None:
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run of the same code path (tests)")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget from the start of this script")
    ap.add_argument("--distil-share", type=float, default=0.3, help="share of the training time for the warm start")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if not 0 < args.distil_share < 1:
        ap.error(f"--distil-share must be in (0, 1), got {args.distil_share}")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    deadline_all = T0 + args.budget_s

    import torch

    from latent_edit_bench.backbones.stylegan2 import EMBEDDED_64 as SG2_64

    from latent_edit_bench.backbones.plugin import dcgan_digiface
    from latent_edit_bench.backbones.formats import load_stylegan2
    from latent_edit_bench.errors import BenchError
    from latent_edit_bench.images import save_png
    from latent_edit_bench.trainers.quality_bar import BarReference, overlay_grid
    from latent_edit_bench.trainers.stylegan2 import train_stylegan2
    from latent_edit_bench.trainers.stylegan2_export import export_stylegan2

    cfg = settings(args.smoke)
    cfg["channels"] = cfg["channels"] or SG2_64["channels"]   # None: the embedded architecture's widths
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        log("error: no CUDA device (use --smoke on a CPU)")
        return 2
    device = torch.device(cfg["device"])
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
        log(f"device {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    scratch = Path(tempfile.mkdtemp(prefix="train_sg2_"))
    run_dir = scratch / "run"
    common = dict(batch_size=cfg["batch_size"], size=SG2_64["size"], style_dim=SG2_64["style_dim"],
                  n_mlp=SG2_64["n_mlp"], z_dim=SG2_64["z_dim"], channels=cfg["channels"], lr=cfg["lr"],
                  mixed_precision=cfg["mixed_precision"], device=device, seed=args.seed, progress=False,
                  distil_perceptual=0.1)   # L1 ~0.5 and the content distance ~8 at the start: ~equal terms
    teacher = dcgan_digiface().to(device)
    common["teacher"] = teacher

    # the DCGAN reference sets, measured once: the floor, the landmark gate, the expression shares
    ref = BarReference(teacher, n=cfg["n"], size=SG2_64["size"], device=device)
    log(f"reference: n={ref.n}, floor KID {ref.floor:.3g} (noise sd {ref.floor_sd:.3g}), floor FID {ref.floor_fid:.3g}")

    # timing probe (also warms cuDNN's autotuner): steps of each phase, in a throwaway folder
    p = cfg["probe_steps"]
    # two log rows per phase: plan() reads the second, after the first steps' warm-up
    probe = train_stylegan2(scratch / "probe", steps=2 * p, distil_steps=p, log_every=max(1, p // 2),
                            snapshot_every=10 ** 9,
                            n_sample=4, **common)
    t = time.monotonic()
    ref.eval_fn(probe_generator(scratch / "probe", device), 0)
    eval_s = time.monotonic() - t
    left = deadline_all - time.monotonic() - cfg["reserve_s"]
    train_s = min(left, cfg["train_s"] + cfg["n_evals"] * eval_s) if cfg["train_s"] else left
    plan_info = plan(probe.log, train_s, eval_s, cfg["n_evals"], args.distil_share)
    plan_info["eval_s"] = eval_s
    steps, distil_steps, eval_every = plan_info["steps"], plan_info["distil_steps"], plan_info["eval_every"]
    # checkpoints only at logged steps, whose losses train_stylegan2 checks finite before it saves
    log_every = min(50, eval_every)
    eval_every = plan_info["eval_every"] = eval_every // log_every * log_every
    log(f"plan: {json.dumps(plan_info)}")
    # the deadline guards the budget when the probe was optimistic (the planned steps then are not all made)
    deadline = min(deadline_all - cfg["reserve_s"], time.monotonic() + 1.5 * train_s)

    failed = None
    try:
        result = train_stylegan2(run_dir, steps=steps, distil_steps=distil_steps, eval_every=eval_every,
                                 eval_fn=ref.eval_fn, snapshot_every=eval_every, log_every=log_every,
                                 deadline=deadline, **common)
        log(f"trained: step {result.step} of {steps} (distil {distil_steps}), stopped early: {result.stopped_early}")
    except BenchError as e:   # diverged: what the last checkpoint holds still comes back, judged as any other
        failed = str(e)
        log(f"error: {failed}")
        if not (run_dir / "checkpoint.pt").exists():
            shutil.rmtree(scratch, ignore_errors=True)
            return 1
        log("exporting the last checkpoint instead")
    ckpt = run_dir / "checkpoint.pt"
    step = int(torch.load(ckpt, map_location="cpu", weights_only=True)["step"])
    shutil.copy(run_dir / "log.csv", out / "train_log.csv")

    g_path, d_path = out / "stylegan2_64.safetensors", out / "stylegan2_64_d.safetensors"
    export_stylegan2(ckpt, g_path, dtype=torch.float16, d_path=d_path)
    sizes = {p.name: p.stat().st_size for p in (g_path, d_path)}
    log(f"exported step {step}: {sizes} (limit {FILE_LIMIT} each)")

    def kid_row(step: int, phase: str, weights: str, q: dict) -> dict:
        return {"step": step, "kimg": step * cfg["batch_size"] / 1000, "phase": phase, "weights": weights,
                "kid": q["kid"], "fid": q["fid"], "floor": ref.floor, "floor_sd": ref.floor_sd,
                "kid_over_floor_scale": q["kid"] / ref.floor_scale, "n": ref.n}

    quality = [{k: float(v) for k, v in r.items()} for r in csv.DictReader(open(run_dir / "quality.csv"))] \
        if (run_dir / "quality.csv").exists() else []
    kid_rows = [kid_row(int(r["step"]), "distil" if r["step"] <= distil_steps else "gan", "g_ema float32", r)
                for r in quality if r["step"] <= step]
    write_csv(out / "kid.csv", kid_rows)   # now, in case the bar fails; rewritten with its row below

    student = load_stylegan2(g_path, name="stylegan2-64").to(device)
    bar = ref.bar(student, seed=args.seed)
    kid_rows.append(kid_row(step, "exported", "g_ema float16 (the exported file)", bar.kid))
    write_csv(out / "kid.csv", kid_rows)
    write_csv(out / "quality_bar.csv", bar.rows)
    k = min(32, len(bar.images))
    save_png(overlay_grid(bar.images[:k], bar.landmarks[:k], bar.found[:k]), out / "samples_landmarks.png")

    for r in bar.rows[:4]:
        log(f"bar {r['criterion']}: student {r['student']:.4g}, reference {r['reference']:.4g}, "
            f"threshold {r['threshold']}, passed {r['passed']}")
    too_big = [n for n, s in sizes.items() if s > FILE_LIMIT]
    files = sorted(p.name for p in out.iterdir())
    log(f"files in {out}: {files}")
    if failed:
        log(f"training failed ({failed}); the files hold its last checkpoint, step {step}")
    log(f"verdict: {'PASSED' if bar.passed else 'NOT PASSED'} the quality bar; "
        f"{time.monotonic() - T0:.0f}s of {args.budget_s:.0f}s; plan {json.dumps(plan_info)}")
    shutil.rmtree(scratch, ignore_errors=True)
    if too_big:
        log(f"error: over the {FILE_LIMIT}-byte limit: {too_big}")
    return 1 if too_big or failed else 0


if __name__ == "__main__":
    sys.exit(main())
