"""Checks for chapter 01's exercises (computational graphs).

Expected values are computed inside each function: from a graph built here (for the predict
exercises), from PyTorch's autograd (for the chain rule by hand), or from how a test graph was
built (for ``count_paths``: ``w * w + w`` has 3 paths to ``w`` by construction, not by walking).
"""
import torch

from .. import checks
from ..exercises import exercise
from ..walk import walk


def _a(value):
    """'a float', 'an int', 'the string '...'': how a message names the type of an answer."""
    if isinstance(value, str):
        return f"the string {value[:20]!r}"
    kind = type(value).__name__
    return f"{'an' if kind[:1].lower() in 'aeiou' else 'a'} {kind}"


def _names_and_entries(root):
    fns = walk(root).fns
    return fns, {type(fn).__name__ for fn in fns}


@exercise("01_ex1")
def ex1(node_names, n_nodes, entries):
    """Predict the graph of an expression with a mask and an index (given in the markdown)."""
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = torch.tensor([4.0, 5.0, 6.0], requires_grad=True)
    mask = a > 1.5
    picked = torch.where(mask, a * b, b.exp())
    out = picked.index_select(0, torch.tensor([0, 2])).sum()
    fns, names = _names_and_entries(out)
    checks.check_equal("node_names", node_names, names)
    checks.check_equal("n_nodes", n_nodes, len(fns))
    counts = {name: len(fn.next_functions) for fn in fns
              for name in [type(fn).__name__] if name in ("WhereBackward0", "IndexSelectBackward0")}
    checks.check_equal("entries", entries, counts)


# --------------------------------------------------------------------- exercise 2

def _graphs(graded):
    """(label, root, leaf, number of paths from root to leaf, known from the construction)."""
    w = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(2.0)
    yield "the line loss, w", (w * x + b - 10.0) ** 2, w, 1
    yield "w * w + w, w", w * w + w, w, 3          # two slots of one Mul, plus the Add
    gen = torch.Generator().manual_seed(1)   # the learner's random state stays as it was
    a = torch.randn(3, generator=gen, requires_grad=True)
    h = a * 2
    yield "sin(h) + cos(h) with h = a * 2, a", (h.sin() + h.cos()).sum(), a, 2
    yield "w * 2, b (b is not in it)", w * 2, b, 0
    doubled = w
    for _ in range(60):                            # each step doubles the number of paths
        doubled = doubled + doubled
    yield "w doubled 60 times with h = h + h, w", doubled, w, 2 ** 60
    start = torch.tensor(1.0, requires_grad=True)
    chain = start
    for _ in range(3000):
        chain = chain * 1.0001
    yield "a chain 3000 operations deep, its start", chain, start, 1
    if graded:
        weight = torch.randn(3, 3, generator=gen, requires_grad=True)   # tied: used by two layers
        inputs = torch.randn(2, 3, generator=gen)
        tied = torch.nn.functional.linear(torch.nn.functional.linear(inputs, weight).tanh(), weight)
        yield "a network whose two layers share one weight, the weight", tied.sum(), weight, 2
        c = torch.randn(2, generator=gen, requires_grad=True)
        k = c * c                                   # 2 paths to c
        yield "k * k + k with k = c * c, c", (k * k + k).sum(), c, 6


@exercise("01_ex2")
def ex2(count_paths, *, graded=False):
    for label, root, leaf, expected in _graphs(graded):
        got = checks.call(count_paths, root, leaf, what=f"count_paths({label})")
        if got is None:
            checks.fail(f"`count_paths({label})` returned None: is a `return` missing?")
        if isinstance(got, float) and got.is_integer():
            got = int(got)  # 3.0 paths is 3 paths
        checks.check_equal(f"count_paths({label})", got, expected)


# --------------------------------------------------------------------- exercise 3

@exercise("01_ex3")
def ex3(dloss_dw, dloss_db):
    w = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(-0.3, dtype=torch.float64, requires_grad=True)
    gw, gb = torch.autograd.grad(torch.sin(w * 2.0 + b) * w, (w, b))
    checks.check_value("dloss_dw", dloss_dw, gw.item())
    checks.check_value("dloss_db", dloss_db, gb.item())


# --------------------------------------------------------------------- exercise 4

@exercise("01_ex4")
def ex4(p, q, built):
    if not isinstance(built, torch.Tensor):
        checks.fail(f"`built` should be a tensor computed from p and q, not {_a(built)}.")
    if built.grad_fn is None:
        checks.fail("`built` has no graph: compute it from p and q (with grad mode on).")
    if built.dim() != 0:
        checks.fail(f"`built` should be a single number (shape ()), not shape {tuple(built.shape)}.")
    fns = walk(built).fns
    checks.check_equal("the name of built.grad_fn", type(built.grad_fn).__name__, "SumBackward0")
    names = {id(p): "p", id(q): "q"}
    leaves = {names.get(id(getattr(fn, "variable", None)), "a leaf other than p and q")
              for fn in fns if hasattr(fn, "variable")}
    checks.check_equal("the set of leaves in built's graph", leaves, {"p", "q"})
    checks.check_equal("the number of MulBackward0 Nodes",
                       sum(type(fn).__name__ == "MulBackward0" for fn in fns), 3)

    def slots(leaf):
        return sum(getattr(n, "variable", None) is leaf for fn in fns for n, _ in fn.next_functions)

    checks.check_equal("the number of input slots p fills", slots(p), 2)
    checks.check_equal("the number of input slots q fills", slots(q), 1)
    checks.check_equal("the number of (None, 0) entries in the graph",
                       sum(n is None for fn in fns for n, _ in fn.next_functions), 0)


# --------------------------------------------------------------------- exercise 5

@exercise("01_ex5")
def ex5(n_div, n_mul):
    def halve_or_square(x):          # as printed in the exercise
        y = x
        for _ in range(4):
            if y.abs().max() > 1:
                y = y / 2
            else:
                y = y * y
        return y.sum()

    inputs = ([1.5, 0.5], [0.5, -0.8], [-3.0, 0.2])
    counted = [[type(fn).__name__ for fn in walk(halve_or_square(torch.tensor(v, requires_grad=True))).fns]
               for v in inputs]
    for name, answer, op in (("n_div", n_div, "DivBackward0"), ("n_mul", n_mul, "MulBackward0")):
        expected = [names.count(op) for names in counted]
        if isinstance(answer, tuple) and len(answer) == 1 and isinstance(answer[0], (list, tuple)):
            checks.fail(f"`{name}` is a tuple that holds your list: is there a comma at the end of "
                        f"its line?")
        if isinstance(answer, torch.Tensor) and answer.dim() == 1 and len(answer) == 3:
            answer = answer.tolist()  # the same per-input messages as for a list
        if isinstance(answer, (list, tuple)) and len(answer) == 3:
            for label, got, want in zip(("x1", "x2", "x3"), answer, expected):
                if got != want or type(got) is not int:  # name the input, not "item 1"
                    checks.check_equal(f"{name} for {label}", got, want)
        checks.check_equal(name, answer, expected)
