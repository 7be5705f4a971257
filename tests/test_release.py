"""helpers.release on a small course in tmp_path: the transform, determinism, and
that it never writes solutions/ nor destroys a hand edit in notebooks/."""
import doctest
import json
import shutil
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from helpers import release


def nbgrader(grade_id, **flags):
    meta = {"grade": False, "solution": False, "locked": False, **flags}
    return {"nbgrader": {"grade_id": grade_id, "schema_version": 3, **meta}}


def solved_notebook(outputs=False):
    """A solved notebook in nbgrader markup, stored stripped unless ``outputs``."""
    ran = {"execution_count": 7, "outputs": [new_output("stream", text="left over\n")]} if outputs else {}
    return new_notebook(
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        cells=[
            new_markdown_cell("# Exercise", id="intro"),
            new_code_cell("dw = None\n### BEGIN SOLUTION\ndw = 2 * 3 * 5\n### END SOLUTION",
                          id="answer", metadata=nbgrader("answer", solution=True)),
            new_code_cell("assert dw is not None\n### BEGIN HIDDEN TESTS\nassert dw == 30\n"
                          "### END HIDDEN TESTS", id="check",
                          metadata=nbgrader("check", grade=True, locked=True, points=2)),
            new_markdown_cell("Why?\n=== BEGIN MARK SCHEME ===\nBecause the chain rule.\n"
                              "=== END MARK SCHEME ===", id="task",
                              metadata=nbgrader("task", task=True, locked=True, points=1)),
            new_markdown_cell("The secret answer in words.", id="essay",
                              metadata=nbgrader("essay", solution=True, grade=True, points=1)),
            new_code_cell("1 / 0", id="oops", **ran,
                          metadata={"tags": ["raises-exception"],
                                    "autograd_lab": {"raises": "ZeroDivisionError: division"}}),
        ])


@pytest.fixture
def course(tmp_path):
    """A course folder with solutions/00_a.ipynb; returns its root."""
    (tmp_path / "solutions").mkdir()
    nbformat.write(solved_notebook(), tmp_path / "solutions" / "00_a.ipynb")
    return tmp_path


def learner(course, name="00_a.ipynb"):
    return nbformat.read(course / "notebooks" / name, as_version=4)


def cell(nb, cell_id):
    return next(c for c in nb.cells if c.id == cell_id)


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


def edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


def test_solution_regions_become_the_nbgrader_stub(course):
    assert release.main(["--root", str(course)]) == 0
    nb = learner(course)
    assert cell(nb, "answer").source == "dw = None\n# YOUR CODE HERE\nraise NotImplementedError()"
    assert cell(nb, "essay").source == "YOUR ANSWER HERE"


def test_hidden_tests_and_mark_schemes_are_removed(course):
    release.main(["--root", str(course)])
    nb = learner(course)
    assert cell(nb, "check").source == "assert dw is not None"
    assert cell(nb, "task").source == "Why?"
    text = (course / "notebooks" / "00_a.ipynb").read_text()
    for secret in ("2 * 3 * 5", "dw == 30", "chain rule", "secret answer", "BEGIN", "END"):
        assert secret not in text


def test_outputs_are_cleared(course, capsys):
    nbformat.write(solved_notebook(outputs=True), course / "solutions" / "00_a.ipynb")
    assert release.main(["--root", str(course)]) == 0
    oops = cell(learner(course), "oops")
    assert oops.outputs == [] and oops.execution_count is None
    assert "solutions/00_a.ipynb has saved outputs" in capsys.readouterr().out
    assert release.main(["--root", str(course), "--check"]) == 1  # solutions are stored stripped
    assert "clear them with `jupyter nbconvert --clear-output" in capsys.readouterr().err


def test_tags_and_grading_metadata_are_kept(course):
    release.main(["--root", str(course)])
    nb = learner(course)
    oops = cell(nb, "oops")
    assert oops.metadata.tags == ["raises-exception"] and oops.metadata.autograd_lab.raises
    check = cell(nb, "check").metadata
    assert check.nbgrader.points == 2 and check.nbgrader.checksum and check.editable is False


def test_release_is_deterministic(course, tmp_path_factory):
    release.main(["--root", str(course)])
    first = (course / "notebooks" / "00_a.ipynb").read_bytes()
    assert release.main(["--root", str(course)]) == 0
    assert (course / "notebooks" / "00_a.ipynb").read_bytes() == first
    other = tmp_path_factory.mktemp("other")
    (other / "solutions").mkdir()
    # The same notebook saved without cell ids: nbformat would invent random ones.
    data = json.loads((course / "solutions" / "00_a.ipynb").read_text())
    for c in data["cells"]:
        del c["id"]
    (other / "solutions" / "00_a.ipynb").write_text(json.dumps(data))
    release.main(["--root", str(other)])
    release.main(["--root", str(other), "--force"])
    again = (other / "notebooks" / "00_a.ipynb").read_bytes()
    release.main(["--root", str(other)])
    assert (other / "notebooks" / "00_a.ipynb").read_bytes() == again


