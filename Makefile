# Both targets build .venv from nothing on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# On a machine without an NVIDIA GPU, install the CPU torch wheel first so that
# the package's unpinned torch requirement does not pull gigabytes of CUDA wheels.
CPU_TORCH ?= torch==2.13.0

.PHONY: demo test env docs clean

# The package and its runtime dependencies (all `make demo` needs).
$(BIN)/.installed: setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q "$(CPU_TORCH)"; fi
	$(BIN)/pip install -q -e .
	touch $@

# Plus the test tools (pytest, notebook runner, browser driver).
$(BIN)/.installed-dev: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

env: $(BIN)/.installed-dev

demo: $(BIN)/.installed
	$(BIN)/neglect run --preset demo --out runs/demo

# Headless Chromium for tests/experiments/reporting/test_browser.py; idempotent. Without root or apt the browser
# test skips itself and says why, so this step only warns.
.PHONY: browser-deps
browser-deps:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
	  ( [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver ) || \
	  echo "warning: could not install chromium/chromium-driver; tests/experiments/reporting/test_browser.py will be skipped"

# The documentation site (mkdocs.yml): the README's sections and the API reference from the docstrings.
docs: $(BIN)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict -q
	@echo "site/index.html"

test: $(BIN)/.installed-dev browser-deps
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs site
