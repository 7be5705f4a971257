"""Build the learner copies in ``notebooks/`` from the solved notebooks in ``solutions/``.

``solutions/`` is the single source of truth: every chapter, solved, in nbgrader
markup (solution code between ``### BEGIN SOLUTION`` and ``### END SOLUTION``,
graded check cells with nbgrader cell metadata, optional ``### BEGIN HIDDEN
TESTS`` blocks). ``notebooks/`` is generated from it and never written by hand::

    python -m helpers.release            # write notebooks/  (what `make student` runs)
    python -m helpers.release --check    # exit 1 if notebooks/ is not what a release writes
    python -m helpers.release --force    # overwrite hand edits, keeping a .bak copy

The transform is nbgrader's own: the preprocessors ``nbgrader generate_assignment``
runs (LockCells, ClearSolutions, ClearOutput, ClearHiddenTests, ClearMarkScheme,
ComputeChecksums, CheckCellMetadata). They are plain nbconvert preprocessors and
need no course directory or gradebook, so a learner copy here is the notebook
nbgrader would release -- same stubs, same cell metadata and checksums -- and an
instructor may hand out ``notebooks/`` and still autograde with nbgrader.

What nbgrader does not do, and this module adds:

- Hand edits are never destroyed silently. Each learner copy records in its
  metadata (``autograd_lab.fingerprint``) a fingerprint of everything a person
  edits: cell types, sources, tags and nbgrader metadata -- not outputs, since
  running a notebook is not editing it. If a copy no longer matches its
  fingerprint it was edited by hand (a copy with no record was not written by
  this command at all), and unless its cells already equal the new copy's, the
  release refuses: it writes nothing, names the file and exits 1. ``--force``
  overwrites, after keeping the old file as ``notebooks/NAME.ipynb.bak``
  (``.bak2``, ... if that exists).
- Determinism: the same solutions give byte-identical copies (nbformat's stable
  JSON, no timestamps, cell ids copied from the source).
- A leak guard: no solution, hidden-test or mark-scheme marker may survive.

Exit codes: 0 done or up to date; 1 ``--check`` found a difference, or hand
edits were protected; 2 bad input (no ``solutions/`` folder, broken markup).
"""
import argparse
import copy
import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import nbformat

from .notebook import OneLineError

try:  # a course-building tool, installed with the test dependencies, not the learners'
    from nbgrader.nbgraderformat import MetadataValidator
    from nbgrader.preprocessors import (CheckCellMetadata, ClearHiddenTests, ClearMarkScheme,
                                        ClearOutput, ClearSolutions, ComputeChecksums, LockCells)
except ImportError:  # pragma: no cover
    MetadataValidator = None

SOLUTIONS, NOTEBOOKS = "solutions", "notebooks"
STAMP = "autograd_lab"  # notebook metadata key of a learner copy's record
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS",
           "BEGIN MARK SCHEME", "END MARK SCHEME")


class ReleaseError(OneLineError, Exception):
    """A problem with the input, in one sentence that says what to do (one line in a notebook)."""


# ------------------------------------------------------------ the transform

def _quiet_log():
    # nbgrader logs a cell's whole source before raising; the error we raise says enough.
    log = logging.getLogger("helpers.release.nbgrader")
    log.addHandler(logging.NullHandler())
    log.propagate = False
    return log


def _pipeline():
    """nbgrader generate_assignment's preprocessors, minus the gradebook ones."""
    if MetadataValidator is None:
        raise ReleaseError("Building learner copies needs nbgrader: install it with "
                           "`pip install -r requirements-dev.txt`.")
    log = _quiet_log()
    return [cls(log=log) for cls in (LockCells, ClearSolutions, ClearOutput, CheckCellMetadata,
                                     ClearHiddenTests, ClearMarkScheme, ComputeChecksums,
                                     CheckCellMetadata)]


