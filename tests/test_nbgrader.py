"""nbgrader end to end, with the real tool, on every chapter.

In a temporary course folder, one assignment holds every chapter of solutions/, each cut
down to its exercise section (see ``exercise_harness.exercise_section``: grading whole
chapters would rerun every diagram and training loop once per submission). After
``generate_assignment``, three learners hand in:

- ``solved``: every answer cell as in solutions/;
- ``blank``: the learner copies from notebooks/, untouched;
- ``cheat``: every answer cell is the exercise's FIRST wrong answer from
  tests/test_exercises_chNN.py, preceded by code that replaces every function of every
  ``helpers`` module with a no-op and swaps ``sys.modules["helpers.grading"]``; the
  last answer cell of each chapter also replaces builtins (with wrappers that behave
  the same, so the kernel keeps working).

``autograde`` grades them (in two course folders side by side, to use both cores); the
scores come back from the gradebooks, and the autograded notebooks show why each cell lost
its points. (The class workflow around
it -- release, collect, feedback, export -- is tested in test_classroom.py.)
"""
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest

from exercise_harness import (ANSI, answered, exercise_section, exercises_in, nbgrader, section,
                              wrong_answers)
from helpers import release

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(1800)  # one autograde of 27 notebooks, on a machine that may be busy
CHAPTERS = sorted((ROOT / "solutions").glob("*.ipynb"))
ASSIGNMENT = "exercises"
COURSE_ID = "autograd-lab"
SOLVED, BLANK, CHEAT = "solved", "blank", "cheat"

# Replaces every function of every loaded helpers module, and the grader module itself.
PATCH_HELPERS = '''\
import sys as _sys, types as _types
def _ok(*args, **kwargs):
    return None
for _name, _module in list(_sys.modules.items()):
    if _module is not None and (_name == "helpers" or _name.startswith("helpers.")):
        for _attr, _value in list(vars(_module).items()):
            if callable(_value) and not isinstance(_value, type):
                setattr(_module, _attr, _ok)
_sys.modules["helpers.grading"] = _types.SimpleNamespace(grade=_ok, _grade=_ok)
'''
# Builtins replaced by wrappers that behave the same (the kernel must keep running).
PATCH_BUILTINS = '''\
import builtins as _builtins
_builtins.isinstance = lambda obj, cls, _real=isinstance: _real(obj, cls)
_builtins.all = lambda iterable, _real=all: _real(iterable)
'''


def slug(path):
    return path.stem.split("_")[0]


def points(nb):
    return sum(float(nbgrader(c).get("points", 0)) for c in nb.cells if nbgrader(c).get("grade"))


def without_markers(source):
    return "\n".join(line for line in source.splitlines()
                     if "BEGIN SOLUTION" not in line and "END SOLUTION" not in line)


def solve(copy, solved):
    """A learner copy with every solution cell written as in the solved notebook."""
    answers = {nbgrader(c)["grade_id"]: c.source for c in solved.cells if nbgrader(c).get("solution")}
    for cell in copy.cells:
        grade_id = nbgrader(cell).get("grade_id")
        if grade_id in answers and nbgrader(cell).get("solution"):
            cell.source = without_markers(answers[grade_id])
    return copy


def stub_of(source):
    """What a learner copy's answer cell holds before `# YOUR CODE HERE` (the names it defines)."""
    return source.split("# YOUR CODE HERE")[0].rstrip()


def cheat(copy, wrong):
    """The learner copy with each answer cell replaced: patches, then the first wrong answer."""
    exercises = exercises_in(copy)
    answers = {}
    for n, (exercise_id, answer, _) in enumerate(exercises):
        first_wrong = wrong[exercise_id][0][0] if wrong and wrong.get(exercise_id) else \
            stub_of(copy.cells[answer].source)
        patch = PATCH_HELPERS + (PATCH_BUILTINS if n == len(exercises) - 1 else "")
        answers[exercise_id] = patch + first_wrong
    return answered(copy, answers)


# Two course folders graded side by side (nbgrader grades one notebook at a time): the solved
# submissions run every exercise; the blank and the cheat stop at each exercise's first error.
GRADED_IN = {SOLVED: "course-a", BLANK: "course-b", CHEAT: "course-b"}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("nbgrader")
    (base / "home").mkdir()
    env = dict(os.environ,
               HOME=str(base / "home"),  # nbgrader and Jupyter write nothing in the real home
               JUPYTER_CONFIG_DIR=str(base / "home" / ".jupyter"),
               JUPYTER_DATA_DIR=str(base / "home" / "data"),
               JUPYTER_RUNTIME_DIR=str(base / "home" / "runtime"),
               # nbgrader runs `alembic` from the environment's bin folder.
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    folders = sorted({base / name for name in GRADED_IN.values()})

    def run_in_each(*args):
        """`nbgrader ARGS` in every course folder at once."""
        started = time.monotonic()
        running = [subprocess.Popen([sys.executable, "-m", "nbgrader", *args], cwd=folder, env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                   for folder in folders]
        cpu = []
        for process in running:
            output = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)  # with the CPU time its kernels used
            process.returncode = os.waitstatus_to_exitcode(status)
            assert process.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{output}"
            cpu.append(f"{usage.ru_utime + usage.ru_stime:.0f}")
        print(f"nbgrader {args[0]}: {time.monotonic() - started:.0f} s, "  # shown with pytest -s
              f"CPU {' + '.join(cpu)} s")

    # Instructor: each chapter's exercise section, from solutions/, is a notebook of the assignment.
    kept = {}
    for path in CHAPTERS:
        solved = release.read(path)
        kept[path.name] = {solved.cells[i].id for i in exercise_section(solved)}
        for folder in folders:
            (folder / "source" / ASSIGNMENT).mkdir(parents=True, exist_ok=True)
            nbformat.write(section(solved, kept[path.name]), folder / "source" / ASSIGNMENT / path.name)
    for folder in folders:
        (folder / "nbgrader_config.py").write_text(
            "c = get_config()\n"
            f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
            "c.Execute.timeout = 600\n")  # per cell; the machine may be busy
    run_in_each("generate_assignment", ASSIGNMENT)

    # Three learners hand in: all solved, the untouched learner copies, a cheat.
    for path in CHAPTERS:
        copy = section(release.read(ROOT / "notebooks" / path.name), kept[path.name])
        handed_in = {SOLVED: solve(nbformat.from_dict(copy), release.read(path)), BLANK: copy,
                     CHEAT: cheat(copy, wrong_answers(slug(path)))}
        for student, nb in handed_in.items():
            folder = base / GRADED_IN[student] / "submitted" / student / ASSIGNMENT
            folder.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, folder / path.name)

    run_in_each("autograde", ASSIGNMENT)
    return SimpleNamespace(root={student: base / name for student, name in GRADED_IN.items()},
                           kept=kept)


