"""Exercise checks: say *what* is wrong, never *what the answer is*.

A check cell calls ``checks.exercise("01_ex2")``: it finds the exercise's
verifier (``helpers/exercises/ch01.py``), reads the learner's answers from the
notebook and prints one ✅ line -- or fails with one line that says what is
wrong. Verifiers build on these functions:

- ``check_value(name, answer, expected)``  -- a number or a tensor.
- ``check_equal(name, answer, expected)``  -- a discrete answer: a count, a
  boolean, a string, a list, a set or a dict (whose entries may be tensors).
- ``check_function(fn, *inputs, reference=...)`` -- a function, an ``nn.Module``
  or a custom ``torch.autograd.Function``: its forward values and its gradients.
- ``call(fn, *args, what=...)`` -- call a learner's function: with a time limit,
  and with its errors turned into feedback that names the error and the
  learner's own line.
- ``fail(message)`` -- fail with a message of the verifier's own.

A failing check raises ``CheckFailed``, an ``AssertionError`` that Jupyter shows
as one line (no traceback: the frames inside this module would only distract).
The line says what is off -- too large, the wrong sign, which item, which key,
which input's gradient, by how much in coarse bands -- but never the expected
value. A mistake in how a check is *called* (a bad ``rtol``, a string where a
number is expected) raises ``CheckMisuse``, also one line, addressed to the
author of the exercise.

The checks never touch the learner's tensors: gradients are computed with
``torch.autograd.grad`` (which fills no ``.grad``) on fresh copies, in the
learner's dtype.
"""
import math
import numbers
import signal
import sys
import threading
import time
import warnings

import torch

from .notebook import OneLineError, cell_line

__all__ = ["check_value", "check_equal", "check_function", "exercise", "call", "fail",
           "CheckFailed", "CheckMisuse", "TIME_LIMIT"]

TIME_LIMIT = 10.0  # seconds a learner's function may run inside a check
_QUIET = False     # set by the grader on its own copy: hidden tests print nothing when they pass
_pending = None    # a list while exercises.run runs a verifier: ✅ lines wait for the verdict


class CheckFailed(OneLineError, AssertionError):
    """A failing check: shown in Jupyter as one line, the feedback, without a traceback."""

    _shown_as = "❌"


class CheckMisuse(OneLineError, TypeError):
    """A check called the wrong way (by an exercise's author, not by the learner)."""


class _TimeUp(BaseException):
    """Raised in a learner's function when it runs past TIME_LIMIT."""


# ------------------------------------------------------------- entry points

def exercise(exercise_id):
    """Run exercise ``exercise_id``'s check on the answers in the calling notebook.

    What a check cell calls: ``checks.exercise("01_ex2")``. Prints ✅ lines or
    raises ``CheckFailed`` with one line of feedback. Defines no name in the
    notebook.
    """
    __tracebackhide__ = True
    from .exercises import run  # here, not at the top: helpers.exercises imports this module
    run(exercise_id, sys._getframe(1).f_globals)


def fail(message):
    """Fail the check with ``message`` (one line; say what is wrong, not the answer)."""
    __tracebackhide__ = True
    raise CheckFailed(message) from None


def call(fn, *args, what=None, **kwargs):
    """``fn(*args, **kwargs)`` for a learner's function ``fn``, inside a check.

    It runs with a time limit (``TIME_LIMIT`` seconds, where the platform allows),
    and any exception it raises becomes one line of feedback naming ``what``
    (default: the function's name), the error, and the learner's line that raised
    it. A function that still raises ``NotImplementedError()`` is "not implemented
    yet".

    >>> call(lambda x: 1 / x, 0, what="inverse(0)")
    Traceback (most recent call last):
    ...
    helpers.checks.CheckFailed: `inverse(0)` raised ZeroDivisionError: division by zero.
    """
    __tracebackhide__ = True
    name = getattr(fn, "__name__", None) or type(fn).__name__
    what = what or name
    if fn is None:
        _not_done(name)
    if not callable(fn):
        fail(f"`{what}` should be a function, not {_a(fn)}.")
    return _run(f"`{what}`", lambda: fn(*args, **kwargs), fn, name=f"`{name}`")


# ---------------------------------------------------------------- check_value

def check_value(name, answer, expected, *, rtol=1e-4, atol=1e-6):
    """Check a number or tensor ``answer`` against ``expected``.

    ``name`` is how the learner's variable is called in the message. Fails
    with a hint -- too large or too small, the wrong sign, wrong shape or
    dtype, which entries are off -- that never contains ``expected``.

    >>> w = torch.tensor(3.0, requires_grad=True)
    >>> (w * w).backward()
    >>> check_value("dw", 6.0, w.grad)
    ✅ dw is right.
    """
    __tracebackhide__ = True
    _tolerances("check_value", rtol, atol)
    want = _expected_tensor("check_value", expected)
    if answer is None:
        _not_done(name, could_be_a_gradient=True)
    _not_a_stray_tuple(name, answer)
    problem = _value_problem(answer, want, rtol, atol, plain=not isinstance(expected, torch.Tensor))
    if problem:
        fail(f"`{name}` {problem}.")
    _passed(f"✅ {name} is right.")


