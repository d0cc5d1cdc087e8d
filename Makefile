# Two commands for a newcomer:
#   make demo   set up (.venv, torch 2.13.0 CPU first, the package) and run the main job -> outputs/
#   make test   set up the same way (idempotent) and run the whole test suite (slow tests included)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.fisherattr-installed
TORCH  ?= torch==2.13.0

.PHONY: setup demo test test-fast test-slow bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and explicitly, so that no resolver pulls a CUDA build
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test,reference,ray]"
	touch $(STAMP)

# The demo is a quick look: two photos, the four headline methods
# (FDA, DiffIB, SAMP++, IDGI-IG) next to three baselines, DifAUC with the `quick` preset (5% steps).
# Change it here or on the command line (make demo DEMO_IMAGES="chelsea my.jpg").
# The full comparison (six photos, seven methods, the papers' 1% steps; tens of minutes on 2 cores):
#   .venv/bin/fisherattr explain --out outputs-full
DEMO_IMAGES  ?= chelsea coffee
DEMO_METHODS ?= fda,diffib,samp++,idgi-ig,integrated-gradients,gradcam,saliency
DEMO_PRESET  ?= quick
demo: setup
	$(BIN)/fisherattr explain $(DEMO_IMAGES) --methods $(DEMO_METHODS) --preset $(DEMO_PRESET) --out outputs --overwrite

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

test-fast: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider -m slow

bench: setup
	$(BIN)/python benchmarks/bench_methods.py

clean:
	rm -rf $(VENV) outputs
