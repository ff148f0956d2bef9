# The two commands every new user needs: `make run` and `make test`.
# Each creates or updates .venv from pyproject.toml by itself.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run demo test browser bench lint format clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/duban up $(ARGS)

demo: $(STAMP)
	$(BIN)/duban up --demo $(ARGS)

# The suite runs in one worker per core (pytest-xdist), each test file (or group of files sharing
# a duban up) in one worker, the longest first (tests/support/scheduling.py): most tests wait on
# servers and processes, so two files at once take about two thirds of the time.
TEST_WORKERS ?= auto

# The pages are tested in a real browser: Debian's chromium with a CJK font, installed here when
# make runs as root and they are missing (Playwright cannot download its own browsers here).
browser:
	@if [ "$$(id -u)" = 0 ] && { ! command -v chromium >/dev/null || ! fc-list 2>/dev/null | grep -qi "noto sans cjk"; }; then \
		echo "installing chromium and fonts-noto-cjk (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	fi

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .duban .pytest_cache .ruff_cache
