"""The class path: hand the course out on a JupyterHub, grade it with nbgrader.

    python -m helpers.classroom handout DEST               # a git repository for students
    python -m helpers.classroom course DEST [CHAPTER ...]  # an nbgrader course directory
    python -m helpers.classroom roster COURSE FILE.csv     # the class list, into the gradebook
    python -m helpers.classroom collect COURSE ASSIGNMENT --from FOLDER_PATTERN
    python -m helpers.classroom grades COURSE [COURSE...] [--to FILE.csv]  # a column per exercise

Run it from the course repository's root (or pass ``--root``). What each
library does, and what this module adds:

- **nbgitpuller** hands a git repository out by link and merges updates into
  each student's copy. This module writes that repository (``handout``): the
  learner notebooks, the ``helpers`` package next to them (a kernel started in
  the notebooks' folder imports it from there, so nothing has to be installed
  but the requirements), the requirements, a student README -- and no solution
  text. Re-running it adds one commit on top: history is never rewritten,
  because nbgitpuller can only merge descendants of what a student pulled.
- **nbgrader** generates, autogrades and exports. This module writes a course
  directory (``course``) whose ``source/chNN/`` holds the solved chapter and a
  copy of ``helpers``: nbgrader copies every file of ``source/chNN/`` to the
  students (``generate_assignment``) and back over each submission before it
  grades it (``autograde``), so students' and grader's kernels import the
  course's own ``helpers``. Its ``nbgrader_config.py`` adds a pre-flight check:
  if the grading kernel cannot import ``helpers``, ``nbgrader autograde``
  stops before grading anyone with one message that names the fix, instead of
  scoring every graded cell 0.
- nbgrader's own ``export`` writes one row per student and assignment and
  counts a missing submission as 0. ``grades`` writes one column per graded
  cell (``ch01:ex2_check``), per-chapter totals, and ``missing`` where nothing
  was handed in. ``roster`` reads a class list from an LMS-style CSV (header
  names vary) into the gradebook, with JupyterHub's user names (lower case).
- ``collect`` copies each student's notebook from their home on the Hub into
  ``submitted/`` -- only the notebook, so nothing else a student puts in the
  folder sits next to it while it is graded.

Exit codes: 0 done; 1 refused (something would be lost -- the message says
what); 2 bad input.
"""
import argparse
import csv
import datetime
import fnmatch
import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from . import release

PACKAGE = Path(__file__).resolve().parent
# Instructor and site tooling (and the Colab set-up cell's text): `import helpers` never
# needs them, so students do not get them.
TOOLS = {"release.py", "classroom.py", "website.py", "colab.py"}
SKIP = ("__pycache__", "*.pyc", ".ipynb_checkpoints", "*.bak*", ".*")
HANDOUT_BINDER = ("requirements.txt", "apt.txt", "runtime.txt", "start")  # not postBuild
COURSE_ID = "autograd-lab"
MANIFEST = ".autograd-lab-course.json"
HANDOUT_MARK = "autograd-lab.handout"  # git config key set in a handout repository
COMMITTER = ("Autograd Lab handout", "handout@autograd-lab.invalid")


class ClassroomError(Exception):
    """Bad input, in one sentence that says what to do (exit code 2)."""


class Refused(Exception):
    """Going on would lose something; nothing was written (exit code 1)."""


# ------------------------------------------------------------ what is shipped

def chapters(root="."):
    """{assignment id: solution notebook path}, e.g. {"ch00": solutions/00_start_here.ipynb}."""
    folder = Path(root) / release.SOLUTIONS
    found = {}
    for path in sorted(folder.glob("*.ipynb")) if folder.is_dir() else []:
        number = re.match(r"(\d+)_", path.name)
        if number:
            found[f"ch{int(number.group(1)):02d}"] = path
    if not found:
        raise ClassroomError(f"No chapters in {folder}/: run this from the course repository's "
                             f"root (the folder with solutions/), or pass --root.")
    return found


