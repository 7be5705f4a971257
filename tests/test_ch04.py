"""Chapter 04 (hooks): the prose states what the runs print -- keep them in step.

The chapter's text names a firing order, a vanishing-gradient ratio, a float16
error and an optimizer-in-backward result. A new PyTorch could change any of
them; these tests read the executed solution notebook and fail if the printed
numbers no longer say what the text says.
"""
import re

import pytest

import nbexec
from nbexec import SOLUTIONS

PATH = SOLUTIONS / "04_hooks.ipynb"


def output_of(marker):
    """The printed text of the one code cell whose source contains ``marker``."""
    return nbexec.output_of(PATH, marker)


def test_firing_order_table_matches_the_text():
    text = output_of('show_rows(rows, ("#", "hook that fired", "h.grad", "w.grad"))')
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()[1:]]
    assert [r[1] for r in rows] == [
        "tensor hook on h", "MulBackward0 pre-hook", "MulBackward0 post-hook", "tensor hook on w",
        "AccumulateGrad pre-hook", "post-accumulate-grad hook on w", "AccumulateGrad post-hook",
    ]
    # retain_grad fills h.grad between the tensor hook and the Node pre-hook ...
    assert [r[2] == "None" for r in rows] == [True] + [False] * 6
    # ... and AccumulateGrad fills w.grad before the post-accumulate-grad hook.
    assert [r[3] == "None" for r in rows] == [True] * 5 + [False] * 2


def test_tensor_hook_reaches_retain_grad_but_node_prehook_does_not():
    text = output_of("h.grad_fn.register_prehook(lambda go: (go[0] * 100,))")
    assert "h.grad: tensor([  60., -120.])" in text
    assert "w.grad: tensor([ 18000., -36000.])" in text


def test_vanishing_gradients_as_described():
    text = output_of("sigmoid_norms = linear_grad_norms(deep_net(nn.Sigmoid), x)")
    ratios = dict(re.findall(r"^(\w+)\s.*ratio first/last (\S+)$", text, re.MULTILINE))
    assert 1e-9 < float(ratios["sigmoid"]) < 1e-7      # "about 10^-8"
    assert 0.3 < float(ratios["ReLU"]) < 3               # "flat"


def test_optimizer_in_backward_matches_optimizer_step():
    text = output_of("register_post_accumulate_grad_hook(sgd_step_in_backward)")
    assert "same weights after one step: True" in text
    assert "step in backward: 1" in text and "optimizer.step(): 4" in text


def test_float16_halves_the_bytes_for_a_small_error():
    text = output_of("with saved_tensors_hooks(pack_fp16, unpack_fp16):")
    small, full = map(int, re.search(r"bytes stored: (\d+) in float16 instead of (\d+)", text).groups())
    assert 2 * small == full
    errors = [float(e) for e in re.findall(r"largest error = (\S+) of", text)]
    assert len(errors) == 2 and all(5e-4 < e < 5e-3 for e in errors)   # "about a tenth of a percent"


def test_deprecated_backward_hook_warns_and_sees_only_the_last_node():
    text = output_of("old_style.register_backward_hook(")
    assert text.startswith("FutureWarning: Using a non-full backward hook")
    assert "register_backward_hook      grad_input: (tensor([[2., 2., 2.]," in text
    full = text.split("register_full_backward_hook grad_input: (")[1].split(",)")[0]
    assert full == text.split("d loss / d x (x.grad): ")[1].strip()


def test_a_tensor_used_twice_fires_its_hook_once_with_the_sum():
    text = output_of('h.register_hook(lambda g: print("hook on h got", g))')
    assert text.count("hook on h got") == 1                 # "One call, with the sum"


def test_autograd_grad_fills_a_retained_non_leaf_grad():
    text = output_of('print("after a second call:  ", h.grad)')
    first = text.split("h.grad afterwards:     ")[1].splitlines()[0]
    assert first == text.split("autograd.grad returns: ")[1].splitlines()[0]   # filled, not None
    assert "after a second call:   tensor([-1.9800,  1.9203])" in text          # and accumulated




def test_hook_nodes_name_their_layer():
    """With modules=net, each BackwardHookFunctionBackward says whose input or output it wraps."""
    import nbexec as _nbexec
    cells = [c for c in _nbexec.executed(PATH).cells
             if c.cell_type == "code" and "modules=net" in c.source and c.source.startswith("draw(")]
    assert len(cells) == 1
    svg = next(o["data"]["image/svg+xml"] for o in cells[0].outputs if "image/svg+xml" in o.get("data", {}))
    assert svg.count(">BackwardHookFunctionBackward<") == 4        # two per hooked layer
    for note in ("input of 0 (Linear)", "output of 0 (Linear)", "input of 2 (Linear)", "output of 2 (Linear)"):
        assert svg.count(f">{note}<") == 1, note


def test_save_on_cpu_stores_a_cpu_tensor_itself():
    text = output_of("hooks = save_on_cpu()")
    assert "same gradients: True" in text and "a saved_tensors_hooks: True" in text
    assert "what it stores for a CPU tensor is the tensor itself: True" in text   # "it just saves nothing"
