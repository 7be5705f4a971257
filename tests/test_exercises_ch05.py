"""Chapter 05's exercises: every plausible wrong answer fails with one line, the solutions pass.

WRONG lists, per exercise, answer-cell sources a learner might write (the mistake the
exercise is about first) and a fragment of the one-line feedback each must get. The
checks use closed forms, never torch.func: the last tests make sure of it.
"""
import ast
import inspect

import pytest
import torch

from exercise_harness import check_exercises
from helpers import checks
from helpers.exercises import ch05, run

THIRD = '''
def third_derivative(f, x):
    x = x.detach().requires_grad_(True)
    d1, = torch.autograd.grad(f(x), x{cg1})
    d2, = torch.autograd.grad(d1, x{cg2})
    {end}
'''

HVP = '''
def hvp_params(loss_fn, params, vectors):
    grads = torch.autograd.grad(loss_fn(*params), params{cg})
    dot = sum({dot})
    return list(torch.autograd.grad(dot, params{how}))
'''

JACOBIAN = '''
def jacobian_forward(f, x):
    columns = []
    with fwAD.dual_level():
        for j in range(len(x)):
            direction = torch.zeros_like(x)
            direction[j] = 1.0
            out = f(fwAD.make_dual(x, direction))
            columns.append(fwAD.unpack_dual(out).{part})
    return torch.stack(columns, dim={dim})
'''

PENALTY = '''
def input_gradient_penalty(model, x, labels):
    {copy}
    losses = nn.functional.cross_entropy(model(x), labels, reduction="{reduction}")
    grad_x, = torch.autograd.grad(losses.sum(), x{cg})
    return {result}
'''

SECOND = '''
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    d1, = torch.autograd.grad(f(x), x{cg})
    {end}
'''

CG = ", create_graph=True"
COPY = "x = x.detach().requires_grad_(True)"

WRONG = {
    "05_ex1": [
        # No create_graph anywhere: the first derivative is a plain tensor.
        (THIRD.format(cg1="", cg2="", end="return torch.autograd.grad(d2, x)[0]"),
         "raised RuntimeError: element 0 of tensors does not require grad"),
        # create_graph on the first call only: the second derivative has no graph.
        (THIRD.format(cg1=CG, cg2="", end="return torch.autograd.grad(d2, x)[0]"),
         "raised RuntimeError: element 0 of tensors does not require grad"),
        # One differentiation short: the second derivative.
        (THIRD.format(cg1=CG, cg2=CG, end="return d2"), "is off in 3 of 3 entries"),
        # The tuple torch.autograd.grad returns, not the tensor in it.
        (THIRD.format(cg1=CG, cg2=CG, end="return torch.autograd.grad(d2, x)"),
         "should return a 0-dim tensor, not a tuple"),
    ],
    "05_ex2": [
        # The linear parameter's gradient has no graph, and nothing says it may be unused.
        (HVP.format(cg=CG, dot="(g * v).sum() for g, v in zip(grads, vectors)", how=""),
         "appears to not have been used in the graph"),
        # allow_unused alone: None for it.
        (HVP.format(cg=CG, dot="(g * v).sum() for g, v in zip(grads, vectors)", how=", allow_unused=True"),
         "returns None for `s`"),
        # create_graph forgotten: the gradients are constants.
        (HVP.format(cg="", dot="(g * v).sum() for g, v in zip(grads, vectors)", how=", materialize_grads=True"),
         "raised RuntimeError: element 0 of tensors does not require grad"),
        # H times a vector of ones, not H times v.
        (HVP.format(cg=CG, dot="g.sum() for g in grads", how=", materialize_grads=True"),
         "hvp_params(...)[0], the part for W"),
        # Finite differences of the gradient: two forwards.
        ('''
def hvp_params(loss_fn, params, vectors, eps=1e-6):
    up = torch.autograd.grad(loss_fn(*[p + eps * v for p, v in zip(params, vectors)]), params,
                             materialize_grads=True)
    down = torch.autograd.grad(loss_fn(*[p - eps * v for p, v in zip(params, vectors)]), params,
                               materialize_grads=True)
    return [(a - b) / (2 * eps) for a, b in zip(up, down)]
''', "calls loss_fn 2 times"),
    ],
    "05_ex3": [
        # Columns stacked as rows: the transpose.
        (JACOBIAN.format(part="tangent", dim=0), "holds the Jacobian's transpose"),
        # The value instead of the tangent.
        (JACOBIAN.format(part="primal", dim=1), "is off in 4 of 4 entries"),
        # Reverse mode, row by row: right numbers, not forward mode.
        ('''
def jacobian_forward(f, x):
    x = x.detach().requires_grad_(True)
    y = f(x)
    return torch.stack([torch.autograd.grad(y[i], x, retain_graph=True)[0] for i in range(len(y))])
''', "never passes f a dual number"),
        # torch.func does it in one line -- and is not what the exercise asks.
        ("def jacobian_forward(f, x):\n    return jacfwd(f)(x)", "uses torch.func"),
        # Dual numbers made outside a dual level.
        ('''
def jacobian_forward(f, x):
    columns = []
    for j in range(len(x)):
        out = f(fwAD.make_dual(x, torch.eye(len(x))[j]))
        columns.append(fwAD.unpack_dual(out).tangent)
    return torch.stack(columns, dim=1)
''', "raised RuntimeError: Trying to create a dual Tensor for forward AD but no level exists"),
        # The columns returned as a list, not stacked into one tensor.
        (JACOBIAN.format(part="tangent", dim=1).replace("return torch.stack(columns, dim=1)", "return columns"),
         "returns a list of columns"),
    ],
    "05_ex4": [
        # The batch-mean loss: each sample's gradient divided by N.
        (PENALTY.format(copy=COPY, reduction="mean", cg=CG, result="grad_x.pow(2).sum(dim=1).mean()"),
         "is too small"),
        # create_graph forgotten: a number, but no gradient for the weights.
        (PENALTY.format(copy=COPY, reduction="none", cg="", result="grad_x.pow(2).sum(dim=1).mean()"),
         "has no graph"),
        # The norm, not its square.
        (PENALTY.format(copy=COPY, reduction="none", cg=CG, result="grad_x.norm(dim=1).mean()"),
         "is too large"),
        # The caller's x made to require grad.
        (PENALTY.format(copy="x.requires_grad_(True)", reduction="none", cg=CG,
                        result="grad_x.pow(2).sum(dim=1).mean()"), "changed the caller's x"),
        # .item(): the right number, but a float that no optimizer can differentiate.
        (PENALTY.format(copy=COPY, reduction="none", cg=CG, result="grad_x.pow(2).sum(dim=1).mean().item()"),
         "returns a float"),
        # The gradient detached, then made a leaf again: requires grad, but no graph to the weights.
        (PENALTY.format(copy=COPY, reduction="none", cg=CG,
                        result="grad_x.detach().pow(2).sum(dim=1).mean().requires_grad_()"), "has no graph"),
    ],
    "05_ex5": [
        # The plain second derivative: fails on 3x + 1.
        (SECOND.format(cg=CG, end="return torch.autograd.grad(d1, x)[0]"),
         "for f(x) = 3x + 1 at x = -1` raised RuntimeError: element 0 of tensors does not require grad"),
        # create_graph forgotten.
        (SECOND.format(cg="", end="return torch.autograd.grad(d1, x)[0]"),
         "for f(x) = sin(x) at x = -1` raised RuntimeError"),
        # The first derivative returned.
        (SECOND.format(cg=CG, end="return d1"), "for f(x) = sin(x) at x = -1, 0.5, 2 (float64)` is off"),
        # Zero whenever the first derivative has no graph -- and create_graph forgotten, so always.
        (SECOND.format(cg="", end="return torch.zeros_like(x) if not d1.requires_grad else "
                                  "torch.autograd.grad(d1, x)[0]"),
         "for f(x) = sin(x) at x = -1, 0.5, 2 (float64)` is"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solutions_pass():
    check_exercises("05", WRONG)


def test_no_check_holds_torch_func():
    tree = ast.parse(inspect.getsource(ch05))
    imports = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imports += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imports if m and m.startswith("torch.func")]
    used = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert not used & {"func", "jacrev", "jacfwd", "vmap", "hessian", "jvp", "vjp", "functional_call"}


def test_the_checks_pass_float32_answers(capsys):
    def third_derivative(f, x):
        x = x.detach().float().requires_grad_(True)          # works in float32 whatever it gets
        d1, = torch.autograd.grad(f(x), x, create_graph=True)
        d2, = torch.autograd.grad(d1, x, create_graph=True)
        return torch.autograd.grad(d2, x)[0]
    run("05_ex1", {"third_derivative": third_derivative}, graded=True)
    assert capsys.readouterr().out.startswith("✅")
