"""Exercise checks: say *what* is wrong, never *what the answer is*.

Every exercise ends with a check cell that calls one of three functions:

- ``check_value(name, answer, expected)``  -- a number or a tensor.
- ``check_equal(name, answer, expected)``  -- a discrete answer: a count, a
  boolean, a string, a list or a set of names.
- ``check_function(fn, *inputs, reference=...)`` -- a function or a custom
  ``torch.autograd.Function``: its forward values and its gradients.

On success a check prints one short line starting with ✅. On failure it raises
``AssertionError`` with one or two sentences that say what is off -- too large,
which entries, which input's gradient and by how much -- but never the expected
value itself. The expected value is computed by PyTorch inside the check cell
(or written out only in a hidden test), so a learner can read every visible
check without being told the answer.

Learner code that raises inside a check (say, a ``backward`` with a typo) is
reported as feedback: an ``AssertionError`` naming the learner's function and
the exception, not a traceback from inside this module. A learner function
that still raises ``NotImplementedError()`` is reported as "not implemented
yet". The error raised is ``CheckFailed``, an ``AssertionError`` that Jupyter
shows as its one-line message with no traceback (the message is the
feedback; frames inside this module would only distract), and whose frames
pytest hides (``__tracebackhide__``).

The checks never touch the learner's tensors: gradients are computed with
``torch.autograd.grad`` (which fills no ``.grad``) on fresh float64 copies.
"""
import inspect
import numbers

import torch

__all__ = ["check_value", "check_equal", "check_function", "CheckFailed"]


class CheckFailed(AssertionError):
    """A failing check: shown in Jupyter as one line, the feedback, without a traceback."""

    def _render_traceback_(self):  # IPython calls this instead of formatting a traceback
        return [f"\x1b[0;31mAssertionError\x1b[0m: {self}"]


# ---------------------------------------------------------------- check_value

def check_value(name, answer, expected, *, rtol=1e-4, atol=1e-6):
    """Check a number or tensor ``answer`` against ``expected``.

    ``name`` is how the learner's variable is called in the message. Fails
    with a hint -- too large or too small, wrong shape or dtype, which entries
    are off -- that never contains ``expected``.

    >>> w = torch.tensor(3.0, requires_grad=True)
    >>> (w * w).backward()
    >>> check_value("dw", 6.0, w.grad)
    ✅ dw is right.
    """
    __tracebackhide__ = True
    got = _answer_tensor(name, answer)
    want = _expected_tensor(expected)

    if isinstance(answer, torch.Tensor) and isinstance(expected, torch.Tensor):
        if _kind(got) != _kind(want):
            _fail(f"`{name}` has dtype {got.dtype}; expected a {_kind(want)} tensor.")
    elif (_kind(got) == "boolean") != (_kind(want) == "boolean"):
        _fail(f"`{name}` should be {'a boolean' if _kind(want) == 'boolean' else 'a number'}, "
              f"not {type(answer).__name__}.")

    if got.shape != want.shape:
        if got.numel() == want.numel() == 1:
            got = got.reshape(want.shape)  # 5.0 and tensor([5.0]) are the same answer
        else:
            _fail(f"`{name}` has shape {_shape(got)}; expected shape {_shape(want)}.")

    got, want = got.to(torch.float64), want.to(torch.float64)
    if torch.isnan(got).any() and not torch.isnan(want).any():
        _fail(f"`{name}` contains NaN.")
    close = torch.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    if bool(close.all()):
        print(f"✅ {name} is right.")
        return

    if want.numel() == 1:
        g, w = got.item(), want.item()
        if abs(g + w) <= atol + rtol * abs(w):
            _fail(f"`{name}` has the wrong sign.")
        direction = "too large" if g > w else "too small"
        by = f" (by {_band(abs(g - w) / abs(w))})" if w != 0 else ""
        _fail(f"`{name}` is {direction}{by}.")

    bad = (~close).nonzero().tolist()
    where = ", ".join(str(tuple(i)) if len(i) > 1 else str(i[0]) for i in bad[:3])
    more = ", ..." if len(bad) > 3 else ""
    rel = _relative_error(got, want)
    size = f"; the largest error is {_band(rel)} of the largest expected entry" if rel else ""
    _fail(f"`{name}` is off in {len(bad)} of {want.numel()} entries (at {where}{more}){size}.")


# ---------------------------------------------------------------- check_equal

