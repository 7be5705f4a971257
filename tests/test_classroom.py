"""helpers.classroom: the handout repository, the nbgrader course, the roster and the grades.

Grading runs the way a class server does: nbgrader and its kernels run on a Python
that has the course's requirements but NOT the `helpers` package (a venv that sees the
project's site-packages through a .pth line, so the editable install's finder is never
loaded), in a clean environment (no PYTHONPATH), with the course directory outside the
repository. `import helpers` can only work there through what the course directory ships.

The student side of nbgitpuller is nbgitpuller's own `GitPuller` (what its link runs).
"""
import contextlib
import csv
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from helpers import classroom, release

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
CHAPTER = "00_start_here.ipynb"
SOLVED_CHECK = "✅"


# ------------------------------------------------------------ shared with test_hub.py

def make_isolated_python(folder):
    """A Python with the project's packages but without `helpers` (see the module docstring)."""
    venv = Path(folder) / "no-helpers-venv"
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        site = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
        pth = next((venv / "lib").glob("python3*/site-packages")) / "course-requirements.pth"
        pth.write_text(f"{site}\n")
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-c", "import helpers"], cwd=folder, capture_output=True,
                           text=True, env=clean_env(folder, python))
    assert "No module named 'helpers'" in probe.stderr, "helpers is importable: not an isolated Python"
    return python


def clean_env(base, python, **extra):
    """No PYTHONPATH, a private HOME and Jupyter folders; the isolated Python first on PATH."""
    home = Path(base) / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": os.pathsep.join([str(Path(python).parent), str(VENV_BIN), "/usr/bin", "/bin"]),
            "HOME": str(home), "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1",
            # The requirements' data files (nbconvert's templates, the python3 kernel spec).
            "JUPYTER_PATH": str(VENV_BIN.parent / "share" / "jupyter"),
            "JUPYTER_CONFIG_DIR": str(home / ".jupyter"), "JUPYTER_DATA_DIR": str(home / "data"),
            "JUPYTER_RUNTIME_DIR": str(home / "runtime"), **extra}


def nbgrader(python, course, *args, check=True, timeout=900):
    done = subprocess.run([str(python), "-m", "nbgrader", *args], cwd=course, capture_output=True,
                          text=True, env=clean_env(Path(course).parent, python), timeout=timeout)
    if check:
        assert done.returncode == 0, f"nbgrader {' '.join(args)}:\n{done.stdout}\n{done.stderr[-4000:]}"
    return done


def solution_of(cell_source):
    return "\n".join(line for line in cell_source.splitlines() if "SOLUTION" not in line)


def answered(learner_nb, solved_nb, answers=None):
    """The learner copy with each answer cell written: from ``answers`` {grade_id: source} or solved."""
    answers = answers or {c.metadata.nbgrader.grade_id: solution_of(c.source) for c in solved_nb.cells
                          if c.metadata.get("nbgrader", {}).get("solution")}
    for cell in learner_nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in answers and cell.metadata.nbgrader.get("solution"):
            cell.source = answers[grade_id]
    return learner_nb


