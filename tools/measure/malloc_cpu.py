"""`bench run` with glibc's own malloc thresholds against the ones a Session sets, on this machine.

    python tools/measure/malloc_cpu.py [--reps 3] [-- bench run options]

Why bench/latent_edit_bench/pipeline/session.py::keep_freed_cpu_memory exists: with glibc's moving mmap threshold every
batch's activations are fresh pages, and the kernel's page faults take a large share of a CPU run.
Each rep runs the same small run twice in fresh folders, interleaved (BENCH_MALLOC=default first, then
the Session's settings), and prints wall, user and sys seconds and peak RSS; then the medians, and
whether the two runs' result files are byte-identical (allocation must not change a number).
"""

from __future__ import annotations

import argparse
import filecmp
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUN = ["run", "--methods", "ganspace", "--attrs", "Male", "--fit-seeds", "1", "--no-report", "--device", "cpu"]
RESULTS = ("summary.csv", "measurements.parquet", "samples.parquet")


def timed(args: list[str], env: dict, out: Path) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "latent_edit_bench.cli", *args, "--out", str(out / "run"),
                    "--cache", str(out / "cache")], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"wall": wall, "user": after.ru_utime - before.ru_utime, "sys": after.ru_stime - before.ru_stime,
            "rss_mb": after.ru_maxrss / 1024}   # ru_maxrss of children: the largest so far, KiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("bench_args", nargs="*", help="`bench` arguments (default: a one-seed GANSpace run)")
    args = ap.parse_args()
    bench_args = args.bench_args or RUN
    base = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "BENCH_MALLOC"}
    modes = {"glibc default": {**base, "BENCH_MALLOC": "default"}, "kept (bench)": base}
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    same = True
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            outs = {}
            for mode, env in modes.items():
                outs[mode] = Path(tmp) / f"{rep}-{mode.split()[0]}"
                rows[mode].append(timed(bench_args, env, outs[mode]))
                r = rows[mode][-1]
                print(f"rep {rep} {mode:14} wall {r['wall']:6.1f} s  user {r['user']:6.1f} s  sys {r['sys']:5.1f} s",
                      flush=True)
            a, b = (outs[m] / "run" for m in modes)
            same &= all(filecmp.cmp(a / f, b / f, shallow=False) for f in RESULTS if (a / f).exists())
    print(f"\nbench {' '.join(bench_args)}\nmedians of {args.reps}:")
    for mode, rs in rows.items():
        med = {k: statistics.median(r[k] for r in rs) for k in ("wall", "user", "sys")}
        print(f"  {mode:14} wall {med['wall']:6.1f} s  user {med['user']:6.1f} s  sys {med['sys']:5.1f} s")
    print(f"peak RSS of any run: {max(r['rss_mb'] for rs in rows.values() for r in rs):.0f} MiB")
    print(f"result files byte-identical between the two: {same}")


if __name__ == "__main__":
    main()
