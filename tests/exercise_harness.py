"""Run a chapter's exercises the way a learner meets them, with wrong answers first.

``check_exercises("01", WRONG)`` runs ``solutions/01_*.ipynb`` in one kernel,
cell by cell. At each exercise (an answer cell followed by a grade cell
``checks.exercise("01_ex2")`` + hidden test) it

1. runs each wrong answer of ``WRONG["01_ex2"]`` as the answer cell, then the
   grade cell's visible check: it must fail with exactly one line of output that
   contains the listed fragment; then the hidden test alone: it must fail too;
2. runs the real answer cell and the whole grade cell: it must pass (✅), and
   leave no new global name in the notebook;
3. goes on with the next cells.

All problems are collected and reported together. ``WRONG`` maps exercise ids
to ``[(answer-cell source, fragment of the one-line feedback), ...]``.

The helpers here (``exercises_in``, ``wrong_answers``, ``answered``) are also
what the nbgrader end-to-end tests use to build submissions.
"""
import importlib.util
import re
import tempfile
from pathlib import Path

import nbclient
import nbformat

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
TIMEOUT = 300  # per cell
MIN_WRONG = 3
HIDDEN = "### BEGIN HIDDEN TESTS"
EXERCISE_CALL = re.compile(r'^checks\.exercise\("(\d\d_\w+)"\)\s*$')
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Names IPython itself keeps in the namespace (history, output cache, shortcuts).
IPYTHON_NAMES = re.compile(r"^(_|__|___|_i|_ii|_iii|_i\d+|_\d+|In|Out|_oh|_ih|_dh|exit|quit|"
                           r"get_ipython|open|_exit_code|__builtin__|__builtins__|__name__|__doc__|"
                           r"__package__|__loader__|__spec__|__session__)$")
GLOBALS = "sorted(k for k in globals() if not k.startswith('_i'))"


def chapter_path(chapter):
    """solutions/NN_*.ipynb for chapter "NN" (or a path, returned as is)."""
    if isinstance(chapter, Path) or "/" in str(chapter):
        return Path(chapter)
    found = sorted(SOLUTIONS.glob(f"{chapter}_*.ipynb"))
    assert len(found) == 1, f"expected one solutions/{chapter}_*.ipynb, found {found}"
    return found[0]


def nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def visible(source):
    """A grade cell's source without its hidden tests."""
    return source.split(HIDDEN)[0].rstrip()


def hidden(source):
    """The hidden tests of a grade cell (without the markers), or ''."""
    if HIDDEN not in source:
        return ""
    return source.split(HIDDEN, 1)[1].split("### END HIDDEN TESTS")[0].strip("\n")


def exercises_in(nb):
    """[(exercise id, answer cell index, grade cell index)] in notebook order.

    An exercise's grade cell starts with ``checks.exercise("ID")``; its answer cell
    is the last solution cell before it (after the previous grade cell).
    """
    found, last_answer, previous_grade = [], None, -1
    for index, cell in enumerate(nb.cells):
        flags = nbgrader(cell)
        if cell.cell_type != "code":
            continue
        if flags.get("solution") and not flags.get("grade"):
            last_answer = index
        if flags.get("grade"):
            match = EXERCISE_CALL.match(visible(cell.source).splitlines()[0] if cell.source else "")
            if match:
                assert last_answer is not None and last_answer > previous_grade, \
                    f"grade cell {index} ({match.group(1)}) has no answer cell before it"
                found.append((match.group(1), last_answer, index))
            previous_grade = index
    return found


def wrong_answers(chapter):
    """WRONG from tests/test_exercises_chNN.py, or None if that file does not exist yet."""
    path = ROOT / "tests" / f"test_exercises_ch{chapter}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"_wrong_ch{chapter}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.WRONG


def answered(nb, answers):
    """A copy of notebook ``nb`` with answer cells replaced: ``answers`` maps an exercise id
    to the source of its answer cell."""
    nb = nbformat.from_dict(nb)  # a deep copy
    for exercise_id, answer, _ in exercises_in(nb):
        if exercise_id in answers:
            nb.cells[answer].source = answers[exercise_id]
    return nb


