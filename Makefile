# Two commands do all the set-up on a fresh machine:
#   make demo   -> creates/reuses .venv, installs, runs the main job on the embedded default backbone
#   make test   -> creates/reuses .venv, installs with test + deepface extras, runs the test suite
# torch==2.13.0 is installed first when missing, so no install ever resolves a CUDA build.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.bench-installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test,deepface]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/bench run --methods baseline,hfld,ganspace --attrs Male,Bald --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
