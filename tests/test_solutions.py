"""Every solved notebook in solutions/ runs top to bottom and every check in it passes.

New chapters are picked up automatically. Notebooks are executed once per test
session by nbexec.executed (shared with the other notebook tests).
"""
import re

import pytest

from exercise_harness import HIDDEN, exercise_section, new_globals_after_grade_cells, section
from helpers import grading, release
from nbexec import SOLUTIONS, errors, executed, expects_error, notebooks

CHECK_CALL = re.compile(r"^\s*checks\.(check_\w+|exercise)\(", re.MULTILINE)
EXERCISE = re.compile(r'^checks\.exercise\("(\d\d_\w+)"\)$')


def graded(nb):
    return [c for c in nb.cells if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]


def stdout(cell):
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_solutions_run_and_every_check_passes(path):
    nb = executed(path)
    failed = [f"cell {c.id}: {o.ename}: {o.evalue}" for c, o in errors(nb) if not expects_error(c)]
    assert not failed, f"{path.name} raised where it should not: {failed}"
    for cell in graded(nb):
        calls, passed = len(CHECK_CALL.findall(cell.source)), stdout(cell).count("✅")
        assert passed >= calls, (
            f"{path.name} cell {cell.id}: {calls} checks called but {passed} printed ✅.")


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_every_grade_cell_is_the_visible_check_and_the_grading_snippet(path):
    """No expected values, reference code or helper definitions in a grade cell: exactly
    `checks.exercise(ID)` and helpers.grading's hidden test for the same ID."""
    nb = release.read(path)
    wrong = []
    for cell in graded(nb):
        first = cell.source.split("\n")[0]
        match = EXERCISE.match(first)
        if not match or cell.source != grading.grade_cell(match.group(1)):
            wrong.append(cell.metadata.nbgrader.grade_id)
    assert not wrong, f"{path.name}: grade cells {wrong} are not `checks.exercise(ID)` + the snippet " \
                      f"(helpers.grading.grade_cell(ID) writes one)"
    assert all(HIDDEN in c.source for c in graded(nb))


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_no_grade_cell_leaves_a_new_global_name(path):
    """Run the chapter's exercise section (the setup cell, the exercises and the earlier cells
    they need) in one kernel, watching the notebook's globals around every grade cell."""
    nb = release.read(path)
    problems = new_globals_after_grade_cells(section(nb, {nb.cells[i].id for i in exercise_section(nb)}))
    assert not problems, f"{path.name}:\n" + "\n".join(problems)