def pick(root, names):
    """The assignment ids meant by ``names`` ("3", "03", "ch03", "03_retain_graph...")."""
    known = chapters(root)
    if not names:
        return list(known)
    picked = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        number = re.fullmatch(r"(?:ch)?(\d+)(?:_.*)?", stem)
        key = f"ch{int(number.group(1)):02d}" if number else None
        if key not in known or (number and "_" in stem and known[key].stem != stem):
            raise ClassroomError(f"No chapter {name!r}; the chapters are "
                                 f"{', '.join(p.stem for p in known.values())}.")
        if key not in picked:
            picked.append(key)
    return picked


def helpers_files(root="."):
    """{path relative to the package: (bytes, executable)} of what ``import helpers`` needs.

    From ``root/helpers`` (the course repository's), or this package when root has none.
    """
    package = Path(root) / "helpers"
    package = package if (package / "__init__.py").is_file() else PACKAGE
    files = {}
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if not path.is_file() or any(fnmatch.fnmatch(part, pattern)
                                     for part in rel.parts for pattern in SKIP):
            continue
        if len(rel.parts) == 1 and rel.name in TOOLS:
            continue
        files[rel.as_posix()] = (path.read_bytes(), bool(path.stat().st_mode & 0o111))
    return files


STUDENT_README = """\
# Autograd Lab — your notebooks

Learn PyTorch autograd by watching the real engine work. Open
`notebooks/00_start_here.ipynb` first, then the chapters in order.

- **Exercises** end with a check cell: run it to see whether your answer is right. A check
  says what is wrong (which entry, which gradient, which direction), never the answer.
- **`notebooks/helpers/`** is the course's own code (diagrams, steppers, checks). The
  notebooks import it from there: keep it next to them, and do not edit it.

## Getting updates

If your instructor gave you a link, click it again to get their updates. Your work is kept:

- a notebook you changed keeps your changes; where your instructor changed the same lines,
  your version wins;
- a file you deleted comes back as a fresh copy (to start an exercise over, rename or delete
  your notebook, then click the link);
- a file of yours that has the name of a new file of the course is renamed (a date is added
  to its name) before the new file arrives.

## On your own computer

You need Python 3.11 and Graphviz (optional: without it, diagrams use a pip-installed
layout engine).

```bash
pip install -r requirements.txt
jupyter lab notebooks/00_start_here.ipynb
```
"""

HANDOUT_GITIGNORE = "__pycache__/\n*.pyc\n.ipynb_checkpoints/\n"


def handout_files(root="."):
    """{path in the handout: (bytes, executable)} -- what a student gets."""
    root = Path(root)
    chapters(root)  # a clear error when root is not the course repository
    try:
        copies = release.build(root)
    except release.ReleaseError as error:
        raise ClassroomError(str(error)) from None
    files = {f"{release.NOTEBOOKS}/{path.name}": (text.encode(), False)
             for path, text in copies.items()}
    for rel, content in helpers_files(root).items():
        files[f"{release.NOTEBOOKS}/helpers/{rel}"] = content
    if not (root / "requirements.txt").is_file():
        raise ClassroomError(f"No {root / 'requirements.txt'}: the handout ships the course's requirements.")
    files["requirements.txt"] = ((root / "requirements.txt").read_bytes(), False)
    for name in HANDOUT_BINDER:
        path = root / "binder" / name
        if path.is_file():
            files[f"binder/{name}"] = (path.read_bytes(), bool(path.stat().st_mode & 0o111))
    files["README.md"] = (STUDENT_README.encode(), False)
    files[".gitignore"] = (HANDOUT_GITIGNORE.encode(), False)
    _leak_guard(files)
    return files


def _leak_guard(files):
    """No nbgrader markup in a notebook (``helpers/grading.py`` may quote the markers)."""
    for name, (data, _) in files.items():
        if not name.endswith(".ipynb"):
            continue
        text = data.decode("utf-8", "replace")
        for marker in release.MARKERS:
            if marker in text:
                raise ClassroomError(f"{name} contains '{marker}': the handout would carry "
                                     f"solution markup, so nothing was written.")


# ------------------------------------------------------------ handout

