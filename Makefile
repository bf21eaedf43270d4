# The two commands: `make run` (install + run the default pipeline) and `make test`.
VENV ?= .venv
PYTHON ?= python3
CORES ?= all
RESULTS ?= results
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

PIP = $(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: run mnist1d test install install-test lint format clean

run: $(VENV)/.installed
	snakemake --cores $(CORES)
	snakemake --report $(RESULTS)/report.html --report-metadata $(RESULTS)/report_metadata.yaml

# The same zoo on MNIST-1D: the diffusion distance against CKA, RSA and Procrustes on a second data set.
mnist1d: $(VENV)/.installed
	snakemake --cores $(CORES) --configfile config/mnist1d.yaml
	snakemake --configfile config/mnist1d.yaml --report $(RESULTS)/mnist1d/report.html --report-metadata $(RESULTS)/mnist1d/report_metadata.yaml

test: $(VENV)/.installed-test
	pytest

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(PIP) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -e '.[test]'
	touch $@

lint: $(VENV)/.installed-test
	ruff check .
	ruff format --check .
	snakefmt --check Snakefile workflow/rules
	snakemake --lint --cores 1

format: $(VENV)/.installed-test
	ruff format .
	ruff check --fix .
	snakefmt Snakefile workflow/rules

clean:
	rm -rf results .snakemake
