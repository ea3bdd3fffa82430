"""`bench perf --precision`: how far fp16 / bf16 autocast move what the evaluation path measures.

:func:`run_precision` renders n seeded samples once in fp32, then runs every instrument of the evaluation
path (the roles throughput.py's (b) times) on the same images under each half dtype's autocast, as
``bench run --dtype`` does, and prints per output the max, 95th percentile and mean absolute difference to
fp32; the attribute scores per attribute, with the share of samples moved by more than the ladder's tol
(an edit is "reached" when R_k is within tol of its target, so a score moved by more can flip that
verdict). On a CPU autocast is allowed here although ``bench run`` refuses it (slow without bf16
hardware): the differences are mostly the dtype's, but a GPU's own numbers come from running it there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from latent_edit_bench.errors import BenchError
from latent_edit_bench.fs import save_csv
from latent_edit_bench.perf.backbones import BACKBONES, make_backbone
from latent_edit_bench.perf.throughput import EVAL_ROLES, load_eval_instruments

HALF_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
PRECISION_DEFAULTS = {"backbone": "dcgan", "n": 256, "batch": 32, "seed": 5}


def measure_all(session, images: torch.Tensor, dtype, batch: int) -> dict[str, torch.Tensor]:
    """{role: [n, ...] float32 on the CPU} for every evaluation role, under ``dtype``'s autocast (None: fp32)."""
    from latent_edit_bench.pipeline.session import autocast

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
    """|half - fp32| per output (per attribute for the attribute scores): max, p95, mean, share beyond tol."""
    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.pipeline.protocol import LADDER_TOL

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


def run_precision(device, backbone: str | None = None, n: int | None = None, batch: int | None = None,
                  dtypes=tuple(HALF_DTYPES), seed: int | None = None, out: Path | None = None, log=print,
                  plugins=None):
    """``bench perf --precision``: the table of :func:`differences` for each of ``dtypes`` (a DataFrame)."""
    import pandas as pd

    from latent_edit_bench.attributes import CELEBA_ATTRIBUTES
    from latent_edit_bench.contracts.instrument import supported_attributes
    from latent_edit_bench.pipeline.protocol import LADDER_TOL
    from latent_edit_bench.pipeline.session import Session

    d = PRECISION_DEFAULTS
    backbone, n, batch = backbone or d["backbone"], n or d["n"], batch or d["batch"]
    seed = d["seed"] if seed is None else seed
    unknown = [t for t in dtypes if t not in HALF_DTYPES]
    if unknown:
        raise BenchError(f"bench perf --precision compares half dtypes with fp32: {', '.join(unknown)} is not one "
                         f"({', '.join(HALF_DTYPES)})")
    session = Session(plugins, device=device)   # fp32: autocast is applied here, per dtype
    bb = make_backbone(backbone, session.plugins) if backbone in BACKBONES else session.backbone(backbone)
    bb = bb.to(session.device).eval()
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with torch.no_grad():
            z = bb.to_edit(bb.sample_z(n, seed)).to(session.device)
            images = torch.cat([bb.synthesize(z[i:i + batch]) for i in range(0, n, batch)]).float()
        scored = supported_attributes(session.instrument(EVAL_ROLES["attributes"]))
        attrs = [a for a in CELEBA_ATTRIBUTES if a in scored]
        ref = measure_all(session, images, None, batch)
        rows = []
        for name in dtypes:
            rows += differences(ref, measure_all(session, images, HALF_DTYPES[name], batch), name, attrs)
    finally:
        logging.disable(previous)
    table = pd.DataFrame(rows)
    log(f"{backbone}, {n} samples (seed {seed}), {session.device}, batch {batch}; "
        f"|half - fp32|; beyond_tol: share of samples moved by more than the ladder's tol {LADDER_TOL}")
    log(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if out is not None:
        save_csv(table, out)
        log(f"wrote {out}")
    return table
