"""Chapter 08 (debugging autograd): the facts its prose relies on, as the executed notebook printed them."""
import re

import pytest

from nbexec import SOLUTIONS, executed, output_of

CH08 = SOLUTIONS / "08_debugging_autograd.ipynb"


def out(marker):
    return output_of(CH08, marker)


def test_the_drawing_and_walk_agree_on_which_parameters_have_no_gradient():
    assert "{'gate': True, 'a.weight': False, 'a.bias': False, 'b.weight': False, 'b.bias': False, " \
           "'spare.weight': True, 'spare.bias': True}" in out("tangle = Tangle()")
    assert "['gate', 'spare.weight', 'spare.bias']" in out("in_graph = ")


def test_five_of_the_six_cases_leave_p_grad_none():
    text = out("for case in (unused, detached")
    for case in ("unused", "detached", "through_data", "under_no_grad", "inputs_without_p"):
        assert re.search(rf"^{case}\s+p\.grad = None$", text, re.M), case
    assert re.search(r"^used\s+p\.grad = tensor\(\[3\., 4\.\]\)$", text, re.M)


def test_the_version_counter_and_the_in_place_error():
    assert "after sigmoid: 0\nafter mul_:    1" in out("s.mul_(2)")
    errors = [o for c in executed(CH08).cells if c.cell_type == "code" and c.source.strip() == "s.sum().backward()"
              for o in c.outputs if o.output_type == "error"]
    assert errors and "[torch.FloatTensor [3]], which is output 0 of Sigmoid, is at version 1; " \
                      "expected version 0 instead" in errors[0].evalue


def test_writing_through_a_view_bumps_the_base_version():
    assert "e._version: 1 | e.grad_fn: CopySlices" in out("first_two.zero_()")


def test_anomaly_mode_names_the_node_and_adds_the_forward_traceback():
    text = out("y.sum().backward()\n    except RuntimeError as error:")
    assert "Function 'SqrtBackward0' returned nan values in its 0th output." in text
    assert "Error detected in SqrtBackward0. Traceback of forward call that caused the error:" in text
    assert "    y = torch.where(x > 0, x.sqrt(), torch.zeros_like(x))" in text   # "points at the line"
    assert re.search(r"one training step: [\d.]+ ms plain, [\d.]+ ms with anomaly mode", out("anomaly = median_seconds()"))


def test_masking_the_input_fixes_where_and_nan_to_num_does_not():
    assert "x.grad = tensor([0.0000, 0.0000, 0.2500])" in out("safe_x = ")
    assert "x.grad = tensor([   nan, 0.2500])" in out("torch.nan_to_num(")


def test_norms_at_zero():
    text = out('("x.norm()", lambda z: z.norm())')
    assert re.search(r"x\.norm\(\)\s+at zero: grad = tensor\(\[0\., 0\., 0\.\]\)", text)
    assert re.search(r"\(x \* x\)\.sum\(\)\.sqrt\(\)\s+at zero: grad = tensor\(\[nan, nan, nan\]\)", text)
    assert re.search(r"x / x\s+at zero: grad = tensor\(\[nan, nan, nan\]\)", text)


def test_gradients_vanish_through_sigmoids_and_kaiming_keeps_relu_steady():
    text = out("kaiming = lambda w")
    ratio = {m.group(1).strip(): float(m.group(2))
             for m in re.finditer(r"^(.+?)\s+first layer / last layer: (\S+)$", text, re.M)}
    assert ratio["Sigmoid"] < 1e-6                         # about ten times per layer, ten layers
    assert ratio["Sigmoid"] < ratio["Tanh"] < 1 and ratio["ReLU"] < 1   # the defaults shrink it too
    assert 0.2 < ratio["ReLU, Kaiming init"] < 5           # "nearly steady"


def test_the_trace_finds_the_first_nonfinite_step_while_the_forward_is_finite():
    text = out("trace.first_nonfinite()")
    assert "forward loss: 0.6931\n" in text
    assert "LogBackward0" in text


def test_torch_compile_hands_autograd_one_node():
    text = out("compiled = torch.compile(block")
    assert "eager:    ['AccumulateGrad', 'MmBackward0', 'SumBackward0', 'TanhBackward0']" in text
    assert "compiled: ['AccumulateGrad', 'CompiledFunctionBackward']" in text
    text = out("compiled_out.grad_fn.register_prehook")
    assert "the stepper's steps: ['CompiledFunctionBackward', 'AccumulateGrad']" in text
    assert "['prehook on the compiled Node', 'tensor hook on w']" in text
    assert "same gradient as eager: True" in text


def test_eager_block_has_four_steps_where_the_compiled_one_has_two():
    import torch
    from helpers import trace_backward
    x, w = torch.randn(4, 3), torch.randn(3, 2, requires_grad=True)
    assert len(list(trace_backward((x @ w).tanh().sum()))) == 4      # the prose: "two steps, not four"


def test_a_backward_through_a_tensor_rewritten_through_a_view_raises_the_version_error():
    import torch
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    e = w.exp()
    e[:2].zero_()
    with pytest.raises(RuntimeError, match=r"output 0 of Exp, is at version 1; expected version 0"):
        e.sum().backward()


def test_detach_shares_memory_and_to_the_same_dtype_returns_the_leaf_itself():
    import torch
    p = torch.tensor([1.0, 2.0], requires_grad=True)
    assert p.detach().data_ptr() == p.data_ptr()                     # "the same memory, even"
    assert p.to(torch.float32) is p and not p.double().is_leaf       # why the prose says p.double()




@pytest.mark.parametrize("marker", ["stop_at=\"nonfinite\""])
def test_the_stepper_opens_at_the_nan(marker):
    cells = [c for c in executed(CH08).cells if c.cell_type == "code" and marker in c.source]
    assert cells and not [o for o in cells[0].outputs if o.output_type == "error"]