# ---------------------------------------------------------------- check_equal

def check_equal(name, answer, expected, *, rtol=1e-6, atol=1e-9):
    """Check a discrete answer: a count, a boolean, a string, a list, a set or a dict.

    A ``set`` as ``expected`` means order does not matter; a ``tuple`` is a list.
    Entries may be numbers, strings, booleans, tensors (compared as ``check_value``
    does, with ``rtol``/``atol``), lists or dicts. Fails with a hint that names
    which item or key is wrong (by index or key, never by expected value), and in
    which direction.

    >>> x = torch.ones(2, requires_grad=True)
    >>> y = x * 2
    >>> check_equal("is_leaf", [True, False], [x.is_leaf, y.is_leaf])
    ✅ is_leaf is right.
    """
    __tracebackhide__ = True
    _tolerances("check_equal", rtol, atol)
    _discrete_kind("check_equal", expected)  # refuses what it cannot compare
    if answer is None and expected is not None:
        _not_done(name)
    if not isinstance(expected, (tuple, list)):
        _not_a_stray_tuple(name, answer)
    problem = _problem(answer, expected, rtol, atol)
    if problem:
        fail(f"`{name}` {problem}.")
    _passed(f"✅ {name} is right.")


# ------------------------------------------------------------- check_function

def check_function(fn, *inputs, reference=None, second_order=False, rtol=None, atol=None):
    """Check a function, an ``nn.Module`` or a custom ``torch.autograd.Function``:
    forward and backward.

    ``fn`` runs on fresh copies of ``inputs`` *in their own dtype* (a float32
    module is checked in float32); the tensor inputs with ``requires_grad=True``
    are the ones whose gradients are checked (other arguments are passed as they are).

    - With ``reference`` (a plain function built from PyTorch operations), the
      forward values and the gradients are compared with what PyTorch's
      autograd computes through the reference, run in float64 when it can be.
    - Without it, the backward is compared with the numerical gradient of
      ``fn``'s own forward (central differences, as ``torch.autograd.gradcheck``
      does; in float64 when ``fn`` accepts it); keep the inputs small.

    Tolerances follow the learner's dtype unless ``rtol``/``atol`` are given.
    ``second_order=True`` also checks the gradient of the gradient (for
    ``create_graph=True`` and double backward). The backward pass is fed a fixed
    random upstream gradient, not ones, so a backward that ignores its
    ``grad_output`` fails. Messages say which input's gradient is off, in which
    direction and by how much in coarse bands -- never the expected values.

    >>> class Square(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x * x
    ...     @staticmethod
    ...     def backward(ctx, grad_output):
    ...         x, = ctx.saved_tensors
    ...         return 2 * x * grad_output
    >>> check_function(Square, torch.randn(3, requires_grad=True), reference=lambda x: x ** 2)
    ✅ Square: forward and backward match the reference.
    """
    __tracebackhide__ = True
    if rtol is not None or atol is not None:
        _tolerances("check_function", 0.0 if rtol is None else rtol, 0.0 if atol is None else atol)
    if reference is not None and not callable(reference):
        raise CheckMisuse(f"check_function: `reference` should be a function or a "
                          f"torch.autograd.Function, not {_a(reference)}.")
    diff = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not diff:
        raise CheckMisuse("check_function needs at least one input with requires_grad=True, "
                          "e.g. torch.randn(3, requires_grad=True).")
    bad = [i for i in diff if not (inputs[i].is_floating_point() or inputs[i].is_complex())]
    if bad:
        raise CheckMisuse(f"check_function: input {bad[0]} requires grad but is not floating-point.")
    name, call_fn, arg_names = _learner_callable(fn, len(inputs))
    forward, backward = _phase_names(fn, name)
    numerical = reference is None

    xs = _fresh(inputs)
    outs = _outputs(name, _run(forward, lambda: call_fn(*xs), fn))
    tol = _fn_tolerances(outs, rtol, atol, numerical)
    vs = _random_like(outs, seed=0)  # float64; cast to each output's dtype where used

    if not numerical:
        ref_xs, ref_outs = _reference_run(reference, inputs)
        _compare_forward(name, outs, ref_outs, *tol)

    got = _run(backward, lambda: _vjp(outs, vs, [xs[i] for i in diff], create_graph=second_order), fn)
    if numerical:
        probe_xs = _numerical_inputs(call_fn, inputs)
        want = _numerical_grads(lambda a: _probe(_outputs(name, call_fn(*a)), vs), probe_xs, diff, forward)
    else:
        want = _vjp(ref_outs, vs, [ref_xs[i] for i in diff], create_graph=second_order)
    against = " (compared with the numerical gradient of its forward)" if numerical else ""
    _compare_grads(name, "gradient", [arg_names[i] for i in diff], got, want, *tol, against)

    if second_order:
        # Second order: the gradient of (first-order gradients . u) for a fixed random u.
        us = _random_like([xs[i] for i in diff], seed=1)
        double = f"differentiating {backward} again"
        got2 = _run(double, lambda: _vjp([_dot(got, us)], [None], [xs[i] for i in diff]))
        if numerical:
            def first_order_probe(a):
                outs_a = _outputs(name, call_fn(*a))
                return _dot(_vjp(outs_a, vs, [a[i] for i in diff]), us)
            want2 = _numerical_grads(first_order_probe, probe_xs, diff, backward)
        else:
            want2 = _vjp([_dot(want, us)], [None], [ref_xs[i] for i in diff])
        against = " (compared with the numerical gradient of its backward)" if numerical else ""
        _compare_grads(name, "second-order gradient", [arg_names[i] for i in diff],
                       got2, want2, *tol, against)

    checked = "backward (first and second order)" if second_order else "backward"
    if numerical:
        _passed(f"✅ {name}: {checked} matches the numerical gradient of its forward.")
    else:
        _passed(f"✅ {name}: forward and {checked} match the reference.")


