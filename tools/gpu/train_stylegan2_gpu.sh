#!/usr/bin/env bash
# Train the embedded 64-px StyleGAN2 from the DCGAN on one lent GPU (no internet, no pip install), in
# under 8 minutes, and judge it by the quality bar of docs/train-stylegan2.md.
#
#   tools/gpu/train_stylegan2_gpu.sh OUT_DIR            # on the GPU machine, from anywhere in the checkout
#   tools/gpu/train_stylegan2_gpu.sh OUT_DIR --smoke    # the same on the CPU, tiny, in seconds (tests)
#
# OUT_DIR gets at most 8 files, each <= 16 MiB (what comes back from the machine): the G_ema and D
# safetensors (float16), kid.csv, quality_bar.csv, samples_landmarks.png, train_log.csv and train.log.
# Exit 0 when training and export worked (whether the bar passed is in quality_bar.csv and train.log's
# verdict line); 1 when training diverged (the files then hold its last checkpoint) or a file is over
# the limit; 124 when the hard limit killed it. PYTHON=... picks the interpreter;
# BUDGET_S=... the script's own budget (default 450 s; the hard limit is 30 s more).
set -u

if [ $# -lt 1 ]; then echo "usage: $0 OUT_DIR [--smoke]" >&2; exit 2; fi
SMOKE=()
[ "${2:-}" = "--smoke" ] && SMOKE=(--smoke)
mkdir -p "$1" && OUT=$(cd "$1" && pwd) || exit 2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-$(command -v python || command -v python3)}
BUDGET_S=${BUDGET_S:-450}
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/train_sg2.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
SITE=$SCRATCH/site
. "$ROOT/tools/gpu/checkout_env.sh"

LOG=$OUT/train.log
{
    date -u
    "$PY" --version
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    printf '%s' "$CHECKOUT_NOTES"
} > "$LOG" 2>&1
timeout --signal=TERM --kill-after=10 $(( BUDGET_S + 30 )) \
    "$PY" "$ROOT/tools/gpu/train_stylegan2_gpu.py" "$OUT" --budget-s "$BUDGET_S" "${SMOKE[@]}" >> "$LOG" 2>&1
RC=$?
[ $RC -eq 124 ] && echo "killed: past the hard limit of $(( BUDGET_S + 30 ))s" >> "$LOG"
echo "exit $RC" >> "$LOG"
tail -n 12 "$LOG"
exit $RC
