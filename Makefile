# Two entry points: `make demo` (the main job) and `make test`. Both create the
# pinned environment on first use (tools/ensure_env.sh) and link it as .venv.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: env demo test bench clean

env:
	@bash tools/ensure_env.sh

demo: env
	$(PY) examples/demo.py

# two workers (the CI machine's two cores); a test file stays on one worker, so its
# module fixtures (a compiled model, a trained committee) are built once
PYTEST_WORKERS ?= 2

test: env
	OMP_NUM_THREADS=1 $(PY) -m pytest -ra -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) tests

bench: env
	.venv/bin/mlff bench

clean:
	rm -rf build demo_output bench_output .pytest_cache