def test_release_never_writes_solutions(course):
    before = snapshot(course / "solutions")
    for args in ([], ["--check"], ["--force"]):
        release.main(["--root", str(course), *args])
    assert snapshot(course / "solutions") == before


def test_a_hand_edit_is_refused_and_nothing_is_written(course, capsys):
    release.main(["--root", str(course)])
    copy = course / "notebooks" / "00_a.ipynb"
    edit(copy, "# Exercise", "# Exercise, with my notes")
    edited = copy.read_bytes()
    edit(course / "solutions" / "00_a.ipynb", "Why?", "Why, exactly?")
    nbformat.write(solved_notebook(), course / "solutions" / "01_b.ipynb")
    capsys.readouterr()

    assert release.main(["--root", str(course)]) == 1
    err = capsys.readouterr().err
    assert "notebooks/00_a.ipynb was edited by hand, so nothing was written" in err and "--force" in err
    assert copy.read_bytes() == edited
    assert not (course / "notebooks" / "01_b.ipynb").exists()


def test_force_keeps_the_hand_edit_as_a_backup(course):
    release.main(["--root", str(course)])
    copy = course / "notebooks" / "00_a.ipynb"
    fresh = copy.read_bytes()
    edit(copy, "# Exercise", "# Exercise, mine")
    edited = copy.read_bytes()
    assert release.main(["--root", str(course), "--force"]) == 0
    assert (course / "notebooks" / "00_a.ipynb.bak").read_bytes() == edited
    assert copy.read_bytes() == fresh
    edit(copy, "# Exercise", "# Exercise, mine again")
    release.main(["--root", str(course), "--force"])
    assert (course / "notebooks" / "00_a.ipynb.bak").read_bytes() == edited  # not overwritten
    assert b"mine again" in (course / "notebooks" / "00_a.ipynb.bak2").read_bytes()


def test_a_copy_the_release_did_not_write_is_protected_too(course, capsys):
    (course / "notebooks").mkdir()
    shutil.copy(course / "solutions" / "00_a.ipynb", course / "notebooks" / "00_a.ipynb")
    assert release.main(["--root", str(course)]) == 1
    assert "00_a.ipynb was not written by `make student`" in capsys.readouterr().err


def test_an_unrecorded_copy_with_the_same_cells_is_simply_updated(course):
    release.main(["--root", str(course)])
    copy = course / "notebooks" / "00_a.ipynb"
    fresh = copy.read_bytes()
    nb = learner(course)
    del nb.metadata[release.STAMP]
    nbformat.write(nb, copy)
    assert release.main(["--root", str(course)]) == 0 and copy.read_bytes() == fresh


def test_running_a_learner_copy_is_not_a_hand_edit(course):
    release.main(["--root", str(course)])
    copy = course / "notebooks" / "00_a.ipynb"
    fresh = copy.read_bytes()
    nb = learner(course)
    cell(nb, "oops").outputs = [new_output("error", ename="ZeroDivisionError", evalue="", traceback=[])]
    cell(nb, "oops").execution_count = 1
    nbformat.write(nb, copy)
    assert release.main(["--root", str(course)]) == 0
    assert copy.read_bytes() == fresh


def test_check_reports_what_is_out_of_date(course, capsys):
    assert release.main(["--root", str(course), "--check"]) == 1
    assert "notebooks/00_a.ipynb is missing" in capsys.readouterr().err
    release.main(["--root", str(course)])
    assert release.main(["--root", str(course), "--check"]) == 0

    edit(course / "solutions" / "00_a.ipynb", "Why?", "Why, exactly?")
    nbformat.write(solved_notebook(), course / "notebooks" / "99_orphan.ipynb")
    capsys.readouterr()
    assert release.main(["--root", str(course), "--check"]) == 1
    err = capsys.readouterr().err
    assert "notebooks/00_a.ipynb is out of date with solutions/00_a.ipynb" in err
    assert "notebooks/99_orphan.ipynb has no source in solutions/" in err


def test_check_tells_a_hand_edit_from_a_stale_copy(course):
    release.main(["--root", str(course)])
    edit(course / "notebooks" / "00_a.ipynb", "# Exercise", "# Exercise, mine")
    assert any("edited by hand" in p for p in release.check(course))