# ------------------------------------------------------------------ messages

def _passed(line):
    if _pending is not None:
        if line not in _pending:  # (two cases checked the same way say it once)
            _pending.append(line)  # printed if the whole exercise passes: a failure is one line only
    elif not _QUIET:
        print(line)


def _not_a_stray_tuple(name, answer):
    """`dw = 33.0,` makes a tuple: say so instead of comparing it."""
    __tracebackhide__ = True
    if isinstance(answer, tuple) and len(answer) == 1:
        unpack = f" (`{name}, = ...`)" if name.isidentifier() else ""
        fail(f"`{name}` is a tuple of one item: a comma at the end of the line, or a result "
             f"to unpack{unpack}?")


def _not_done(name, could_be_a_gradient=False):
    __tracebackhide__ = True
    if could_be_a_gradient:
        fail(f"`{name}` is None: either it is not written yet (see the exercise cell above), or it "
             f"is a gradient that never arrived (did backward() run, and does the tensor require grad?).")
    fail(f"`{name}` is still None: not written yet -- write your answer in the exercise cell above, "
         f"in place of `raise NotImplementedError()` (nothing below that line runs).")


def _a(value):
    """How to name the type of a learner's value in a message: 'a list', 'the string 'x''."""
    if isinstance(value, str):
        shown = value if len(value) <= 20 else value[:17] + "..."
        return f"the string {shown!r}"
    if value is None:
        return "None"
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' or kind == 'ndarray' else 'a'} {kind}"


def _band(fraction):
    """How far off, in coarse bands: an exact percentage would give the answer away
    (a learner who knows their value, the direction and the % can solve for it)."""
    if fraction < 0.01:
        return "less than 1%"
    if fraction < 0.1:
        return "less than 10%"
    return "more than 10%" if fraction <= 1 else "more than 100%"


def _where(indices, limit=3):
    shown = [str(tuple(i)) if len(i) > 1 else str(i[0]) if i else "()" for i in indices[:limit]]
    return ", ".join(shown) + (", ..." if len(indices) > limit else "")


def _listing(labels):
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def _first_line(error):
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    line = lines[0].strip() if lines else ""
    return line if len(line) <= 160 else line[:157] + "..."


# --------------------------------------------------------- instructor mistakes

