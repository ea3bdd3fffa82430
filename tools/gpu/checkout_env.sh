# Make a plain source checkout usable without pip install (a lent GPU machine): sourced by
# tools/gpu/gpu_check.sh and tools/gpu/train_stylegan2_gpu.sh, never run on its own.
#
#   ROOT=<checkout> PY=<python> SITE=<scratch folder>; . "$ROOT/tools/gpu/checkout_env.sh"
#
# The one line a plain checkout needs is the PYTHONPATH below: each of the four folders holds its part
# of the latent_edit_bench namespace, and the built-in plugins register without installed metadata.
# Where tqdm is missing, SITE gets a pass-through stand-in (progress bars only). Sets CHECKOUT_NOTES to
# one line per stand-in made.

export PYTHONPATH="$ROOT/bench:$ROOT/methods:$ROOT/metrics:$ROOT/reports${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1   # a part killed by timeout still leaves its log
CHECKOUT_NOTES=""
if ! "$PY" -c "import tqdm.auto" 2>/dev/null; then
    mkdir -p "$SITE/tqdm"
    printf 'class tqdm:\n    def __init__(self, iterable=None, *a, **k):\n        self.iterable = iterable\n    def __iter__(self):\n        return iter(self.iterable)\n    def update(self, n=1):\n        pass\n    def set_postfix(self, *a, **k):\n        pass\n    def close(self):\n        pass\n    def __enter__(self):\n        return self\n    def __exit__(self, *a):\n        pass\n' > "$SITE/tqdm/__init__.py"
    echo 'from . import tqdm' > "$SITE/tqdm/auto.py"
    export PYTHONPATH="$PYTHONPATH:$SITE"
    CHECKOUT_NOTES="${CHECKOUT_NOTES}tqdm missing: a pass-through stand-in is used (no progress bars)
"
fi
