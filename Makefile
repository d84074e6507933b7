# The two commands of the README:
#   make serve   install everything into .venv and start the server on the embedded default
#   make test    install everything (with dev tools) and run lint, types and every test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# CPU build of torch, installed before anything that depends on torch (otherwise pip
# resolves torch itself and may pull several GB of CUDA wheels). Override on a GPU box,
# e.g. `make serve TORCH=torch`.
TORCH ?= torch==2.13.0
PLUGINS := $(wildcard plugins/*/pyproject.toml)
STAMP := $(VENV)/.installed

.PHONY: install serve test lint bench clean browser

# Debian packages the tests need: a CJK font for the OCR plugin's rendered Chinese text.
APT_PACKAGES := fonts-noto-cjk

$(STAMP): pyproject.toml $(PLUGINS)
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -q && apt-get install -y $$missing; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]" $(foreach p,$(PLUGINS),-e $(dir $(p)))
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/imgdex serve $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check
	$(BIN)/ruff format --check
	$(BIN)/mypy

# The web app's end-to-end tests (tests/browser) drive Debian's chromium through
# Playwright (its own browser download does not work offline); a CJK font renders
# Chinese descriptions. Installed only when missing.
browser:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	dpkg -s fonts-noto-cjk >/dev/null 2>&1 || apt-get install -y fonts-noto-cjk

test: lint browser
	$(BIN)/python -m pytest $(ARGS)

bench: $(STAMP)
	for b in search concurrency ingest models memory; do $(BIN)/python bench/$$b.py $(ARGS) || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