def learner_copy(nb, source="solutions/notebook.ipynb"):
    """The learner copy of a solved notebook (a new NotebookNode; ``nb`` is untouched).

    >>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
    ...     "x = 1\\n### BEGIN SOLUTION\\ny = 2\\n### END SOLUTION",
    ...     metadata={"nbgrader": {"solution": True, "grade": False, "locked": False,
    ...                            "grade_id": "ex1", "schema_version": 3}})])
    >>> print(learner_copy(nb).cells[0].source)
    x = 1
    # YOUR CODE HERE
    raise NotImplementedError()
    """
    pipeline = _pipeline()
    _validate(nb, source)
    nb = copy.deepcopy(nb)
    resources = {}
    try:
        for preprocessor in pipeline:
            nb, resources = preprocessor.preprocess(nb, resources)
    except Exception as error:  # nbgrader's RuntimeError or ValidationError
        raise ReleaseError(f"{source}: {_cell_of(nb, pipeline)}{_first_line(error)}") from None
    for index, cell in enumerate(nb.cells, start=1):  # leak guard
        for marker in MARKERS:
            if marker in cell.source:
                raise ReleaseError(f"{source}: cell {index} still contains '{marker}' after the "
                                   f"release; put each region on lines of its own.")
    nb.metadata.pop("widgets", None)  # saved widget state is output, and outputs are cleared
    nb.metadata[STAMP] = {"source": source, "fingerprint": fingerprint(nb)}
    return nb


def _cell_of(nb, pipeline):
    """'cell N: ' for the first cell nbgrader's preprocessors refuse on its own, or ''."""
    for index, cell in enumerate(nb.cells, start=1):
        single = nbformat.v4.new_notebook(cells=[copy.deepcopy(cell)], metadata=copy.deepcopy(nb.metadata))
        try:
            resources = {}
            for preprocessor in pipeline:
                single, resources = preprocessor.preprocess(single, resources)
        except Exception:
            return f"cell {index}: "
    return ""


def fingerprint(nb):
    """A hash of what a person edits: cell types, sources, tags and nbgrader metadata."""
    content = [[cell.cell_type, cell.source, cell.metadata.get("tags", []),
                cell.metadata.get("nbgrader", {})] for cell in nb.cells]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


# Which nbgrader cell flag each kind of region needs, and what nbgrader calls such a cell.
REGIONS = {"SOLUTION": ("solution", "a solution cell"),
           "HIDDEN TESTS": ("grade", "an autograder-tests cell"),
           "MARK SCHEME": ("task", "a manually graded task cell")}


def _validate(nb, source):
    """Name the cell when the notebook or its markup is broken.

    nbgrader's preprocessors and validator refuse the same notebooks, but their
    errors do not say which cell is at fault: check each cell on its own first.
    """
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as error:
        path = list(getattr(error, "absolute_path", []))
        where = f"cell {path[1] + 1}: " if len(path) > 1 and path[0] == "cells" else ""
        raise ReleaseError(f"{source}: {where}{_first_line(error)} (not a valid notebook; "
                           f"fix it in Jupyter or restore it from git).") from None
    ids = {}
    for index, cell in enumerate(nb.cells, start=1):
        flags = cell.metadata.get("nbgrader", {})
        if not isinstance(flags, dict):
            raise ReleaseError(f"{source}: cell {index} has nbgrader metadata that is not a "
                               f"dictionary; set it in JupyterLab's Create Assignment sidebar.")
        grade_id = flags.get("grade_id")
        if grade_id is not None and grade_id in ids:
            raise ReleaseError(f"{source}: cell {index} has grade id {grade_id!r}, which cell "
                               f"{ids[grade_id]} already uses; grade ids must be unique.")
        if grade_id is not None:
            ids[grade_id] = index
        for word, (flag, kind) in REGIONS.items():
            begins = sum(f"BEGIN {word}" in line for line in cell.source.splitlines())
            ends = sum(f"END {word}" in line for line in cell.source.splitlines())
            if begins != ends:
                raise ReleaseError(f"{source}: cell {index} has {begins} BEGIN {word} but {ends} "
                                   f"END {word} markers; they must come in pairs.")
            if begins and not flags.get(flag):
                raise ReleaseError(f"{source}: cell {index} has a {word} region but is not {kind}; "
                                   f"mark it in JupyterLab's Create Assignment sidebar (nbgrader) "
                                   f"or remove the markers.")
    validator = MetadataValidator()
    for index, cell in enumerate(nb.cells, start=1):
        if "nbgrader" not in cell.metadata:
            continue
        try:
            validator.validate_nb(nbformat.v4.new_notebook(cells=[copy.deepcopy(cell)]))
        except Exception as error:  # ValidationError, SchemaTooOldError
            raise ReleaseError(f"{source}: cell {index}: {_first_line(error)} "
                               f"(nbgrader cell metadata).") from None
    try:
        validator.validate_nb(nb)
    except Exception as error:
        raise ReleaseError(f"{source}: {_first_line(error)} (nbgrader cell metadata).") from None