def section(nb, ids):
    """``nb`` with only the cells whose id is in ``ids`` (a new notebook)."""
    nb = nbformat.from_dict(nb)
    nb.cells = [c for c in nb.cells if c.get("id") in ids]
    return nb


# ------------------------------------------------------------ running

def lines_of(cell):
    """Every line the cell showed: streams, results and error tracebacks (ANSI codes removed)."""
    lines = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            lines += out.text.splitlines()
        elif out.output_type == "error":
            for entry in out.traceback:
                lines += ANSI.sub("", entry).splitlines()
        elif "data" in out:
            lines += out.data.get("text/plain", "").splitlines() or ["<display>"]
    return [line for line in lines if line.strip()]


def errored(cell):
    return any(out.output_type == "error" for out in cell.get("outputs", []))


class Kernel:
    """One kernel running one notebook's cells, plus cells of our own."""

    def __init__(self, nb, folder):
        self.nb = nb
        self.client = nbclient.NotebookClient(
            nb, timeout=TIMEOUT, kernel_name="python3", allow_errors=True,
            resources={"metadata": {"path": folder}})

    def run(self, source, index=0):
        cell = nbformat.v4.new_code_cell(source)
        self.client.execute_cell(cell, index)
        return cell

    def run_cell(self, index):
        self.client.execute_cell(self.nb.cells[index], index)
        return self.nb.cells[index]

    def names(self):
        cell = nbformat.v4.new_code_cell(f"print({GLOBALS})")
        self.client.execute_cell(cell, 0, store_history=False)
        text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
        return {n for n in eval(text) if not IPYTHON_NAMES.match(n)}  # a list of str literals


def check_exercises(chapter, wrong, *, run_hidden=True, min_wrong=MIN_WRONG):
    """Run chapter ``chapter``'s solution notebook with ``wrong`` answers first (see the module
    docstring). Raises AssertionError listing every problem found."""
    path = chapter_path(chapter)
    nb = nbformat.read(path, as_version=4)
    exercises = exercises_in(nb)
    problems = []
    ids = [e for e, _, _ in exercises]
    for exercise_id in ids:
        if len(wrong.get(exercise_id, [])) < min_wrong:
            problems.append(f"{exercise_id}: {len(wrong.get(exercise_id, []))} wrong answers listed, "
                            f"at least {min_wrong} needed")
    for exercise_id in wrong:
        if exercise_id not in ids:
            problems.append(f"{exercise_id}: in WRONG but no grade cell calls it in {path.name}")
    by_answer = {answer: (exercise_id, grade) for exercise_id, answer, grade in exercises}
    graded = {grade for _, _, grade in exercises}

    with tempfile.TemporaryDirectory() as folder:
        for extra in path.parent.iterdir():  # data files next to the notebook
            if extra.is_file() and extra.suffix != ".ipynb":
                (Path(folder) / extra.name).write_bytes(extra.read_bytes())
        kernel = Kernel(nb, folder)
        with kernel.client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if index in by_answer:
                    exercise_id, grade = by_answer[index]
                    problems += _try_wrong_answers(kernel, exercise_id, wrong.get(exercise_id, []),
                                                   nb.cells[grade].source, run_hidden)
                if index in graded:
                    before = kernel.names()
                    kernel.run_cell(index)
                    if errored(cell) or not any("✅" in line for line in lines_of(cell)):
                        problems.append(f"cell {index + 1} (grade cell): the solution does not pass: "
                                        f"{lines_of(cell)[-3:]}")
                    new = kernel.names() - before
                    if new:
                        problems.append(f"cell {index + 1} (grade cell) left new global names: "
                                        f"{sorted(new)}")
                    continue
                kernel.run_cell(index)
                if errored(cell) and "raises-exception" not in cell.metadata.get("tags", []):
                    problems.append(f"cell {index + 1} raised: {lines_of(cell)[-1:]}")
    assert not problems, f"{path.name}:\n- " + "\n- ".join(problems)