def _tolerances(check, rtol, atol):
    for label, value in (("rtol", rtol), ("atol", atol)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
            raise CheckMisuse(f"{check}: `{label}` should be a number >= 0, not {value!r}.")


def _expected_tensor(check, expected):
    if isinstance(expected, (str, bytes, dict, set, frozenset)) or expected is None:
        raise CheckMisuse(f"{check} needs a number or a tensor as `expected`, "
                          f"not {type(expected).__name__}; use check_equal for other answers.")
    try:
        return torch.as_tensor(expected).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        try:  # a list of tensors
            return torch.stack([torch.as_tensor(e) for e in expected]).detach().cpu()
        except Exception:
            raise CheckMisuse(f"{check} needs a number or a tensor as `expected`, not "
                              f"{type(expected).__name__}; use check_equal for other answers.") from None


def _discrete_kind(check, expected):
    kind = _kind_of(expected)
    if kind is None:
        raise CheckMisuse(f"{check} cannot compare answers with {_a(expected)}; "
                          f"expected should be a number, string, boolean, tensor, list, set or dict.")
    if kind in ("a list", "a dict"):
        for item in (expected.values() if isinstance(expected, dict) else expected):
            _discrete_kind(check, item)
    return kind


# ------------------------------------------------------------ comparing values

def _kind_of(value):
    """The kind of an *expected* value, as a message names it (None: not comparable)."""
    if value is None:
        return "None"
    if _is_bool(value):
        return "a boolean"
    if _is_int(value):
        return "an integer"
    if _is_float(value):
        return "a number"
    if isinstance(value, torch.Tensor):
        return "a tensor"
    for cls, kind in ((str, "a string"), (list, "a list"), (tuple, "a list"), (set, "a set"),
                      (frozenset, "a set"), (dict, "a dict")):
        if isinstance(value, cls):
            return kind
    return None


def _is_bool(value):
    kind = type(value)
    return kind is bool or kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_")


def _is_int(value):
    if _is_bool(value):
        return False
    return type(value) is int or (isinstance(value, numbers.Integral) and type(value).__module__ == "numpy")


def _is_float(value):
    return type(value) is float or (isinstance(value, numbers.Real) and type(value).__module__ == "numpy"
                                    and not _is_int(value) and not _is_bool(value))


def _scalar(value):
    """A one-element tensor or numpy scalar as a plain Python number/bool; else the value."""
    if type(value) in (torch.Tensor, torch.nn.Parameter) and value.numel() == 1:
        return value.detach().cpu().item()
    if _is_bool(value):
        return bool(value)
    if _is_int(value):
        return int(value)
    if _is_float(value):
        return float(value)
    return value


def _problem(answer, expected, rtol, atol):
    """What is wrong with ``answer`` (a phrase whose subject is the answer), or None."""
    kind = _kind_of(expected)
    if kind == "a tensor":
        return _value_problem(answer, expected.detach().cpu(), rtol, atol, plain=False)
    if kind == "None":
        return None if answer is None else "is not quite right"
    if answer is None:
        return "is still None"
    tensor = isinstance(answer, torch.Tensor)
    if kind in ("a boolean", "an integer", "a number"):
        answer = _scalar(answer)
    if kind == "a boolean":
        if isinstance(answer, str):
            return f"should be True or False, not {_a(answer)}"
        if type(answer) is not bool:
            return f"should be True or False, not {_a(answer)}"
        return None if answer == bool(expected) else "is not quite right"
    if kind == "an integer":
        if not _is_int(answer):
            if tensor and _is_float(answer):  # torch.tensor(7.): the dtype is what to fix
                return "should be an integer, not a float tensor (use an int, or a tensor of integers)"
            return f"should be an integer, not {_a(answer)}"
        problem = _number_problem(int(answer), int(expected), 0, 0)
        # A count is off by whole steps: the direction says enough ("by more than 10%" of 3 is noise).
        return problem.split(" (by ")[0] if problem else None
    if kind == "a number":
        if not (_is_int(answer) or _is_float(answer)):
            return f"should be a number, not {_a(answer)}"
        return _number_problem(float(answer), float(expected), rtol, atol)
    if kind == "a string":
        if type(answer) is not str:
            return f"should be a string, not {_a(answer)}"
        if answer == expected:
            return None
        if answer.strip().lower() == expected.strip().lower():
            return "is almost right: check upper/lower case and spaces"
        return "is not quite right"
    if kind == "a set":
        return _set_problem(answer, expected)
    if kind == "a list":
        return _list_problem(answer, list(expected), rtol, atol)
    if kind == "a dict":
        return _dict_problem(answer, expected, rtol, atol)
    return None if answer == expected else "is not quite right"


def _number_problem(got, want, rtol, atol):
    if math.isnan(want):
        return None if math.isnan(got) else "is not quite right"
    if math.isnan(got):
        return "is NaN"
    if abs(got - want) <= atol + rtol * abs(want) or got == want:
        return None
    if got != 0 and want != 0 and (got > 0) != (want > 0):
        return "has the wrong sign"
    if got == 0:
        return "is 0, and it should not be"
    if math.isinf(got) or math.isinf(want):
        return "is too large" if got > want else "is too small"
    direction = "too large" if got > want else "too small"
    if want == 0:  # (no band: every wrong value is "100%" off; and naming 0 would give it away)
        return f"is {direction}"
    return f"is {direction} (by {_band(abs(got - want) / abs(want))})"


def _item(i):
    return f"item {i}"


def _list_problem(answer, expected, rtol, atol):
    if isinstance(answer, torch.Tensor) and answer.dim() >= 1:
        answer = list(answer.unbind(0))
    if not isinstance(answer, (list, tuple)):
        return f"should be a list, not {_a(answer)}"
    answer = list(answer)
    if len(answer) != len(expected):
        # Only the direction: the expected length can itself be the answer.
        return f"has too {'many' if len(answer) > len(expected) else 'few'} items"
    wrong = [(i, p) for i, (a, e) in enumerate(zip(answer, expected))
             if (p := _problem(a, e, rtol, atol))]
    if not wrong:
        return None
    if (len(expected) > 1 and not any(_is_bool(e) for e in expected)
            and _is_permutation(answer, expected, rtol, atol)):
        return "has the right items in the wrong order"
    if len(wrong) <= 2:
        return "is not quite right: " + "; ".join(f"{_item(i)} {p}" for i, p in wrong)
    return f"is not quite right: items {_listing([str(i) for i, _ in wrong[:4]])}" + \
           (" (and more)" if len(wrong) > 4 else "") + " are wrong"


def _is_permutation(answer, expected, rtol, atol):
    left = list(expected)
    for a in answer:
        match = next((k for k, e in enumerate(left) if _problem(a, e, rtol, atol) is None), None)
        if match is None:
            return False
        left.pop(match)
    return not left


def _set_problem(answer, expected):
    if isinstance(answer, (list, tuple, set, frozenset)):
        try:
            answer = set(answer)
        except TypeError:
            return "should hold strings or numbers only"
    else:
        return f"should be a list or a set, not {_a(answer)}"
    if answer == set(expected):
        return None
    missing, extra = set(expected) - answer, sorted(answer - set(expected), key=repr)
    parts = []
    if missing:
        parts.append(f"{len(missing)} item{'s are' if len(missing) > 1 else ' is'} missing")
    if extra:
        shown = ", ".join(repr(e) for e in extra[:3]) + (", ..." if len(extra) > 3 else "")
        parts.append(f"{shown} should not be there")
    return "is not quite right: " + " and ".join(parts)


def _dict_problem(answer, expected, rtol, atol):
    if not isinstance(answer, dict):
        return f"should be a dict, not {_a(answer)}"
    missing = [k for k in expected if k not in answer]
    extra = [k for k in answer if k not in expected]
    parts = []
    if missing:
        parts.append(f"key{'s' if len(missing) > 1 else ''} {_listing([repr(k) for k in missing[:4]])} "
                     f"{'are' if len(missing) > 1 else 'is'} missing")
    if extra:
        parts.append(f"key{'s' if len(extra) > 1 else ''} {_listing([repr(k) for k in extra[:4]])} "
                     f"should not be there")
    if parts:
        return "is not quite right: " + "; ".join(parts)
    wrong = [(k, p) for k, e in expected.items() if (p := _problem(answer[k], e, rtol, atol))]
    if not wrong:
        return None
    if len(wrong) <= 2:
        return "is not quite right: " + "; ".join(f"the value for {k!r} {p}" for k, p in wrong)
    return f"is not quite right: the values for {_listing([repr(k) for k, _ in wrong[:4]])}" + \
           (" (and more)" if len(wrong) > 4 else "") + " are wrong"


def _tensor_kind(t):
    if t.dtype == torch.bool:
        return "boolean"
    if t.dtype.is_complex:
        return "complex"
    return "floating-point" if t.dtype.is_floating_point else "integer"


# The loosest tolerance a value of this dtype can be held to.
_DTYPE_RTOL = {torch.float16: 5e-3, torch.bfloat16: 3e-2, torch.float32: 1e-5}


def _as_plain_tensor(answer):
    """The learner's answer as a plain CPU tensor, or a phrase saying why it is not a number."""
    if isinstance(answer, torch.Tensor):
        if type(answer) not in (torch.Tensor, torch.nn.Parameter):
            return None, f"should be a plain tensor, not {_a(answer)}"
        return answer.detach().cpu(), None
    if isinstance(answer, (str, bytes, dict, set, frozenset)) or answer is None or callable(answer):
        return None, f"should be a number or a tensor, not {_a(answer)}"
    if isinstance(answer, (list, tuple)) and any(isinstance(a, torch.Tensor) for a in answer):
        try:
            return torch.stack([torch.as_tensor(a).detach().cpu() for a in answer]), None
        except Exception:
            return None, "should be a tensor (or a list of tensors of one shape)"
    try:
        return torch.as_tensor(answer).detach().cpu(), None
    except Exception:
        return None, f"should be a number or a tensor, not {_a(answer)}"


def _value_problem(answer, want, rtol, atol, plain):
    """What is wrong with numeric ``answer`` against tensor ``want`` (a phrase), or None.
    ``plain``: ``expected`` was given as a Python number, so any numeric dtype will do."""
    if answer is None:
        return "is still None"
    if _is_bool(answer) or isinstance(answer, str):
        if want.dtype == torch.bool and want.numel() == 1 and isinstance(answer, str):
            return f"should be True or False, not {_a(answer)}"
    got, why = _as_plain_tensor(answer)
    if why:
        return why
    want_bool, got_bool = want.dtype == torch.bool, got.dtype == torch.bool
    if want_bool != got_bool:
        return f"should be {'a boolean' if want_bool else 'a number'}, not {_a(answer)}" \
            if got.numel() == 1 and not isinstance(answer, torch.Tensor) else \
            f"has dtype {got.dtype}; expected a {_tensor_kind(want)} tensor"
    if isinstance(answer, torch.Tensor) and not plain and _tensor_kind(got) != _tensor_kind(want):
        return f"has dtype {got.dtype}; expected a {_tensor_kind(want)} tensor"

    if got.shape != want.shape:
        if got.numel() == want.numel() == 1:
            got = got.reshape(want.shape)  # 5.0 and tensor([5.0]) are the same answer
        else:
            return f"has shape {tuple(got.shape)}; expected shape {tuple(want.shape)}"
    if got.dtype.is_complex or want.dtype.is_complex:
        got, want = got.to(torch.complex128), want.to(torch.complex128)
        return None if bool(torch.isclose(got, want, rtol, atol, equal_nan=True).all()) else \
            "is off in some entries"
    rtol = max(rtol, _DTYPE_RTOL.get(got.dtype, 0.0))
    got, want = got.to(torch.float64), want.to(torch.float64)
    close = torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        return None
    if want.numel() == 1:
        return _number_problem(got.item(), want.item(), rtol, atol)
    nan = torch.isnan(got) & ~torch.isnan(want)
    if bool(nan.any()):
        return f"contains NaN (at {_where(nan.nonzero().tolist())})"
    bad = (~close).nonzero().tolist()
    sign = (torch.sign(got) * torch.sign(want) < 0)[~close]
    if bool(sign.all()):
        return f"has the wrong sign in {len(bad)} of {want.numel()} entries (at {_where(bad)})"
    if len(bad) <= 3:
        details = []
        for index in bad:
            g, w = got[tuple(index)].item(), want[tuple(index)].item()
            phrase = (_number_problem(g, w, rtol, atol) or "is off").split(" (by ")[0]
            details.append(f"{_where([index])} {phrase.removeprefix('is ')}")
        return f"is off in {len(bad)} of {want.numel()} entries (at {'; '.join(details)})"
    scale = want.abs().max().item()
    size = f"; the largest error is {_band((got - want).abs().max().item() / scale)} " \
           f"of the largest expected entry" if scale > 0 and math.isfinite(scale) else ""
    return f"is off in {len(bad)} of {want.numel()} entries (at {_where(bad)}){size}"


# ------------------------------------------------------- running learner code

def _can_time():
    return hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()


_timing = [False]  # one timer at a time: a nested call runs under the outer one


def _limited(thunk, seconds):
    """thunk() with a time limit: SIGALRM raises _TimeUp in it after ``seconds``."""
    if _timing[0] or not _can_time():
        return thunk()

    def time_up(signum, frame):
        raise _TimeUp()

    previous = signal.signal(signal.SIGALRM, time_up)
    old_delay, old_interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    started = time.monotonic()
    _timing[0] = True
    try:
        return thunk()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _timing[0] = False
        signal.signal(signal.SIGALRM, previous)
        if old_delay:  # someone else's timer (pytest-timeout, say) keeps running
            left = old_delay - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3), old_interval)


