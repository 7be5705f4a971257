"""nbgrader end to end, with the real tool: the workflow INSTRUCTORS.md describes.

In a temporary course folder, a chapter from solutions/ goes through
generate_assignment, release_assignment / fetch_assignment / submit / collect
(one learner who solves it), a hand-out of notebooks/ collected by hand (one
learner who hands it in blank), autograde, generate_feedback and export; the
scores are read back from the gradebook and the export.
"""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from helpers import release

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "00_start_here.ipynb"
ASSIGNMENT = "ps0"
COURSE_ID = "autograd-lab"
BLANK = "blank-learner"


def nbgrader_points(nb):
    return sum(float(c.metadata["nbgrader"].get("points", 0)) for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade"))


def solve(copy, solved):
    """A learner copy with every solution cell written as in the solved notebook."""
    answers = {c.metadata.nbgrader.grade_id: c.source for c in solved.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in copy.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell.metadata.nbgrader.get("solution"):
            cell.source = "\n".join(line for line in answers[grade_id].splitlines()
                                    if "BEGIN SOLUTION" not in line and "END SOLUTION" not in line)
    return copy


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("nbgrader")
    course, exchange, learner_home = base / "course", base / "exchange", base / "learner"
    for folder in (course / "source" / ASSIGNMENT, exchange, learner_home, base / "home"):
        folder.mkdir(parents=True)
    exchange.chmod(0o777)
    (course / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.course_id = {COURSE_ID!r}\n"
        f"c.Exchange.root = {str(exchange)!r}\n")
    env = dict(os.environ,
               HOME=str(base / "home"),  # nbgrader and Jupyter write nothing in the real home
               JUPYTER_CONFIG_DIR=str(base / "home" / ".jupyter"),
               JUPYTER_DATA_DIR=str(base / "home" / "data"),
               JUPYTER_RUNTIME_DIR=str(base / "home" / "runtime"),
               # nbgrader runs `alembic` from the environment's bin folder.
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")

    def nbgrader(*args, cwd=course):
        done = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done

    # Instructor: the chapter from solutions/ is the nbgrader source.
    shutil.copy(ROOT / "solutions" / CHAPTER, course / "source" / ASSIGNMENT / CHAPTER)
    nbgrader("generate_assignment", ASSIGNMENT, f"--CourseDirectory.root={course}")
    nbgrader("release_assignment", ASSIGNMENT)

    # A learner fetches it through the exchange, solves it and submits.
    nbgrader("fetch_assignment", ASSIGNMENT, f"--course={COURSE_ID}",
             f"--Exchange.root={exchange}", cwd=learner_home)
    fetched = learner_home / ASSIGNMENT / CHAPTER
    solved = release.read(ROOT / "solutions" / CHAPTER)
    nbformat.write(solve(nbformat.read(fetched, as_version=4), solved), fetched)
    nbgrader("submit", ASSIGNMENT, f"--course={COURSE_ID}", f"--Exchange.root={exchange}",
             cwd=learner_home)
    nbgrader("collect", ASSIGNMENT)

    # Another learner was handed notebooks/ (no exchange) and hands it in untouched.
    handed_in = course / "submitted" / BLANK / ASSIGNMENT
    handed_in.mkdir(parents=True)
    shutil.copy(ROOT / "notebooks" / CHAPTER, handed_in / CHAPTER)

    nbgrader("autograde", ASSIGNMENT, "--create")
    nbgrader("generate_feedback", ASSIGNMENT)
    nbgrader("export", "--to=grades.csv")
    return course


def scores(course):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        return {s.student.id: (s.score, s.max_score)
                for s in gradebook.assignment_submissions(ASSIGNMENT)}


def test_the_chapter_has_graded_exercises():
    assert nbgrader_points(release.read(ROOT / "solutions" / CHAPTER)) > 0


def test_the_learner_copy_is_the_notebook_nbgrader_releases(course):
    ours = release.read(ROOT / "notebooks" / CHAPTER)
    ours.metadata.pop(release.STAMP)
    theirs = release.read(course / "release" / ASSIGNMENT / CHAPTER)
    assert ours == theirs


def test_a_solved_notebook_gets_full_points(course):
    from nbgrader.utils import get_username

    points = nbgrader_points(release.read(ROOT / "solutions" / CHAPTER))
    assert scores(course)[get_username()] == (points, points)


def test_a_blank_notebook_gets_zero_points(course):
    score, max_score = scores(course)[BLANK]
    assert score == 0 and max_score > 0


def test_feedback_is_generated_for_each_learner(course):
    from nbgrader.utils import get_username

    for student in (get_username(), BLANK):
        assert (course / "feedback" / student / ASSIGNMENT / CHAPTER.replace(".ipynb", ".html")).is_file()


def test_export_writes_the_grades(course):
    with open(course / "grades.csv", newline="") as file:
        rows = {row["student_id"]: row for row in csv.DictReader(file)}
    assert float(rows[BLANK]["score"]) == 0
    assert float(rows[BLANK]["max_score"]) > 0
    assert len(rows) == 2