def _try_wrong_answers(kernel, exercise_id, answers, grade_source, run_hidden):
    problems = []
    for number, (source, fragment) in enumerate(answers, start=1):
        label = f"{exercise_id} wrong answer {number}"
        kernel.run(source)
        check = kernel.run(visible(grade_source))
        lines = lines_of(check)
        if not errored(check):
            problems.append(f"{label}: the check passed ({lines})")
        elif len(lines) != 1:
            problems.append(f"{label}: {len(lines)} lines of output, not one: {lines[:6]}")
        elif fragment not in lines[0]:
            problems.append(f"{label}: feedback {lines[0]!r} does not contain {fragment!r}")
        if run_hidden and hidden(grade_source):
            graded = kernel.run(hidden(grade_source))
            if not errored(graded):
                problems.append(f"{label}: the visible check fails, but the hidden test passes")
    return problems


# ------------------------------------------------------------ the exercise section alone

def _python(source):
    """A cell's source as plain Python (IPython's magics and shell escapes transformed)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def _names(source):
    """(names the cell binds at any depth, names it reads) -- an over-approximation of both."""
    import ast

    try:
        tree = ast.parse(_python(source))
    except SyntaxError:
        return set(), set()
    bound, read = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return bound, read


def verifier_names(exercise_id):
    """The notebook names exercise ``exercise_id``'s verifier reads (its parameters)."""
    from helpers.exercises import verifier

    code = verifier(exercise_id).__code__
    return code.co_varnames[:code.co_argcount]


def exercise_section(nb):
    """Indices of the cells the exercises need: the setup cell (and the Colab set-up cell),
    everything from the exercises' first cell to their last, and each earlier cell that defines a name those cells read (and
    so on).

    The nbgrader tests grade this part of a chapter: grading the whole chapter for each
    submission would run every diagram and training loop again. A dependency this static
    reading misses shows up as a solved submission that loses points.
    """
    import builtins

    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first = next(i for i, c in enumerate(nb.cells) if nbgrader(c))
    while first > 0 and nb.cells[first - 1].cell_type == "markdown":
        first -= 1
    last = max(i for i, c in enumerate(nb.cells) if nbgrader(c))
    setup = [i for i in code if "colab-setup" in nb.cells[i].metadata.get("tags", [])]
    setup.append(next(i for i in code if i not in setup))  # the chapter's own setup cell
    keep = set(setup) | set(range(first, last + 1))
    names = {i: _names(nb.cells[i].source) for i in code}
    free = {i: names[i][1] - names[i][0] for i in code}  # read, and not bound in the same cell
    for exercise_id, _, grade in exercises_in(nb):  # a verifier reads its parameters' names
        free[grade] |= set(verifier_names(exercise_id))
    known = set(dir(builtins)) | {"get_ipython", "display", "In", "Out", "_", "exit", "quit"}
    bound_in_section = set().union(*(names[i][0] for i in keep if i in names))
    todo = [(name, first) for i in keep if i in free for name in free[i] - bound_in_section]
    while todo:
        name, before = todo.pop()
        if name in known or any(name in names[i][0] for i in keep if i in names and i < before):
            continue
        earlier = [i for i in code if i < before and i not in keep and name in names[i][0]
                   and "raises-exception" not in nb.cells[i].metadata.get("tags", [])]
        if earlier:
            keep.add(earlier[-1])
            todo += [(n, earlier[-1]) for n in free[earlier[-1]]]
    return sorted(keep)


def new_globals_after_grade_cells(nb, folder=None):
    """Run notebook ``nb`` in one kernel; [problem] for each grade cell that raised where it
    should pass or left a new global name in the notebook."""
    problems = []
    with tempfile.TemporaryDirectory() as tmp:
        kernel = Kernel(nb, folder or tmp)
        with kernel.client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code":
                    continue
                if not nbgrader(cell).get("grade"):
                    kernel.run_cell(index)
                    continue
                before = kernel.names()
                kernel.run_cell(index)
                new = kernel.names() - before
                if new:
                    problems.append(f"cell {index + 1} ({nbgrader(cell).get('grade_id')}) left new "
                                    f"global names: {sorted(new)}")
                if errored(cell):
                    problems.append(f"cell {index + 1} ({nbgrader(cell).get('grade_id')}) raised: "
                                    f"{lines_of(cell)[-1:]}")
    return problems
