PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VIDEO ?=

.PHONY: install demo test bench clean

install: $(STAMP)

# torch: the CPU build for this machine (no GPU), pinned here; pyproject.toml allows a range.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test,bench,atari,kmeans,distributed]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m pacodec.demo $(if $(VIDEO),--video $(VIDEO),)

# One test file per worker, a worker per core: the CLI tests mostly wait on subprocesses.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --dist loadfile

bench: $(STAMP)
	$(BIN)/python benchmarks/rd.py
	$(BIN)/python benchmarks/seed_table.py

clean:
	rm -rf $(VENV) demo-out
