"""Checks for chapter 08's exercises (debugging autograd). Expected values are
computed inside each function, from the graph or the engine itself."""
import warnings
from contextlib import contextmanager

import torch
from torch.utils.hooks import RemovableHandle

from .. import checks
from ..exercises import exercise

CAUSES = ("ok", "unused", "detached", "no_grad", "data")


def _a(value):
    """'a float', 'an int': how a message names the type of an answer."""
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _call(fn, *args, what):
    """checks.call, with the warnings the learner's code raises kept out of the one-line feedback."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return checks.call(fn, *args, what=what)


@contextmanager
def _hooks_registered():
    """The handles of every hook registered meanwhile (on a Node or a tensor): PyTorch makes
    each one a ``RemovableHandle``, and has no other way to list a Node's hooks."""
    made, original = [], RemovableHandle.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        made.append(self)
    RemovableHandle.__init__ = init
    try:
        yield made
    finally:
        RemovableHandle.__init__ = original


def _still_on(handle):
    hooks = handle.hooks_dict_ref()
    return hooks is not None and handle.id in hooks


@exercise("08_ex1")
def ex1(causes, relay):
    if not isinstance(causes, dict):
        checks.fail(f"`causes` should be a dict {{parameter name: cause}}, not {type(causes).__name__}.")
    names = [name for name, _ in relay.named_parameters()]
    for key, value in causes.items():
        if key not in names:
            checks.fail(f"`causes` has the key {key!r}, which is not a parameter name of `relay` "
                        f"(see relay.named_parameters()).")
        if value not in CAUSES:
            checks.fail(f"`causes[{key!r}]` should be one of {', '.join(map(repr, CAUSES))}, "
                        f"not {value!r}.")
    missing = [name for name in names if name not in causes]
    if missing:
        checks.fail(f"`causes` has no entry for {missing[0]!r}" +
                    (f" (and {len(missing) - 1} more)." if len(missing) > 1 else "."))
    # Which parameters the engine reaches, from a fresh forward pass of the learner's Relay
    # (with a generator of its own: the learner's random state stays as it was).
    from ..walk import walk
    loss = relay(torch.randn(3, 4, generator=torch.Generator().manual_seed(0)))
    reached = {id(leaf) for leaf in walk(loss).leaves}
    got_grad = {name for name, p in relay.named_parameters() if id(p) in reached}
    for name in names:
        said_ok = causes[name] == "ok"
        if said_ok != (name in got_grad):
            checks.fail(f"`causes[{name!r}]` is not right: "
                        + ("it gets no gradient." if said_ok else "it does get a gradient."))
    # Among those with no gradient, the cause; from the source the learner was given.
    expected = {"skip.weight": "no_grad", "skip.bias": "no_grad", "norm.weight": "unused",
                "norm.bias": "unused", "scale": "data", "bias": "detached"}
    for name in names:
        if name in expected and causes[name] != expected[name]:
            checks.fail(f"`causes[{name!r}]` is not the reason its .grad stays None: read where "
                        f"`{name.split('.')[0]}` is used in forward.")


def _rescale_values(x):
    """The values of the chapter's `rescale`, computed without autograd."""
    with torch.no_grad():
        y = x.exp()
        y /= y.sum()
        y -= 0.5
        return y * x


@exercise("08_ex2")
def ex2(rescale_fixed):
    gen = torch.Generator().manual_seed(8)
    for dtype in (torch.float64, torch.float32):
        x = torch.randn(5, generator=gen, dtype=dtype, requires_grad=True)
        out = _call(rescale_fixed, x.detach().clone().requires_grad_(),
                    what=f"rescale_fixed on a {dtype} vector")
        if out is None:
            checks.fail("`rescale_fixed` returned None: is a `return` missing?")
        if not isinstance(out, torch.Tensor):
            checks.fail(f"`rescale_fixed` should return a tensor, not {_a(out)}.")
        checks.check_value(f"rescale_fixed(x) for a {dtype} x", out.detach(), _rescale_values(x))
        if out.grad_fn is None:
            checks.fail("`rescale_fixed(x)` is not connected to `x`: backward cannot reach x "
                        "(was something detached or computed under no_grad?).")
    x = torch.randn(4, generator=gen, dtype=torch.float64, requires_grad=True)
    checks.check_function(rescale_fixed, x)


def _is_norm_node(name):
    return any(word in name for word in ("Norm", "Dist", "Cdist"))