def _run(where, thunk, fn=None, name=None):
    """Run learner code under the time limit; turn its exceptions into one line of feedback."""
    __tracebackhide__ = True
    try:
        with warnings.catch_warnings():  # the feedback stays one line
            warnings.simplefilter("ignore")
            return _limited(thunk, TIME_LIMIT)
    except (CheckFailed, CheckMisuse, KeyboardInterrupt):
        raise
    except _TimeUp:
        fail(f"{where} did not finish in {TIME_LIMIT:g} s -- is there a loop that never ends?")
    except Exception as error:  # the learner's code may raise anything
        method = _learner_method(error, fn)
        fail(_feedback(method or where, error, method or name or where))


def _feedback(where, error, name):
    if isinstance(error, NotImplementedError) and not str(error):
        return f"{name} is not implemented yet: replace `raise NotImplementedError()` with your code."
    line = cell_line(error)
    at = f" (at {line})" if line else ""
    message = _first_line(error)
    hint = ""
    if where.rstrip("`").endswith(".jvp") and "saved_tensors" in (line or ""):
        hint = ": jvp sees only the tensors setup_context saved with ctx.save_for_forward"
    elif "converted to an index" in message:  # what `tuple * tensor` says
        hint = ": is a tuple multiplied there? (ctx.saved_tensors is a tuple: unpack it)"
    return f"{where} raised {type(error).__name__}{': ' + message if message else ''}{at}{hint}."


