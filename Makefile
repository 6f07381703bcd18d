# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# One installer at a time: `make demo` and `make test` started together would race on
# one venv (pip's build hooks fail half-way). flock(1) is util-linux; without it, no lock.
LOCK   := $(shell command -v flock >/dev/null 2>&1 && echo flock $(VENV).lock)

.PHONY: test test-fast lint typecheck pytest bench demo clean

# TypeScript (pinned in package.json / package-lock.json) checks the widgets' JS
# (tests/widgets/test_js_check.py). Without npm the test says how to install it.
NPM := $(shell command -v npm 2>/dev/null)
node_modules/.installed: package-lock.json
ifneq ($(NPM),)
	$(NPM) ci --no-audit --no-fund --silent && touch $@
else
	@echo "make: npm not found; the TypeScript check of the widgets will be skipped (apt-get install nodejs npm)"
endif

# Each step re-checks under the lock: whoever waited finds the work done.
$(BIN)/python:
	$(LOCK) sh -c 'test -x $(BIN)/python || { $(PYTHON) -m venv $(VENV) \
		&& $(BIN)/python -m pip install --quiet --upgrade pip; }'

$(STAMP): $(BIN)/python pyproject.toml
	$(LOCK) sh -c 'test $(STAMP) -nt pyproject.toml \
		|| { $(BIN)/python -m pip install --quiet -e ".[test]" && touch $(STAMP); }'

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy --strict rtnb

# pytest exit code 5 means "no tests collected": that is a failure here.
pytest: $(STAMP) node_modules/.installed
	$(BIN)/python -m pytest -q

test: lint typecheck pytest

# The quick loop: no browser, no notebook, nothing marked slow (markers in pyproject.toml).
# Two pytest-xdist workers: run serially, ~40% of its wall time is waiting (sockets, servers,
# subprocesses): 75 s -> 52 s on an idle 2-core box (FAST_WORKERS=0: one process). `make test`
# stays serial.
FAST_WORKERS ?= 2
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not browser and not notebook and not slow" -n $(FAST_WORKERS)

bench: $(STAMP)
	$(BIN)/python -m bench

# Reference server with demo data + JupyterLab on copies of notebooks/ (all three, and
# their data); prints the URL (token included). The copies live in rtnb-demo/ (git-ignored,
# outside the venv: `make clean` keeps them); a file already there is never overwritten.
demo: $(STAMP)
	$(LOCK) $(BIN)/python -m pip install --quiet -e '.[demo]'
	$(BIN)/python -m rtnb.widgets.demo --dir rtnb-demo

clean:
	rm -rf $(VENV) $(VENV).lock node_modules .mypy_cache .pytest_cache .ruff_cache .hypothesis
