# The README's two commands: `make run` and `make test`. Both work on a fresh Debian
# machine that has only python3: scripts/bootstrap-venv creates .venv (installing Debian's
# python3-venv first when it is missing and we are root).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run test lint typecheck unit bench clean

$(PY):
	bash scripts/bootstrap-venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(VENV)/bin/evercron check examples/crontab
	$(VENV)/bin/evercron serve --config examples/evercron.toml --crontab examples/crontab

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy --strict src

unit: $(DEV_STAMP)
	bash scripts/ensure-chromium
	bash scripts/ensure-promtool
	bash scripts/ensure-postgresql
	$(VENV)/bin/pytest -q

test: lint typecheck unit

bench: $(DEV_STAMP)
	$(PY) bench/cron_next.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
