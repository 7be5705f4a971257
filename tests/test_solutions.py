"""Every solved notebook in solutions/ runs top to bottom and every check in it passes.

New chapters are picked up automatically. Notebooks are executed once per test
session by nbexec.executed (shared with the other notebook tests).
"""
import re

import pytest

from nbexec import SOLUTIONS, errors, executed, expects_error, notebooks

CHECK_CALL = re.compile(r"^\s*checks\.check_\w+\(", re.MULTILINE)


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