def gradebook(course, student):
    from nbgrader.api import Gradebook

    return Gradebook(f"sqlite:///{course.root[student] / 'gradebook.db'}")


def scores(course, notebook):
    """{student: (score, max score)} of one chapter's notebook."""
    found = {}
    for student in GRADED_IN:
        with gradebook(course, student) as book:
            submission = book.find_submission_notebook(notebook, ASSIGNMENT, student)
            found[student] = (submission.score, submission.max_score)
    return found


def cell_scores(course, student, notebook):
    """{grade_id: score} of each graded cell of one student's chapter."""
    with gradebook(course, student) as book:
        submission = book.find_submission_notebook(notebook, ASSIGNMENT, student)
        return {grade.name: grade.score for grade in submission.grades}


def shown(course, student, path, grade_index):
    """The lines the autograded notebook shows under one grade cell (ANSI codes removed)."""
    nb = nbformat.read(course.root[student] / "autograded" / student / ASSIGNMENT / path.name,
                       as_version=4)
    lines = []
    for out in nb.cells[grade_index].outputs:
        lines += (out.get("text", "").splitlines() if out.output_type == "stream" else
                  [ANSI.sub("", line) for entry in out.get("traceback", []) for line in entry.splitlines()])
    return [line for line in lines if line.strip()]


@pytest.mark.parametrize("path", CHAPTERS, ids=slug)
def test_the_chapter_has_graded_exercises(path):
    assert points(release.read(path)) > 0 and exercises_in(release.read(path))


@pytest.mark.parametrize("path", CHAPTERS, ids=slug)
def test_the_learner_copy_is_the_notebook_nbgrader_releases(course, path):
    ours = section(release.read(ROOT / "notebooks" / path.name), course.kept[path.name])
    ours.metadata.pop(release.STAMP)
    theirs = release.read(course.root[BLANK] / "release" / ASSIGNMENT / path.name)
    assert ours == theirs


@pytest.mark.parametrize("path", CHAPTERS, ids=slug)
def test_a_solved_chapter_gets_full_points(course, path):
    total = points(section(release.read(path), course.kept[path.name]))
    assert scores(course, path.stem)[SOLVED] == (total, total), \
        cell_scores(course, SOLVED, path.stem)


@pytest.mark.parametrize("path", CHAPTERS, ids=slug)
def test_a_blank_learner_copy_gets_zero(course, path):
    score, max_score = scores(course, path.stem)[BLANK]
    assert score == 0 and max_score > 0, cell_scores(course, BLANK, path.stem)


@pytest.mark.parametrize("path", CHAPTERS, ids=slug)
def test_a_monkeypatching_submission_gets_zero(course, path):
    score, max_score = scores(course, path.stem)[CHEAT]
    assert score == 0 and max_score > 0, cell_scores(course, CHEAT, path.stem)


@pytest.mark.parametrize("path", CHAPTERS, ids=slug)
def test_each_first_wrong_answer_loses_its_points_for_being_wrong(course, path):
    """The cheat's answers are the first wrong answers: each grade cell says what the one-line
    feedback for that wrong answer says, even with the helpers patched (the last one says
    that builtins were replaced)."""
    wrong = wrong_answers(slug(path))
    if wrong is None:
        pytest.fail(f"tests/test_exercises_ch{slug(path)}.py with WRONG answers is missing")
    nb = nbformat.read(course.root[CHEAT] / "autograded" / CHEAT / ASSIGNMENT / path.name,
                       as_version=4)
    exercises = exercises_in(nb)
    grades = cell_scores(course, CHEAT, path.stem)
    problems = []
    for n, (exercise_id, _, grade) in enumerate(exercises):
        lines = shown(course, CHEAT, path, grade)
        expected = "replaced Python's builtin" if n == len(exercises) - 1 else wrong[exercise_id][0][1]
        grade_id = nbgrader(nb.cells[grade])["grade_id"]
        if grades[grade_id] != 0:
            problems.append(f"{exercise_id}: earned {grades[grade_id]} points")
        if not any(expected in line for line in lines):
            problems.append(f"{exercise_id}: expected {expected!r} in {lines}")
    assert not problems, "\n".join(problems)
