"""Execute a notebook once per test session and hand out the executed copy.

Notebooks run in a temporary folder (so they never write into the repo) with
the `python3` kernel, which jupyter_client starts with this same Python.

With several test processes (pytest -n, see conftest.py) the first process to
need a notebook runs it and leaves the result in the session's private cache
folder (``AUTOGRAD_LAB_NB_CACHE``); the others wait for it and read it.
"""
import fcntl
import functools
import hashlib
import os
from pathlib import Path

import nbformat

from helpers import website

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = 300  # per cell


def notebooks(folder):
    return sorted(folder.glob("*.ipynb"))


CACHE_ENV = "AUTOGRAD_LAB_NB_CACHE"


@functools.lru_cache(maxsize=None)
def executed(path):
    """The notebook at ``path`` after running every cell (errors kept as outputs)."""
    cache = os.environ.get(CACHE_ENV)
    if not cache:
        return _execute(path)
    path = Path(path)
    key = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    target = Path(cache) / f"{path.parent.name}-{path.stem}-{key}.ipynb"
    with open(target.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one process runs it; the others wait, then read
        if target.exists():
            return nbformat.read(target, as_version=4)
        nb = _execute(path)
        nbformat.write(nb, target)
        return nb


def _execute(path):
    return website.execute(path, timeout=TIMEOUT)  # the same run the web site is built from


def errors(nb):
    """[(cell, error output)] for every cell that raised."""
    return [
        (cell, out)
        for cell in nb.cells if cell.cell_type == "code"
        for out in cell.get("outputs", []) if out.output_type == "error"
    ]


def expects_error(cell):
    return "raises-exception" in cell.metadata.get("tags", [])


def printed(path):
    """What each code cell of the executed notebook printed, one string per code cell."""
    return ["".join(o.get("text", "") for o in c.get("outputs", []) if o.output_type == "stream")
            for c in executed(path).cells if c.cell_type == "code"]


def cell_with(path, marker):
    """The one executed code cell whose *source* contains ``marker``."""
    cells = [c for c in executed(path).cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"expected one cell containing {marker!r}, found {len(cells)}"
    return cells[0]


def error_of(path, marker):
    """The error output of the one code cell whose source contains ``marker``."""
    found = [o for o in cell_with(path, marker).outputs if o.output_type == "error"]
    assert found, f"the cell containing {marker!r} raised nothing"
    return found[0]


def output_of(path, marker):
    """The printed text of the one code cell whose *source* contains ``marker``."""
    return "".join(o.get("text", "") for o in cell_with(path, marker).outputs if o.output_type == "stream")


def output_with(texts, marker):
    """The first of ``texts`` (see ``printed``) that contains ``marker``."""
    found = [text for text in texts if marker in text]
    assert found, f"no cell printed {marker!r}"
    return found[0]
