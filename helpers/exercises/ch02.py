"""Checks for chapter 02's exercises (leaf nodes and .grad).

Expected values are computed inside each function: by building the exercise's tensors here
(the predict exercises), or with the closed-form gradients of the small models involved
(``d mean((h W^T + c)^2) / dh`` and plain least-squares gradient descent), which are not the
autograd code the exercises ask for.
"""
import warnings

import numpy
import torch
from torch import nn

from .. import checks
from ..exercises import exercise

KEYS = tuple(f"t{i}" for i in range(1, 8))


@exercise("02_ex1")
def ex1(is_leaf, requires_grad):
    """The seven tensors of exercise 1, built as printed in the notebook (values play no part)."""
    b = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    t1 = b.detach().requires_grad_()
    t2 = nn.Parameter(b * 2)
    t3 = b.clone()
    with torch.no_grad():
        t4 = b[1:]
        t5 = b + 1
        with torch.enable_grad():
            t6 = b + 1
    t7 = b.view(3, 1)
    made = dict(zip(KEYS, (t1, t2, t3, t4, t5, t6, t7)))
    for name, answer, flag in (("is_leaf", is_leaf, "is_leaf"), ("requires_grad", requires_grad, "requires_grad")):
        expected = {k: getattr(t, flag) for k, t in made.items()}
        if isinstance(answer, dict):   # a string for a boolean is named as such, key by key
            for k in KEYS:
                if k in answer and not isinstance(answer[k], (bool, numpy.bool_)):
                    checks.check_equal(f"{name}[{k!r}]", answer[k], expected[k])
        checks.check_equal(name, answer, expected)


@exercise("02_ex2")
def ex2(w_grad, b_grad):
    """Run the loop printed in exercise 2 and compare its gradients."""
    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    for step in range(3):
        loss = w * b + step * w ** 2
        if step == 1:
            loss.backward(inputs=[b])
        else:
            loss.backward()
        with torch.no_grad():
            b += 1
    checks.check_value("w_grad", w_grad, w.grad.item())
    checks.check_value("b_grad", b_grad, b.grad.item())


@exercise("02_ex3", may_be_none=("dhidden",))
def ex3(net, batch, dhidden):
    with torch.no_grad():
        hidden = net[1](net[0](batch))                   # (5, 3)
        out = net[2](hidden)                             # (5, 1)
        expected = 2 * out / out.numel() @ net[2].weight  # d mean(out²) / d hidden
    checks.check_value("dhidden", dhidden, expected)


def _ex4_cases(graded):
    """(label, model, input): a trainable head, a head with a frozen bias (and more when graded)."""
    with torch.random.fork_rng():   # the learner's random state stays as it was
        torch.manual_seed(4)
        plain = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        cases = [("model", plain, torch.randn(6, 3))]
        frozen = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        frozen[-1].bias.requires_grad_(False)
        cases.append(("a model whose head's bias is frozen", frozen, torch.randn(5, 3)))
        if graded:
            deep = nn.Sequential(nn.Linear(2, 5), nn.ReLU(), nn.Linear(5, 5), nn.ReLU(), nn.Linear(5, 1))
            cases.append(("a deeper model", deep, torch.randn(7, 2)))
            frozen_weight = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
            frozen_weight[-1].weight.requires_grad_(False)
            cases.append(("a model whose head's weight is frozen", frozen_weight, torch.randn(4, 2)))
    return cases


@exercise("02_ex4")
def ex4(head_only_backward, *, graded=False):
    for label, model, x in _ex4_cases(graded):
        named = dict(model.named_parameters())
        flags = {name: p.requires_grad for name, p in named.items()}
        head = {f"{len(model) - 1}.{n}" for n, p in model[-1].named_parameters() if p.requires_grad}
        for p in named.values():   # gradients from an earlier backward: this one must add to them
            p.grad = torch.full_like(p, 0.5)
        with torch.no_grad():
            h = model[:-1](x)
            g = 2 * model[-1](h) / (x.shape[0] * model[-1].out_features)  # d mean(out²) / d out
            want = {f"{len(model) - 1}.weight": g.T @ h, f"{len(model) - 1}.bias": g.sum(0)}
        loss = model(x).pow(2).mean()
        checks.call(head_only_backward, loss, model, what=f"head_only_backward(loss, {label})")
        with_ = "" if label == "model" else f"with {label}, "
        for name, p in named.items():
            if p.requires_grad != flags[name]:
                checks.fail(f"`head_only_backward` switched requires_grad of {name!r} "
                            f"{'off' if flags[name] else 'on'}: leave the flags as they are.")
        for name, p in named.items():
            unchanged = p.grad is not None and torch.equal(p.grad, torch.full_like(p, 0.5))
            if name not in head:
                if not unchanged:
                    where = "frozen" if name.startswith(f"{len(model) - 1}.") else "not in the head"
                    checks.fail(f"{with_}the .grad of {name!r}, which is {where}, changed: "
                                f"only the head's trainable parameters should get this backward's "
                                f"gradient.")
            elif p.grad is None:
                checks.fail(f"{with_}the .grad of the head's {name!r} is None: it should hold what was "
                            f"there before plus this backward's gradient.")
            elif unchanged:
                checks.fail(f"{with_}the .grad of the head's {name!r} did not change: the backward "
                            f"should add its gradient there.")
            else:
                checks.check_value(f"{with_}the head's {name}.grad", p.grad,
                                   torch.full_like(p, 0.5) + want[name])


def _descent(X, Y, steps, lr):
    """Plain gradient descent on mean((X w - Y)²) from w = 0, with the gradient in closed form."""
    X64, Y64 = X.double(), Y.double()
    w = torch.zeros(X.shape[1], dtype=torch.float64)
    for _ in range(steps):
        w = w - lr * 2 * X64.T @ (X64 @ w - Y64) / X.shape[0]
    return w


@exercise("02_ex5")
def ex5(fit, *, graded=False):
    gen = torch.Generator().manual_seed(5)
    cases = [(50, 0.1), (20, 0.05)] if graded else [(50, 0.1)]
    for steps, lr in cases:
        X = torch.randn(16, 3, generator=gen)
        Y = X @ torch.tensor([1.5, -2.0, 0.5]) + 0.1 * torch.randn(16, generator=gen)
        what = "fit(X, Y)" if (steps, lr) == (50, 0.1) else f"fit(X, Y, steps={steps}, lr={lr})"
        with warnings.catch_warnings():   # the one line of feedback says it all; no warning text
            warnings.simplefilter("ignore")
            w = checks.call(fit, X.clone(), Y.clone(), steps=steps, lr=lr, what=what)
        if not isinstance(w, torch.Tensor):
            checks.fail(f"`{what}` should return the tensor w, not "
                        f"{'None (is a `return` missing?)' if w is None else 'a ' + type(w).__name__}.")
        if w.grad_fn is not None:
            checks.fail(f"`{what}` returned a w that is not a leaf (its grad_fn is "
                        f"{type(w.grad_fn).__name__}): the update was recorded in the graph.")
        checks.check_value(f"the w that {what} returns", w.detach(), _descent(X, Y, steps, lr).float(),
                           rtol=1e-4, atol=1e-5)
