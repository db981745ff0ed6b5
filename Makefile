# zgoda: `make demo` and `make test` do all the set-up on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench system clean msi

demo: system $(STAMP)
	$(BIN)/zgoda demo

test: system $(STAMP) lint typecheck unit

system:
	@.ci/system-packages --with-wine

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "zgoda needs Python 3.11 or newer (found $$($(PYTHON) --version))"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,build]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# pytest exits 5 when it collects nothing; that is not a failure of the code.
unit: $(STAMP)
	$(BIN)/pytest --cov --cov-report= -p no:cacheprovider $(PYTEST_ARGS); \
		rc=$$?; if [ $$rc -eq 5 ]; then rc=0; fi; \
		$(BIN)/python .ci/coverage-by-package; exit $$rc

# The agent's MSI (PyInstaller + wixl here, WiX on Windows): see docs/deploying.md.
msi: system $(STAMP)
	$(BIN)/python -m installer.build

bench: system $(STAMP)
	$(BIN)/python -m bench.protocol

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache demo-output bench/out