def check_equal(name, answer, expected):
    """Check a discrete answer: a count, a boolean, a string, a list or a set.

    Fails with "not quite" and a hint (too large, how many items differ, right
    items in the wrong order) that never contains ``expected``. A set as
    ``expected`` means order does not matter. For numbers with decimals or
    tensors, use ``check_value``.

    >>> x = torch.ones(2, requires_grad=True)
    >>> y = x * 2
    >>> check_equal("is_leaf", [True, False], [x.is_leaf, y.is_leaf])
    ✅ is_leaf is right.
    """
    __tracebackhide__ = True
    if isinstance(expected, torch.Tensor):
        raise TypeError("check_equal is for discrete answers; use check_value for tensors.")
    if answer is None and expected is not None:
        _not_done(name)

    if isinstance(expected, (set, frozenset)) and isinstance(answer, (list, tuple, set, frozenset)):
        answer = set(answer)
    if isinstance(expected, tuple):
        expected = list(expected)
    if isinstance(answer, tuple):
        answer = list(answer)
    if isinstance(answer, torch.Tensor) and answer.numel() == 1 and isinstance(expected, numbers.Number):
        answer = answer.item()  # a count computed with torch, e.g. (x > 0).sum()
    want_kind, got_kind = _discrete_kind(expected), _discrete_kind(answer)
    if got_kind != want_kind:
        _fail(f"`{name}` should be {want_kind}, not {type(answer).__name__}.")
    if answer == expected:
        print(f"✅ {name} is right.")
        return

    if want_kind == "an integer":
        _fail(f"`{name}` is not quite right: it is too {'large' if answer > expected else 'small'}.")
    if want_kind == "a string":
        if answer.strip().lower() == expected.strip().lower():
            _fail(f"`{name}` is almost right: check upper/lower case and spaces.")
        _fail(f"`{name}` is not quite right.")
    if want_kind == "a set":
        missing, extra = len(expected - answer), len(answer - expected)
        parts = [f"{_items(missing)} {'is' if missing == 1 else 'are'} missing",
                 f"{_items(extra)} should not be there"]
        _fail(f"`{name}` is not quite right: " + " and ".join(p for p in parts if p[0] != "0") + ".")
    if want_kind == "a list":
        if len(answer) != len(expected):
            # Only the direction: the expected length can itself be the answer.
            _fail(f"`{name}` has too {'many' if len(answer) > len(expected) else 'few'} items.")
        if sorted(map(repr, answer)) == sorted(map(repr, expected)):
            _fail(f"`{name}` has the right items in the wrong order.")
        wrong = sum(a != e for a, e in zip(answer, expected))
        _fail(f"`{name}` is not quite right: {wrong} of {len(expected)} items "
              f"{'is' if wrong == 1 else 'are'} wrong.")
    if want_kind == "a dict":
        wrong = len(set(answer) ^ set(expected)) + sum(
            answer[k] != expected[k] for k in set(answer) & set(expected))
        _fail(f"`{name}` is not quite right: {_items(wrong)} {'differs' if wrong == 1 else 'differ'}.")
    _fail(f"`{name}` is not quite right.")


# ------------------------------------------------------------- check_function

