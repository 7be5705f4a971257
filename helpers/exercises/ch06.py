"""Checks for chapter 06's exercises (custom autograd Functions).

Expected values are computed inside each function, from PyTorch's own operations
(``torch.topk``, ``F.softplus``, autograd through plain formulas); nothing here
is a Function a learner could copy.
"""
import torch
import torch.nn.functional as F

from .. import checks
from ..exercises import exercise


def _function_class(name, value):
    """Fail unless ``value`` is a torch.autograd.Function subclass."""
    if not (isinstance(value, type) and issubclass(value, torch.autograd.Function)):
        kind = "a class" if isinstance(value, type) else f"a {type(value).__name__}"
        checks.fail(f"`{name}` should be a torch.autograd.Function subclass (the class itself), "
                    f"not {kind}.")


def _no_tensor_attributes(name, out):
    """Fail if the Node behind ``out`` (the ctx) keeps a tensor as a plain attribute: the
    chapter's rule (section 3.3) is that tensors go through ctx.save_for_backward."""
    node = getattr(out[0] if isinstance(out, (tuple, list)) and out else out, "grad_fn", None)
    for attr, value in getattr(node, "__dict__", {}).items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(item, torch.Tensor) for item in items):
            checks.fail(f"{name} keeps a tensor as a plain ctx attribute (`ctx.{attr}`): tensors go "
                        f"through ctx.save_for_backward (or its forward-mode twin, section 3.8), "
                        f"which checks them for in-place changes (section 3.3).")


def _uniform(gen, shape, low, high, dtype=torch.float32):
    return (low + (high - low) * torch.rand(shape, generator=gen, dtype=torch.float64)).to(dtype)


def _run(where, thunk, Function):
    """Run ``thunk`` (which calls into the learner's ``Function``) under the checks' time
    limit; an error becomes one line naming the learner's method and line."""
    __tracebackhide__ = True
    return checks._run(where, thunk, Function)


# ------------------------------------------------------------------ exercise 1

@exercise("06_ex1")
def ex1(Reciprocal, *, graded=False):
    _function_class("Reciprocal", Reciprocal)
    gen = torch.Generator().manual_seed(61)
    sign = torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0, -1.0])
    x = (sign * _uniform(gen, 6, 0.5, 2.0)).requires_grad_()      # float32, away from 0
    checks.check_function(Reciprocal, x, reference=lambda t: 1 / t)
    _no_tensor_attributes("Reciprocal", _run("Reciprocal.apply", lambda: Reciprocal.apply(x), Reciprocal))
    if graded:
        x2 = _uniform(gen, (2, 3), 0.3, 3.0, torch.float64).requires_grad_()
        checks.check_function(Reciprocal, x2, reference=lambda t: 1 / t)


# ------------------------------------------------------------------ exercise 2

@exercise("06_ex2")
def ex2(SiLU, *, graded=False):
    _function_class("SiLU", SiLU)
    gen = torch.Generator().manual_seed(62)
    x = (3 * torch.randn(7, generator=gen)).requires_grad_()
    checks.check_function(SiLU, x, reference=F.silu)
    if graded:
        x2 = torch.randn(3, 4, generator=gen, dtype=torch.float64).requires_grad_()
        checks.check_function(SiLU, x2, reference=F.silu)


# ------------------------------------------------------------------ exercise 3

def _affine(x, scale, shift=None):
    return x * scale if shift is None else x * scale + shift


@exercise("06_ex3")
def ex3(Affine, *, graded=False):
    _function_class("Affine", Affine)
    gen = torch.Generator().manual_seed(63)
    x, scale, shift = (torch.randn(shape, generator=gen) for shape in ((4, 3), (3,), (3,)))
    grad = lambda t: t.clone().requires_grad_()  # noqa: E731

    # What backward itself returns, before the engine sums or drops anything: call the Node.
    cases = [(grad(x), grad(scale), grad(shift)), (x, grad(scale), grad(shift)),
             (grad(x), scale, grad(shift)), (grad(x), grad(scale), None),
             (grad(x), grad(scale), shift)]                 # given, but needs no gradient
    if graded:
        cases.append((x.double(), scale.double(), grad(shift.double())))
    names = ("x", "scale", "shift")
    for inputs in cases:
        out = _run("Affine.apply", lambda: Affine.apply(*inputs), Affine)
        if not isinstance(out, torch.Tensor) or out.grad_fn is None:
            checks.fail("`Affine.apply(x, scale, shift)` should return one tensor connected to the "
                        "graph (a tensor with a grad_fn).")
        returned = _run("Affine.backward", lambda: out.grad_fn.apply(torch.ones_like(out)), Affine)
        returned = returned if isinstance(returned, tuple) else (returned,)
        needs = out.grad_fn.needs_input_grad
        for name, given, needed, g in zip(names, inputs, needs, returned):
            if not needed and g is not None:
                why = "is None" if given is None else "does not require grad"
                checks.fail(f"Affine.backward returns a gradient for `{name}` when `{name}` {why} "
                            f"(needs_input_grad is False there): return None, and skip the work.")
            if needed and g is None:
                checks.fail(f"Affine.backward returns None for `{name}`, which needs a gradient.")
            if g is not None and tuple(g.shape) != tuple(given.shape):
                checks.fail(f"Affine.backward returns a gradient of shape {tuple(g.shape)} for "
                            f"`{name}`, whose shape is {tuple(given.shape)}: reduce it to the shape "
                            f"of `{name}` over the rows it was broadcast over.")
    checks.check_function(Affine, grad(x), grad(scale), grad(shift), reference=_affine)
    checks.check_function(Affine, grad(x), grad(scale), None, reference=_affine)


