# The two entry points the README names: `make demo` (the main job) and `make test` (every test).
# Both install what they need first (scripts/bootstrap).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo demo-vms test lint bench chaos

setup:
	@VENV=$(VENV) ./scripts/bootstrap

demo: setup
	$(BIN)/locksmith-demo $(ARGS)

# Three VMs from our image roll an update with real reboots (root; TCG when KVM does not work here).
demo-vms: setup
	$(BIN)/locksmith-demo --vms 3 $(ARGS)

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest $(ARGS)

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m bench $(ARGS)

chaos: setup
	$(BIN)/locksmith-chaos $(ARGS)
