"""Images per second of instruments at batch 64 on this machine (no-grad forward, float32, CPU threads as set).

    OMP_NUM_THREADS=2 python tools/measure/instrument_throughput.py [--names a,b] [--size 128] [--repeats 3]

Inputs are random [64, 3, size, size] images in [-1, 1] (each instrument resizes to its own input).
Prints a markdown table; also prints the 1-minute load average, since the numbers mean little under load.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path[:0] = [str(Path(__file__).resolve().parents[2] / d) for d in ("bench", "methods", "metrics", "reports")]
from latent_edit_bench.plugins import get_plugins  # noqa: E402

DEFAULT = "mediapipe-blazeface,mediapipe-facemesh,oarriaga-emotion,oarriaga-gender,faceapi-landmarks,fer-emotion"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--names", default=DEFAULT)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size) * 2 - 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"{args.size} px inputs, load average {os.getloadavg()[0]:.1f}\n")
    print("| instrument | img/s |\n| --- | ---: |")
    for name in args.names.split(","):
        inst = get_plugins().instruments.create(name).eval()
        with torch.no_grad():
            inst(x[:2])
            best = float("inf")
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                inst(x)
                best = min(best, time.perf_counter() - t0)
        print(f"| {name} | {args.batch / best:.0f} |")


if __name__ == "__main__":
    main()
