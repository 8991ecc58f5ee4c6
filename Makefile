# `make demo`: create .venv, install mona, run `mona select` on the bundled example.
# `make test`: install dev dependencies into the same .venv and run the test suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# torch is pinned to the CPU wheel; without the pin pip would pull a multi-GB CUDA build.
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: demo test lint install dev clean examples

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP_INSTALL) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

dev: $(VENV)/.installed-dev

demo: install
	HF_HUB_OFFLINE=1 $(BIN)/mona select --pool examples/pool.jsonl --target examples/target.jsonl \
		--ratio 0.05 --out out/demo-selected.jsonl --scores out/demo-scores.jsonl --show 10

test: dev
	@# the `mona report` browser test needs Chromium (Debian package); without it that test is skipped
	@command -v chromium >/dev/null || { SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); command -v apt-get >/dev/null \
		&& ($$SUDO apt-get install -y chromium >/dev/null 2>&1 || ($$SUDO apt-get update >/dev/null \
		&& $$SUDO apt-get install -y chromium >/dev/null)) || echo "chromium not installed: the report browser test will be skipped"; }
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

lint: dev
	$(BIN)/ruff check src tests scripts

examples: install
	$(BIN)/python scripts/build_examples.py

clean:
	rm -rf $(VENV) out .pytest_cache
