"""How far half precision moves the numbers a run measures: fp16 and bf16 autocast against fp32.

    python tools/precision.py [--device cuda] [-n 256] [--backbone dcgan] [--batch 32] [--out precision.csv]

Renders ``n`` seeded samples once in fp32, then runs every instrument of ``bench run``'s evaluation path
(the roles ``bench perf`` (b) times) on the same images under each dtype's autocast, as ``bench run
--dtype`` does, and prints per output the max, 95th percentile and mean absolute difference to fp32;
the attribute scores per attribute, with the share of samples moved by more than the ladder's tol (an
edit is "reached" when R_k is within tol of its target, so a score moved by more can flip that verdict).

On a CPU autocast is allowed here although ``bench run`` refuses it (slow without bf16 hardware): the
differences are mostly the dtype's, but a GPU's own numbers come from running this there
(tools/gpu_check.sh does).
"""

from __future__ import annotations

import argparse
import logging

import pandas as pd
import torch

from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
from latent_edit_bench.perf import EVAL_ROLES, load_eval_instruments
from latent_edit_bench.pipeline.batched import autocast
from latent_edit_bench.pipeline.protocol import LADDER_TOL
from latent_edit_bench.pipeline.session import Session, resolve_device

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def measure_all(session: Session, images: torch.Tensor, dtype, batch: int) -> dict[str, torch.Tensor]:
    """{role: [n, ...] float32 on the CPU} for every evaluation role, under ``dtype``'s autocast (None: fp32)."""
    names = load_eval_instruments(session)
    parts: dict[str, list] = {}
    with torch.no_grad(), autocast(session.device, dtype):
        for i in range(0, len(images), batch):
            x = images[i:i + batch].to(session.device)
            outs = {name: session.instrument(name)(x) for name in names}
            for role, name in EVAL_ROLES.items():
                parts.setdefault(role, []).append(outs[name][role].float().cpu())
    return {role: torch.cat(v) for role, v in parts.items()}


def differences(ref: dict, half: dict, dtype: str, attrs) -> list[dict]:
    rows = []

    def row(output, column, d):
        d = d[torch.isfinite(d)].double()
        if len(d):
            rows.append({"dtype": dtype, "output": output, "column": column, "max": float(d.max()),
                         "p95": float(d.quantile(0.95)), "mean": float(d.mean()),
                         "beyond_tol": float((d > LADDER_TOL).double().mean()) if output == "attributes" else float("nan")})

    for role in EVAL_ROLES:
        d = (half[role] - ref[role]).abs()
        if role == "attributes":
            for a in attrs:
                row(role, a, d[:, CELEBA_ATTRIBUTES.index(a)])
        else:
            row(role, "all", d.reshape(-1))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("-n", type=int, default=256)
    ap.add_argument("--backbone", default="dcgan")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--dtypes", default="fp16,bf16")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--out", default=None, help="also write the table as CSV")
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    session = Session(None, device=resolve_device(args.device))   # fp32: autocast is applied here, per dtype
    bb = session.backbone(args.backbone)
    with torch.no_grad():
        z = bb.to_edit(bb.sample_z(args.n, args.seed)).to(session.device)
        images = torch.cat([bb.synthesize(z[i:i + args.batch]) for i in range(0, args.n, args.batch)]).float()
    probe = session.instrument(EVAL_ROLES["attributes"])
    attrs = [a for a in CELEBA_ATTRIBUTES if a in getattr(probe, "supported_attributes", CELEBA_ATTRIBUTES)]
    ref = measure_all(session, images, None, args.batch)
    rows = []
    for name in args.dtypes.split(","):
        rows += differences(ref, measure_all(session, images, DTYPES[name], args.batch), name, attrs)
    table = pd.DataFrame(rows)
    print(f"{args.backbone}, {args.n} samples (seed {args.seed}), {session.device}, batch {args.batch}; "
          f"|half - fp32|; beyond_tol: share of samples moved by more than the ladder's tol {LADDER_TOL}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
