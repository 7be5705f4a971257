"""Chapter 06: the claims its prose makes about what the notebook prints.

The prose explains printed facts about PyTorch's behaviour (a custom node's name
and base class, what a plain ctx attribute does that save_for_backward does not,
what forgetting mark_dirty or mark_non_differentiable changes, how coarse float32
finite differences are...). The generic tests only check that cells run; these
read the executed solution notebook's printed output and check that it still
says what the prose claims, so a PyTorch upgrade that changes a behaviour fails
here instead of leaving the text wrong.
"""
import re

import pytest

from nbexec import SOLUTIONS, output_with
from nbexec import printed as printed_by_cell

NOTEBOOK = SOLUTIONS / "06_custom_functions.ipynb"


@pytest.fixture(scope="module")
def printed():
    """Everything the notebook printed, cell by cell."""
    return printed_by_cell(NOTEBOOK)



def line_with(printed, marker):
    text = output_with(printed, marker)
    return next(line for line in text.splitlines() if marker in line)


def test_custom_node_is_named_after_the_class_and_derives_from_BackwardCFunction(printed):
    text = output_with(printed, "is a subclass of")
    assert "MyExpBackward is a subclass of BackwardCFunction" in text, text
    assert "node.name(): MyExpBackward" in text and "torch.exp's node: ExpBackward0" in text, text
    assert "AccumulateGrad" in line_with(printed, "next_functions:")


def test_forward_runs_with_recording_off(printed):
    assert "grad mode on? False | inner.grad_fn: None" in line_with(printed, "inside forward")


def test_the_node_is_the_ctx(printed):
    assert "y.grad_fn.constant = 2.5" in line_with(printed, "y.grad_fn.constant")


def test_needs_input_grad_and_none_for_data(printed):
    assert "(False, True, True)" in line_with(printed, "needs_input_grad:")
    assert line_with(printed, "grad_x:").strip() == "grad_x: None"


def test_plain_attribute_computes_with_modified_values(printed):
    assert "tensor([22., 24., 26.])" in line_with(printed, "SquareAttr gives")


def test_plain_attribute_output_is_a_cycle_and_save_for_backward_is_not(printed):
    attr = line_with(printed, "ctx.y = output:")
    saved = line_with(printed, "save_for_backward(output):")
    assert "alive after del: True" in attr and "after gc.collect(): False" in attr, attr
    assert "alive after del: False" in saved, saved


def test_float_mask_needs_the_mark(printed):
    unmarked = line_with(printed, "ClampWithMask ")
    marked = line_with(printed, "ClampWithMarkedMask")
    assert "mask.requires_grad = True" in unmarked and "mask.requires_grad = False" in marked


def test_forgetting_mark_dirty_gives_a_silently_wrong_gradient(printed):
    marked = line_with(printed, "DoubleInPlace ")
    unmarked = line_with(printed, "DoubleInPlaceUnmarked")
    assert "DoubleInPlaceBackward" in marked and "tensor([ 8., 16.])" in marked, marked
    assert "AddBackward0" in unmarked and "tensor([4., 8.])" in unmarked, unmarked
    leaf = line_with(printed, "the leaf is now")
    assert "tensor([2., 4.])" in leaf and "still a leaf: True" in leaf, leaf


def test_materialized_zeros_versus_none(printed):
    text = output_with(printed, "TwoOutputsBackward received")
    assert "TwoOutputsBackward received: tensor([1., 1.]), tensor([0., 0.])" in text, text
    assert "TwoOutputsLazyBackward received: tensor([1., 1.]), None" in text, text


def test_float32_finite_differences_are_beyond_gradcheck_tolerance(printed):
    f32 = line_with(printed, "torch.float32  step")
    f64 = line_with(printed, "torch.float64  step")
    error = lambda line: float(re.search(r"relative error: (\S+)", line).group(1))
    assert error(f32) > 1e-3 > 1e-8 > error(f64), (f32, f64)
    defaults = line_with(printed, "gradcheck defaults:")
    assert "'eps': 1e-06" in defaults and "'atol': 1e-05" in defaults and "'rtol': 0.001" in defaults


def test_a_backward_that_forgets_grad_output_looks_right_with_sum(printed):
    good = line_with(printed, "Sigmoid         x.grad")
    bad = line_with(printed, "SigmoidNoChain  x.grad")
    assert good.split("=")[1] == bad.split("=")[1], (good, bad)


def test_engine_sums_broadcast_gradients(printed):
    assert "w.grad = tensor(6.)  shape ()" in line_with(printed, "shape ()")


def test_calling_forward_directly_bypasses_the_custom_backward(printed):
    assert "ExpBackward0" in line_with(printed, "MyExp.forward(x):")
    assert "MyExpBackward" in line_with(printed, "MyExp.apply(x):")


def test_once_differentiable_without_guard_drops_the_second_derivative_silently(printed):
    line = line_with(printed, "only the x**2 part")
    assert "first derivative: 16.0" in line and "second derivative: 2.0" in line, line


def test_once_differentiable_guard_is_an_error_node(printed):
    assert "dx.grad_fn: torch::autograd::Error" in line_with(printed, "dx.grad_fn:")


def test_a_scalar_input_swallows_a_gradient_of_any_shape():
    """Try it 1 tells learners that returning torch.ones(2) for a scalar input is summed silently."""
    import torch

    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(x, b):
            return x * b

        @staticmethod
        def setup_context(ctx, inputs, output):
            pass

        @staticmethod
        def backward(ctx, grad):
            return None, torch.ones(2)   # nonsense for the scalar b

    b = torch.tensor(0.5, requires_grad=True)
    Scale.apply(torch.ones(3), b).sum().backward()
    assert b.grad.shape == () and b.grad.item() == 2.0
