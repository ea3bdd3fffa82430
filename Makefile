# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates/reuses .venv, installs the package alone, runs the main job on the embedded default backbone
#   make test   -> creates/reuses .venv, installs with test + deepface extras, runs the test suite
#   make test-fast -> the same, less the long end-to-end tests marked slow (pytest -m "not slow"), for iterating
# torch==2.13.0 is installed first when missing, so no install ever resolves a CUDA build.
# Two stamps: the demo needs only the package; the test extras are installed on top of it when asked for.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP      := $(VENV)/.bench-installed
TEST_STAMP := $(VENV)/.bench-installed-test

.PHONY: demo test test-fast venv clean

# pip >= 22 installs a pyproject project editable (PEP 660): no upgrade (a network round trip) when the
# venv's own pip is that recent. --no-compile: Python compiles what it imports on first use, instead of
# pip compiling every file of torch and pandas up front (a shorter install; the whole fresh `make demo`,
# tools/docs/time_demo.sh, did not change measurably: 8:17 before, 8:26 after, within run-to-run spread).
PIP := $(BIN)/python -m pip install -q --no-compile

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import pip, sys; sys.exit(int(pip.__version__.split('.')[0]) < 22)" || $(PIP) --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(PIP) torch==2.13.0
	$(PIP) -e .
	touch $(STAMP)

# after $(STAMP), so torch is already there; rebuilt whenever $(STAMP) is (pyproject.toml changed)
$(TEST_STAMP): $(STAMP)
	$(PIP) -e '.[test,deepface]'
	touch $(TEST_STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/bench run --methods baseline,hfld,ganspace --attrs Male,Bald --out runs/demo

# PYTHONDONTWRITEBYTECODE emptied: the suite starts ~40 python processes, and where the environment sets it
# (this project's machines do) each one recompiled torch's and pandas' modules (no .pyc: pip ran with
# --no-compile): 6 s per start instead of 3.5 s
test: $(TEST_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q

# under 3 min on 2 cores (2:52 on an AMD EPYC): every test but those marked @pytest.mark.slow (pyproject.toml's marker)
test-fast: $(TEST_STAMP)
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache
