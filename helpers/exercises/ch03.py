"""Checks for chapter 03's exercises (saved tensors, retain_graph, checkpointing).

Expected values are computed inside each function, and by another route than the
one the exercise asks for: reading the Nodes' ``_saved_*`` attributes instead of a
pack hook, closed-form Jacobians, reaching a chunk's start under ``no_grad``,
running a plain (not checkpointed) forward.
"""
import warnings

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .. import checks
from ..exercises import exercise

KINDS = ("input", "output", "nothing")


def _what_is_saved(op):
    """'input', 'output' or 'nothing': what op's backward Node keeps, read from its _saved_*."""
    a = torch.tensor([0.3, 1.7], dtype=torch.float64, requires_grad=True)
    out = op(a)
    kinds = set()
    for name in dir(out.grad_fn):
        value = getattr(out.grad_fn, name) if name.startswith("_saved_") else None
        if isinstance(value, torch.Tensor):
            kinds.add("input" if value is a else "output" if value.data_ptr() == out.data_ptr() else "?")
    return kinds.pop() if len(kinds) == 1 else "nothing" if not kinds else "?"


def _dict_of(name, answer, keys, allowed, what):
    """Fail unless ``answer`` is a dict with exactly ``keys``, each value one of ``allowed``."""
    if not isinstance(answer, dict):
        checks.fail(f"`{name}` should be a dict with the keys {', '.join(map(repr, keys))}, "
                    f"not {checks._a(answer)}.")
    missing = [k for k in keys if k not in answer]
    if missing:
        checks.fail(f"`{name}` has no key {missing[0]!r}: use exactly the keys listed in the "
                    f"exercise (copy them from the answer cell).")
    extra = [k for k in answer if k not in keys]
    if extra:
        checks.fail(f"`{name}` has a key {extra[0]!r} that the exercise does not ask about.")
    for k in keys:
        value = answer[k]
        if isinstance(value, str) and bool in allowed:
            checks.fail(f"`{name}[{k!r}]` should be True or False, not {checks._a(value)}.")
        ok = (type(value) is bool) if bool in allowed else (value in allowed)
        if not ok:
            checks.fail(f"`{name}[{k!r}]` should be {what}, not {checks._a(value)}.")


# ------------------------------------------------------------------ exercise 1

@exercise("03_ex1")
def ex1(saves):
    ops = {"sigmoid": torch.sigmoid, "sqrt": torch.sqrt, "log": torch.log,
           "neg": torch.neg, "tanh": torch.tanh, "atan": torch.atan}
    _dict_of("saves", saves, list(ops), KINDS, '"input", "output" or "nothing"')
    checks.check_equal("saves", saves, {name: _what_is_saved(op) for name, op in ops.items()})


# ------------------------------------------------------------------ exercise 2

def _raises_again(expression):
    p = torch.tensor([1.0, -2.0], requires_grad=True)
    c = torch.tensor([3.0, 3.0])
    out = eval(expression, {"torch": torch}, {"p": p, "c": c})
    out.backward()
    try:
        out.backward()
    except RuntimeError:
        return True
    return False


@exercise("03_ex2")
def ex2(raises_again):
    keys = ["(p + c).sum()", "(p * 3).sum()", "p.mean()", "p.norm()",
            "torch.cat([p, p]).sum()", "p.abs().sum()"]
    _dict_of("raises_again", raises_again, keys, (bool,), "True or False")
    checks.check_equal("raises_again", raises_again, {k: _raises_again(k) for k in keys})


# ------------------------------------------------------------------ exercise 3