def points(nb):
    return sum(float(c.metadata["nbgrader"].get("points", 0)) for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade"))


def _region_lines(source, words):
    inside, found = False, []
    for line in source.splitlines():
        if re.search(rf"BEGIN ({words})", line):
            inside = True
        elif re.search(rf"END ({words})", line):
            inside = False
        elif inside and len(line.strip()) >= 20:
            found.append(line.strip())
    return found


@functools.lru_cache(maxsize=None)
def secret_lines(root=ROOT):
    """Lines of solution and mark-scheme regions that no learner copy shows (>= 20 characters)."""
    secret, visible = set(), set()
    for path in sorted((root / "solutions").glob("*.ipynb")):
        for cell in release.read(path).cells:
            secret.update(_region_lines(cell.source, "SOLUTION|MARK SCHEME"))
        for cell in release.learner_copy(release.read(path)).cells:
            visible.update(line.strip() for line in cell.source.splitlines())
    return secret - visible


def leaks(folder, root=ROOT):
    """What in ``folder`` carries solution text: [(file, why)]."""
    secret, found = secret_lines(root), []
    for path in sorted(Path(folder).rglob("*")):
        if ".git" in path.parts or not path.is_file():
            continue
        name = path.relative_to(folder).as_posix()
        if "solutions" in path.relative_to(folder).parts:
            found.append((name, "a solutions/ folder"))
        text = path.read_text(encoding="utf-8", errors="replace")
        if path.suffix == ".ipynb":
            nb = nbformat.reads(text, as_version=4)
            found += [(name, f"marker {m!r}") for m in release.MARKERS if m in text]
            found += [(name, "saved outputs") for c in nb.cells if c.get("outputs")]
            text = "\n".join(c.source for c in nb.cells)
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if path.suffix == ".ipynb":  # a notebook shows no solution line at all
            hits = secret.intersection(lines)
        else:  # code may share a line of set-up with a solution; two in a row, or a long one, leak
            hits = {line for i, line in enumerate(lines) if line in secret and (
                len(line) >= 40 or (i + 1 < len(lines) and lines[i + 1] in secret))}
        found += [(name, f"solution line {line!r}") for line in sorted(hits)]
    return found


# ------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def iso_python(tmp_path_factory):
    return make_isolated_python(tmp_path_factory.mktemp("isolated"))


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """A copy of what the handout and course are made from, to change without touching the repo."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(ROOT / "solutions", root / "solutions")
    shutil.copytree(ROOT / "binder", root / "binder")
    shutil.copytree(ROOT / "helpers", root / "helpers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "requirements.txt", root)
    return root


@pytest.fixture(scope="module")
def handout_repo(tmp_path_factory, repo_copy):
    dest = tmp_path_factory.mktemp("handout") / "autograd-lab"
    assert classroom.main(["--root", str(repo_copy), "handout", str(dest)]) == 0
    return dest


# ------------------------------------------------------------ the handout

def test_handout_holds_notebooks_helpers_requirements_and_a_readme(handout_repo, repo_copy):
    files = subprocess.run(["git", "-C", str(handout_repo), "ls-files"], capture_output=True,
                           text=True, check=True).stdout.split()
    chapters = sorted(p.name for p in (repo_copy / "solutions").glob("*.ipynb"))
    assert sorted(f.split("/")[1] for f in files if f.endswith(".ipynb")) == chapters
    assert {"README.md", "requirements.txt", ".gitignore", "notebooks/helpers/__init__.py",
            "notebooks/helpers/checks.py", "binder/requirements.txt"} <= set(files)
    assert not [f for f in files if Path(f).name in classroom.TOOLS or "__pycache__" in f]
    assert not (handout_repo / "binder" / "postBuild").exists()  # it installs the repo, absent here
    readme = (handout_repo / "README.md").read_text()
    assert "notebooks/00_start_here.ipynb" in readme and "click it again" in readme
    assert (handout_repo / "requirements.txt").read_bytes() == (ROOT / "requirements.txt").read_bytes()
    status = subprocess.run(["git", "-C", str(handout_repo), "status", "--porcelain"],
                            capture_output=True, text=True, check=True).stdout
    assert status == ""


def test_handout_carries_no_solution_text(handout_repo, repo_copy):
    assert secret_lines(repo_copy), "the solutions have no solution lines to look for"
    assert leaks(handout_repo, repo_copy) == []


def test_the_leak_scan_finds_a_planted_solution(tmp_path, repo_copy):
    line = sorted(secret_lines(repo_copy))[0]
    (tmp_path / "notes.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(f"x = 1\n    {line}")])))
    two = [line for line in sorted(secret_lines(repo_copy)) if len(line) < 40][:2]
    (tmp_path / "verifier.py").write_text(f"def f():\n    {two[0]}\n    {two[1]}\n")
    assert leaks(tmp_path, repo_copy) == [("notes.ipynb", f"solution line {line!r}"),
                                          ("verifier.py", f"solution line {two[0]!r}")]


def test_helpers_import_from_the_notebooks_folder_with_nothing_installed(handout_repo, iso_python,
                                                                       tmp_path, repo_copy):
    """Chapter 00's set-up cell and warm-up exercise, solved, in a kernel of the isolated Python."""
    solved = release.read(repo_copy / "solutions" / CHAPTER)
    copy = answered(nbformat.read(handout_repo / "notebooks" / CHAPTER, as_version=4), solved)
    setup = next(c for c in copy.cells if c.cell_type == "code" and "import helpers" in c.source)
    exercise = [c for c in copy.cells if c.metadata.get("nbgrader", {}).get("grade_id")]
    probe = nbformat.v4.new_code_cell("import helpers\nprint('FROM', helpers.__file__)")
    copy.cells = [setup, probe, *exercise]
    notebook = tmp_path / "run.ipynb"
    nbformat.write(copy, notebook)
    script = textwrap.dedent(f"""
        import nbclient, nbformat
        nb = nbformat.read({str(notebook)!r}, as_version=4)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
            resources={{"metadata": {{"path": {str(handout_repo / 'notebooks')!r}}}}}).execute()
        nbformat.write(nb, {str(notebook)!r})
    """)
    done = subprocess.run([str(iso_python), "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          env=clean_env(tmp_path, iso_python), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    ran = nbformat.read(notebook, as_version=4)
    text = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in ran.cells]
    assert f"FROM {handout_repo / 'notebooks' / 'helpers' / '__init__.py'}" in text[1]
    assert SOLVED_CHECK in text[-1]
    assert not [o for c in ran.cells for o in c.outputs if o.output_type == "error"]


def git(folder, *args):
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                          check=True).stdout


def pull(url, target):
    """What an nbgitpuller link runs in the student's server (depth-1 clone, then merges)."""
    from nbgitpuller import GitPuller

    return list(GitPuller(url, str(target)).pull())


def test_a_rerun_commits_on_top_and_nbgitpuller_keeps_the_students_work(tmp_path, repo_copy):
    root = tmp_path / "repo"
    shutil.copytree(repo_copy, root)
    dest, remote = tmp_path / "handout", tmp_path / "hosted.git"
    assert classroom.handout(dest, root, out=lambda *_: None)
    # The instructor pushes it where the link points (a bare repository here).
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(dest, "remote", "add", "origin", str(remote))
    git(dest, "push", "-q", "-u", "origin", "main")
    url = f"file://{remote}"
    student = tmp_path / "home" / "autograd-lab"
    pull(url, student)
    first = git(student, "rev-parse", "HEAD").strip()

    # The student works: answers chapter 00, deletes chapter 01, adds two files of their own.
    ch00 = student / "notebooks" / CHAPTER
    nb = nbformat.read(ch00, as_version=4)
    answer = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.source = "dw = 33.0  # my own answer\ndb = -11.0"
    nbformat.write(nb, ch00)
    (student / "notebooks" / "01_computational_graphs.ipynb").unlink()
    (student / "notebooks" / "my_notes.txt").write_text("mine")
    (student / "notebooks" / "09_extra.ipynb").write_text("{}")  # the name of a coming chapter

    # The instructor fixes chapter 00's title and adds chapter 09, then re-runs the handout.
    solved = release.read(root / "solutions" / CHAPTER)
    solved.cells[0].source = solved.cells[0].source.replace("start here", "start here (v2)", 1)
    nbformat.write(solved, root / "solutions" / CHAPTER)
    shutil.copy(root / "solutions" / "08_debugging_autograd.ipynb", root / "solutions" / "09_extra.ipynb")
    assert classroom.handout(dest, root, out=lambda *_: None)
    git(dest, "push", "-q")
    assert git(dest, "merge-base", "--is-ancestor", first, "HEAD") == ""  # history kept

    pull(url, student)
    nb = nbformat.read(ch00, as_version=4)
    assert "my own answer" in next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")).source
    assert "(v2)" in nb.cells[0].source                                  # the fix merged in
    assert (student / "notebooks" / "01_computational_graphs.ipynb").is_file()  # deleted: back
    assert (student / "notebooks" / "my_notes.txt").read_text() == "mine"      # untouched
    assert json.loads((student / "notebooks" / "09_extra.ipynb").read_text())["cells"]  # upstream's
    renamed = list((student / "notebooks").glob("09_extra__*.ipynb"))
    assert len(renamed) == 1 and renamed[0].read_text() == "{}"        # the student's, renamed


def test_a_rerun_without_changes_commits_nothing(handout_repo, repo_copy):
    before = git(handout_repo, "rev-parse", "HEAD")
    assert classroom.handout(handout_repo, repo_copy, out=lambda *_: None) is None
    assert git(handout_repo, "rev-parse", "HEAD") == before


def test_handout_refuses_other_folders_and_uncommitted_changes(tmp_path, handout_repo, repo_copy, capsys):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("keep me")
    assert classroom.main(["--root", str(repo_copy), "handout", str(other)]) == 2
    assert "is not a handout repository" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "keep me" and not (other / ".git").exists()

    readme = handout_repo / "README.md"
    readme.write_text(readme.read_text() + "\nOffice hours: Tuesday.\n")
    try:
        assert classroom.main(["--root", str(repo_copy), "handout", str(handout_repo)]) == 1
        assert "README.md" in capsys.readouterr().err
        assert "Office hours" in readme.read_text()
    finally:
        git(handout_repo, "checkout", "--", "README.md")


# ------------------------------------------------------------ the nbgrader course

ROSTER = "Username,First Name,Last Name,E-mail\nAlice,Alice,Liddell,alice@example.org\nbob,Bob,,\ncarol,Carol,King,\n"


@pytest.fixture(scope="module")
def graded(tmp_path_factory, repo_copy, iso_python):
    """A course graded end to end: alice solved ch00, bob handed it in blank, carol never did."""
    base = tmp_path_factory.mktemp("class")
    course = base / "course"

    def run(*args):  # the command line, in this process (the instructor's side)
        with contextlib.redirect_stdout(io.StringIO()) as printed:
            assert classroom.main(["--root", str(repo_copy), *map(str, args)]) == 0
        return printed.getvalue()

    run("course", course, "00")
    (base / "roster.csv").write_text(ROSTER)
    run("roster", course, base / "roster.csv")
    nbgrader(iso_python, course, "generate_assignment", "ch00")

    released = course / "release" / "ch00" / CHAPTER
    solved = release.read(repo_copy / "solutions" / CHAPTER)
    homes = base / "homes"
    for student, nb in [("alice", answered(nbformat.read(released, as_version=4), solved)),
                        ("bob", nbformat.read(released, as_version=4))]:
        folder = homes / student / "autograd-lab" / "notebooks"
        folder.mkdir(parents=True)
        nbformat.write(nb, folder / CHAPTER)
    (homes / "alice" / "autograd-lab" / "notebooks" / "torch.py").write_text("raise SystemExit\n")
    pattern = f"{homes}/{{student}}/autograd-lab/notebooks"
    collected = run("collect", course, "ch00", "--from", pattern)
    nbgrader(iso_python, course, "autograde", "ch00")
    run("grades", course, "--to", base / "grades.csv")
    with open(base / "grades.csv", newline="") as file:
        rows = {row["student_id"]: row for row in csv.DictReader(file)}
    return {"course": course, "rows": rows, "collected": collected, "solved": solved,
            "pattern": pattern, "base": base}


def gradebook_scores(course, assignment="ch00"):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", classroom.COURSE_ID) as gradebook:
        return {s.student.id: (s.score, s.max_score) for s in gradebook.assignment_submissions(assignment)}


def test_the_course_directory_ships_helpers_in_each_assignment(graded):
    course = graded["course"]
    assert (course / "nbgrader_config.py").is_file() and (course / "requirements.txt").is_file()
    assert not course.stat().st_mode & 0o077  # solutions and grades: not for other users
    for folder in ("source", "release"):
        assert (course / folder / "ch00" / "helpers" / "__init__.py").is_file()
        assert not (course / folder / "ch00" / "helpers" / "classroom.py").exists()


def test_a_solved_notebook_gets_full_points_with_helpers_not_installed(graded):
    full = points(graded["solved"])
    assert full > 0
    assert gradebook_scores(graded["course"])["alice"] == (full, full)


def test_collect_takes_only_the_notebook_and_names_who_is_missing(graded):
    assert sorted(p.name for p in (graded["course"] / "submitted" / "alice" / "ch00").iterdir()) == [
        CHAPTER, "timestamp.txt"]  # not the torch.py alice left next to it
    assert "Missing: carol" in graded["collected"]


def test_the_export_has_a_column_per_exercise_totals_and_missing(graded):
    rows, full = graded["rows"], points(graded["solved"])
    graded_ids = [c.metadata.nbgrader.grade_id for c in graded["solved"].cells
                  if c.metadata.get("nbgrader", {}).get("grade")]
    columns = [f"ch00:{grade_id}" for grade_id in graded_ids]
    assert list(rows["alice"])[:4] == ["student_id", "last_name", "first_name", "email"]
    assert list(rows["alice"])[4:] == [*columns, "ch00:total", "total", "max_total", "missing"]
    assert [float(rows["alice"][c]) for c in ("ch00:total", "total", "max_total")] == [full, full, full]
    assert rows["alice"]["last_name"] == "Liddell" and rows["alice"]["missing"] == ""
    assert all(float(rows["bob"][c]) == 0 for c in columns) and rows["bob"]["missing"] == ""
    assert all(rows["carol"][c] == classroom.MISSING for c in [*columns, "ch00:total"])
    assert rows["carol"]["missing"] == "ch00" and float(rows["carol"]["total"]) == 0


def test_sections_graded_apart_export_into_one_sheet(graded, tmp_path):
    """Two course directories (two gradebooks, graded at once) give one sheet with the same rows."""
    from nbgrader.api import Gradebook

    sections = {"a": ("alice", "carol"), "b": ("bob",)}
    for name, keep in sections.items():
        course = tmp_path / name
        shutil.copytree(graded["course"], course)
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}", classroom.COURSE_ID) as gradebook:
            for student in {"alice", "bob", "carol"} - set(keep):
                gradebook.remove_student(student)
                shutil.rmtree(course / "submitted" / student, ignore_errors=True)
    to = tmp_path / "all.csv"
    with contextlib.redirect_stdout(io.StringIO()):
        assert classroom.main(["grades", str(tmp_path / "a"), str(tmp_path / "b"), "--to", str(to)]) == 0
    with open(to, newline="") as file:
        assert {row["student_id"]: row for row in csv.DictReader(file)} == graded["rows"]
    with pytest.raises(classroom.ClassroomError, match="'alice' is in both"):
        classroom.export_grades([tmp_path / "a", graded["course"]], tmp_path / "x.csv")


