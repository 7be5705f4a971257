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