def check_function(fn, *inputs, reference=None, second_order=False, rtol=None, atol=None):
    """Check a function or custom ``torch.autograd.Function``: forward and backward.

    ``fn`` is called on fresh float64 copies of ``inputs``; the inputs with
    ``requires_grad=True`` are the ones whose gradients are checked (other
    arguments are passed through unchanged).

    - With ``reference`` (a plain function built from PyTorch operations), the
      forward values and the gradients are compared with what PyTorch's
      autograd computes through the reference.
    - Without it, the backward is compared with the numerical gradient of
      ``fn``'s own forward (finite differences, as ``torch.autograd.gradcheck``
      does); keep the inputs small, a few dozen numbers at most.

    ``second_order=True`` also checks the gradient of the gradient (for
    ``create_graph=True`` and double backward). The backward pass is fed a
    fixed random upstream gradient, not ones, so a backward that ignores its
    ``grad_output`` fails. Messages say which input's gradient is off and by
    how much, never the expected values.

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
    name, call, arg_names = _learner_callable(fn, len(inputs))
    diff = [i for i, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
    if not diff:
        raise ValueError("check_function needs at least one input with requires_grad=True, "
                         "e.g. torch.randn(3, requires_grad=True).")
    numerical = reference is None
    if rtol is None:
        rtol = 1e-3 if numerical else 1e-4
    if atol is None:
        atol = 1e-5 if numerical else 1e-6
    forward, backward = _phase_names(fn, name)

    xs = _fresh(inputs)
    outs = _outputs(name, _run(forward, lambda: call(*xs), fn))
    if not numerical:
        ref_xs = _fresh(inputs)
        ref_call = reference.apply if _is_function_class(reference) else reference
        ref_outs = _outputs("reference", ref_call(*ref_xs))
        _compare_forward(name, outs, ref_outs, rtol, atol)

    # First order: vector-Jacobian products with a fixed random upstream gradient.
    vs = _random_like(outs, seed=0)
    got = _run(backward, lambda: _vjp(outs, vs, [xs[i] for i in diff], create_graph=second_order), fn)
    if numerical:
        want = _numerical_grads(lambda a: _probe(_outputs(name, call(*a)), vs), xs, diff, forward)
    else:
        want = _vjp(ref_outs, vs, [ref_xs[i] for i in diff], create_graph=second_order)
    against = " (compared with the numerical gradient of its forward)" if numerical else ""
    _compare_grads(name, "gradient", [arg_names[i] for i in diff], got, want, rtol, atol, against)

    if second_order:
        # Second order: the gradient of (first-order gradients . u) for a fixed random u.
        us = _random_like([xs[i] for i in diff], seed=1)
        double = f"differentiating {backward} again"
        got2 = _run(double, lambda: _vjp([_dot(got, us)], [None], [xs[i] for i in diff]))
        if numerical:
            def first_order_probe(a):
                outs_a = _outputs(name, call(*a))
                return _dot(_vjp(outs_a, vs, [a[i] for i in diff]), us)
            want2 = _numerical_grads(first_order_probe, xs, diff, backward)
        else:
            want2 = _vjp([_dot(want, us)], [None], [ref_xs[i] for i in diff])
        against = " (compared with the numerical gradient of its backward)" if numerical else ""
        _compare_grads(name, "second-order gradient", [arg_names[i] for i in diff],
                       got2, want2, rtol, atol, against)

    checked = "backward (first and second order)" if second_order else "backward"
    if numerical:
        print(f"✅ {name}: {checked} matches the numerical gradient of its forward.")
    else:
        print(f"✅ {name}: forward and {checked} match the reference.")


# ------------------------------------------------------------------ internals

def _fail(message):
    __tracebackhide__ = True
    raise CheckFailed(message) from None


def _not_done(name, could_be_a_gradient=False):
    __tracebackhide__ = True
    if could_be_a_gradient:
        _fail(f"`{name}` is None: either it is not written yet (see the exercise cell above), or it "
              f"is a gradient that never arrived (did backward() run, and does the tensor require grad?).")
    _fail(f"`{name}` is still None: not written yet -- write your answer in the exercise cell above.")


def _answer_tensor(name, answer):
    """The learner's answer as a tensor, or a clear AssertionError."""
    __tracebackhide__ = True
    if answer is None:
        _not_done(name, could_be_a_gradient=True)
    if isinstance(answer, torch.Tensor):
        return answer.detach().cpu()
    if isinstance(answer, (str, bytes, dict, set)):
        _fail(f"`{name}` should be a number or a tensor, not {type(answer).__name__}.")
    try:
        return torch.as_tensor(answer).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        _fail(f"`{name}` should be a number or a tensor, not {type(answer).__name__}.")


def _expected_tensor(expected):
    try:
        return torch.as_tensor(expected).detach().cpu()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"check_value needs a number or tensor as `expected`, "
                        f"not {type(expected).__name__}; use check_equal for other answers.") from None


def _kind(t):
    if t.dtype == torch.bool:
        return "boolean"
    if t.dtype.is_complex:
        return "complex"
    return "floating-point" if t.dtype.is_floating_point else "integer"


def _discrete_kind(value):
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Integral):
        return "an integer"
    kinds = {str: "a string", list: "a list", tuple: "a list", set: "a set",
             frozenset: "a set", dict: "a dict"}
    for cls, kind in kinds.items():
        if isinstance(value, cls):
            return kind
    return f"a {type(value).__name__}"


def _shape(t):
    return tuple(t.shape)


def _band(fraction):
    """How far off, in coarse bands: an exact percentage would give the answer away
    (a learner who knows their value, the direction and the % can solve for it)."""
    if fraction < 0.01:
        return "less than 1%"
    if fraction < 0.1:
        return "less than 10%"
    return "more than 10%" if fraction < 1 else "more than 100%"


def _relative_error(got, want):
    """Max abs error as a fraction of the largest expected entry (None if that is 0)."""
    scale = want.abs().max().item()
    return (got - want).abs().max().item() / scale if scale > 0 else None


def _items(n):
    return "1 item" if n == 1 else f"{n} items"


def _is_function_class(fn):
    return inspect.isclass(fn) and issubclass(fn, torch.autograd.Function)


