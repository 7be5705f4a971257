"""The exercises' verifiers: one module per chapter, one verifier per exercise.

``helpers/exercises/ch01.py`` holds chapter 01's verifiers::

    from helpers import checks
    from helpers.exercises import exercise

    @exercise("01_ex1")
    def ex1(node_names, n_nodes):
        expected = ...            # built here, inside the function: never at module level
        checks.check_equal("node_names", node_names, expected)

A verifier's parameters are the learner's global names the exercise reads.
``run("01_ex1", namespace)`` looks those names up in the notebook's namespace
and calls the verifier with them; an optional keyword-only ``graded=False``
parameter lets a verifier run extra cases when nbgrader grades.

A check cell calls ``checks.exercise("01_ex1")`` (which calls ``run``); the
hidden test in the same cell calls ``helpers.grading`` (which loads fresh
copies of these modules and calls ``run(..., graded=True)``).
"""
import re

from .. import checks

__all__ = ["exercise", "run", "verifier"]

_VERIFIERS = {}
_ID = re.compile(r"^(\d\d)_\w+$")


def exercise(exercise_id, *, may_be_none=()):
    """Register the decorated function as the verifier of ``exercise_id`` (``"01_ex2"``).

    The id starts with the chapter's two digits; the verifier lives in
    ``helpers/exercises/chNN.py``. ``may_be_none`` names parameters for which
    ``None`` is a possible answer (others fail as "not written yet" when None).
    """
    if not _ID.match(exercise_id):
        raise checks.CheckMisuse(f"exercise ids look like '01_ex2' (chapter, underscore, name), "
                                 f"not {exercise_id!r}.")

    def register(verify):
        code = verify.__code__
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        unknown = [n for n in may_be_none if n not in names]
        if unknown:
            raise checks.CheckMisuse(f"exercise {exercise_id!r}: may_be_none names {unknown[0]!r}, "
                                     f"which is not a parameter of {verify.__name__}.")
        verify.exercise_id, verify.may_be_none = exercise_id, tuple(may_be_none)
        _VERIFIERS[exercise_id] = verify
        return verify

    return register


def verifier(exercise_id):
    """The verifier registered as ``exercise_id``, importing its chapter module if needed."""
    match = _ID.match(exercise_id) if isinstance(exercise_id, str) else None
    if not match:
        raise checks.CheckMisuse(f"exercise ids look like '01_ex2', not {exercise_id!r}.")
    if exercise_id not in _VERIFIERS:
        module = f"{__name__}.ch{match.group(1)}"
        try:
            # __import__, not importlib: the grader's fresh copies resolve it to fresh modules.
            __import__(module, fromlist=["_"])
        except ModuleNotFoundError as error:
            if error.name != module:
                raise
            raise checks.CheckMisuse(f"no module {module} for exercise {exercise_id!r}.") from None
    try:
        return _VERIFIERS[exercise_id]
    except KeyError:
        raise checks.CheckMisuse(f"no verifier is registered as {exercise_id!r} in "
                                 f"{__name__}.ch{match.group(1)}.") from None


def run(exercise_id, namespace, *, graded=False):
    """Run ``exercise_id``'s verifier on the answers in ``namespace`` (a notebook's globals).

    Fails with one line (``checks.CheckFailed``) when a name is missing or still
    None, when the verifier finds a mistake, or when the verifier cannot use
    the answer at all (an exception of the answer's making).
    """
    __tracebackhide__ = True
    verify = verifier(exercise_id)
    code = verify.__code__
    names = code.co_varnames[:code.co_argcount]
    keyword_only = code.co_varnames[code.co_argcount:code.co_argcount + code.co_kwonlyargcount]
    args = {}
    for name in names:
        if name not in namespace:
            checks.fail(f"`{name}` is not defined: run the exercise cell above first.")
        value = namespace[name]
        if value is None and name not in verify.may_be_none:
            checks._not_done(name)
        args[name] = value
    if "graded" in keyword_only:
        args["graded"] = graded
    checks._pending = passed = []
    try:
        verify(**args)
    except (checks.CheckFailed, checks.CheckMisuse, KeyboardInterrupt):
        raise
    except Exception as error:  # the verifier tripped over the answer (a wrong type, say)
        message = checks._first_line(error)
        checks.fail(f"the check could not use your answer: "
                    f"{type(error).__name__}{': ' + message if message else ''}.")
    finally:
        checks._pending = None
    if not checks._QUIET:
        print("\n".join(passed) if passed else f"✅ {exercise_id}: right.")
