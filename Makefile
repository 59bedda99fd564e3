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

test: env
	OMP_NUM_THREADS=1 $(PY) -m pytest -ra $(PYTEST_ARGS) tests

bench: env
	.venv/bin/mlff bench

clean:
	rm -rf build demo_output bench_output .pytest_cache
