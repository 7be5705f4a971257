"""The first cell of every chapter, and its "Open in Colab" badge.

On Google Colab a chapter opens with nothing of the course installed, so its first
cell installs what the notebooks import: ``helpers`` from the course's repository,
torchviz, the graphviz bindings (Colab has the ``dot`` program; graphviz-pure is the
fallback) and anywidget (which turns on Colab's widget manager by itself, so the
steppers work there). Everywhere else -- JupyterLab from ``make lab``, Binder, a
JupyterHub -- the same cell checks one dictionary key and does nothing.

The cell cannot import this module (on Colab nothing is installed yet), so it is
plain code kept here as text: ``helpers.release`` and the tests check that every
chapter starts with exactly this text, and the tests run it with a pretend Colab.
"""
import nbformat

REPOSITORY = "autograd-lab/autograd-lab"
BRANCH = "main"
TAG = "colab-setup"  # the cell's tag; the web site leaves the cell out

SETUP_CELL = f'''\
# On Google Colab this installs the course (about a minute); anywhere else it does nothing.
import sys
if "google.colab" in sys.modules and "helpers" not in sys.modules:
    import importlib.util, subprocess
    if importlib.util.find_spec("helpers") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                        "autograd-lab @ git+https://github.com/{REPOSITORY}@{BRANCH}",
                        "torchviz==0.0.3", "graphviz", "graphviz-pure", "anywidget"], check=True)
    import torch
    if not torch.__version__.startswith("2.13"):
        print(f"Colab has torch {{torch.__version__}}; the course is checked with 2.13, so a few "
              f"printed details may differ.")'''


def badge(notebook):
    """Markdown for the "Open in Colab" badge of ``notebooks/<notebook>``."""
    url = f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{notebook}"
    return f"[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def add_to(nb, notebook):
    """Give a solved chapter its badge (in the title cell) and its set-up cell; idempotent."""
    title = next((c for c in nb.cells if c.cell_type == "markdown"), None)
    if title is not None and "colab-badge.svg" not in title.source:
        lines = title.source.split("\n", 1)
        title.source = lines[0] + "\n\n" + badge(notebook) + ("\n" + lines[1] if len(lines) > 1 else "")
    existing = [c for c in nb.cells if TAG in c.metadata.get("tags", [])]
    if existing:
        existing[0].source = SETUP_CELL
        return nb
    cell = nbformat.v4.new_code_cell(SETUP_CELL, metadata={"tags": [TAG]})
    cell.id = "colab-setup"
    at = nb.cells.index(title) + 1 if title is not None else 0
    nb.cells.insert(at, cell)
    return nb
