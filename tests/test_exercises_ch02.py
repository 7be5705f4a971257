"""Chapter 02's exercises: every plausible wrong answer fails with one line, the solution passes."""
import pytest
import torch
from torch import nn

from exercise_harness import check_exercises
from helpers import checks
from helpers.exercises import run

LEAF = {"t1": True, "t2": True, "t3": False, "t4": True, "t5": True, "t6": False, "t7": False}
GRAD = {"t1": True, "t2": True, "t3": True, "t4": True, "t5": False, "t6": True, "t7": True}


def _ex1(leaf=None, grad=None):
    return f"is_leaf = {dict(LEAF, **(leaf or {}))!r}\nrequires_grad = {dict(GRAD, **(grad or {}))!r}"


def _fit(body):
    """An answer cell for exercise 5 with ``body`` as the loop's body."""
    lines = "".join(f"        {line}\n" for line in body.splitlines())
    return ("def fit(X, Y, steps=50, lr=0.1):\n    w = torch.zeros(X.shape[1], requires_grad=True)\n"
            f"    for _ in range(steps):\n{lines}    return w")


STEP = "loss = ((X @ w - Y) ** 2).mean()\nloss.backward()\n"

WRONG = {
    "02_ex1": [
        # "no_grad results don't require grad", applied to the view t4.
        (_ex1(grad={"t4": False}), "`requires_grad` is not quite right: the value for 't4'"),
        # enable_grad inside no_grad overlooked.
        (_ex1(leaf={"t6": True}, grad={"t6": False}), "`is_leaf` is not quite right: the value for 't6'"),
        # nn.Parameter(b * 2) taken for a recorded operation.
        (_ex1(leaf={"t2": False}), "`is_leaf` is not quite right: the value for 't2'"),
        # clone taken for a copy that starts a new leaf.
        (_ex1(leaf={"t3": True}), "`is_leaf` is not quite right: the value for 't3'"),
        # Strings for booleans.
        ("is_leaf = {k: str(v) for k, v in " + repr(LEAF) + ".items()}\nrequires_grad = " + repr(GRAD),
         "`is_leaf['t1']` should be True or False, not the string 'True'"),
        # A list in t1..t7 order instead of a dict.
        ("is_leaf = " + repr(list(LEAF.values())) + "\nrequires_grad = " + repr(GRAD),
         "`is_leaf` should be a dict, not a list"),
    ],
    "02_ex2": [
        # inputs=[b] overlooked: step 1 adds to w.grad too.
        ("w_grad = 18.0\nb_grad = 6.0", "`w_grad` is too large"),
        # Accumulation overlooked: the last step's gradients only.
        ("w_grad = 11.0\nb_grad = 2.0", "`w_grad` is too small"),
        # The update b += 1 overlooked: b stays 1.
        ("w_grad = 10.0\nb_grad = 6.0", "`w_grad` is too small"),
        # b's gradient from step 1 forgotten.
        ("w_grad = 12.0\nb_grad = 4.0", "`b_grad` is too small"),
    ],
    "02_ex3": [
        # The gradient before the Tanh, not after it.
        ("pre = net[0](batch)\npre.retain_grad()\nnet[1:](pre).pow(2).mean().backward()\ndhidden = pre.grad",
         "`dhidden` is off in"),
        # sum instead of mean.
        ("hidden = net[:2](batch)\nhidden.retain_grad()\nnet[2:](hidden).pow(2).sum().backward()\n"
         "dhidden = hidden.grad", "`dhidden` is off in 15 of 15 entries"),
        # retain_grad() after backward: nothing was kept.
        ("hidden = net[:2](batch)\nloss = net[2:](hidden).pow(2).mean()\nloss.backward()\n"
         "hidden.retain_grad()\ndhidden = hidden.grad", "is a gradient that never arrived"),
        # A parameter's gradient instead of the activation's.
        ("net(batch).pow(2).mean().backward()\ndhidden = net[0].weight.grad",
         "`dhidden` has shape (3, 4); expected shape (5, 3)"),
    ],
    "02_ex4": [
        # Section 3.8's call, copied: every parameter of the head listed, the frozen bias too.
        ("def head_only_backward(loss, model):\n    loss.backward(inputs=list(model[-1].parameters()))",
         "`head_only_backward(loss, a model whose head's bias is frozen)` raised RuntimeError: "
         "can't retain_grad on Tensor that has requires_grad=False"),
        # An ordinary backward: the body gets a gradient too.
        ("def head_only_backward(loss, model):\n    loss.backward()",
         "the .grad of '0.weight', which is not in the head, changed"),
        # Freezing the body, which the exercise forbids.
        ("def head_only_backward(loss, model):\n    model[0].requires_grad_(False)\n    loss.backward()",
         "switched requires_grad of '0.weight' off"),
        # The frozen bias switched on so that it can be listed.
        ("def head_only_backward(loss, model):\n    model[-1].requires_grad_(True)\n"
         "    loss.backward(inputs=list(model[-1].parameters()))", "switched requires_grad of '2.bias' on"),
        # Only the head's weight listed.
        ("def head_only_backward(loss, model):\n    loss.backward(inputs=[model[-1].weight])",
         "the .grad of the head's '2.bias' did not change"),
        # autograd.grad returns the gradients but writes no .grad.
        ("def head_only_backward(loss, model):\n    torch.autograd.grad(loss, list(model[-1].parameters()))",
         "the .grad of the head's '2.weight' did not change"),
        # zero_grad first: the body's .grad is lost.
        ("def head_only_backward(loss, model):\n    model.zero_grad()\n"
         "    loss.backward(inputs=list(model[-1].parameters()))",
         "the .grad of '0.weight', which is not in the head, changed"),
        # The head's old .grad reset instead of added to.
        ("def head_only_backward(loss, model):\n    model[-1].zero_grad()\n"
         "    loss.backward(inputs=list(model[-1].parameters()))", "`the head's 2.weight.grad` is off"),
    ],
    "02_ex5": [
        # The bug as given: w becomes a non-leaf, and its .grad is None from step 2 on.
        (_fit(STEP + "w = w - lr * w.grad"), "raised TypeError: unsupported operand type(s) for *"),
        # In place, but the gradient never reset: each step adds all earlier gradients.
        (_fit(STEP + "with torch.no_grad():\n    w -= lr * w.grad"), "`the w that fit(X, Y) returns` is off"),
        # A new leaf that no longer requires grad.
        (_fit(STEP + "w = (w - lr * w.grad).detach()"),
         "raised RuntimeError: element 0 of tensors does not require grad"),
        # In place with recording on.
        (_fit(STEP + "w -= lr * w.grad"), "raised RuntimeError: a leaf Variable that requires grad"),
        # Resetting before the first gradient exists.
        (_fit("w.grad.zero_()\n" + STEP + "with torch.no_grad():\n    w -= lr * w.grad"),
         "raised AttributeError: 'NoneType' object has no attribute 'zero_'"),
        # sum instead of mean: with this learning rate the descent diverges.
        (_fit("loss = ((X @ w - Y) ** 2).sum()\nloss.backward()\nwith torch.no_grad():\n"
              "    w -= lr * w.grad\nw.grad = None"), "contains NaN"),
        # The loop body right, the return line deleted.
        (_fit(STEP + "with torch.no_grad():\n    w -= lr * w.grad\nw.grad = None").replace("    return w", ""),
         "should return the tensor w, not None (is a `return` missing?)"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solution_passes():
    check_exercises("02", WRONG)


def test_predict_answers_are_not_names_in_the_notebook():
    """Exercise 1's tensors and exercise 2's loop exist only in the markdown and the verifiers."""
    import nbformat
    from nbexec import SOLUTIONS
    nb = nbformat.read(SOLUTIONS / "02_leaf_nodes.ipynb", as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "t4 = b[1:]" not in code and "loss.backward(inputs=[b])" not in code


def test_ex4_verifier_graded_cases_pass_and_leave_the_random_state_alone():
    state = torch.get_rng_state()

    def head_only_backward(loss, model):
        loss.backward(inputs=[p for p in model[-1].parameters() if p.requires_grad])

    run("02_ex4", {"head_only_backward": head_only_backward}, graded=True)
    assert torch.equal(state, torch.get_rng_state())


def test_ex1_numpy_booleans_are_booleans(capsys):
    import numpy
    run("02_ex1", {"is_leaf": {k: numpy.bool_(v) for k, v in LEAF.items()}, "requires_grad": GRAD})
    assert capsys.readouterr().out == "✅ is_leaf is right.\n✅ requires_grad is right.\n"


def test_ex3_verifier_in_the_learners_dtype():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 1))
    batch = torch.randn(5, 4)
    hidden = net[:2](batch)
    hidden.retain_grad()
    net[2:](hidden).pow(2).mean().backward()
    run("02_ex3", {"net": net, "batch": batch, "dhidden": hidden.grad})  # float32: passes
    with pytest.raises(checks.CheckFailed, match="has the wrong sign in 15 of 15"):
        run("02_ex3", {"net": net, "batch": batch, "dhidden": -hidden.grad})