def _git(dest, *args, check=True):
    done = subprocess.run(["git", "-C", str(dest), *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise ClassroomError(f"git {' '.join(args)} failed in {dest}: "
                             f"{(done.stderr or done.stdout).strip().splitlines()[-1]}")
    return done


def _is_handout(dest):
    if _git(dest, "config", "--get", HANDOUT_MARK, check=False).stdout.strip() == "true":
        return True  # made here
    tracked = _git(dest, "ls-files", check=False).stdout.split("\n")
    return "notebooks/helpers/__init__.py" in tracked and "README.md" in tracked  # a clone of one


def handout(dest, root=".", out=print):
    """Write or update the student repository at ``dest``; returns the new commit or None."""
    dest = Path(dest).resolve()
    files = handout_files(root)
    if dest.exists() and not dest.is_dir():
        raise ClassroomError(f"{dest} is a file; give a folder for the handout repository.")
    if dest.exists() and any(dest.iterdir()):
        if not (dest / ".git").exists() or not _is_handout(dest):
            raise ClassroomError(f"{dest} exists and is not a handout repository; give a new "
                                 f"or empty folder (nothing in it was touched).")
        dirty = _git(dest, "status", "--porcelain").stdout.splitlines()
        if dirty:
            raise Refused(f"{dest} has changes that are not committed ({', '.join(line[3:] for line in dirty[:3])}"
                          f"{', ...' if len(dirty) > 3 else ''}): commit or remove them first; "
                          f"this command only commits the handout's own files.")
        if _git(dest, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0:
            raise ClassroomError(f"{dest} has no commit yet; give a new or empty folder.")
    else:
        dest.mkdir(parents=True, exist_ok=True)
        _git(dest, "init", "-q", "-b", "main")
        _git(dest, "config", HANDOUT_MARK, "true")
    tracked = [line for line in _git(dest, "ls-files", "-z").stdout.split("\0") if line]
    for name in tracked:
        if name not in files:
            (dest / name).unlink(missing_ok=True)
    for name, (data, executable) in files.items():
        path = dest / name
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        path.chmod(0o755 if executable else 0o644)
    _remove_empty_folders(dest)
    _git(dest, "add", "-A")
    changed = _git(dest, "diff", "--cached", "--name-only").stdout.split()
    if not changed:
        out(f"{dest}: the handout is up to date; nothing to commit.")
        return None
    first = _git(dest, "rev-parse", "--verify", "-q", "HEAD", check=False).returncode != 0
    summary = ", ".join(Path(name).name for name in changed[:4]) + (", ..." if len(changed) > 4 else "")
    message = "Autograd Lab handout" if first else f"Update the handout: {summary}"
    identity = [] if _git(dest, "config", "user.email", check=False).stdout.strip() else [
        "-c", f"user.name={COMMITTER[0]}", "-c", f"user.email={COMMITTER[1]}"]
    subprocess.run(["git", "-C", str(dest), *identity, "commit", "-q", "-m", message],
                   check=True, capture_output=True)
    commit = _git(dest, "rev-parse", "--short", "HEAD").stdout.strip()
    out(f"{dest}: committed {commit} ({len(changed)} file{'s' if len(changed) != 1 else ''} "
        f"changed). Push it (never force-push: students' copies merge on top of it).")
    return commit


def _remove_empty_folders(dest):
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir() and ".git" not in p.parts),
                         key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()


# ------------------------------------------------------------ nbgrader course

NBGRADER_CONFIG = r'''"""nbgrader configuration of the Autograd Lab course (written by `python -m helpers.classroom course`).

Run nbgrader from this folder. Each assignment's source folder holds the solved chapter and
a copy of `helpers`; nbgrader copies it to students and back over every submission, so their
kernels and the grader's import the course's own `helpers` with nothing installed.

Two pre-flight checks stop a command before it does harm, with one message naming the fix:
generate_assignment, when source/ASSIGNMENT/helpers/ is missing (students could not import
it); autograde, when the grading kernel cannot import helpers (every graded cell would
score 0).
"""
import json
import os
import subprocess
import sys

c = get_config()  # noqa: F821 (nbgrader defines it when it reads this file)
COURSE = os.path.dirname(os.path.abspath(__file__))

c.CourseDirectory.root = COURSE
c.CourseDirectory.course_id = @COURSE_ID@
# Where release_assignment / fetch_assignment / submit / collect meet (nbgrader's default):
# c.Exchange.root = "/usr/local/share/nbgrader/exchange"


def _stop(*lines):
    # SystemExit, not an Exception: nbgrader logs hook exceptions at INFO level and goes on.
    raise SystemExit("\n".join(["", "=" * 78, *lines, "=" * 78]))


def _fix_source(assignment):
    return (f"Fix: from the course repository run `python -m helpers.classroom course {COURSE} "
            f"{assignment}` (it puts helpers/ into source/{assignment}/), then run this again.")


def _notebooks(folder):
    for name in sorted(os.listdir(folder)):
        if name.endswith(".ipynb"):
            with open(os.path.join(folder, name), encoding="utf-8") as file:
                yield json.load(file)


def _helpers_in_source(assignment, student=None, notebooks=None):
    """generate_assignment: students import helpers from the assignment's folder."""
    folder = os.path.join(COURSE, "source", assignment)
    uses = any("helpers" in "".join(cell.get("source", "")) for nb in _notebooks(folder)
               for cell in nb.get("cells", []))
    if uses and not os.path.isfile(os.path.join(folder, "helpers", "__init__.py")):
        _stop(f"STOPPED: source/{assignment}/helpers/ is missing, so students could not "
              f"import helpers and every check would fail.", _fix_source(assignment))


_PROBED = set()
_PROBE = "import helpers, helpers.checks; print(helpers.__file__)"


def _grading_kernel_imports_helpers(assignment, student=None, notebooks=None):
    """autograde: before grading anyone, import helpers the way the grading kernel will."""
    if assignment in _PROBED:
        return
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    folder = os.path.join(COURSE, "source", assignment)
    name = "python3"
    for nb in _notebooks(folder):
        name = nb.get("metadata", {}).get("kernelspec", {}).get("name", name)
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        _stop(f"STOPPED before grading anyone: there is no Jupyter kernel {name!r} to grade "
              f"{assignment} with.", "Fix: pip install ipykernel into this environment.")
    python = spec.argv[0]
    if python in ("python", "python3", "python%d.%d" % sys.version_info[:2]):
        python = sys.executable  # what jupyter_client does when it starts the kernel
    env = dict(os.environ, **(spec.env or {}), PYTHONDONTWRITEBYTECODE="1")
    try:  # the kernel starts in the notebook's folder, which holds source/ASSIGNMENT's files
        done = subprocess.run([python, "-c", _PROBE], cwd=folder, env=env, capture_output=True,
                              text=True, timeout=600)
        error = (done.stderr.strip().splitlines() or ["exit code %d" % done.returncode])[-1] \
            if done.returncode else ""
    except (OSError, subprocess.TimeoutExpired) as exc:
        error = f"{type(exc).__name__}: {exc}"
    if error:
        has_copy = os.path.isfile(os.path.join(folder, "helpers", "__init__.py"))
        _stop(f"STOPPED before grading anyone: the grading kernel cannot import helpers for "
              f"{assignment}, so every graded cell would score 0.",
              f"  kernel: {python} (kernel {name!r}), started in source/{assignment}/",
              f"  error:  {error}",
              _fix_source(assignment) if not has_copy else
              f"Fix: install the course's requirements where the kernel runs "
              f"(`{python} -m pip install -r {os.path.join(COURSE, 'requirements.txt')}`), "
              f"then run this again.")
    _PROBED.add(assignment)


c.GenerateAssignment.pre_convert_hook = _helpers_in_source
c.Autograde.pre_convert_hook = _grading_kernel_imports_helpers
'''


def course_files(root, assignments, course_id=COURSE_ID):
    """{path in the course directory: bytes} for ``assignments`` (ids like "ch00")."""
    known = chapters(root)
    files = {"nbgrader_config.py": NBGRADER_CONFIG.replace("@COURSE_ID@", repr(course_id)).encode(),
             "requirements.txt": (Path(root) / "requirements.txt").read_bytes()}
    shipped = helpers_files(root)
    for assignment in assignments:
        source = known[assignment]
        files[f"source/{assignment}/{source.name}"] = source.read_bytes()
        for rel, (data, _) in shipped.items():
            files[f"source/{assignment}/helpers/{rel}"] = data
    return files


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def course(dest, chapter_names=(), root=".", force=False, course_id=COURSE_ID, out=print):
    """Write or update the nbgrader course directory ``dest``; returns the paths written.

    A file this command wrote and nobody edited since is updated; one edited by
    hand (or not written by this command) is never overwritten: the command
    refuses and names it, unless ``force``, which keeps it as ``NAME.bak`` first.
    """
    dest = Path(dest).resolve()
    assignments = pick(root, chapter_names)
    files = course_files(root, assignments, course_id)
    if dest.exists() and not dest.is_dir():
        raise ClassroomError(f"{dest} is a file; give a folder for the course directory.")
    manifest_path = dest / MANIFEST
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    if dest.exists() and any(dest.iterdir()) and not manifest:
        raise ClassroomError(f"{dest} exists and was not made by this command; give a new or "
                             f"empty folder (nothing in it was touched).")
    # Files of these assignments' helpers copies that the package no longer has.
    stale = [name for name in manifest if name not in files and any(
        name.startswith(f"source/{a}/helpers/") for a in assignments)]
    if not dest.exists():  # it will hold the solutions and the grades: the instructor's alone
        dest.mkdir(parents=True, mode=0o700)
        dest.chmod(0o700)
    elif dest.stat().st_mode & 0o077:
        out(f"note: other users can open {dest}, which holds the solutions and the grades; "
            f"`chmod 700 {dest}` closes it.")
    edited = []
    for name in [*files, *stale]:
        path = dest / name
        if path.is_file() and (name in stale or path.read_bytes() != files[name]):
            if manifest.get(name) != _sha(path.read_bytes()):
                edited.append(name)
    if edited and not force:
        raise Refused("Nothing was written: " + ", ".join(edited[:5]) + (" and others" if len(edited) > 5 else "")
                      + f" in {dest} {'was' if len(edited) == 1 else 'were'} edited by hand. Move "
                      f"the edit into the course repository, or rerun with --force to overwrite "
                      f"(each edited file is kept as NAME.bak).")
    written = []
    for name in edited:
        backup = _free_backup(dest / name)
        os.replace(dest / name, backup)
        out(f"kept the edited {name} as {backup.relative_to(dest)}")
    for name in stale:
        (dest / name).unlink(missing_ok=True)
        manifest.pop(name, None)
    for name, data in files.items():
        path = dest / name
        if not path.is_file() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            written.append(name)
        manifest[name] = _sha(data)
    manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    out(f"{dest}: {len(written)} file{'s' if len(written) != 1 else ''} written; assignments "
        f"{', '.join(assignments)}. Next, in that folder: nbgrader generate_assignment ASSIGNMENT")
    return written


def _free_backup(path):
    backup, n = path.with_name(path.name + ".bak"), 2
    while backup.exists():
        backup, n = path.with_name(f"{path.name}.bak{n}"), n + 1
    return backup


# ------------------------------------------------------------ gradebook

def _gradebook(course_dir):
    try:
        from nbgrader.api import Gradebook
    except ImportError:
        raise ClassroomError("The gradebook needs nbgrader: pip install -r requirements-dev.txt.") from None
    # nbgrader runs `alembic` when it creates a gradebook; it sits next to this Python.
    bindir = str(Path(sys.executable).parent)
    if bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    config = Path(course_dir) / "nbgrader_config.py"
    found = re.search(r"course_id\s*=\s*['\"]([^'\"]+)", config.read_text()) if config.is_file() else None
    return Gradebook(f"sqlite:///{Path(course_dir).resolve() / 'gradebook.db'}",
                     found.group(1) if found else "default_course")


def _course_dir(path):
    path = Path(path)
    if not (path / "nbgrader_config.py").is_file():
        raise ClassroomError(f"{path} is not a course directory (no nbgrader_config.py); make one "
                             f"with `python -m helpers.classroom course {path}`.")
    return path


HEADERS = {  # LMS and spreadsheet spellings -> nbgrader's student fields
    "id": "id", "student_id": "id", "username": "id", "user": "id", "user_name": "id",
    "login": "id", "hub_user": "id", "first_name": "first_name", "firstname": "first_name",
    "first": "first_name", "given_name": "first_name", "last_name": "last_name",
    "lastname": "last_name", "last": "last_name", "surname": "last_name",
    "family_name": "last_name", "email": "email", "e_mail": "email", "mail": "email",
    "lms_user_id": "lms_user_id", "lms_id": "lms_user_id",
}


def read_roster(path):
    """[{"id": ..., "first_name": ..., ...}] from a CSV class list; ids in JupyterHub's form."""
    path = Path(path)
    if not path.is_file():
        raise ClassroomError(f"No roster file {path}.")
    with open(path, newline="", encoding="utf-8-sig") as file:  # -sig: spreadsheets' BOM
        reader = csv.DictReader(file)
        fields = {name: HEADERS.get(re.sub(r"[^a-z]+", "_", (name or "").strip().lower()).strip("_"))
                  for name in reader.fieldnames or []}
        if "id" not in fields.values():
            raise ClassroomError(f"{path} has no student id column: name one of its columns "
                                 f"'id' or 'username' (found: {', '.join(reader.fieldnames or [])}).")
        students, seen = [], {}
        for line, row in enumerate(reader, start=2):
            student = {field: (row.get(name) or "").strip() for name, field in fields.items() if field}
            if not any(student.values()):
                continue
            # JupyterHub lower-cases user names, and so do the folders it makes.
            student["id"] = student["id"].lower()
            if not student["id"]:
                raise ClassroomError(f"{path}, line {line}: the student id is empty.")
            if not re.fullmatch(r"[a-z0-9][a-z0-9._@+\-]*", student["id"]):
                raise ClassroomError(f"{path}, line {line}: {student['id']!r} is not a JupyterHub "
                                     f"user name (letters, digits and . _ @ + - only).")
            if student["id"] in seen:
                raise ClassroomError(f"{path}, line {line}: {student['id']!r} is already on line "
                                     f"{seen[student['id']]}.")
            seen[student["id"]] = line
            students.append({k: v or None for k, v in student.items()})
    return students


def roster(course_dir, csv_path, out=print):
    """Add or update every student of the CSV class list in the gradebook."""
    course_dir = _course_dir(course_dir)
    students = read_roster(csv_path)
    with _gradebook(course_dir) as gradebook:
        known = {s.id for s in gradebook.students}
        for student in students:
            fields = {k: v for k, v in student.items() if k != "id"}
            gradebook.update_or_create_student(student["id"], **fields)
        absent = sorted(known - {s["id"] for s in students})
    new = sum(s["id"] not in known for s in students)
    out(f"{len(students)} students from {csv_path}: {new} new, {len(students) - new} updated.")
    if absent:
        out(f"In the gradebook but not in this roster (kept): {', '.join(absent)}.")
    return students


# ------------------------------------------------------------ collect

def collect(course_dir, assignment, pattern, update=False, out=print):
    """Copy each student's notebooks from ``pattern`` (with ``{student}``) into submitted/.

    Students are the gradebook's roster or, without one, the folders the
    pattern matches. Returns {student: "collected" | "unchanged" | "kept" | "missing"}.
    """
    course_dir = _course_dir(course_dir)
    if "{student}" not in pattern:
        raise ClassroomError("--from needs {student} where the user name goes, e.g. "
                             "'/home/jupyter-{student}/autograd-lab/notebooks'.")
    source = course_dir / "source" / assignment
    names = sorted(p.name for p in source.glob("*.ipynb")) if source.is_dir() else []
    if not names:
        raise ClassroomError(f"No assignment {assignment!r} in {course_dir}/source/.")
    expanded = os.path.expanduser(pattern)
    with _gradebook(course_dir) as gradebook:
        students = sorted(s.id for s in gradebook.students)
    if not students:
        regex = re.escape(expanded).replace(re.escape("{student}"), "(?P<s>[^/]+)")
        students = sorted({m.group("s") for p in glob.glob(expanded.replace("{student}", "*"))
                           if (m := re.fullmatch(regex, p))})
        out(f"No roster in the gradebook: collecting from the {len(students)} folders that match.")
    result = {}
    for student in students:
        folder = Path(expanded.format(student=student))
        found = [folder / name for name in names if (folder / name).is_file()]
        if not found:
            result[student] = "missing"
            continue
        target = course_dir / "submitted" / student / assignment
        same = all((target / p.name).is_file() and (target / p.name).read_bytes() == p.read_bytes()
                   for p in found)
        if same:
            result[student] = "unchanged"
            continue
        if target.exists() and not update:
            result[student] = "kept"
            continue
        target.mkdir(parents=True, exist_ok=True)
        for path in found:
            shutil.copyfile(path, target / path.name)
        newest = max(p.stat().st_mtime for p in found)
        stamp = datetime.datetime.fromtimestamp(newest, datetime.timezone.utc)
        (target / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f UTC"))
        result[student] = "collected"
    counts = {state: sorted(s for s, v in result.items() if v == state) for state in set(result.values())}
    out(f"{assignment}: " + "; ".join(f"{state} {len(who)}" for state, who in sorted(counts.items()))
        + (f". Missing: {', '.join(counts['missing'])}" if counts.get("missing") else "")
        + (f". Already collected and changed since (rerun with --update to replace): "
           f"{', '.join(counts['kept'])}" if counts.get("kept") else "") + ".")
    return result


# ------------------------------------------------------------ grades

MISSING, NOT_GRADED, UNGRADED = "missing", "not graded", "ungraded"


def _number(value):
    return f"{value:g}"


def _cell_order(course_dir, assignment, notebook):
    """grade_ids in the order of the source notebook (the gradebook keeps no order)."""
    path = Path(course_dir) / "source" / assignment / f"{notebook}.ipynb"
    if not path.is_file():
        return []
    cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
    return [c["metadata"]["nbgrader"]["grade_id"] for c in cells
            if c.get("metadata", {}).get("nbgrader", {}).get("grade_id")]


def grade_table(course_dir):
    """(header, rows): one row per student, one column per graded cell, totals, ``missing``."""
    course_dir = _course_dir(course_dir)
    from nbgrader.api import MissingEntry

    with _gradebook(course_dir) as gradebook:
        assignments = sorted(gradebook.assignments, key=lambda a: (a.duedate is None, a.duedate, a.name))
        columns = []  # (assignment, notebook, grade_id, max points)
        for assignment in assignments:
            notebooks = sorted(assignment.notebooks, key=lambda n: n.name)
            for notebook in notebooks:
                cells = {c.name: c.max_score for c in [*notebook.grade_cells, *notebook.task_cells]}
                order = _cell_order(course_dir, assignment.name, notebook.name)
                for name in sorted(cells, key=lambda n: (order.index(n) if n in order else len(order), n)):
                    columns.append((assignment.name, notebook.name, name, cells[name]))
        several = {a.name for a in assignments if len(a.notebooks) > 1}

        def title(a, nb, cell):
            return f"{a}:{nb}:{cell}" if a in several else f"{a}:{cell}"

        students = {s.id: s for s in gradebook.students}
        on_disk = {p.parent.name for p in (course_dir / "submitted").glob("*/*") if p.is_dir()}
        header = ["student_id", "last_name", "first_name", "email"]
        for assignment in assignments:
            header += [title(*col[:3]) for col in columns if col[0] == assignment.name]
            header.append(f"{assignment.name}:total")
        header += ["total", "max_total", "missing"]
        max_total = sum(col[3] or 0 for col in columns)
        rows = []
        for student_id in sorted(set(students) | on_disk):
            student = students.get(student_id)
            row = [student_id, getattr(student, "last_name", None) or "",
                   getattr(student, "first_name", None) or "", getattr(student, "email", None) or ""]
            total, missing = 0.0, []
            for assignment in assignments:
                cols = [col for col in columns if col[0] == assignment.name]
                try:
                    submission = gradebook.find_submission(assignment.name, student_id)
                except MissingEntry:
                    submitted = (course_dir / "submitted" / student_id / assignment.name).is_dir()
                    state = NOT_GRADED if submitted else MISSING
                    row += [state] * (len(cols) + 1)
                    missing += [] if submitted else [assignment.name]
                    continue
                scores = {}
                for notebook in submission.notebooks:
                    for grade in notebook.grades:  # score is 0 when nothing was assigned yet
                        ungraded = grade.auto_score is None and grade.manual_score is None
                        scores[(notebook.name, grade.name)] = None if ungraded else grade.score
                subtotal = 0.0
                for _, nb, cell, _ in cols:
                    score = scores.get((nb, cell))
                    row.append(UNGRADED if score is None else _number(score))
                    subtotal += score or 0
                row.append(_number(subtotal))
                total += subtotal
            row += [_number(total), _number(max_total), " ".join(missing)]
            rows.append(row)
    return header, rows


def export_grades(course_dirs, to=None, out=print):
    """Write the per-exercise grade table of one or more course directories (sections) as CSV.

    Sections must have the same chapters (the same columns) and no student in common. The
    default file is the first course directory's ``grades-by-exercise.csv``.
    """
    course_dirs = [course_dirs] if isinstance(course_dirs, (str, Path)) else list(course_dirs)
    header, rows, section = None, [], {}
    for course_dir in course_dirs:
        columns, table = grade_table(course_dir)
        if header is not None and columns != header:
            raise ClassroomError(f"{course_dir} has other chapters or exercises than "
                                 f"{course_dirs[0]}; export them to separate files.")
        header = columns
        for row in table:
            if row[0] in section:
                raise ClassroomError(f"Student {row[0]!r} is in both {section[row[0]]} and "
                                     f"{course_dir}; a student belongs to one section.")
            section[row[0]] = course_dir
            rows.append(row)
    rows.sort(key=lambda row: row[0])
    to = Path(to) if to else Path(course_dirs[0]) / "grades-by-exercise.csv"
    temporary = to.with_name(f".{to.name}.tmp")
    with open(temporary, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(temporary, to)
    missing = sum(1 for row in rows if row[-1])
    out(f"wrote {to}: {len(rows)} students, {len(header) - 7} columns of grades"
        + (f"; {missing} with missing submissions." if missing else "."))
    return to


# ------------------------------------------------------------ command line

def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.classroom",
                                     description="Hand the course out on a JupyterHub and grade it with nbgrader.")
    parser.add_argument("--root", default=".", help="the course repository (default: .)")
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("handout", help="write or update the students' git repository")
    p.add_argument("dest")
    p = commands.add_parser("course", help="write or update an nbgrader course directory")
    p.add_argument("dest")
    p.add_argument("chapters", nargs="*", help="e.g. 00 03 (default: every chapter)")
    p.add_argument("--force", action="store_true", help="overwrite hand edits, keeping NAME.bak")
    p.add_argument("--course-id", default=COURSE_ID)
    p = commands.add_parser("roster", help="add the students of a CSV class list to the gradebook")
    p.add_argument("course")
    p.add_argument("csv")
    p = commands.add_parser("collect", help="copy students' notebooks from their homes into submitted/")
    p.add_argument("course")
    p.add_argument("assignment")
    p.add_argument("--from", dest="pattern", required=True,
                   help="the notebooks' folder, with {student}: '/home/jupyter-{student}/autograd-lab/notebooks'")
    p.add_argument("--update", action="store_true", help="replace submissions collected before")
    p = commands.add_parser("grades", help="export grades, one column per exercise")
    p.add_argument("course", nargs="+", help="a course directory, or one per section")
    p.add_argument("--to", help="CSV file (default: COURSE/grades-by-exercise.csv)")
    args = parser.parse_args(argv)
    try:
        if args.command == "handout":
            handout(args.dest, args.root)
        elif args.command == "course":
            course(args.dest, args.chapters, args.root, force=args.force, course_id=args.course_id)
        elif args.command == "roster":
            roster(args.course, args.csv)
        elif args.command == "collect":
            collect(args.course, args.assignment, args.pattern, update=args.update)
        else:
            export_grades(args.course, args.to)
        return 0
    except Refused as error:
        print(error, file=sys.stderr)
        return 1
    except ClassroomError as error:
        print(error, file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