def test_autograde_stops_with_one_clear_error_when_helpers_cannot_be_imported(graded, iso_python,
                                                                              tmp_path):
    course = tmp_path / "course"
    shutil.copytree(graded["course"], course)  # nbgrader_config.py finds its folder by itself
    shutil.rmtree(course / "source" / "ch00" / "helpers")
    shutil.copytree(course / "submitted" / "alice", course / "submitted" / "dave")
    done = nbgrader(iso_python, course, "autograde", "ch00", check=False)
    assert done.returncode != 0
    assert "STOPPED before grading anyone: the grading kernel cannot import helpers" in done.stderr
    assert "ModuleNotFoundError: No module named 'helpers'" in done.stderr
    assert f"python -m helpers.classroom course {course} ch00" in done.stderr
    assert not (course / "autograded" / "dave").exists()
    assert "dave" not in gradebook_scores(course)

    done = nbgrader(iso_python, course, "generate_assignment", "ch00", "--force", check=False)
    assert done.returncode != 0
    assert "source/ch00/helpers/ is missing, so students could not import helpers" in done.stderr


def test_updating_a_released_chapter_regrades_with_the_new_version(graded, iso_python, tmp_path, repo_copy):
    course, root = tmp_path / "course", tmp_path / "repo"
    shutil.copytree(graded["course"], course)
    shutil.copytree(repo_copy, root)
    solved = release.read(root / "solutions" / CHAPTER)
    solved.cells[0].source += "\n\nUpdated after the release."
    nbformat.write(solved, root / "solutions" / CHAPTER)
    assert f"source/ch00/{CHAPTER}" in classroom.course(course, ["00"], root, out=lambda *_: None)
    nbgrader(iso_python, course, "generate_assignment", "ch00", "--force")
    assert "Updated after the release." in (course / "release" / "ch00" / CHAPTER).read_text()
    nbgrader(iso_python, course, "autograde", "ch00", "--force", "--student=alice")
    full = points(solved)
    assert gradebook_scores(course)["alice"] == (full, full)


