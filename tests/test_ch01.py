"""Chapter 01's claims about PyTorch itself, checked directly (they can change between versions).

The notebook states these in prose; the generic notebook tests only check that its cells run.
"""
import sys

import pytest
import torch
import torch.nn as nn
from torchviz import make_dot

from helpers import trace_backward
from helpers.walk import walk


def test_number_suffix_tells_apart_the_pow_overloads():
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    names = [type(e.grad_fn).__name__ for e in (t ** 2, t ** t, 2 ** t)]
    assert names == ["PowBackward0", "PowBackward1", "PowBackward2"]


def test_accumulate_grad_name_and_variable():
    w = torch.tensor(3.0, requires_grad=True)
    acc = (w * 2).grad_fn.next_functions[0][0]
    assert type(acc).__name__ == "AccumulateGrad" and acc.variable is w
    assert acc.name() == "torch::autograd::AccumulateGrad"


def test_split_outputs_are_numbered_in_next_functions():
    a = torch.randn(4, requires_grad=True)
    first, second = a.split(2)
    pairs = (first * second).grad_fn.next_functions
    assert pairs[0][0] is pairs[1][0] and [n for _, n in pairs] == [0, 1]


def test_mul_saves_only_what_backward_needs():
    w, x = torch.tensor(3.0, requires_grad=True), torch.tensor(2.0)
    mul = (w * x).grad_fn
    assert mul._saved_self is None and mul._saved_other is x


def test_first_addmm_saves_mat2_only_when_the_input_needs_grad():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))

    def first_addmm(inputs):  # the AddmmBackward0 of nn.Linear(3, 4): its mat2 is weight.T, (3, 4)
        fns = walk(model(inputs).sum()).fns
        found = [fn for fn in fns
                 if type(fn).__name__ == "AddmmBackward0" and tuple(fn._saved_mat2_sym_sizes) == (3, 4)]
        assert len(found) == 1
        return found[0]

    assert first_addmm(torch.randn(2, 3))._saved_mat2 is None
    assert first_addmm(torch.randn(2, 3, requires_grad=True))._saved_mat2 is not None


def test_engine_runs_b_accumulate_grad_before_mul():
    w, b = torch.tensor(3.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    loss = (w * torch.tensor(2.0) + b - torch.tensor(10.0)) ** 2
    trace = trace_backward(loss, params={"w": w, "b": b})
    names = [s.name for s in trace.steps]
    assert names.index("AccumulateGrad") < names.index("MulBackward0")
    assert trace.grad_of(w).item() == -12.0 and trace.grad_of(b).item() == -6.0


def test_make_dot_recursion_fails_on_a_graph_1000_deep():
    if sys.getrecursionlimit() > 1000:
        pytest.skip("the recursion limit was raised; the notebook runs with the default 1000")
    deep = torch.tensor(1.0, requires_grad=True)
    for _ in range(1000):
        deep = deep * 0.999
    with pytest.raises(RecursionError):
        make_dot(deep)


def test_engine_runs_the_ready_node_created_last_first():
    # The notebook says: among the Nodes ready to run, the engine picks the one created last.
    for first, second in (("sin", "exp"), ("exp", "sin")):
        w = torch.tensor(3.0, requires_grad=True)
        out = getattr(w, first)() + getattr(w, second)()
        names = [s.name for s in trace_backward(out).steps]
        assert names.index(f"{second.capitalize()}Backward0") < names.index(f"{first.capitalize()}Backward0")


def test_pow_by_a_number_has_one_next_functions_entry():
    w = torch.tensor(3.0, requires_grad=True)
    assert len((w ** 2).grad_fn.next_functions) == 1
    assert (w * 2).grad_fn.next_functions[1] == (None, 0)