def _learner_callable(fn, n_inputs):
    """(name, callable, argument names) for a learner's function or Function class."""
    __tracebackhide__ = True
    if fn is None:
        _fail("The function to check is still None: not implemented yet.")
    name = getattr(fn, "__name__", type(fn).__name__)
    if _is_function_class(fn):
        call, signature_of = fn.apply, fn.forward
    elif callable(fn):
        call, signature_of = fn, fn
    else:
        _fail(f"`{name}` should be a function or a torch.autograd.Function subclass, "
              f"not {type(fn).__name__}.")
    names = [f"input {i}" for i in range(n_inputs)]
    try:
        params = [p.name for p in inspect.signature(signature_of).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return name, call, names
    if _is_function_class(fn) and len(params) == n_inputs + 1:
        params = params[1:]  # forward(ctx, ...)
    if len(params) >= n_inputs:
        names = params[:n_inputs]
    return name, call, names


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


def _run(where, thunk, fn=None):
    """Run learner code; turn its exceptions into one-sentence feedback."""
    __tracebackhide__ = True
    try:
        return thunk()
    except (AssertionError, KeyboardInterrupt):
        raise
    except Exception as error:  # the learner's code may raise anything
        where = _learner_method(error, fn) or where
        _fail(_feedback(where, error))


def _feedback(where, error):
    if isinstance(error, NotImplementedError):
        if not str(error):
            return f"{where} is not implemented yet: replace `raise NotImplementedError()` with your code."
    return f"{where} raised {type(error).__name__}: {_first_line(error)}"


def _first_line(error):
    lines = str(error).strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= 200 else line[:197] + "..."


def _fresh(inputs):
    """Float64 leaf copies of the tensor inputs; the learner's tensors stay untouched."""
    copies = []
    for x in inputs:
        if isinstance(x, torch.Tensor):
            wants_grad = x.requires_grad
            x = x.detach().clone()
            if x.is_floating_point():
                x = x.to(torch.float64).requires_grad_(wants_grad)
        copies.append(x)
    return copies


def _outputs(name, out):
    __tracebackhide__ = True
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if not outs or not all(isinstance(o, torch.Tensor) for o in outs):
        _fail(f"{name} should return a tensor (or a tuple of tensors), "
              f"not {type(out).__name__}.")
    return list(outs)


def _random_like(tensors, seed):
    """Fixed random tensors shaped like the floating-point ones (None elsewhere)."""
    generator = torch.Generator().manual_seed(seed)  # leaves the global RNG alone
    return [torch.randn(t.shape, generator=generator, dtype=torch.float64)
            if t.is_floating_point() else None for t in tensors]


def _probe(outs, vs):
    """The scalar sum(out * v) whose gradient is the vector-Jacobian product."""
    return sum(((o.to(torch.float64) * v).sum() for o, v in zip(outs, vs) if v is not None),
               torch.zeros((), dtype=torch.float64))


def _dot(grads, us):
    return sum(((g * u).sum() for g, u in zip(grads, us) if g is not None),
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


def _numerical_grads(scalar_fn, xs, diff, where, eps=1e-6):
    """Central differences of scalar_fn(xs) w.r.t. each input in diff."""
    __tracebackhide__ = True
    grads = []
    for i in diff:
        grad = torch.zeros_like(xs[i], dtype=torch.float64)
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
        _fail(f"{name} returns {len(outs)} tensor(s); expected {len(ref_outs)}.")
    for k, (o, r) in enumerate(zip(outs, ref_outs)):
        which = f"{name}'s output {k}" if len(outs) > 1 else f"{name}'s output"
        if o.shape != r.shape:
            _fail(f"{which} has shape {_shape(o)}; expected shape {_shape(r)}.")
        o, r = o.detach().to(torch.float64), r.detach().to(torch.float64)
        close = torch.isclose(o, r, rtol=rtol, atol=atol, equal_nan=True)
        if not bool(close.all()):
            _fail(f"{which} is off in {int((~close).sum())} of {r.numel()} entries "
                  f"(max abs error {(o - r).abs().max().item():.2g}).")


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
        w = torch.zeros_like(g, dtype=torch.float64) if w is None else w.detach()
        g = g.detach().to(torch.float64)
        if g.shape != w.shape:
            problems.append(f"the {what} for `{arg}` has shape {_shape(g)}, not {_shape(w)}")
            continue
        if bool(torch.isclose(g, w, rtol=rtol, atol=atol).all()):
            continue
        if bool(torch.isclose(g, -w, rtol=rtol, atol=atol).all()):
            problems.append(f"the {what} for `{arg}` has the wrong sign")
            continue
        err, rel = (g - w).abs().max().item(), _relative_error(g, w)
        size = f" ({_band(rel)} of its largest entry)" if rel else ""
        problems.append(f"the {what} for `{arg}` is off by up to {err:.2g}{size}")
    if problems:
        _fail(f"{name}: " + "; ".join(problems) + f"{compared_with}.")
