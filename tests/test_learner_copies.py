"""The learner copies in notebooks/: what the release writes, with no solution
leaked, and failing only the way an unfinished exercise should."""
import pytest

from exercise_harness import lines_of
from helpers import release
from nbexec import NOTEBOOKS, ROOT, SOLUTIONS, errors, executed, expects_error, notebooks

# The lines ClearSolutions puts in place of a solution.
STUBS = {"# YOUR CODE HERE", "raise NotImplementedError()", "YOUR ANSWER HERE"}
REGIONS = ("SOLUTION", "HIDDEN TESTS", "MARK SCHEME")


def test_notebooks_are_exactly_what_the_release_writes():
    problems = release.check(ROOT)
    assert not problems, "\n".join(problems)


def split_lines(nb):
    """(lines inside solution / hidden-test / mark-scheme regions, lines outside), stripped."""
    inside, outside = set(), set()
    for cell in nb.cells:
        lines = [line.strip() for line in cell.source.splitlines()]
        whole_cell_is_solution = (cell.metadata.get("nbgrader", {}).get("solution")
                                  and not any(f"BEGIN {r}" in cell.source for r in REGIONS))
        in_region = whole_cell_is_solution
        for line in lines:
            if any(f"BEGIN {r}" in line for r in REGIONS):
                in_region = True
            elif any(f"END {r}" in line for r in REGIONS):
                in_region = whole_cell_is_solution
            elif line:
                (inside if in_region else outside).add(line)
    return inside, outside


@pytest.mark.parametrize("path", notebooks(SOLUTIONS), ids=lambda p: p.name)
def test_no_solution_line_reaches_a_learner_copy(path):
    # Strict: every non-blank line of a region is secret, however short (`pass`,
    # `return x`), unless the same line also appears outside all regions of the
    # solved notebook -- then it is public anyway and may rightly be in the copy.
    solved = release.read(path)
    inside, outside = split_lines(solved)
    secret = inside - outside - STUBS
    copy = release.read(NOTEBOOKS / path.name)
    shown = {line.strip() for cell in copy.cells for line in cell.source.splitlines()}
    leaked = sorted(secret & shown)
    assert not leaked, f"notebooks/{path.name} shows solution lines: {leaked}"
    markers = [m for m in release.MARKERS if any(m in cell.source for cell in copy.cells)]
    assert not markers, f"notebooks/{path.name} still has {markers}"


# An unfinished exercise raises NotImplementedError in its cell, and its checks
# fail with an AssertionError (helpers.checks raises CheckFailed, a subclass).
ALLOWED = {"NotImplementedError", "AssertionError", "CheckFailed"}


@pytest.mark.parametrize("path", notebooks(NOTEBOOKS), ids=lambda p: p.name)
def test_a_blank_learner_copy_fails_only_as_unfinished(path):
    """Like `nbgrader validate --invert`: an untouched copy must not pass its checks,
    and must fail only because answers are missing -- never with a NameError,
    ImportError or SyntaxError that a learner could not fix in their own cell."""
    nb = executed(path)
    raised = {id(cell): out for cell, out in errors(nb)}
    wrong = [f"cell {c.id}: {o.ename}: {o.evalue}" for c, o in errors(nb)
             if not expects_error(c) and o.ename not in ALLOWED]
    assert not wrong, f"notebooks/{path.name} fails in ways a learner cannot fix: {wrong}"
    free = [c.id for c in nb.cells if c.cell_type == "code"
            and c.metadata.get("nbgrader", {}).get("grade") and id(c) not in raised]
    assert not free, f"notebooks/{path.name}: graded cells {free} pass without any answer."
    # A failing check is one line of feedback: no traceback, no ✅ line of a check that passed.
    long = {c.id: lines_of(c) for c in nb.cells if c.cell_type == "code"
            and c.metadata.get("nbgrader", {}).get("grade") and len(lines_of(c)) != 1}
    assert not long, f"notebooks/{path.name}: graded cells that fail with more than one line: {long}"
