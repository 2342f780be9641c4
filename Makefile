# The two commands a newcomer runs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?= -n 2 --dist loadfile

.PHONY: demo test lint bench prereqs venv clean kube-tools

prereqs:
	@PYTHON=$(PYTHON) sh scripts/prereqs.sh

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

venv: prereqs $(STAMP)

demo: venv
	$(BIN)/mizzen demo $(if $(DEMO_ONCE),--once,)

# The Kubernetes tools (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, helm), built from their Go modules into
# ~/.cache/mizzen/kube once (about 11 minutes cold on 2 cores).
kube-tools:
	@bash kube/build.sh >/dev/null

test: venv kube-tools
	@WITH_LOAD_TOOLS=1 PYTHON=$(PYTHON) sh scripts/prereqs.sh
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	@WITH_LOAD_TOOLS=1 PYTHON=$(PYTHON) sh scripts/prereqs.sh
	$(BIN)/mizzen bench $(if $(QUICK),--quick,)

lint: venv
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
