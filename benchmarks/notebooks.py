"""How long does each chapter take to run top to bottom? (figures, not a test)

Targets: a few seconds per chapter on a CPU (kernel start and imports included),
chapter 07's training capstone well under a minute. Runs every solution
notebook once with nbclient, as the tests do, and prints the wall time of the
whole notebook and of its slowest cell.

    python benchmarks/notebooks.py
"""
import sys
import tempfile
import time
from pathlib import Path

import nbclient
import nbformat

SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"
TARGETS = {"07": 60.0}  # seconds; every other chapter: DEFAULT_TARGET
DEFAULT_TARGET = 15.0


class TimedClient(nbclient.NotebookClient):
    """Records how long each cell took."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.cell_times = []

    async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
        start = time.perf_counter()
        result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
        self.cell_times.append((time.perf_counter() - start, cell.get("id", cell_index)))
        return result


def run(path):
    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as tmp:
        client = TimedClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                             resources={"metadata": {"path": tmp}})
        start = time.perf_counter()
        client.execute()
        total = time.perf_counter() - start
    return total, max(client.cell_times)


def main(names):
    paths = [p for p in sorted(SOLUTIONS.glob("*.ipynb")) if not names or p.stem[:2] in names]
    print(f"{'notebook':<36} {'total s':>8} {'target':>7}  slowest cell")
    for path in paths:
        total, (slowest, cell) = run(path)
        target = TARGETS.get(path.stem[:2], DEFAULT_TARGET)
        mark = "ok" if total <= target else "OVER"
        print(f"{path.stem:<36} {total:8.1f} {target:7.0f}  {slowest:5.1f} s in {cell}  {mark}")


if __name__ == "__main__":
    main(sys.argv[1:])
