"""Chapter 2 (leaf nodes and .grad): the claims its prose makes about what the cells print."""
from nbexec import SOLUTIONS, output_of

NOTEBOOK = SOLUTIONS / "02_leaf_nodes.ipynb"


def printed(snippet):
    """The text printed by the one code cell whose source contains ``snippet``."""
    return output_of(NOTEBOOK, snippet)


def test_02_non_leaf_grad_warning_is_shown_verbatim():
    text = printed("warnings.catch_warnings(record=True)")
    assert "h.grad = None" in text
    assert ("UserWarning: The .grad attribute of a Tensor that is not a leaf Tensor is being accessed. "
            "Its .grad attribute won't be populated during autograd.backward().") in text


def test_02_gradients_accumulate_8_16_24():
    text = printed("for call in (1, 2, 3):")
    for call, value in ((1, 8.0), (2, 16.0), (3, 24.0)):
        assert f"after backward call {call}: w.grad = {value}" in text


def test_02_requires_grad_spreads_but_not_to_a_comparison():
    text = printed('print("x * w             ->"')
    assert "x + x             -> False" in text and "x * w             -> True" in text
    assert "w > 0             -> False" in text   # the prose: a comparison's booleans never require grad
    assert "x * w in no_grad  -> False" in text


def test_02_micro_batches_give_the_full_batch_gradient():
    assert "same gradient: True" in printed("X.chunk(2)")


def test_02_zero_grad_none_frees_the_memory_it_claims():
    # The prose says "0 bytes above, against 4040 for zeros".
    lines = printed("def grad_bytes(model):").splitlines()
    assert " 4040 bytes" in lines[1] and "zero_grad(set_to_none=False)" in lines[1]
    assert " 0 bytes" in lines[2] and "bias.grad = None" in lines[2]


def test_02_none_grad_is_skipped_but_zero_grad_moves_with_momentum():
    text = printed("def second_step_moves_weight(set_to_none):")
    assert "set_to_none=True : weight.grad = None,  weight moved in step 2: False" in text
    assert "set_to_none=False: weight.grad = tensor([[0., 0., 0.]]),  weight moved in step 2: True" in text


def test_02_data_gives_a_silently_wrong_gradient():
    text = printed("w.data.mul_(10)")
    assert "w.grad       = tensor([20., 40., 60.])" in text
    assert "correct grad = tensor([2., 4., 6.])" in text


def test_02_data_does_not_bump_the_version_counter_but_detach_does():
    text = printed("w._version")
    assert "after w.detach().mul_: w._version = 1" in text
    assert "after w.data.mul_:     w._version = 1  (unchanged)" in text


def test_02_frozen_layer_gets_no_grad_and_does_not_change():
    text = printed("changed by the step")
    for name in ("0.weight", "0.bias"):
        assert f"{name}: grad is None: True   changed by the step: False" in text
    for name in ("2.weight", "2.bias"):
        assert f"{name}: grad is None: False  changed by the step: True" in text


def test_02_a_view_made_under_no_grad_requires_grad_but_is_connected_to_nothing():
    text = printed("v = w[:2]")
    assert "n: is_leaf=True   requires_grad=False" in text
    assert "v: is_leaf=True   requires_grad=True   grad_fn=None" in text
    assert "MulBackward0.next_functions: ((None, 0), (None, 0))" in text
    assert "w.grad = None   v.grad = None" in text


def test_02_set_grad_enabled_and_enable_grad_inside_no_grad():
    text = printed("def predict(x, train):")
    assert "train=True : True" in text and "train=False: False" in text
    assert "in no_grad:             grad mode False -> False" in text
    assert "in enable_grad in that: grad mode True -> True" in text
    assert "back in no_grad:        grad mode False -> False" in text


def test_02_enable_grad_does_not_reach_into_inference_mode():
    assert "grad mode True -> False   inference tensor: True" in printed("torch.inference_mode():\n    with torch.enable_grad()")


def test_02_backward_inputs_fills_only_the_listed_tensors():
    text = printed("loss.backward(inputs=list(model[2].parameters()))")
    for name in ("0.weight", "0.bias"):
        assert f"{name}: requires_grad=True   grad is None: True" in text
    for name in ("2.weight", "2.bias"):
        assert f"{name}: requires_grad=True   grad is None: False" in text
    assert "h.grad = tensor(20.)   h.retains_grad = True   w.grad = None" in printed("(h ** 2).backward(inputs=[h])")
    assert "w.grad = tensor([3., 4.])   x.grad = None" in printed("loss.backward(inputs=[w])")


def test_02_no_module_is_echoed_by_accident():
    from nbexec import executed
    for c in executed(NOTEBOOK).cells:
        for o in c.get("outputs", []):
            text = o.get("text", "") + o.get("data", {}).get("text/plain", "")
            assert o.output_type == "error" or not text.startswith(("Linear(", "Sequential(")), text


def test_02_a_frozen_first_layer_has_no_box_in_the_module_drawing():
    import torch
    from torch import nn
    from helpers.walk import walk
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    graph = walk(model(torch.randn(4, 2)).pow(2).mean(), modules=model)
    assert {n.group for n in graph.nodes} == {None, "2"}
    assert "0" not in graph.modules


def test_02_accumulate_grad_receives_the_two_paths_already_summed():
    # The prose of section 2: Pow sends 6, Mul sends 2, AccumulateGrad receives a single 8.
    import torch
    from helpers import trace_backward
    w, x = torch.tensor(3.0, requires_grad=True), torch.tensor(2.0)
    steps = {s.name: s for s in trace_backward(w * x + w ** 2, params={"w": w}).steps}
    assert steps["PowBackward0"].grad_inputs[0].item() == 6.0
    assert steps["MulBackward0"].grad_inputs[0].item() == 2.0
    assert [g.item() for g in steps["AccumulateGrad"].grad_outputs] == [8.0]