# ------------------------------------------------------------------ exercise 4

def _topk_reference(x, k):
    chosen = torch.topk(x, k).indices
    return torch.topk(x, k).values, torch.zeros_like(x).scatter(0, chosen, 1.0)


@exercise("06_ex4")
def ex4(TopKMask, *, graded=False):
    _function_class("TopKMask", TopKMask)
    gen = torch.Generator().manual_seed(64)
    cases = [(torch.randperm(7, generator=gen).float() - 3.5, 3),          # distinct values
             ((torch.randperm(6, generator=gen) * 0.3 - 0.8).double(), 2)]  # float64: x's dtype
    if graded:
        cases.append(((torch.randperm(5, generator=gen) * 0.7 - 1.0).double(), 1))
    for x0, k in cases:
        x = x0.clone().requires_grad_()
        out = _run(f"TopKMask.apply(x, {k})", lambda: TopKMask.apply(x, k), TopKMask)
        if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(o, torch.Tensor) for o in out)):
            checks.fail("TopKMask.forward should return two tensors: (values, mask).")
        values, mask = out
        want_values, want_mask = _topk_reference(x0, k)
        checks.check_value(f"values (k={k})", values.detach(), want_values)
        if tuple(mask.shape) != tuple(x0.shape):
            checks.fail(f"`mask` has shape {tuple(mask.shape)}; it should be shaped like x, "
                        f"{tuple(x0.shape)}.")
        if mask.dtype != x0.dtype:
            checks.fail(f"`mask` has dtype {mask.dtype}; it should be a float tensor with x's dtype "
                        f"({x0.dtype}), not a bool or integer one.")
        checks.check_value(f"mask (k={k})", mask.detach(), want_mask)
        if mask.requires_grad:
            checks.fail("`mask` requires grad, so autograd treats it as differentiable: mark it "
                        "with ctx.mark_non_differentiable in forward.")
        if not values.requires_grad:
            checks.fail("`values` does not require grad: only the mask is non-differentiable.")
        checks.check_function(TopKMask, x0.clone().requires_grad_(), k, reference=_topk_reference)
        _no_tensor_attributes("TopKMask", out)


# ------------------------------------------------------------------ exercise 5

def _softplus_derivatives(x):
    """softplus'(x) and softplus''(x), by autograd through F.softplus (float64)."""
    x = x.detach().double().requires_grad_()
    first, = torch.autograd.grad(F.softplus(x).sum(), x, create_graph=True)
    second, = torch.autograd.grad(first.sum(), x)
    return first.detach(), second


@exercise("06_ex5")
def ex5(Softplus, *, graded=False):
    _function_class("Softplus", Softplus)
    gen = torch.Generator().manual_seed(65)
    x = (2 * torch.randn(5, generator=gen)).requires_grad_()
    checks.check_function(Softplus, x, reference=F.softplus, second_order=True)
    _no_tensor_attributes("Softplus", _run("Softplus.apply", lambda: Softplus.apply(x), Softplus))

    from torch.func import grad, hessian, jacfwd, vmap
    import torch.autograd.forward_ad as fwAD

    row = x.detach()
    first, second = _softplus_derivatives(row)
    jac = _run("torch.func.jacfwd over Softplus", lambda: jacfwd(Softplus.apply)(row), Softplus)
    checks.check_value("the Jacobian torch.func.jacfwd builds with Softplus.jvp", jac,
                       torch.diag(first).float())
    hess = _run("torch.func.hessian over Softplus",
                lambda: hessian(lambda t: Softplus.apply(t).sum())(row), Softplus)
    checks.check_value("the Hessian torch.func.hessian computes through Softplus", hess,
                       torch.diag(second).float())

    batch = torch.randn(4, 3, generator=gen)
    batched = _run("torch.func.vmap(grad(...)) over Softplus",
                   lambda: vmap(grad(lambda r: Softplus.apply(r).sum()))(batch), Softplus)
    checks.check_value("vmap(grad(sum of Softplus)) on a batch of rows", batched,
                       _softplus_derivatives(batch)[0].float())

    tangent = torch.randn(5, generator=gen)

    def forward_mode():
        with fwAD.dual_level():
            out = Softplus.apply(fwAD.make_dual(row, tangent))
            return fwAD.unpack_dual(out).tangent

    pushed = _run("forward_ad through Softplus", forward_mode, Softplus)
    if pushed is None:
        checks.fail("Through torch.autograd.forward_ad, Softplus's output has no tangent: "
                    "does jvp return one?")
    checks.check_value("the tangent forward_ad pushes through Softplus", pushed,
                       (first * tangent).float())
    if graded:
        x64 = torch.randn(2, 3, generator=gen, dtype=torch.float64)
        jac64 = _run("torch.func.jacfwd over Softplus", lambda: jacfwd(Softplus.apply)(x64), Softplus)
        checks.check_value("the Jacobian torch.func.jacfwd builds (a float64 2x3 input)", jac64,
                           _jacobian_of_elementwise(_softplus_derivatives(x64)[0]))


def _jacobian_of_elementwise(derivative):
    """The Jacobian of an elementwise function with the given derivative, shape (*s, *s)."""
    n = derivative.numel()
    return torch.diag(derivative.reshape(n)).reshape(*derivative.shape, *derivative.shape)
