"""How often does the matched protocol reach its target? Per method, attribute and target (0 and 1).

    python tools/measure/matched_reach.py [--methods ...] [--attrs Male,Bald] [--n 32] [--cache DIR]

Fits (or loads from the cache) each method with the quick preset on the embedded backbone and the
probe, then matched-edits n held-out samples (seed 1000) to R_k = 0 and R_k = 1, printing the
fraction with |R_k - target| <= 0.1 and the mean achieved change R_k(X1) - R_k(X0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from latent_edit_bench.contracts.artifacts import fit_or_load
from latent_edit_bench.contracts.method import FitContext
from latent_edit_bench.plugins import get_plugins
from latent_edit_bench.pipeline.protocol import matched_edit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="baseline,hfld,ganspace,interfacegan,sefa")
    ap.add_argument("--attrs", default="Male,Bald")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--cache", type=Path, default=Path("runs/cache"))
    args = ap.parse_args()
    plugins = get_plugins()
    attrs = tuple(args.attrs.split(","))
    backbone = plugins.backbones.create("dcgan")
    ctx = FitContext(backbone, {"probe": plugins.instruments.create("probe")}, attributes=attrs, seed=0,
                     device=torch.device("cpu"), cache_dir=args.cache, progress=False, attribute_instrument="probe",
                     load_instrument=plugins.instruments.create)
    latents = backbone.to_edit(backbone.sample_z(args.n, seed=1000))
    print("| method | attribute | reached R_k=0 | reached R_k=1 | mean R_k(X1) - R_k(X0) |")
    print("|---|---|---|---|---|")
    for name in args.methods.split(","):
        editor = fit_or_load(plugins.methods.create(name, **plugins.methods.preset_config(name, "quick")), ctx)
        for attr in attrs:
            _, a0, r0, _ = matched_edit(editor, ctx, latents, attr, 0.0)
            _, a1, r1, _ = matched_edit(editor, ctx, latents, attr, 1.0)
            print(f"| {name} | {attr} | {r0.float().mean():.2f} | {r1.float().mean():.2f} | {(a1 - a0).mean():.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