def test_a_rerun_of_course_never_overwrites_a_hand_edit(tmp_path, repo_copy):
    course, root = tmp_path / "course", tmp_path / "repo"
    shutil.copytree(repo_copy, root)
    classroom.course(course, ["0"], root, out=lambda *_: None)
    assert classroom.course(course, ["ch00"], root, out=lambda *_: None) == []  # up to date
    # A helpers file the package no longer has is removed from the copy.
    manifest = json.loads((course / classroom.MANIFEST).read_text())
    old = course / "source" / "ch00" / "helpers" / "retired.py"
    old.write_text("x = 1\n")
    manifest["source/ch00/helpers/retired.py"] = classroom._sha(old.read_bytes())
    (course / classroom.MANIFEST).write_text(json.dumps(manifest))
    # The instructor edits the source notebook in the course; the chapter changes too.
    source = course / "source" / "ch00" / CHAPTER
    source.write_text(source.read_text().replace("start here", "start here (edited)", 1))
    solved = release.read(root / "solutions" / CHAPTER)
    solved.cells[0].source += "\n\nNew paragraph."
    nbformat.write(solved, root / "solutions" / CHAPTER)
    with pytest.raises(classroom.Refused, match=f"source/ch00/{CHAPTER}"):
        classroom.course(course, ["00"], root, out=lambda *_: None)
    assert "(edited)" in source.read_text() and old.exists()
    written = classroom.course(course, ["00"], root, force=True, out=lambda *_: None)
    assert written == [f"source/ch00/{CHAPTER}"]
    assert "(edited)" in (course / "source" / "ch00" / f"{CHAPTER}.bak").read_text()
    assert "New paragraph" in source.read_text() and not old.exists()