def _saved_in_graph(root):
    """Every tensor the Nodes behind ``root`` saved, read from their _saved_* attributes."""
    found, seen, todo = [], set(), [root.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        for name in dir(node):
            if name.startswith("_saved_") and isinstance(getattr(node, name), torch.Tensor):
                found.append(getattr(node, name))
        todo.extend(n for n, _ in node.next_functions)
    return found


def _an_int(name, value):
    if type(value) is bool or not isinstance(value, int):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
            return
        checks.fail(f"`{name}` should be a Python int, not {checks._a(value)}.")


@exercise("03_ex3")
def ex3(n_saves, total_bytes, unique_bytes):
    for name, value in (("n_saves", n_saves), ("total_bytes", total_bytes), ("unique_bytes", unique_bytes)):
        _an_int(name, value)
    x = torch.zeros(20, 10)                       # the exercise's shapes; the values do not matter
    W1 = torch.zeros(10, 32, requires_grad=True)
    W2 = torch.zeros(5, 32, requires_grad=True)
    h = torch.relu(x @ W1)
    y = h @ W2.T
    found = _saved_in_graph((y * y).mean() + (W2 * W2).mean())
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in found}
    checks.check_equal("n_saves", n_saves, len(found))
    checks.check_equal("total_bytes", total_bytes, sum(t.nbytes for t in found))
    checks.check_equal("unique_bytes", unique_bytes, sum(storages.values()))


# ------------------------------------------------------------------ exercise 4

@exercise("03_ex4")
def ex4(vjp, s):
    if isinstance(s, torch.Tensor) and s.grad is not None:
        checks.fail("`s.grad` was filled: compute the product with torch.autograd.grad, which returns "
                    "it instead of accumulating it (then set s.grad = None and run both cells again).")
    if isinstance(vjp, (tuple, list)) and len(vjp) == 1:
        checks.fail("`vjp` is a tuple holding one tensor: torch.autograd.grad returns one gradient per "
                    "input, in a tuple; take the tensor out of it.")
    s0, s1, s2 = 0.5, -1.0, 2.0                   # the s of the exercise; g's Jacobian, by hand
    J = torch.tensor([[s1, s0, 0.0],
                      [0.0, torch.cos(torch.tensor(s1)).item() * s2, torch.sin(torch.tensor(s1)).item()],
                      [2 * s0, 2 * s1, 2 * s2]])
    u = torch.tensor([2.0, -1.0, 0.5])
    checks.check_value("vjp", vjp, u @ J)


# ------------------------------------------------------------------ exercise 5

def _tbptt_reference(W_h, W_x, xs, chunk_len):
    """Chunk by chunk: reach the chunk's start without any graph, then differentiate that chunk."""
    grads, h0 = [], torch.zeros(W_h.shape[0], dtype=W_h.dtype)
    for start in range(0, len(xs), chunk_len):
        with torch.no_grad():
            h = h0
            for x_t in xs[:start]:
                h = torch.tanh(W_h @ h + W_x @ x_t)
        loss = 0
        for x_t in xs[start:start + chunk_len]:
            h = torch.tanh(W_h @ h + W_x @ x_t)
            loss = loss + (h ** 2).sum()
        grads.append(torch.autograd.grad(loss, W_h)[0])
    return grads


@exercise("03_ex5")
def ex5(tbptt_grads, *, graded=False):
    gen = torch.Generator().manual_seed(5)
    cases = [(3, 2, 15, 3)]
    if graded:
        cases.append((4, 3, 14, 4))               # a last chunk shorter than the others
    for hidden, inputs, steps, chunk in cases:
        W_h = (0.6 * torch.randn(hidden, hidden, generator=gen)).requires_grad_()
        W_x = torch.randn(hidden, inputs, generator=gen).requires_grad_()
        xs = torch.randn(steps, inputs, generator=gen)
        what = f"tbptt_grads(W_h, W_x, xs, {chunk})"
        got = checks.call(tbptt_grads, W_h, W_x, xs, chunk, what=what)
        want = _tbptt_reference(W_h, W_x, xs, chunk)
        if not isinstance(got, (list, tuple)):
            checks.fail(f"`{what}` should return a list with one gradient per chunk, not {checks._a(got)}.")
        if len(got) != len(want):
            checks.fail(f"`{what}` returns {len(got)} gradients: it should return one per chunk.")
        if all(isinstance(g, torch.Tensor) and g.shape == w.shape and not torch.allclose(g, w)
               and torch.allclose(-g, w, rtol=1e-4, atol=1e-6) for g, w in zip(got, want)):
            checks.fail(f"every gradient `{what}` returns has the wrong sign.")
        checks.check_equal(f"tbptt_grads(W_h, W_x, xs, {chunk})", list(got), want, rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------ exercise 6

class _Residual(nn.Module):
    """The exercise's ResidualStack, rebuilt here so that the check does not depend on the notebook."""

    def __init__(self, width, depth, dtype):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Linear(width, width, dtype=dtype) for _ in range(depth))
        self.head = nn.Linear(width, 1, dtype=dtype)

    def forward(self, x):
        for block in self.blocks:
            x = x + torch.tanh(block(x))
        return self.head(x)