def _is_function_class(fn):
    return isinstance(fn, type) and issubclass(fn, torch.autograd.Function)


def _learner_callable(fn, n_inputs):
    """(name, callable, argument names) for a learner's function, Module or Function class."""
    __tracebackhide__ = True
    import inspect

    if fn is None:
        fail("The function to check is still None: not implemented yet.")
    if isinstance(fn, torch.nn.Module):
        name, call_fn, signature_of = type(fn).__name__, fn, fn.forward
    elif _is_function_class(fn):
        name, call_fn, signature_of = fn.__name__, fn.apply, fn.forward
    elif callable(fn):
        name = getattr(fn, "__name__", type(fn).__name__)
        call_fn, signature_of = fn, fn
    else:
        fail(f"The function to check should be a function, an nn.Module or a "
             f"torch.autograd.Function subclass, not {_a(fn)}.")
    names = [f"input {i}" for i in range(n_inputs)]
    try:
        params = [p.name for p in inspect.signature(signature_of).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return name, call_fn, names
    if _is_function_class(fn) and len(params) == n_inputs + 1:
        params = params[1:]  # forward(ctx, ...)
    if len(params) >= n_inputs:
        names = params[:n_inputs]
    return name, call_fn, names


def _phase_names(fn, name):
    if _is_function_class(fn):
        return f"{name}.forward", f"{name}.backward"
    return name, f"the backward pass through {name}"


def _learner_method(error, fn):
    """``Name.method`` of the innermost method of Function class ``fn`` that the error passed
    through (so a ``raise`` in ``setup_context`` is not blamed on ``forward``), or None."""
    if not _is_function_class(fn):
        return None
    codes = {}
    for method in ("forward", "setup_context", "backward", "vjp", "jvp", "vmap"):
        code = getattr(getattr(fn, method, None), "__code__", None)
        if code is not None:
            codes[code] = f"{fn.__name__}.{method}"
    found, tb = None, error.__traceback__
    while tb is not None:
        found = codes.get(tb.tb_frame.f_code, found)
        tb = tb.tb_next
    return found


# ---------------------------------------------------------- check_function internals

def _fresh(inputs, dtype=None):
    """Leaf copies of the tensor inputs (in ``dtype`` if given, for floating ones);
    the learner's tensors stay untouched."""
    copies = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            wants_grad = x.requires_grad
            x = x.detach().clone()
            if dtype is not None and x.is_floating_point():
                x = x.to(dtype)
            if x.is_floating_point() or x.is_complex():
                x.requires_grad_(wants_grad)
        copies.append(x)
    return copies


def _reference_run(reference, inputs):
    """(inputs, outputs) of the reference, in float64 if it runs there, else in the inputs' dtype."""
    ref_call = reference.apply if _is_function_class(reference) else reference
    error = None
    for dtype in (torch.float64, None):
        xs = _fresh(inputs, dtype)
        try:
            return xs, _outputs("the reference", ref_call(*xs), misuse=True)
        except CheckMisuse:
            raise
        except Exception as caught:
            error = caught
    raise CheckMisuse(f"check_function: the reference raised {type(error).__name__}: "
                      f"{_first_line(error)}") from None


def _numerical_inputs(call_fn, inputs):
    """Float64 copies if ``fn`` runs in float64 (sharper finite differences), else copies
    in the learner's dtype (a float32 module with float32 parameters, say)."""
    xs64 = _fresh(inputs, torch.float64)
    try:
        _limited(lambda: call_fn(*xs64), TIME_LIMIT)
        return xs64
    except _TimeUp:
        raise
    except Exception:
        return _fresh(inputs)


def _fn_tolerances(outs, rtol, atol, numerical):
    """(rtol, atol) for comparing the learner's results, by the learner's output dtype."""
    dtypes = [o.dtype for o in outs if o.is_floating_point()]
    loosest = {torch.float16: (1e-2, 1e-3), torch.bfloat16: (5e-2, 1e-2),
               torch.float32: (1e-3, 1e-5)}
    base = (1e-3, 1e-5) if numerical else (1e-5, 1e-8)
    for dtype in dtypes:
        if dtype in loosest:
            base = (max(base[0], loosest[dtype][0]), max(base[1], loosest[dtype][1]))
    return (base[0] if rtol is None else rtol, base[1] if atol is None else atol)


def _outputs(name, out, misuse=False):
    __tracebackhide__ = True
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        message = f"{name} should return a tensor (or a tuple of tensors), not {_a(out)}."
        if misuse:
            raise CheckMisuse("check_function: " + message)
        fail(message)
    return list(outs)


def _random_like(tensors, seed):
    """Fixed random float64 tensors shaped like the floating-point ones (None elsewhere)."""
    generator = torch.Generator().manual_seed(seed)  # leaves the global RNG alone
    return [torch.randn(t.shape, generator=generator, dtype=torch.float64)
            if t.is_floating_point() else None for t in tensors]


def _probe(outs, vs):
    """The scalar sum(out * v) whose gradient is the vector-Jacobian product."""
    return sum(((o.to(torch.float64) * v).sum() for o, v in zip(outs, vs) if v is not None),
               torch.zeros((), dtype=torch.float64))


def _dot(grads, us):
    return sum(((g.to(torch.float64) * u).sum() for g, u in zip(grads, us) if g is not None),
               torch.zeros((), dtype=torch.float64))


def _vjp(outs, vs, xs, create_graph=False):
    """Gradients of sum(out * v) w.r.t. xs (None where nothing flows back)."""
    pairs = [(o, v) for o, v in zip(outs, vs) if o.requires_grad and o.is_floating_point()]
    if not pairs:
        return [None] * len(xs)
    grads = torch.autograd.grad(
        [o for o, _ in pairs],
        xs,
        [torch.ones_like(o) if v is None else v.to(o.dtype) for o, v in pairs],
        allow_unused=True,
        create_graph=create_graph,
    )
    return list(grads)


def _numerical_grads(scalar_fn, xs, diff, where):
    """Central differences of scalar_fn(xs) w.r.t. each input in diff (float64 sums)."""
    __tracebackhide__ = True
    grads = []
    for i in diff:
        eps = 1e-6 if xs[i].dtype == torch.float64 else 1e-3 if xs[i].dtype == torch.float32 else 1e-2
        grad = torch.zeros(xs[i].shape, dtype=torch.float64)
        for k in range(xs[i].numel()):
            values = []
            for step in (eps, -eps):
                shifted = xs[i].detach().clone()
                shifted.view(-1)[k] += step
                args = list(xs)
                args[i] = shifted.requires_grad_()
                values.append(_run(where, lambda: float(scalar_fn(args).detach())))
            grad.view(-1)[k] = (values[0] - values[1]) / (2 * eps)
        grads.append(grad)
    return grads


def _compare_forward(name, outs, ref_outs, rtol, atol):
    __tracebackhide__ = True
    if len(outs) != len(ref_outs):
        fail(f"{name} returns {len(outs)} tensor(s); expected {len(ref_outs)}.")
    for k, (o, r) in enumerate(zip(outs, ref_outs)):
        which = f"{name}'s output {k}" if len(outs) > 1 else f"{name}'s output"
        problem = _value_problem(o, r.detach().cpu(), rtol, atol, plain=True)
        if problem:
            fail(f"{which} {problem}.")


def _compare_grads(name, what, arg_names, got, want, rtol, atol, compared_with=""):
    __tracebackhide__ = True
    problems = []
    for arg, g, w in zip(arg_names, got, want):
        if g is None and w is None:
            continue
        if g is None:
            if bool((w == 0).all()):
                continue
            problems.append(f"no {what} reaches `{arg}`")
            continue
        w = torch.zeros(g.shape, dtype=torch.float64) if w is None else w.detach()
        g = g.detach().cpu()
        if g.shape != w.shape:
            problems.append(f"the {what} for `{arg}` has shape {tuple(g.shape)}, not {tuple(w.shape)}")
            continue
        g64, w64 = g.to(torch.float64), w.to(torch.float64).cpu()
        if bool(torch.isclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True).all()):
            continue
        if bool(torch.isclose(g64, -w64, rtol=rtol, atol=atol).all()):
            problems.append(f"the {what} for `{arg}` has the wrong sign")
            continue
        if g.numel() == 1:
            phrase = _number_problem(g64.item(), w64.item(), rtol, atol) or "is off"
            problems.append(f"the {what} for `{arg}` {phrase}")
            continue
        scale = w64.abs().max().item()
        size = f" (by {_band((g64 - w64).abs().max().item() / scale)} of its largest entry)" \
            if scale > 0 else ""
        bad = int((~torch.isclose(g64, w64, rtol=rtol, atol=atol, equal_nan=True)).sum())
        problems.append(f"the {what} for `{arg}` is off in {bad} of {g.numel()} entries{size}")
    if problems:
        fail(f"{name}: " + "; ".join(problems) + f"{compared_with}.")
