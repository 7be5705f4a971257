# Autograd Lab — two commands do everything:
#   make lab    install into .venv and open JupyterLab on the first notebook
#   make test   install the test dependencies and run the whole test suite
# Other targets: make student (rebuild notebooks/ from solutions/), make bench, make clean.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# JupyterLab refuses to run as root without this flag.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test student bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when the requirements change.
$(VENV)/.lab-installed: requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev-installed: requirements-dev.txt $(VENV)/.lab-installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

lab: $(VENV)/.lab-installed
	$(BIN)/jupyter lab $(ROOT_FLAG) notebooks/00_start_here.ipynb

# Graphviz and Chromium come from the system's packages. As root on Debian we
# install them; elsewhere we say what is missing (the course still runs pip-only).
system-deps:
	@bash scripts/system-deps.sh

test: $(VENV)/.dev-installed system-deps
	$(BIN)/python -m pytest

student: $(VENV)/.dev-installed
	$(BIN)/python -m helpers.release

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/draw.py
	$(BIN)/python benchmarks/stepper.py
	$(BIN)/python benchmarks/notebooks.py

clean:
	rm -rf $(VENV) .pytest_cache
