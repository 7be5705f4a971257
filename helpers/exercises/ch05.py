"""Checks for chapter 05's exercises (higher-order gradients, forward mode).

Expected values are computed inside each function from closed forms (derivatives,
Hessian-vector products and Jacobians worked out by hand) or, for the penalty, with a
loop over samples of first-order ``torch.autograd.grad`` calls. Nothing here uses
``torch.func``, so no check holds a one-liner that solves its exercise.
"""
import math

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn

from .. import checks
from ..exercises import exercise


def _is_func_transformed(t):
    """True if ``t`` is a tensor wrapped by a torch.func transform (grad, vmap, jvp, jacfwd, ...)."""
    return isinstance(t, torch.Tensor) and torch._C._functorch.is_functorch_wrapped_tensor(t)


def _scalar_answer(what, value):
    """The learner's answer as a 0-dim tensor, or one line saying what it is instead."""
    if value is None:
        checks.fail(f"`{what}` returned None: return the result as a tensor.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    if not isinstance(value, torch.Tensor):
        checks.fail(f"`{what}` should return a 0-dim tensor, not {checks._a(value)}.")
    if value.numel() != 1:
        checks.fail(f"`{what}` should return one number (a 0-dim tensor), not a tensor of shape "
                    f"{tuple(value.shape)}.")
    return value.detach().reshape(())


def _at_points(fn_name, learner, f, label, points, dtype):
    """The learner's answers at each point, stacked (each call under the time limit)."""
    answers = []
    for p in points:
        what = f"{fn_name}(f, x) for f(x) = {label} at x = {p:g}"
        x = torch.tensor(p, dtype=dtype)
        out = checks.call(learner, f, x, what=what)
        if not torch.equal(x, torch.tensor(p, dtype=dtype)) or x.requires_grad:
            checks.fail(f"`{fn_name}` changed the caller's x: work on a detached copy.")
        answers.append(_scalar_answer(what, out).to(torch.float64))
    return torch.stack(answers)


# ------------------------------------------------------------------ exercise 1

@exercise("05_ex1")
def ex1(third_derivative, *, graded=False):
    # f and its third derivative, worked out by hand.
    cases = [("sin(x)", torch.sin, lambda t: -torch.cos(t)),
             ("x**5", lambda t: t ** 5, lambda t: 60 * t ** 2),
             ("x * exp(-x)", lambda t: t * torch.exp(-t), lambda t: (3 - t) * torch.exp(-t))]
    if graded:
        cases += [("cos(2x)", lambda t: torch.cos(2 * t), lambda t: 8 * torch.sin(2 * t)),
                  ("2x**3", lambda t: 2 * t ** 3, lambda t: 12 + 0 * t)]
    points = [-1.0, 0.5, 2.0]
    for dtype in (torch.float64, torch.float32):
        for label, f, d3 in cases:
            got = _at_points("third_derivative", third_derivative, f, label, points, dtype)
            want = d3(torch.tensor(points, dtype=torch.float64))
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                checks.check_value(f"third_derivative(f, x) for f(x) = {label} at x = -1, 0.5, 2 "
                                   f"({str(dtype).removeprefix('torch.')})", got, want)
    checks._passed("✅ third_derivative is right (float64 and float32).")


# ------------------------------------------------------------------ exercise 2

def _least_squares(dtype, gen):
    """A loss in (W, b, s), linear in s, and its Hessian-vector product by hand."""
    X, Y = torch.randn(6, 3, generator=gen, dtype=dtype), torch.randn(6, 2, generator=gen, dtype=dtype)
    params = [torch.randn(3, 2, generator=gen, dtype=dtype), torch.randn(2, generator=gen, dtype=dtype),
              torch.tensor(0.5, dtype=dtype)]
    vectors = [torch.randn(3, 2, generator=gen, dtype=dtype), torch.randn(2, generator=gen, dtype=dtype),
               torch.tensor(1.0, dtype=dtype)]

    def loss(W, b, s):
        return ((X @ W + b - Y) ** 2).mean() + 0.1 * s

    N = Y.numel()
    R = X @ vectors[0] + vectors[1]            # the residual's change along v
    hv = [2 / N * X.T @ R, 2 / N * R.sum(0), torch.zeros((), dtype=dtype)]
    return "((X @ W + b - Y) ** 2).mean() + 0.1 * s", ["W", "b", "s"], loss, params, vectors, hv


def _quartic(dtype, gen):
    """A loss in (w, s), linear in s, with a Hessian-vector product by hand."""
    a = torch.tensor([0.5, -1.0, 2.0, 0.3], dtype=dtype)
    params = [0.5 * torch.randn(4, generator=gen, dtype=dtype), torch.randn(3, generator=gen, dtype=dtype)]
    vectors = [torch.randn(4, generator=gen, dtype=dtype), torch.randn(3, generator=gen, dtype=dtype)]

    def loss(w, s):
        return torch.exp(a * w).sum() + (w @ w) ** 2 + 3.0 * s.sum()

    w, v = params[0], vectors[0]
    hv = [a ** 2 * torch.exp(a * w) * v + 4 * (w @ w) * v + 8 * w * (w @ v), torch.zeros(3, dtype=dtype)]
    return "sum(exp(a * w)) + (w · w)² + 3 * sum(s)", ["w", "s"], loss, params, vectors, hv


@exercise("05_ex2")
def ex2(hvp_params, *, graded=False):
    gen = torch.Generator().manual_seed(52)
    cases = [_least_squares(torch.float64, gen), _quartic(torch.float64, gen)]
    if graded:
        cases += [_least_squares(torch.float32, gen), _quartic(torch.float32, gen)]
    for label, names, loss, params, vectors, want in cases:
        calls, transformed = [0], []

        def watched(*ps):
            calls[0] += 1
            transformed.append(any(_is_func_transformed(p) for p in ps))
            return loss(*ps)

        params = [p.clone().requires_grad_() for p in params]
        what = f"hvp_params(loss_fn, params, vectors) for loss = {label}"
        got = checks.call(hvp_params, watched, params, vectors, what=what)
        if any(transformed):
            checks.fail(f"`{what}` differentiates with torch.func: use torch.autograd.grad, twice.")
        if calls[0] != 1:
            checks.fail(f"`{what}` calls loss_fn {calls[0]} times: a Hessian-vector product by double "
                        f"backward needs one forward.")
        if not isinstance(got, (list, tuple)):
            checks.fail(f"`{what}` should return a list of tensors, one per parameter, not {checks._a(got)}.")
        if len(got) != len(params):
            checks.fail(f"`{what}` returns {len(got)} tensors for {len(params)} parameters.")
        for i, (name, g, w) in enumerate(zip(names, got, want)):
            if g is None:
                checks.fail(f"`{what}` returns None for `{name}`: return zeros for a parameter the "
                            f"gradient does not depend on.")
            if not (isinstance(g, torch.Tensor) and g.shape == w.shape
                    and torch.allclose(g.to(w.dtype), w, rtol=1e-4, atol=1e-6)):
                checks.check_value(f"hvp_params(...)[{i}], the part for {name}, for loss = {label}", g, w)
    checks._passed("✅ hvp_params is right, zeros for the linear parameters included.")


# ------------------------------------------------------------------ exercise 3

def _jacobian_cases(dtype):
    def polar_to_xy(p):                               # (r, θ) → (x, y)
        return torch.stack([p[0] * torch.cos(p[1]), p[0] * torch.sin(p[1])])

    def polar_J(p):
        r, t = p.tolist()
        return torch.tensor([[math.cos(t), -r * math.sin(t)], [math.sin(t), r * math.cos(t)]], dtype=dtype)

    def three_to_four(t):
        return torch.stack([t[0] * t[1], t[1] ** 3, torch.exp(t[2]) * t[0], t.sum()])

    def three_to_four_J(t):
        a, b, c = t.tolist()
        return torch.tensor([[b, a, 0], [0, 3 * b * b, 0], [math.exp(c), 0, a * math.exp(c)], [1, 1, 1]],
                            dtype=dtype)

    return [("polar_to_xy", polar_to_xy, polar_J, torch.tensor([2.0, 0.7], dtype=dtype)),
            ("three_to_four", three_to_four, three_to_four_J, torch.tensor([0.3, -1.2, 0.5], dtype=dtype))]


@exercise("05_ex3")
def ex3(jacobian_forward, *, graded=False):
    cases = _jacobian_cases(torch.float64)
    if graded:
        cases += _jacobian_cases(torch.float32)
    for name, f, J, x in cases:
        tangents, transformed = [], []

        def watched(t, f=f):
            transformed.append(_is_func_transformed(t))
            tangents.append(fwAD.unpack_dual(t).tangent is not None)
            return f(t)

        what = f"jacobian_forward({name}, x)"
        got = checks.call(jacobian_forward, watched, x.clone(), what=what)
        if any(transformed):
            checks.fail(f"`{what}` uses torch.func: build the columns with torch.autograd.forward_ad.")
        if not any(tangents):
            checks.fail(f"`{what}` never passes f a dual number (a tensor with a tangent): build each "
                        f"column in forward mode, with torch.autograd.forward_ad.")
        if sum(tangents) != len(x):
            checks.fail(f"`{what}` runs f in forward mode {sum(tangents)} times for an input of "
                        f"{len(x)} numbers: one pass per input gives one column each.")
        want = J(x)
        if isinstance(got, (list, tuple)):
            checks.fail(f"`{what}` returns {checks._a(got)} of columns: return one 2-D tensor, "
                        f"the columns stacked side by side.")
        if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape == want.T.shape \
                and torch.allclose(got.T.to(want.dtype), want, rtol=1e-4, atol=1e-6) \
                and not torch.allclose(want, want.T):
            checks.fail(f"`{what}` holds the Jacobian's transpose: row i should be output i "
                        f"(stack the columns side by side).")
        if not (isinstance(got, torch.Tensor) and got.shape == want.shape
                and torch.allclose(got.to(want.dtype), want, rtol=1e-4, atol=1e-6)):
            checks.check_value(what, got, want)
    checks._passed("✅ jacobian_forward is right, one forward-mode pass per column.")


# ------------------------------------------------------------------ exercise 4

def _penalty_by_loop(model, x, labels):
    """mean_i |d loss_i / d x_i|², one sample at a time (first-order grads, with a graph)."""
    total = 0
    for i in range(len(x)):
        xi = x[i:i + 1].detach().requires_grad_(True)
        loss_i = nn.functional.cross_entropy(model(xi), labels[i:i + 1])
        g, = torch.autograd.grad(loss_i, xi, create_graph=True)
        total = total + g.pow(2).sum()
    return total / len(x)


@exercise("05_ex4")
def ex4(input_gradient_penalty, *, graded=False):
    with torch.random.fork_rng(devices=[]):        # the learner's random numbers stay as they were
        torch.manual_seed(54)
        cases = [(nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)), torch.randn(6, 4),
                  torch.randint(0, 3, (6,)))]
        if graded:
            cases.append((nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).double(),
                          torch.randn(5, 3, dtype=torch.float64), torch.randint(0, 4, (5,))))
    for model, x, labels in cases:
        what = "input_gradient_penalty(model, x, labels)"
        x_before = x.clone()
        got = checks.call(input_gradient_penalty, model, x, labels, what=what)
        if x.requires_grad or not torch.equal(x, x_before):
            checks.fail(f"`{what}` changed the caller's x: work on a detached copy.")
        value = _scalar_answer(what, got)
        want = _penalty_by_loop(model, x, labels)
        if not torch.allclose(value.to(want.dtype), want.detach(), rtol=1e-4, atol=1e-7):
            checks.check_value(what, value, want.detach())
        if not isinstance(got, torch.Tensor):
            checks.fail(f"`{what}` returns {checks._a(got)}: return the 0-dim tensor itself, so that "
                        f"an optimizer can differentiate it with respect to the weights.")
        if got.grad_fn is None:
            checks.fail(f"the penalty `{what}` returns has no graph: an optimizer could not "
                        f"differentiate it with respect to the weights.")
        params = list(model.named_parameters())
        grads = checks.call(lambda: torch.autograd.grad(got.sum(), [p for _, p in params],
                                                        materialize_grads=True),
                            what=f"differentiating {what} with respect to the weights")
        wants = torch.autograd.grad(want, [p for _, p in params], materialize_grads=True)
        for (name, _), g, w in zip(params, grads, wants):
            if not torch.allclose(g, w, rtol=1e-4, atol=1e-7):
                checks.check_value(f"d(penalty)/d({name})", g, w)
    checks._passed("✅ input_gradient_penalty: the right value, and the right gradients for the weights.")


