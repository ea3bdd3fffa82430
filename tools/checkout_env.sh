# Make a plain source checkout importable on a machine without internet or pip install (a lent GPU
# machine): sourced by tools/gpu_check.sh and tools/train_stylegan2_gpu.sh, never run on its own.
#
#   ROOT=<checkout> PY=<python> SITE=<scratch folder>; . "$ROOT/tools/checkout_env.sh"
#
# Puts SITE on PYTHONPATH. Where the package is not installed: SITE/latent_edit_bench is the import
# namespace an install makes (pyproject's package-dir), as links: bench/'s entries, plus methods,
# metrics and reports from beside it; and a dist-info folder in SITE (METADATA + entry_points.txt
# generated from pyproject.toml) so the built-in plugins register through the `latent_edit_bench`
# entry-point group as an install would. Where tqdm is missing, a pass-through stand-in (progress
# bars only). Sets CHECKOUT_NOTES to one line per stand-in made.

CHECKOUT_NOTES=""
mkdir -p "$SITE"
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1   # a part killed by timeout still leaves its log
if ! "$PY" -c "import latent_edit_bench.methods" 2>/dev/null; then
    rm -rf "$SITE/latent_edit_bench"
    mkdir -p "$SITE/latent_edit_bench"
    for entry in "$ROOT"/bench/*; do
        ln -s "$entry" "$SITE/latent_edit_bench/$(basename "$entry")"
    done
    for sub in methods metrics reports; do
        ln -s "$ROOT/$sub" "$SITE/latent_edit_bench/$sub"
    done
    CHECKOUT_NOTES="${CHECKOUT_NOTES}package not installed: latent_edit_bench linked from the checkout's folders
"
fi
if ! "$PY" -c "import sys; from importlib.metadata import entry_points; sys.exit(not entry_points(group='latent_edit_bench'))" 2>/dev/null; then
    if ! "$PY" "$ROOT/tools/checkout_metadata.py" "$ROOT/pyproject.toml" "$SITE" >/dev/null; then
        echo "checkout_env.sh: could not generate the entry points (above); the checkout is not usable" >&2
        return 1
    fi
    CHECKOUT_NOTES="${CHECKOUT_NOTES}package not installed: latent_edit_bench entry points provided by a generated dist-info on PYTHONPATH
"
fi
if ! "$PY" -c "import tqdm.auto" 2>/dev/null; then
    mkdir -p "$SITE/tqdm"
    printf 'class tqdm:\n    def __init__(self, iterable=None, *a, **k):\n        self.iterable = iterable\n    def __iter__(self):\n        return iter(self.iterable)\n    def update(self, n=1):\n        pass\n    def set_postfix(self, *a, **k):\n        pass\n    def close(self):\n        pass\n    def __enter__(self):\n        return self\n    def __exit__(self, *a):\n        pass\n' > "$SITE/tqdm/__init__.py"
    echo 'from . import tqdm' > "$SITE/tqdm/auto.py"
    CHECKOUT_NOTES="${CHECKOUT_NOTES}tqdm missing: a pass-through stand-in is used (no progress bars)
"
fi
