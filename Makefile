# The two entry points of the README: `make render` (render the bundled examples) and
# `make test` (install everything the tests need, then run them). CI runs `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TOOLS_BIN := $(shell $(PYTHON) -c 'import os;print(os.path.join(os.environ.get("MODELPLAT_TOOLS_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "modelplat-tools"), "bin"))')

# The slowest tests are printed at the end of every run: the CI budget is 12 minutes warm.
PYTEST_ARGS ?= --durations=15

.PHONY: render test tools install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(BIN)/.installed

render: install
	$(BIN)/modelplat render examples --out charts-out

tools:
	scripts/install-tools.sh

test: install tools
	PATH="$(TOOLS_BIN):$$PATH" $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis build dist
