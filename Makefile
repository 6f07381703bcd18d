# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test test-fast lint typecheck pytest bench demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy --strict rtnb

# pytest exit code 5 means "no tests collected": that is a failure here.
pytest: $(STAMP)
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# The quick loop: no browser, no notebook, nothing marked slow (markers in pyproject.toml).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not browser and not notebook and not slow"

bench: $(STAMP)
	$(BIN)/python -m bench

# Reference server with demo data + JupyterLab on notebooks/01_live_dashboard.ipynb;
# prints the URL (token included). All state stays under $(VENV)/rtnb-demo.
demo: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	$(BIN)/python -m rtnb.widgets.demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache .hypothesis
