#!/usr/bin/env bash
# Time the README's first command on a fresh clone, naming the CPU it ran on: the figure README quotes.
#
#   tools/docs/time_demo.sh [REV] [--avx2] [--keep DIR]   (REV: a git revision of this repository; default HEAD)
#
# Clones REV into a temporary folder, runs `make demo` there (venv, install, the demo run) under
# /usr/bin/time, and prints one line: wall time, the CPU's model name, the instruction set the run used,
# and the thread count. --avx2 makes PyTorch and oneDNN use AVX2 kernels only (ATEN_CPU_CAPABILITY=avx2,
# ONEDNN_MAX_CPU_ISA=AVX2), as on a CPU without AVX-512: the slowest kind this project is run on.
# --keep DIR copies the demo's run folder to DIR (e.g. for tools/docs/demo_docs.py --skip-run --run DIR).
# Run it on a quiet machine: anything else running on 2 cores makes the demo several times slower.
set -euo pipefail
REV=HEAD; ISA="native"; KEEP=""
while [ $# -gt 0 ]; do
  case "$1" in
    --avx2) export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2; ISA="AVX2 only (emulated)";;
    --keep) KEEP="$(realpath -m "$2")"; shift;;
    *) REV="$1";;
  esac
  shift
done
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
git -C "$ROOT" archive --format=tar "$REV" | tar -x -C "$WORK"
CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
grep -q avx512f /proc/cpuinfo && HAS512="has AVX-512" || HAS512="no AVX-512"
cd "$WORK"
/usr/bin/time -f "%e" -o "$WORK/.seconds" make demo > "$WORK/demo.log" 2>&1 || { tail -20 "$WORK/demo.log"; exit 1; }
S="$(cat "$WORK/.seconds")"
printf 'make demo, fresh copy of %s (%s): %d:%02d (%s s) on %s (%s), kernels: %s, %s cores\n' \
  "$REV" "$(git -C "$ROOT" rev-parse --short "$REV")" "$((${S%.*} / 60))" "$((${S%.*} % 60))" "$S" "$CPU" "$HAS512" "$ISA" "$(nproc)"
if [ -n "$KEEP" ]; then rm -rf "$KEEP"; mkdir -p "$(dirname "$KEEP")"; cp -r "$WORK/runs/demo" "$KEEP"; echo "run folder copied to $KEEP"; fi
