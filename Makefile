# One command to set up and run the demo (`make demo`), one to set up and run the tests (`make test`),
# one to type-check the package (`make typecheck`), one to verify the GPU path on a GPU machine (`make gpu-check`).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STUBS  := .stubs
TRT_STUBS_VERSION := 10.13.0.35.1

.PHONY: setup test test-fast demo lint typecheck gpu-check clean

# pip quietly: its notices (root user, new versions, scripts off PATH) filled half of the demo's log; errors
# still show. Each step says what it does in one line instead.
PIP := PIP_ROOT_USER_ACTION=ignore $(BIN)/python -m pip -q --disable-pip-version-check --no-input

$(BIN)/.installed: pyproject.toml
	@echo "setup: creating $(VENV) and installing edgexfer with every extra (TensorFlow included: a few minutes the first time)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install --no-warn-script-location -e '.[all,dev]'
	@# tensorrt-stubs requires tensorrt (not installable here) and, installed into site-packages,
	@# would make `import tensorrt` succeed as an empty package: unpack it beside, for mypy only.
	@rm -rf $(STUBS) && mkdir -p $(STUBS)/wheel
	@$(PIP) download --no-deps -d $(STUBS)/wheel tensorrt-stubs==$(TRT_STUBS_VERSION)
	@cd $(STUBS) && $(CURDIR)/$(BIN)/python -m zipfile -e wheel/*.whl site
	@touch $@
	@echo "setup: done; $$($(BIN)/edgexfer --version 2>/dev/null || echo edgexfer) in $(VENV) (edgexfer doctor says what this machine can run)"

setup: $(BIN)/.installed

# tensorrt-stubs do not parse as shipped: a patched copy goes on MYPYPATH
$(STUBS)/patched/.patched: $(BIN)/.installed scripts/patch_trt_stubs.py
	$(BIN)/python scripts/patch_trt_stubs.py $(STUBS)/site $(STUBS)/patched
	touch $@

# The real-size backbone conversions (near 6 GB resident at their peak) run in a second pytest process, so
# that no process holds them and what the rest of the suite built at once (the suite stays under 8 GB).
# Both runs always run; the target fails if either fails.
OWN_PROCESS_TESTS := tests/export/test_export_backbones.py

test: setup
	@status=0; \
	$(BIN)/python -m pytest $(addprefix --ignore=,$(OWN_PROCESS_TESTS)) || status=$$?; \
	$(BIN)/python -m pytest $(OWN_PROCESS_TESTS) || status=$$?; \
	exit $$status

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

demo: setup
	$(BIN)/edgexfer demo --out runs/demo

lint: setup
	$(BIN)/ruff check edgexfer tests benchmarks

# mypy over edgexfer/ (settings in pyproject.toml); TensorRT calls are checked against its stubs
typecheck: $(STUBS)/patched/.patched
	MYPYPATH=$(CURDIR)/$(STUBS)/patched $(BIN)/python -m mypy

# on a machine with an NVIDIA GPU: the gpu/tensorrt tests and the demo, results in benchmarks/results/gpu_check.json
gpu-check: setup
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf $(VENV) $(STUBS) runs