@exercise("08_ex3")
def ex3(distance):
    from ..walk import walk
    gen = torch.Generator().manual_seed(3)
    cases = [("two different vectors", torch.randn(4, generator=gen, dtype=torch.float64),
              torch.randn(4, generator=gen, dtype=torch.float64)),
             ("two equal vectors", torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64),
              torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)),
             ("vectors equal in one entry", torch.tensor([1.0, 2.0], dtype=torch.float64),
              torch.tensor([1.0, -1.0], dtype=torch.float64))]
    for label, a0, b0 in cases:
        a, b = a0.clone().requires_grad_(), b0.clone().requires_grad_()
        out = _call(distance, a, b, what=f"distance on {label}")
        if out is None:
            checks.fail("`distance` returned None: is a `return` missing?")
        if not isinstance(out, torch.Tensor) or out.numel() != 1:
            shape = f"a tensor of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else _a(out)
            checks.fail(f"`distance` should return a single-number tensor, not {shape}.")
        if out.grad_fn is None:
            checks.fail(f"`distance` on {label} is not connected to a and b.")
        used = sorted({type(fn).__name__ for fn in walk(out).fns if _is_norm_node(type(fn).__name__)})
        if used:
            checks.fail(f"`distance` uses {used[0]}: build it from elementwise ops, sum and sqrt.")
        diff = a0 - b0
        length = diff.pow(2).sum().sqrt()
        checks.check_value(f"distance on {label}", out.detach().reshape(()), length)
        ga, gb = checks.call(lambda: torch.autograd.grad(out.reshape(()), (a, b), allow_unused=True),
                             what=f"backward through distance on {label}")
        if ga is None or gb is None:
            checks.fail(f"on {label}, `distance` sends no gradient to {'a' if ga is None else 'b'}.")
        if not (torch.isfinite(ga).all() and torch.isfinite(gb).all()):
            checks.fail(f"on {label}, the gradient of `distance` is not finite (nan or inf).")
        want = diff / length if length > 0 else torch.zeros_like(diff)
        checks.check_value(f"the gradient of distance with respect to a, on {label}", ga, want)
        checks.check_value(f"the gradient of distance with respect to b, on {label}", gb, -want)


def _nan_graphs():
    """(description, loss builder) pairs; each builds a fresh graph."""
    def where_sqrt():
        x = torch.tensor([0.0, 4.0], requires_grad=True)
        return x, torch.where(x > 0, x.sqrt(), torch.zeros_like(x)).sum()

    def where_log():
        x = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
        return x, (torch.where(x > 0, x.log(), torch.zeros_like(x)) * 3).sum()

    def sqrt_at_zero():
        x = torch.tensor([0.0, 1.0], requires_grad=True)
        return x, (x.sqrt() + x).sum()

    def finite():
        x = torch.tensor([0.5, 1.0], requires_grad=True)
        return x, (x.exp() * x).sum()

    def two_traps():
        x = torch.tensor([0.0, 1.0], requires_grad=True)
        y = torch.tensor([0.0, 2.0], requires_grad=True)
        a = torch.where(x > 0, x.sqrt(), torch.zeros_like(x))
        b = torch.where(y > 0, y.log(), torch.zeros_like(y)).tanh()
        return x, (a * 2 + b).sum()

    return [("a where over sqrt", where_sqrt), ("a where over log", where_log),
            ("sqrt at zero", sqrt_at_zero),
            ("a graph with finite gradients", finite), ("a graph with two traps", two_traps)]


@exercise("08_ex4", may_be_none=())
def ex4(first_bad_node):
    from ..trace import trace_backward
    names = getattr(getattr(first_bad_node, "__code__", None), "co_names", ())
    if any(n in names for n in ("trace_backward", "first_nonfinite", "step_backward", "helpers")):
        checks.fail("`first_bad_node` uses the course's helpers: find the Node with your own "
                    "Node hooks (register_hook on each Node).")
    left = None  # (graph, hooks left on it, hooks registered) for the first graph with some left
    for label, build in _nan_graphs():
        _, loss = build()
        first = trace_backward(loss).first_nonfinite()
        expected = None if first is None else first.name
        x, loss = build()
        with _hooks_registered() as handles:
            got = _call(first_bad_node, loss, what=f"first_bad_node on {label}")
        on = sum(map(_still_on, handles))
        if on and left is None:
            left = (label, on, len(handles))
        if x.grad is None:
            checks.fail(f"`first_bad_node` did not run the backward pass on {label} "
                        f"(x.grad is still None).")
        if expected is None and got is not None:
            checks.fail(f"on {label}, every gradient is finite, but `first_bad_node` returned "
                        f"{repr(got) if isinstance(got, str) else _a(got)} instead of None.")
        if got is None and expected is not None:
            checks.fail(f"on {label}, `first_bad_node` returned None, but a Node does send a "
                        f"non-finite gradient.")
        if got != expected:
            if not isinstance(got, str):
                what = "the Node itself" if hasattr(got, "next_functions") else _a(got)
                checks.fail(f"`first_bad_node` should return a Node's class name (a string), "
                            f"not {what}.")
            checks.fail(f"on {label}, {got!r} is not the first Node that sends a non-finite "
                        f"gradient: follow the engine's order, and look at what a Node sends "
                        f"(grad_inputs), not what it receives.")
    if left:  # said after what it found on every graph: that matters first
        label, n, total = left
        checks.fail(f"on {label}, `first_bad_node` left {n} of its {total} hooks on the graph: "
                    f"remove them before it returns.")
