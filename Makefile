# Autograd Lab — two commands do everything:
#   make lab    install into .venv and open JupyterLab on the first notebook
#   make test   install the test dependencies and run the whole test suite
# Other targets: make student (rebuild notebooks/ from solutions/), make bench, make clean,
# make handout DEST=... / make course DEST=... (a class on a JupyterHub: INSTRUCTORS.md).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# JupyterLab refuses to run as root without this flag.
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

.PHONY: lab test student bench site system-deps clean handout course hub-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Stamp files: reinstall only when the requirements change.
$(VENV)/.lab-installed: requirements.txt pyproject.toml binder/overrides.json | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@# JupyterLab settings for this environment only (not your home): no news pop-up.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	cp binder/overrides.json $(VENV)/share/jupyter/lab/settings/overrides.json
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

# Two test processes (the machine's cores); each chapter still runs once (tests/conftest.py).
test: $(VENV)/.dev-installed system-deps hub-deps
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The course as a static web site in site/ (runs every chapter once; a minute or two).
site: $(VENV)/.dev-installed
	$(BIN)/python -m helpers.website --out site

student: $(VENV)/.dev-installed
	$(BIN)/python -m helpers.release

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/draw.py
	$(BIN)/python benchmarks/stepper.py
	$(BIN)/python benchmarks/notebooks.py

clean:
	rm -rf $(VENV) .pytest_cache site

# configurable-http-proxy, which JupyterHub needs, for tests/test_hub.py: from npm into
# this environment only (.venv/node), never globally. Without npm the Hub test is skipped.
CHP_VERSION := 5.3.0
$(VENV)/.hub-installed: | $(BIN)/python
	@if command -v npm >/dev/null 2>&1; then \
	  npm install --prefix $(VENV)/node --no-save --no-audit --no-fund --loglevel=error \
	    configurable-http-proxy@$(CHP_VERSION) && touch $@; \
	else echo "npm not found: install Node.js and npm (e.g. 'apt-get install nodejs npm'); the JupyterHub test will be skipped."; fi

hub-deps: $(VENV)/.hub-installed

# The class path (INSTRUCTORS.md): the students' git repository for nbgitpuller links,
# and an nbgrader course directory (CHAPTERS="00 03" for some chapters; default all).
handout: $(VENV)/.dev-installed
	$(if $(DEST),,$(error Say where the students' repository goes: make handout DEST=../autograd-lab-handout))
	$(BIN)/python -m helpers.classroom handout $(DEST)

course: $(VENV)/.dev-installed
	$(if $(DEST),,$(error Say where the course directory goes: make course DEST=../autograd-lab-course))
	$(BIN)/python -m helpers.classroom course $(DEST) $(CHAPTERS)