def test_course_names_chapters_by_number_or_name(repo_copy, tmp_path, capsys):
    assert classroom.pick(repo_copy, ["3", "ch03", "03_retain_graph_saved_tensors.ipynb", "8"]) == ["ch03", "ch08"]
    assert classroom.pick(repo_copy, [])[0] == "ch00"
    assert classroom.main(["--root", str(repo_copy), "course", str(tmp_path / "c"), "42"]) == 2
    assert "No chapter '42'; the chapters are 00_start_here" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "x").write_text("")
    assert classroom.main(["--root", str(repo_copy), "course", str(tmp_path / "mine")]) == 2
    assert "was not made by this command" in capsys.readouterr().err


# ------------------------------------------------------------ roster

def test_roster_reads_lms_headers_a_bom_and_lowercases_ids(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text("\ufeff" + ROSTER.replace("Username", " User Name "), encoding="utf-8")
    students = classroom.read_roster(path)
    assert [s["id"] for s in students] == ["alice", "bob", "carol"]
    assert students[0] == {"id": "alice", "first_name": "Alice", "last_name": "Liddell",
                           "email": "alice@example.org"}
    assert students[1]["last_name"] is None


@pytest.mark.parametrize("text, says", [
    ("name,email\nAlice,a@x\n", "has no student id column"),
    ("id\nalice\nALICE\n", "line 3: 'alice' is already on line 2"),
    ("id,email\n,a@x\n", "line 2: the student id is empty"),
    ("id\nalice smith\n", "is not a JupyterHub user name"),
])
def test_roster_rejects_bad_lists_in_one_sentence(tmp_path, text, says):
    path = tmp_path / "roster.csv"
    path.write_text(text)
    with pytest.raises(classroom.ClassroomError, match=re.escape(says)):
        classroom.read_roster(path)


def test_roster_updates_the_gradebook(graded):
    rows = graded["rows"]
    assert set(rows) == {"alice", "bob", "carol"}
    assert rows["carol"]["first_name"] == "Carol" and rows["alice"]["email"] == "alice@example.org"


# ------------------------------------------------------------ INSTRUCTORS.md

# Every command in INSTRUCTORS.md's shell blocks, and the test that runs that path.
TESTED = [
    (r"make handout DEST=\S+", "test_make_targets_run_the_classroom_commands"),
    (r"make course DEST=\S+( CHAPTERS=.*)?", "test_make_targets_run_the_classroom_commands"),
    (r"python -m helpers\.classroom handout \S+", "test_a_rerun_commits_on_top_and_nbgitpuller_keeps_the_students_work"),
    (r"python -m helpers\.classroom course \S+( \S+)*", "test_the_course_directory_ships_helpers_in_each_assignment"),
    (r"python -m helpers\.classroom course \S+ \S+ --force", "test_a_rerun_of_course_never_overwrites_a_hand_edit"),
    (r"python -m helpers\.classroom roster \S+ \S+\.csv", "test_roster_updates_the_gradebook"),
    (r"python -m helpers\.classroom collect \S+ \S+ --from \S+( --update)?", "test_collect_takes_only_the_notebook_and_names_who_is_missing"),
    (r"python -m helpers\.classroom grades \S+( --to \S+)?", "test_the_export_has_a_column_per_exercise_totals_and_missing"),
    (r"python -m helpers\.classroom grades \S+( \S+)+ --to \S+", "test_sections_graded_apart_export_into_one_sheet"),
    (r"git -C \S+ remote add origin \S+", "test_a_rerun_commits_on_top_and_nbgitpuller_keeps_the_students_work"),
    (r"git -C \S+ push( -u origin main)?", "test_a_rerun_commits_on_top_and_nbgitpuller_keeps_the_students_work"),
    (r"cd \S+", None),  # moves into the course folder: no behaviour of its own
    (r"source \.venv/bin/activate", None),  # the environment `make test` makes: every test runs in it
    (r"make student", "test_the_command_line_runs_as_a_module"),
    (r"python -m helpers\.release --check", "test_check_reports_what_is_out_of_date"),
    (r"python -m helpers\.release --force", "test_force_keeps_the_hand_edit_as_a_backup"),
    (r"nbgrader generate_assignment \S+", "test_a_solved_notebook_gets_full_points_with_helpers_not_installed"),
    (r"nbgrader autograde \S+", "test_a_solved_notebook_gets_full_points_with_helpers_not_installed"),
    (r"nbgrader generate_assignment \S+ --force", "test_updating_a_released_chapter_regrades_with_the_new_version"),
    (r"nbgrader autograde \S+ --force( --student=\S+)?", "test_updating_a_released_chapter_regrades_with_the_new_version"),
    (r"nbgrader generate_feedback \S+", "test_feedback_and_nbgraders_own_export_work_in_the_course"),
    (r"nbgrader export( --to=\S+)?", "test_feedback_and_nbgraders_own_export_work_in_the_course"),
    (r"jupyter-repo2docker .*", "test_binder_files_build_a_hub_image_with_nbgitpuller"),
    (r"python benchmarks/autograde\.py.*", "test_the_benchmark_runs"),
    (r"pip install -r requirements\.txt", "test_helpers_import_from_the_notebooks_folder_with_nothing_installed"),
    (r"jupyter lab notebooks/00_start_here\.ipynb", "test_helpers_import_from_the_notebooks_folder_with_nothing_installed"),
]


def shell_commands(markdown):
    """Each command line of the ```bash / ```sh / ```console blocks (comments and prompts removed)."""
    commands = []
    for block in re.findall(r"^[ \t]*```(?:bash|sh|shell|console)\n(.*?)^[ \t]*```", markdown, re.M | re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line.strip()).removeprefix("$ ").strip()
            if line and not line.startswith("#"):
                commands.append(re.sub(r"\s+", " ", line))
    return commands


def test_instructors_guide_commands_are_all_tested():
    guide = (ROOT / "INSTRUCTORS.md").read_text()
    commands = shell_commands(guide)
    assert commands, "INSTRUCTORS.md has no shell commands"
    tests = "".join(path.read_text() for path in sorted((ROOT / "tests").glob("test_*.py")))
    untested = []
    for command in commands:
        match = next((test for pattern, test in TESTED if re.fullmatch(pattern, command)), False)
        if match is False or (match and f"def {match}(" not in tests):
            untested.append(command)
    assert not untested, f"INSTRUCTORS.md commands no test runs: {untested}"


def test_feedback_and_nbgraders_own_export_work_in_the_course(graded, iso_python):
    course = graded["course"]
    nbgrader(iso_python, course, "generate_feedback", "ch00")
    nbgrader(iso_python, course, "export", "--to=grades.csv")
    assert (course / "feedback" / "alice" / "ch00" / CHAPTER.replace(".ipynb", ".html")).is_file()
    with open(course / "grades.csv", newline="") as file:
        assert {row["student_id"] for row in csv.DictReader(file)} == {"alice", "bob", "carol"}


def test_make_targets_run_the_classroom_commands():
    makefile = (ROOT / "Makefile").read_text()
    for target, command in (("handout", "helpers.classroom handout $(DEST)"),
                            ("course", "helpers.classroom course $(DEST) $(CHAPTERS)")):
        body = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert body and command in body.group(1), f"make {target} does not run {command}"
    dry = subprocess.run(["make", "-n", "handout", "DEST=/x/y"], cwd=ROOT, capture_output=True, text=True)
    assert "-m helpers.classroom handout /x/y" in dry.stdout
    dry = subprocess.run(["make", "-n", "handout"], cwd=ROOT, capture_output=True, text=True)
    assert dry.returncode != 0 and "DEST=" in dry.stderr


def test_binder_files_build_a_hub_image_with_nbgitpuller():
    """repo2docker reads binder/: the image gets the requirements (nbgitpuller included)."""
    exe = VENV_BIN / "jupyter-repo2docker"
    if not exe.exists():
        pytest.skip("jupyter-repo2docker is not installed (pip install -r requirements-dev.txt)")
    assert "nbgitpuller" in release_pins(ROOT / "binder" / "requirements.txt")
    done = subprocess.run([str(exe), "--no-build", "--debug", "--user-name", "jovyan",
                           "--target-repo-dir", "/srv/autograd-lab", "--image-name", "autograd-lab:test",
                           str(ROOT)], capture_output=True, text=True, timeout=300)
    dockerfile = done.stdout + done.stderr
    assert "pip install --no-cache-dir -r \"binder/requirements.txt\"" in dockerfile
    assert "graphviz" in dockerfile and "./binder/postBuild" in dockerfile


def release_pins(path):
    return {line.split("==")[0].strip().lower() for line in path.read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")}


def test_the_benchmark_runs(tmp_path):
    """Two sections (two course directories) graded at once, the way INSTRUCTORS.md says."""
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "autograde.py"), "--chapters", "00",
                           "--students", "2", "--sections", "2", "--work", str(tmp_path)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"^ch00 +2 +\d+\.\d", done.stdout, re.M), done.stdout
    assert "with 2 process(es) at once" in done.stdout
    assert "150 students x 1 chapter(s) = 150 notebooks" in done.stdout
