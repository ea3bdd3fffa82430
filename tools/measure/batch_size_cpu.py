"""Milliseconds per image of the default instruments and the DCGAN by batch size, on this machine.

    python tools/measure/batch_size_cpu.py [--threads 2] [--n 256] [--device cpu]

Why `bench run` batches 16 images on a CPU (bench/latent_edit_bench/pipeline/session.py::default_batch_size): the
face-api nets' activations of a large batch fall out of cache, and the probe (3 nets x 2 mirrored
views) costs 1.6x as much per image in batches of 64 as in batches of 16. Allocation as a Session
sets it (keep_freed_cpu_memory; BENCH_MALLOC=default for glibc's own). Each cell: the
median of 3 passes over ``--n`` rendered images after one warm-up pass.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from latent_edit_bench.pipeline.session import keep_freed_cpu_memory
from latent_edit_bench.plugins import get_plugins

INSTRUMENTS = ("probe", "faceapi-landmarks", "faceapi-descriptor", "fer-emotion")
SIZES = (8, 16, 32, 64, 128)


def per_image_ms(f, n: int) -> float:
    f()
    times = []
    for _ in range(3):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / n * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    kept = keep_freed_cpu_memory()   # as a Session does (BENCH_MALLOC=default: glibc's own thresholds)
    pl = get_plugins()
    bb = pl.backbones.create("dcgan").to(args.device)
    with torch.no_grad():
        z = torch.randn(args.n, bb.z_dim, generator=torch.Generator().manual_seed(0)).to(args.device)
        x = bb.synthesize(bb.to_edit(z))
        print(f"ms per image, {args.n} images, {args.threads} threads, {args.device}, "
              f"malloc {'kept (bench)' if kept else 'glibc default'}")
        print(f"{'':20}" + "".join(f"{f'batch {b}':>11}" for b in SIZES))
        rows = {"dcgan (render)": lambda b: [bb.synthesize(bb.to_edit(z[i:i + b])) for i in range(0, args.n, b)]}
        for name in INSTRUMENTS:
            inst = pl.instruments.create(name).to(args.device).eval()
            rows[name] = lambda b, inst=inst: [inst(x[i:i + b]) for i in range(0, args.n, b)]
        for name, run in rows.items():
            print(f"{name:20}" + "".join(f"{per_image_ms(lambda: run(b), args.n):11.2f}" for b in SIZES))


if __name__ == "__main__":
    main()