@pytest.mark.parametrize("change, says", [
    (lambda nb: nb.cells[1].metadata.pop("nbgrader"), "cell 2 has a SOLUTION region but is not a solution cell"),
    (lambda nb: setattr(nb.cells[2], "source", "### BEGIN HIDDEN TESTS\nx"), "cell 3 has 1 BEGIN HIDDEN TESTS but 0"),
    (lambda nb: nb.cells[2].metadata.nbgrader.update(grade_id="answer"),
     "cell 3 has grade id 'answer', which cell 2 already uses"),
    (lambda nb: nb.cells[2].metadata.nbgrader.pop("points"), "cell 3: nbgrader cell 'check' does not have points"),
    (lambda nb: nb.cells[2].metadata.nbgrader.update(points=-1), "cell 3: -1 is less than the minimum"),
    (lambda nb: nb.cells[2].metadata.nbgrader.update(grade_id="a b"), "cell 3: 'a b' does not match"),
    (lambda nb: nb.cells[2].metadata.nbgrader.pop("schema_version"), "cell 3: Outdated schema version"),
    (lambda nb: nb.cells[1].metadata.update(nbgrader="yes"), "cell 2 has nbgrader metadata that is not a dictionary"),
    (lambda nb: nb.cells[4].metadata.nbgrader.update(solution=False), "cell 5: Markdown grade cell 'essay'"),
])
def test_broken_markup_is_one_sentence_and_writes_nothing(course, capsys, change, says):
    nb = nbformat.read(course / "solutions" / "00_a.ipynb", as_version=4)
    change(nb)
    nbformat.write(nb, course / "solutions" / "00_a.ipynb")
    assert release.main(["--root", str(course)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("solutions/00_a.ipynb: ") and says in err and "\n" not in err
    assert not (course / "notebooks").exists()


def test_a_folder_without_solutions_is_a_clear_error(tmp_path, capsys):
    assert release.main(["--root", str(tmp_path)]) == 2
    assert "No notebooks in" in capsys.readouterr().err


def test_docstring_example_runs():
    result = doctest.testmod(release)
    assert result.attempted >= 1 and result.failed == 0


def test_the_command_line_runs_as_a_module(course):
    run = lambda *args: subprocess.run([sys.executable, "-m", "helpers.release", *args],
                                       cwd=course, capture_output=True, text=True)
    written = run()
    assert written.returncode == 0 and "wrote notebooks/00_a.ipynb" in written.stdout
    checked = run("--check")
    assert checked.returncode == 0 and "up to date" in checked.stdout, checked.stderr


def test_check_and_force_do_not_go_together(course):
    with pytest.raises(SystemExit) as exit:
        release.main(["--root", str(course), "--check", "--force"])
    assert exit.value.code == 2


@pytest.mark.parametrize("text, says", [
    ("{not json", "solutions/00_a.ipynb is not a valid notebook"),
    ("[]", "solutions/00_a.ipynb is not a valid notebook"),
    ('{"cells": 5, "nbformat": 4, "nbformat_minor": 5, "metadata": {}}', "solutions/00_a.ipynb"),
])
def test_a_file_that_is_not_a_notebook_is_one_sentence(course, capsys, text, says):
    (course / "solutions" / "00_a.ipynb").write_text(text)
    assert release.main(["--root", str(course)]) == 2
    err = capsys.readouterr().err.strip()
    assert says in err and "\n" not in err and "Traceback" not in err


def test_a_cell_that_breaks_the_notebook_format_is_named(course, capsys):
    data = json.loads((course / "solutions" / "00_a.ipynb").read_text())
    data["cells"][2]["source"] = 5
    (course / "solutions" / "00_a.ipynb").write_text(json.dumps(data))
    assert release.main(["--root", str(course)]) == 2
    assert "solutions/00_a.ipynb: cell 3: " in capsys.readouterr().err


def test_notebooks_linked_to_solutions_is_refused(course, capsys):
    before = snapshot(course / "solutions")
    (course / "notebooks").symlink_to(course / "solutions")
    for args in ([], ["--force"], ["--check"]):
        assert release.main(["--root", str(course), *args]) == 2
        assert "inside solutions/" in capsys.readouterr().err
    assert snapshot(course / "solutions") == before


def test_a_learner_copy_linked_into_solutions_is_refused(course, capsys):
    before = snapshot(course / "solutions")
    (course / "notebooks").mkdir()
    (course / "notebooks" / "00_a.ipynb").symlink_to(course / "solutions" / "00_a.ipynb")
    assert release.main(["--root", str(course), "--force"]) == 2
    assert "notebooks/00_a.ipynb is a link into solutions/" in capsys.readouterr().err
    assert snapshot(course / "solutions") == before


def test_notebooks_as_a_file_is_one_sentence(course, capsys):
    (course / "notebooks").write_text("oops")
    assert release.main(["--root", str(course)]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_check_names_the_backup_that_force_would_write(course, capsys):
    release.main(["--root", str(course)])
    copy = course / "notebooks" / "00_a.ipynb"
    edit(copy, "# Exercise", "# Exercise, mine")
    (course / "notebooks" / "00_a.ipynb.bak").write_text("an older backup")
    capsys.readouterr()
    assert release.main(["--root", str(course), "--check"]) == 1
    err = capsys.readouterr().err
    assert "notebooks/00_a.ipynb.bak2" in err
    assert release.main(["--root", str(course), "--force"]) == 0
    assert b"mine" in (course / "notebooks" / "00_a.ipynb.bak2").read_bytes()


def test_release_errors_show_as_one_line_in_a_notebook():
    lines = release.ReleaseError("solutions/x.ipynb: cell 3: broken.")._render_traceback_()
    assert len(lines) == 1 and lines[0].endswith("ReleaseError\x1b[0m: solutions/x.ipynb: cell 3: broken.")
