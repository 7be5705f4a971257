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

import nbexec
from nbexec import SOLUTIONS, output_with
from nbexec import printed as printed_by_cell

NOTEBOOK = SOLUTIONS / "06_custom_functions.ipynb"


def output_of(marker):
    """The printed text of the one code cell whose source contains ``marker``."""
    return nbexec.output_of(NOTEBOOK, marker)


def cell_with(marker):
    return nbexec.cell_with(NOTEBOOK, marker)


def error_of(marker):
    return nbexec.error_of(NOTEBOOK, marker)


def stderr_of(marker):
    return "".join(o.text for o in cell_with(marker).outputs
                   if o.output_type == "stream" and o.name == "stderr")


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


def test_forgetting_mark_dirty_gives_a_silently_wrong_gradient_when_nothing_saved_the_input():
    marked, unmarked = output_of("(h * h).sum().backward()").splitlines()
    assert "DoubleInPlaceBackward" in marked and "tensor([ 8., 16.])" in marked, marked
    assert "AddBackward0" in unmarked and "tensor([4., 8.])" in unmarked, unmarked
    leaf = output_of("DoubleInPlaceUnmarked.apply(leaf)")
    assert "tensor([2., 4.])" in leaf and "still a leaf: True" in leaf, leaf


def test_apply_returns_the_input_with_mark_dirty_and_a_new_alias_without():
    marked, unmarked = output_of("same memory:").splitlines()
    assert "out is h: True" in marked and "same memory: True" in marked, marked
    assert "h.grad_fn: DoubleInPlaceBackward" in marked, marked
    assert "out is h: False" in unmarked and "same memory: True" in unmarked, unmarked
    assert "h.grad_fn: AddBackward0" in unmarked, unmarked
    assert "out.grad_fn: DoubleInPlaceUnmarkedBackward" in unmarked, unmarked


def test_forgetting_mark_dirty_still_bumps_the_version_an_earlier_node_checks():
    error = error_of("z = h * h")
    assert error.ename == "RuntimeError"
    assert "is at version 1; expected version 0 instead" in error.evalue, error.evalue


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


# ------------------------------------------------------------ issue-12 claims

def test_the_ctx_setup_context_receives_is_the_node():
    assert output_of("MyExpSpy.contexts[-1] is y_spy.grad_fn").strip() == "ctx is y_spy.grad_fn: True"


def test_needs_input_grad_records_forward_time_requires_grad_not_this_backward():
    text = output_of("class LinearFunctionLogged")
    assert "needs_input_grad = (False, True, True) | computed (x, W, B): [False, True, True]" in text, text
    assert "asked for B only; W.grad is still None" in text, text


def test_saving_an_intermediate_works_once_and_silently_loses_the_second_derivative():
    text = output_of("TanhSavesIntermediate.apply(x).sum()")
    assert "gradcheck:     True" in text, text
    assert "dx.requires_grad = False" in text, text
    assert "gradgradcheck: False" in text, text


def test_forward_mode_needs_a_jvp_staticmethod_and_jacfwd_a_vmap_rule_too():
    error = error_of("torch.func.jacfwd(MyExpVmap.apply)")
    assert error.ename == "NotImplementedError" and "implement the jvp function" in error.evalue
    text = output_of("y, y_tangent = torch.func.jvp(MyExpForward.apply")
    assert "torch.func.jvp: tangent tensor([1.6487, 0.3679, 7.3891])" in text, text
    assert "forward_ad:     tangent tensor([1.6487, 0.3679, 7.3891])" in text, text
    error = error_of("torch.func.jacfwd(MyExpForward.apply)(x)")
    assert error.ename == "RuntimeError" and "does not have vmap support" in error.evalue
    text = output_of("class MyExpForwardBatched")
    assert "jacfwd == jacrev: True" in text and "is diag(exp(x)): True" in text, text


def test_a_vmap_staticmethod_batches_a_numpy_forward():
    error = error_of("torch.func.vmap(NumpyExpGenerated.apply)(xs)")
    assert "Cannot access data pointer" in error.evalue
    text = output_of("class NumpyExpBatched")
    assert "batch size 4, in_dims (0,), x of shape (4, 3)" in text, text
    assert "batch size 3, in_dims (1,), x of shape (4, 3)" in text, text
    assert "matches exp: True" in text and "over dim 1:  True" in text, text


def test_custom_op_with_register_autograd_is_a_function_node_and_passes_opcheck():
    text = output_of("y = numpy_sinh(x)")
    assert "matches torch.sinh: True" in text and "gradcheck: True" in text, text
    assert "y.grad_fn: GeneratedBackwardFor_autograd_lab_numpy_sinh_defaultBackward" in text, text
    assert "a BackwardCFunction, like a Function's Node: True" in text, text
    opcheck = output_of("print(torch.library.opcheck(numpy_sinh")
    for test in ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic"):
        assert f"'{test}': 'SUCCESS'" in opcheck, opcheck


def test_compile_keeps_the_custom_op_opaque_and_traces_through_the_function():
    lines = output_of("def show_graph").splitlines()
    assert lines[0] == "  captured: ['mul', 'numpy_sinh.default', 'sum'] | subgraphs: []", lines
    assert lines[1] == "numpy_sinh: compiled gradient == eager gradient: True", lines
    assert "autograd_function_apply" in lines[2] and "exp" not in lines[2], lines
    assert lines[2].endswith("| subgraphs: ['fwd_body_0', 'bwd_body_0']"), lines
    assert lines[3] == "MyExp: compiled gradient == eager gradient: True", lines


def test_a_custom_op_refuses_a_dict_argument_and_an_output_that_is_its_input():
    """Section 3.9's "price" of a custom_op, checked on PyTorch itself."""
    import torch

    with pytest.raises(ValueError, match="unsupported type <class 'dict'>"):
        @torch.library.custom_op("autograd_lab_test::takes_dict", mutates_args=())
        def takes_dict(x: torch.Tensor, options: dict) -> torch.Tensor:
            return x.clone()

    @torch.library.custom_op("autograd_lab_test::returns_input", mutates_args=())
    def returns_input(x: torch.Tensor) -> torch.Tensor:
        return x

    with pytest.raises(RuntimeError, match="may not alias any inputs"):
        returns_input(torch.ones(2))


def test_seed_002_gradcheck_on_float32_warns_and_raises():
    marker = '"prints True", says the snippet'
    assert "is not a double precision floating point" in stderr_of(marker)
    assert error_of(marker).ename == "GradcheckError"
    assert output_of("print(gradcheck(LinearFunction.apply, inputs, eps=1e-6, atol=1e-4))").strip() == "True"


def test_seed_004_fixed_bug_by_bug_ends_with_a_passing_gradcheck():
    order = ["run_as_file(BLOG_SIGMOID)", "step1 = ", "step2 = ", "step3 = ", "step4 = "]
    names = [error_of(marker).ename for marker in order]
    assert names == ["IndentationError", "NameError", "NameError", "NameError", "ValueError"], names
    assert "not enough values to unpack (expected 2, got 1)" in error_of("step4 = ").evalue
    assert output_of("step5 = ").strip() == "True"
    seed = cell_with("BLOG_SIGMOID = ").source
    for bug in ("t.exp(-x)", "output,_ = ctx,saved_tensors", "\ndef forward(ctx, x):\noutput ="):
        assert bug in seed, bug


# ------------------------------------------------------------ chapter noise


