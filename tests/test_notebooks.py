"""The notebooks as committed: stripped of outputs, and raising only where they say so."""
import json

import pytest

from nbexec import NOTEBOOKS, SOLUTIONS, errors, executed, expects_error, notebooks

ALL = notebooks(SOLUTIONS) + notebooks(NOTEBOOKS)


def test_there_are_notebooks():
    assert (NOTEBOOKS / "00_start_here.ipynb") in ALL and (SOLUTIONS / "00_start_here.ipynb") in ALL


@pytest.mark.parametrize("path", ALL, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [
        c.get("id", i) for i, c in enumerate(nb["cells"])
        if c["cell_type"] == "code" and (c["outputs"] or c["execution_count"] is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} have outputs; clear them before committing."


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_raises_exception_cells_raise_the_documented_error(path):
    """A cell tagged raises-exception names its error in metadata autograd_lab.raises,
    as "ErrorName: part of the message"; it must raise exactly that."""
    nb = executed(path)
    tagged = [c for c in nb.cells if c.cell_type == "code" and expects_error(c)]
    raised = {id(cell): out for cell, out in errors(nb)}
    for cell in tagged:
        expected = cell.metadata.get("autograd_lab", {}).get("raises")
        assert expected, f"{path.name} cell {cell.id}: tagged raises-exception but names no expected error."
        ename, _, fragment = expected.partition(": ")
        out = raised.get(id(cell))
        assert out is not None, f"{path.name} cell {cell.id} should raise {ename} but did not."
        assert out.ename == ename and fragment in out.evalue, (
            f"{path.name} cell {cell.id}: expected {expected!r}, got {out.ename}: {out.evalue}"
        )


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_solution_notebooks_raise_nowhere_else(path):
    nb = executed(path)
    unexpected = [(c.id, f"{o.ename}: {o.evalue}") for c, o in errors(nb) if not expects_error(c)]
    assert not unexpected, f"{path.name}: {unexpected}"


# Cells stay short enough to read at a glance: about 20 lines, a whole class up to 25
# (counted as the learner sees them: an exercise's hidden tests are not shown).
LONGEST_CELL = 25
# Lines that are about float precision itself, where long digits are the point.
ABOUT_PRECISION = ("spacing of numbers near 1", "step actually taken")


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_short_cells_and_no_noise_in_the_outputs(path):
    """No cell longer than LONGEST_CELL lines; no `<torch._C.Generator ...>` echoed by a
    seed; no float printed with nine or more decimals (they hide what the number says)."""
    import re
    long_float = re.compile(r"\d\.\d{9,}")
    for cell in executed(path).cells:
        if cell.cell_type != "code":
            continue
        shown = cell.source.split("### BEGIN HIDDEN TESTS")[0].rstrip().splitlines()
        assert len(shown) <= LONGEST_CELL, f"{path.name} cell {cell.id} has {len(shown)} lines"
        for out in cell.get("outputs", []):
            text = out.get("text", "") + out.get("data", {}).get("text/plain", "")
            assert "torch._C.Generator" not in text, f"{path.name} cell {cell.id} echoes a Generator"
            for line in text.splitlines():
                if not any(p in line for p in ABOUT_PRECISION):
                    assert not long_float.search(line), f"{path.name} cell {cell.id}: {line}"