# ------------------------------------------------------------------ exercise 5

@exercise("05_ex5")
def ex5(second_derivative, *, graded=False):
    cases = [("sin(x)", torch.sin, lambda t: -torch.sin(t)),
             ("x**3", lambda t: t ** 3, lambda t: 6 * t),
             ("3x + 1", lambda t: 3 * t + 1, lambda t: 0 * t),
             ("exp(x)", torch.exp, torch.exp),
             ("x", lambda t: t, lambda t: 0 * t)]
    if graded:
        cases += [("2x²", lambda t: 2 * t * t, lambda t: 4 + 0 * t), ("-x / 2", lambda t: -t / 2, lambda t: 0 * t)]
    points = [-1.0, 0.5, 2.0]
    for dtype in (torch.float64, torch.float32):
        for label, f, d2 in cases:
            got = _at_points("second_derivative", second_derivative, f, label, points, dtype)
            want = d2(torch.tensor(points, dtype=torch.float64))
            if not torch.allclose(got, want, rtol=1e-4, atol=1e-5):
                checks.check_value(f"second_derivative(f, x) for f(x) = {label} at x = -1, 0.5, 2 "
                                   f"({str(dtype).removeprefix('torch.')})", got, want)
    checks._passed("✅ second_derivative is right, constant first derivatives included.")