# ------------------------------------------------------------ files

def read(path):
    """Read a notebook. Cells without an id get a stable one (nbformat's would be random)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("nbformat", 0) == 4 and data.get("nbformat_minor", 0) >= 5:
        for index, cell in enumerate(data.get("cells", [])):
            cell.setdefault("id", f"cell-{index}")
    return nbformat.reads(json.dumps(data), as_version=4)


def dumps(nb):
    """Stable notebook JSON, as Jupyter writes it (sorted keys, indent 1, final newline)."""
    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def _inside(path, folder):
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def _refuse_links(root, copies=()):
    """Refuse to write where a learner copy would land inside solutions/ (a symlink)."""
    solutions, notebooks = root / SOLUTIONS, root / NOTEBOOKS
    if notebooks.exists() and not notebooks.is_dir():
        raise ReleaseError(f"{notebooks} is a file, not a folder: move it away so that the "
                           f"learner copies can be written there.")
    if (notebooks.exists() or notebooks.is_symlink()) and _inside(notebooks, solutions):
        raise ReleaseError(f"{NOTEBOOKS}/ resolves to {notebooks.resolve()}, inside {SOLUTIONS}/: "
                           f"writing learner copies there would overwrite the solutions; make "
                           f"{NOTEBOOKS}/ a folder of its own.")
    for path in copies:
        if (path.exists() or path.is_symlink()) and _inside(path, solutions):
            raise ReleaseError(f"{NOTEBOOKS}/{path.name} is a link into {SOLUTIONS}/: remove it "
                               f"(`make student` writes a real learner copy in its place).")


def build(root="."):
    """{learner copy path: its text} for every ``solutions/*.ipynb`` under ``root``."""
    root = Path(root)
    _refuse_links(root)
    sources = sorted((root / SOLUTIONS).glob("*.ipynb")) if (root / SOLUTIONS).is_dir() else []
    if not sources:
        raise ReleaseError(f"No notebooks in {root / SOLUTIONS}/: run this from the course's root "
                           f"folder (the one with solutions/ and notebooks/), or pass --root.")
    copies = {}
    for path in sources:
        name = f"{SOLUTIONS}/{path.name}"
        try:
            nb = read(path)
        except Exception as error:  # not JSON, not UTF-8, not a notebook
            raise ReleaseError(f"{name} is not a valid notebook ({_first_line(error)}); "
                               f"fix it in Jupyter or restore it from git.") from None
        copies[root / NOTEBOOKS / path.name] = dumps(learner_copy(nb, name))
    _refuse_links(root, copies)
    return copies


def hand_edited(path, new_text):
    """Why overwriting ``path`` with ``new_text`` would lose a hand edit, or None if it would not."""
    try:
        nb = read(path)
    except Exception:  # e.g. merge conflict markers: someone has been editing
        return "is not a readable notebook"
    current = fingerprint(nb)
    if current == fingerprint(nbformat.reads(new_text, as_version=4)):
        return None  # the same cells: only outputs or metadata would change
    recorded = nb.metadata.get(STAMP, {}).get("fingerprint")
    if recorded is None:
        return "was not written by `make student`"
    return None if current == recorded else "was edited by hand"


def _with_outputs(root):
    """Solution notebooks saved with outputs (they should be stored stripped)."""
    found = []
    for path in sorted((Path(root) / SOLUTIONS).glob("*.ipynb")):
        nb = read(path)
        if any(cell.get("outputs") or cell.get("execution_count") for cell in nb.cells):
            found.append(path)
    return found


def _orphans(root, copies):
    return [path for path in sorted((Path(root) / NOTEBOOKS).glob("*.ipynb")) if path not in copies]


def check(root="."):
    """Problems with ``notebooks/`` (one sentence each, saying what to do); [] if up to date."""
    root = Path(root)
    copies = build(root)
    problems = []
    for path, text in copies.items():
        name, source = f"{NOTEBOOKS}/{path.name}", f"{SOLUTIONS}/{path.name}"
        if not path.exists():
            problems.append(f"{name} is missing: run `make student`.")
        elif path.read_text(encoding="utf-8") == text:
            continue
        elif why := hand_edited(path, text):
            problems.append(f"{name} {why}: move any edit into {source}, then "
                            f"run `python -m helpers.release --force` (it keeps the old copy "
                            f"as {NOTEBOOKS}/{_free_backup(path).name}).")
        else:
            problems.append(f"{name} is out of date with {source}: run `make student`.")
    for path in _orphans(root, copies):
        problems.append(f"{NOTEBOOKS}/{path.name} has no source in {SOLUTIONS}/: move it there "
                        f"(with its solutions) and run `make student`.")
    for path in _with_outputs(root):
        problems.append(f"{SOLUTIONS}/{path.name} has saved outputs: clear them with "
                        f"`jupyter nbconvert --clear-output --inplace {SOLUTIONS}/{path.name}`.")
    return problems


def release(root=".", force=False, out=print):
    """Write ``notebooks/`` from ``solutions/``; returns the paths written.

    Writes nothing and raises ``HandEdited`` if a copy was edited by hand,
    unless ``force``, which first keeps each edited copy as a ``.bak`` file.
    """
    root = Path(root)
    copies = build(root)
    changed = {path: text for path, text in copies.items()
               if not path.exists() or path.read_text(encoding="utf-8") != text}
    edited = {path: hand_edited(path, text) for path, text in changed.items() if path.exists()}
    edited = {path: why for path, why in edited.items() if why}
    if edited and not force:
        raise HandEdited(edited)
    (root / NOTEBOOKS).mkdir(exist_ok=True)
    for path in edited:
        backup = _free_backup(path)
        os.replace(path, backup)
        out(f"kept the hand-edited {NOTEBOOKS}/{path.name} as {NOTEBOOKS}/{backup.name}")
    for path, text in changed.items():
        temporary = path.with_name(f".{path.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)  # atomic: a reader never sees half a notebook
        out(f"wrote {NOTEBOOKS}/{path.name}")
    for path in _orphans(root, copies):
        out(f"note: {NOTEBOOKS}/{path.name} has no source in {SOLUTIONS}/ and was left as is")
    for path in _with_outputs(root):
        out(f"note: {SOLUTIONS}/{path.name} has saved outputs; clear them before committing")
    out(f"{NOTEBOOKS}/: {len(changed)} written, {len(copies) - len(changed)} already up to date.")
    return list(changed)


class HandEdited(OneLineError, Exception):
    """Learner copies that were edited by hand (the release wrote nothing)."""

    def __init__(self, edited):
        self.paths = list(edited)
        super().__init__("\n".join(
            f"{NOTEBOOKS}/{p.name} {why}, so nothing was written: move any edit into "
            f"{SOLUTIONS}/{p.name}, or rerun with --force to overwrite it and keep the old "
            f"copy as {NOTEBOOKS}/{_free_backup(p).name}." for p, why in edited.items()))


def _free_backup(path):
    backup, n = path.with_name(path.name + ".bak"), 2
    while backup.exists():
        backup, n = path.with_name(f"{path.name}.bak{n}"), n + 1
    return backup


# ------------------------------------------------------------ command line

def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m helpers.release",
        description="Build the learner copies in notebooks/ from solutions/.")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true",
                      help="change nothing; exit 1 if notebooks/ differs from what a release writes")
    mode.add_argument("--force", action="store_true",
                      help="overwrite hand-edited learner copies, keeping each as NAME.ipynb.bak")
    parser.add_argument("--root", default=".",
                        help="the course folder holding solutions/ and notebooks/ (default: .)")
    args = parser.parse_args(argv)
    try:
        if args.check:
            problems = check(args.root)
            for problem in problems:
                print(problem, file=sys.stderr)
            if problems:
                return 1
            print(f"{NOTEBOOKS}/ is up to date with {SOLUTIONS}/.")
            return 0
        release(args.root, force=args.force)
        return 0
    except HandEdited as error:
        print(error, file=sys.stderr)
        return 1
    except ReleaseError as error:
        print(error, file=sys.stderr)
        return 2
    except OSError as error:  # a folder that cannot be written, a file that cannot be read
        print(f"{error.filename or args.root}: {error.strerror or error}; nothing more was written.",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
