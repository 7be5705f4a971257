"""Shared by every test process: a private folder where executed notebooks are kept, so that
with `pytest -n 2` (what `make test` runs) each chapter runs once, not once per process."""
import os
import shutil
import tempfile

from nbexec import CACHE_ENV


def pytest_configure(config):
    # The controller (or a plain run) makes the folder; xdist workers inherit the variable.
    if not hasattr(config, "workerinput") and CACHE_ENV not in os.environ:
        config._autograd_lab_nb_cache = tempfile.mkdtemp(prefix="autograd-lab-notebooks-")
        os.environ[CACHE_ENV] = config._autograd_lab_nb_cache


def pytest_unconfigure(config):
    folder = getattr(config, "_autograd_lab_nb_cache", None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(CACHE_ENV, None)