def _kept_activations(fn, x, model):
    """(output, how many activation-sized tensors autograd kept), counted with a pack hook."""
    anyway = {t.untyped_storage().data_ptr() for t in [x, *model.parameters()]}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in anyway:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(storages.values()) // x.nbytes


@exercise("03_ex6")
def ex6(forward_checkpointed, *, graded=False):
    # checkpoint's first call imports parts of torch that take seconds: not the learner's time.
    checkpoint(torch.neg, torch.zeros(1, requires_grad=True), use_reentrant=False).sum().backward()
    cases = [(12, 4, torch.float32), (12, 6, torch.float32)]
    if graded:
        cases += [(10, 3, torch.float64), (5, 5, torch.float32)]
    for depth, per_segment, dtype in cases:
        with torch.random.fork_rng(devices=[]):   # the learner's random numbers stay as they were
            torch.manual_seed(60 + depth)
            model = _Residual(16, depth, dtype)
            x = torch.randn(32, 16, dtype=dtype)
        what = f"forward_checkpointed(model, x, {per_segment})"
        params = dict(model.named_parameters())
        want_out = model(x)
        want = torch.autograd.grad(want_out.sum(), list(params.values()))

        runs = [0] * depth
        handles = [b.register_forward_hook(lambda m, a, o, k=k: runs.__setitem__(k, runs[k] + 1))
                   for k, b in enumerate(model.blocks)]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # the reentrant variant warns: its feedback comes below
                out, kept = _kept_activations(
                    lambda: checks.call(forward_checkpointed, model, x, per_segment, what=what), x, model)
                if not isinstance(out, torch.Tensor):
                    checks.fail(f"`{what}` should return the model's output tensor, not {checks._a(out)}.")
                if out.shape != want_out.shape or not torch.allclose(out, want_out, rtol=1e-4, atol=1e-6):
                    checks.check_value(f"the output of {what}", out, want_out)   # says what is off
                if out.grad_fn is None:
                    checks.fail(f"the output of `{what}` has no graph: was the whole forward run "
                                f"without recording it?")
                got = checks.call(lambda: torch.autograd.grad(out.sum(), list(params.values()),
                                                              allow_unused=True),
                                  what=f"the backward through {what}")
        finally:
            for handle in handles:
                handle.remove()
        for (name, _), g in zip(params.items(), got):
            if g is None:
                checks.fail(f"no gradient reaches `{name}` through `{what}`: the block's parameters must "
                            f"get their gradients (see section 4.5).")
        wrong = [name for (name, _), g, w in zip(params.items(), got, want)
                 if not torch.allclose(g, w, rtol=1e-4 if dtype == torch.float32 else 1e-7, atol=1e-6)]
        if wrong:
            checks.fail(f"the output of `{what}` is right, but the gradient of `{wrong[0]}` is not: "
                        f"does the recomputation run the same blocks as the forward (section 4.4)?")
        if any(r == 1 for r in runs):
            checks.fail(f"in `{what}` and its backward, block {runs.index(1)} ran once: a checkpointed "
                        f"block runs twice (its forward, then the recomputation).")
        if any(r > 2 for r in runs):
            checks.fail(f"in `{what}` and its backward, block {next(k for k, r in enumerate(runs) if r > 2)} "
                        f"ran {max(runs)} times: each block should run once in the forward and once more "
                        f"in the backward.")
        segments = -(-depth // per_segment)
        if kept > segments:
            checks.fail(f"`{what}` keeps {kept} activation-sized tensors for backward; segments of "
                        f"{per_segment} blocks should keep one per segment (its input, or the head's).")
        checks._passed(f"✅ {what}: same output and gradients, {kept} activation-sized "
                       f"tensor{'s' if kept != 1 else ''} kept, each block recomputed once.")
