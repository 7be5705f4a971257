"""Execute a notebook once per test session and hand out the executed copy.

Notebooks run in a temporary folder (so they never write into the repo) with
the `python3` kernel, which jupyter_client starts with this same Python.
"""
import functools
import shutil
import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = 300  # per cell


def notebooks(folder):
    return sorted(folder.glob("*.ipynb"))


@functools.lru_cache(maxsize=None)
def executed(path):
    """The notebook at ``path`` after running every cell (errors kept as outputs)."""
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        for extra in Path(path).parent.iterdir():  # data files next to the notebook
            if extra.is_file() and extra.suffix != ".ipynb":
                shutil.copy(extra, tmp)
        client = nbclient.NotebookClient(
            nb, timeout=TIMEOUT, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": tmp}},
        )
        client.execute()
    return nb


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


def output_of(path, marker):
    """The printed text of the one code cell whose *source* contains ``marker``."""
    cells = [c for c in executed(path).cells if c.cell_type == "code" and marker in c.source]
    assert len(cells) == 1, f"expected one cell containing {marker!r}, found {len(cells)}"
    return "".join(o.get("text", "") for o in cells[0].outputs if o.output_type == "stream")


def output_with(texts, marker):
    """The first of ``texts`` (see ``printed``) that contains ``marker``."""
    found = [text for text in texts if marker in text]
    assert found, f"no cell printed {marker!r}"
    return found[0]
