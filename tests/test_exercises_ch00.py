"""Chapter 00's warm-up: every plausible wrong answer fails with one line, the solution passes."""
import pytest

from exercise_harness import check_exercises
from helpers import checks
from helpers.exercises import run

WRONG = {
    "00_warmup": [
        # The chain rule's outer factor 2y forgotten: dy/dw and dy/db alone.
        ("dw = x0\ndb = 1.0", "`dw` has the wrong sign"),
        # d(y**2)/dy taken as y instead of 2y.
        ("inner = w0 * x0 + b0\ndw = inner * x0\ndb = inner", "`dw` is too small"),
        # The two answers swapped.
        ("dw, db = -11.0, 33.0", "`dw` has the wrong sign"),
        # dw right, but db multiplied by x as well.
        ("inner = w0 * x0 + b0\ndw = 2 * inner * x0\ndb = 2 * inner * x0", "`db` has the wrong sign"),
        # The answer written as text.
        ("dw, db = '33', '-11'", "`dw` should be a number or a tensor, not the string '33'"),
        # Not written at all: the stub's None.
        ("dw = None\ndb = None", "`dw` is still None: not written yet"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solution_passes():
    check_exercises("00", WRONG)


@pytest.mark.parametrize("dw, db, says", [
    (33.0, -11.0, None),
    (33, -11, None),                      # ints are fine
    (33.0, -12.0, "`db` is too small"),
    (34.0, -11.0, "`dw` is too large"),
    (-33.0, -11.0, "`dw` has the wrong sign"),
])
def test_the_verifier_directly(capsys, dw, db, says):
    if says is None:
        run("00_warmup", {"dw": dw, "db": db})
        assert capsys.readouterr().out == "✅ dw is right.\n✅ db is right.\n"
    else:
        with pytest.raises(checks.CheckFailed, match=says):
            run("00_warmup", {"dw": dw, "db": db})
