#!/usr/bin/env bash
# One GPU check of a source checkout on a lent GPU machine (no internet, no pip install): the CUDA
# tests, `bench perf` on cuda (fp32, fp16), the precision of fp16/bf16 measurements (bench perf --precision),
# and a shortened paper-preset `bench run` on a random 256-px
# StyleGAN2. Fits in 8 minutes on one H100; each part is guarded by `timeout`, so a hung part costs
# its budget, not the whole lease. Everything that should come back is written under OUT_DIR.
#
#   tools/gpu/gpu_check.sh OUT_DIR            # on the GPU machine, from anywhere in the checkout
#   tools/gpu/gpu_check.sh OUT_DIR --smoke    # the same on the CPU with tiny sizes, in seconds (tests/test_perf.py)
#
# OUT_DIR gets four files, as the device tool brings back at most 8: summary.txt (one line per part:
# rc and seconds; notes on what is missing or skipped; the perf table), perf_cuda.csv and
# perf_cuda_fp16.csv (perf_cpu.csv alone with --smoke) and gpu_check.tar.gz (env.txt, every part's log, the run folder's summary files:
# manifest.json, the CSVs, report.html). Exit 0 when every part that ran exited 0.
# PYTHON=... picks the interpreter (default: python, else python3).
set -u

if [ $# -lt 1 ]; then echo "usage: $0 OUT_DIR [--smoke]" >&2; exit 2; fi
SMOKE=0
[ "${2:-}" = "--smoke" ] && SMOKE=1
mkdir -p "$1" && OUT=$(cd "$1" && pwd) || exit 2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
PY=${PYTHON:-$(command -v python || command -v python3)}
# big or numerous files (the random checkpoint, the artifact cache, run units) stay out of OUT_DIR
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")
trap 'rm -rf "$SCRATCH"' EXIT
SUMMARY=$OUT/summary.txt
: > "$SUMMARY"
LOGS=$OUT/gpu_check            # packed into gpu_check.tar.gz at the end
rm -rf "$LOGS" "$OUT/gpu_check.tar.gz"
mkdir -p "$LOGS"
FAILED=0

note() { echo "note: $*" | tee -a "$SUMMARY"; }

# part NAME TIMEOUT CMD...: run CMD under timeout, its output to NAME.log, a line to summary.txt
part() {
    local name=$1 limit=$2; shift 2
    local t0 rc
    t0=$(date +%s)
    echo "== $name (timeout ${limit}s): $*" | tee -a "$SUMMARY"
    timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc seconds=$(( $(date +%s) - t0 ))" | tee -a "$SUMMARY"
    [ $rc -eq 124 ] && note "$name ran past its ${limit}s timeout"
    [ $rc -ne 0 ] && FAILED=1
    return $rc
}

if [ $SMOKE -eq 1 ]; then DEVICE=cpu; else DEVICE=cuda; fi
T_START=$(date +%s)

# -- environment: what the machine has, and stand-ins for what a plain checkout lacks ---------------
{
    date -u
    "$PY" --version
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
} > "$LOGS/env.txt" 2>&1
# the package's entry points and tqdm, where a plain checkout lacks them (tools/gpu/checkout_env.sh)
SITE=$SCRATCH/site
. "$ROOT/tools/gpu/checkout_env.sh"
while IFS= read -r line; do [ -n "$line" ] && note "$line"; done <<< "$CHECKOUT_NOTES"
MISSING=$("$PY" -c "
import importlib
for m in 'numpy PIL pandas pyarrow scipy seaborn jinja2 safetensors pluggy click pytest'.split():
    try:
        importlib.import_module(m)
    except Exception:
        print(m)" 2>/dev/null | tr '\n' ' ')
[ -n "$MISSING" ] && note "python modules missing: $MISSING"
part imports 30 "$PY" -c "import latent_edit_bench.methods, latent_edit_bench.metrics, latent_edit_bench.reports; from latent_edit_bench.plugins import get_plugins; p = get_plugins(); assert 'dcgan' in p.backbones, 'no bench plugins registered'; print('backbones:', *p.backbones.names()); print('methods:', *p.methods.names()); print('instruments:', *p.instruments.names())"

# -- 1. CUDA tests (they skip themselves without torch.cuda.is_available()) --------------------------
# Selected by name: tests take a "cuda" parameter (tests/test_metrics.py); test_cli's usage-error case
# "--device cuda:0" expects no GPU, so it is left out here.
if "$PY" -c "import pytest" 2>/dev/null; then
    if [ $SMOKE -eq 1 ]; then TESTS=tests/test_metrics.py; else TESTS=tests; fi
    part cuda_tests 90 "$PY" -m pytest -q -p no:cacheprovider --continue-on-collection-errors \
        -k "cuda and not usage_errors" "$TESTS"
else
    note "pytest missing: CUDA tests not run"
fi

# -- 2. bench perf, fp32 then fp16 ----------------------------------------------------------------------
if [ $SMOKE -eq 1 ]; then
    part perf_cpu 60 "$PY" -m latent_edit_bench.cli perf --quick --backbones dcgan --device cpu --out "$OUT/perf_cpu.csv"
else
    part perf_cuda 150 "$PY" -m latent_edit_bench.cli perf --device cuda --backbones dcgan,stylegan2-256 --out "$OUT/perf_cuda.csv"
    part perf_cuda_fp16 90 "$PY" -m latent_edit_bench.cli perf --device cuda --dtype fp16 --out "$OUT/perf_cuda_fp16.csv"
fi

# -- 2b. how far fp16 / bf16 autocast move each measured number from fp32 (docs/perf.md, "Precision") ----
if [ $SMOKE -eq 1 ]; then
    part precision_cpu 60 "$PY" -m latent_edit_bench.cli perf --precision --device cpu -n 8 --batch-size 8 --dtype fp16
else
    part precision_cuda 60 "$PY" -m latent_edit_bench.cli perf --precision --device cuda -n 512 --batch-size 128
fi

# -- 3. a shortened bench run ---------------------------------------------------------------------------
RUN=$SCRATCH/run
if [ $SMOKE -eq 1 ]; then
    part run_smoke 60 "$PY" -m latent_edit_bench.cli run --methods sefa --attrs Male -n 8 --fit-seeds 1 --levels 0.1 \
        --set sefa.n_samples=16 --set sefa.top_k=3 --device cpu --out "$RUN" --cache "$SCRATCH/cache"
else
    # No random StyleGAN2 is registered as a backbone: a random 256-px config-F checkpoint (random D too,
    # as the official EYE code's D) goes through the registered `stylegan2` backbone's --weights instead.
    part random_checkpoint 30 "$PY" -c "from latent_edit_bench.perf import write_random_stylegan2 as w; print(w('$SCRATCH/random-256.safetensors'))"
    # the last part gets what is left of 470 s, so the whole stays within 8 minutes
    LEFT=$(( 470 - ($(date +%s) - T_START) ))
    if [ $LEFT -lt 30 ]; then
        note "paper run skipped: ${LEFT}s of the 8-minute budget left"; FAILED=1
    else
        part paper_run $LEFT "$PY" -m latent_edit_bench.cli run --preset paper --backbone stylegan2 --weights "$SCRATCH/random-256.safetensors" \
            --methods sefa,ganspace,interfacegan,baseline,hfld --attrs Male \
            --set baseline.steps=200 --set hfld.steps=200 -n 200 --fit-seeds 1 \
            --device cuda --out "$RUN" --cache "$SCRATCH/cache"
    fi
fi
if [ -d "$RUN" ]; then   # the run's summary files, not its units
    DEST=$LOGS/$([ $SMOKE -eq 1 ] && echo smoke_run || echo paper_run)
    mkdir -p "$DEST"
    cp "$RUN"/*.json "$RUN"/*.csv "$DEST"/ 2>/dev/null
    # report.html embeds the trajectories: kept while small enough to come back (16 MiB a file)
    if [ -f "$RUN/report.html" ] && [ "$(stat -c %s "$RUN/report.html")" -lt 8000000 ]; then
        cp "$RUN/report.html" "$DEST/"
    fi
fi
for log in "$LOGS"/perf_*.log "$LOGS"/precision_*.log; do   # the perf and precision tables, beside the parts' times
    [ -f "$log" ] && { echo "-- $(basename "$log")"; cat "$log"; } >> "$SUMMARY"
done

echo "total seconds=$(( $(date +%s) - T_START )) failed=$FAILED" | tee -a "$SUMMARY"
cp "$SUMMARY" "$LOGS/"
tar -czf "$OUT/gpu_check.tar.gz" -C "$OUT" gpu_check && rm -rf "$LOGS"
exit $FAILED
