# Two commands for a fresh machine:
#   make demo   -> .venv + install + the whole workflow on the embedded demo
#   make test   -> .venv + install + the test suite
#
# TORCH selects the PyTorch build. The default is the CPU wheel (fast to install,
# what CI uses). On a GPU cluster pick the CUDA build that matches the driver, e.g.
#   make demo TORCH="torch --index-url https://download.pytorch.org/whl/cu124"
PYTHON ?= python3
TORCH  ?= torch==2.13.0
CORES  ?= 2
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-slurm lint report clean install

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[torch,workflow,test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --show-failed-logs
	$(BIN)/snakemake --cores $(CORES) --report results/report/report.html
	@echo
	@echo "Summary table: results/report/tables/summary.md (also .csv, .tex)"
	@echo "HTML report:   results/report/report.html"

test: $(STAMP) lint
	$(BIN)/python -m pytest -q
	$(MAKE) test-slurm

# A real single-node SLURM (slurm-wlm + munge from apt) runs a small target through
# profiles/slurm; prints a SKIP line where root or apt is missing.
test-slurm: $(STAMP)
	bash tests/slurm/run_slurm_test.sh

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# Style and structure, all part of `make test`: Snakemake's linter, ruff (lint + format),
# snakefmt, and the import-linter contracts in pyproject.toml (layers without cycles).
lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/lint-imports

clean:
	rm -rf results logs benchmarks .snakemake
