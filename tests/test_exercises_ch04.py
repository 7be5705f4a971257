"""Chapter 04's exercises: every plausible wrong answer fails with one line, the solutions pass.

WRONG lists, per exercise, answer-cell sources a learner might write (the mistake the
exercise is about first) and a fragment of the one-line feedback each must get.
"""
import pytest
import torch
from torch import nn

from exercise_harness import check_exercises
from helpers import checks
from helpers.exercises import run

CLIP = "def make_clip_hook(limit):\n    def clip(grad):\n        {body}\n    return clip\n"

LOGGER = '''
def grad_norms(model, x):
    norms, handles = {{}}, []
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear):
            {register}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        {backward}
    {remove}
    return norms
'''
PRE_HOOK = ("def record(module, grad_output, name=name):\n"
            "                norms[name] = grad_output[0].norm().item()\n"
            "            handles.append(layer.register_full_backward_pre_hook(record))")
BY_GRAD = "torch.autograd.grad(model(x).pow(2).mean(), list(model.parameters()))"
REMOVE = "for handle in handles:\n        handle.remove()"

COMPRESS = '''
def compress_saved(dtype=torch.float16):
    def pack(t):
        {pack}
    def unpack(packed):
        {unpack}
    return saved_tensors_hooks(pack, unpack)
'''

RIGHT_ORDER = ["b: tensor hook", "b.grad_fn: pre-hook", "b.grad_fn: post-hook",
               "a: tensor hook", "a: post-accumulate hook", "AccumulateGrad of a: post-hook"]

WRONG = {
    "04_ex1": [
        # The in-place clamp exercise 1 forbids.
        (CLIP.format(body="return grad.clamp_(-limit, limit)"), "changed the gradient it was given in place"),
        # Looks at the gradient, returns nothing: backward goes on unclipped.
        (CLIP.format(body="grad.clamp(-limit, limit)"), "returns None"),
        # Clips to [0, limit]: negative entries lost.
        (CLIP.format(body="return grad.clamp(0, limit)"), "is off in 3 of 6 entries"),
        # A fixed limit.
        (CLIP.format(body="return grad.clamp(-1.0, 1.0)"), "make_clip_hook(0.5)"),
        # The hook itself instead of a function that makes one.
        ("def make_clip_hook(grad):\n    return grad.clamp(-1.0, 1.0)",
         "`make_clip_hook(1.0)` raised AttributeError"),
    ],
    "04_ex2": [
        # The colleague's version, as given: grad_input[0] is None for the first layer.
        ('''
def grad_norms(model, x):
    norms = {}
    for name, layer in model.named_modules():
        if isinstance(layer, nn.Linear):
            layer.register_full_backward_hook(
                lambda module, grad_input, grad_output: norms.update({name: grad_input[0].norm().item()}))
    model(x).pow(2).mean().backward()
    return norms
''', "raised AttributeError: 'NoneType' object has no attribute 'norm'"),
        # Only the first bug fixed (grad_output), the lambda still reads `name` when called.
        (LOGGER.format(register="handles.append(layer.register_full_backward_pre_hook(\n"
                                "                lambda module, grad_output: norms.update({name: grad_output[0].norm().item()})))",
                       backward=BY_GRAD, remove=REMOVE),
         "does each hook write under its own layer's name"),
        # Everything fixed but backward(): it adds to the parameters' .grad.
        (LOGGER.format(register=PRE_HOOK, backward="model(x).pow(2).mean().backward()", remove=REMOVE),
         "changed `0.weight.grad`"),
        # The hooks are never removed.
        (LOGGER.format(register=PRE_HOOK, backward=BY_GRAD, remove="pass"), "left 3 hooks on the model"),
        # grad_input, with the None skipped: the gradient of the layer's input, not its output.
        (LOGGER.format(register="def record(module, grad_input, grad_output, name=name):\n"
                                "                if grad_input[0] is not None:\n"
                                "                    norms[name] = grad_input[0].norm().item()\n"
                                "            handles.append(layer.register_full_backward_hook(record))",
                       backward=BY_GRAD, remove=REMOVE),
         "1 item is missing"),
    ],
    "04_ex3": [
        # The mask the wrong way round: frozen entries train, the others stay.
        ("def freeze_where(param, frozen):\n    return param.register_hook(lambda grad: grad * frozen)",
         "frozen entries moved in an SGD step"),
        # Zeroing in place, which exercise 1 forbids.
        ("def freeze_where(param, frozen):\n"
         "    def hook(grad):\n        grad[frozen] = 0\n        return grad\n"
         "    return param.register_hook(hook)", "changed the gradient it was given in place"),
        # The handle not returned.
        ("def freeze_where(param, frozen):\n    param.register_hook(lambda grad: grad.masked_fill(frozen, 0.0))",
         "should return the handle"),
        # Arithmetic on a bool mask.
        ("def freeze_where(param, frozen):\n    return param.register_hook(lambda grad: grad * (1 - frozen))",
         "raised RuntimeError: Subtraction, the `-` operator, with a bool tensor is not supported"),
    ],
    "04_ex4": [
        # Every saved tensor rounded, the integer labels too.
        (COMPRESS.format(pack="return t.dtype, t.to(dtype)", unpack="original, stored = packed\n"
                         "        return stored.to(original)"),
         "saved tensors that are not floating point"),
        # Unpack always returns float32, whatever pack received.
        (COMPRESS.format(pack="return t.to(dtype) if t.is_floating_point() else t",
                         unpack="return packed.float() if packed.is_floating_point() else packed"),
         "unpack gave back torch.float32 for a tensor that pack received as torch.float64"),
        # A full-precision copy kept next to the compressed one.
        (COMPRESS.format(pack="return (t, t.to(dtype)) if t.is_floating_point() else (t, None)",
                         unpack="return packed[0]"),
         "keeps a float32 tensor next to the torch.float16 one: is a full-precision copy kept too?"),
        # only float32 is compressed: a float64 saved tensor stays float64
        (COMPRESS.format(pack="return t.dtype, (t.to(dtype) if t.dtype == torch.float32 else t)",
                         unpack="original, stored = packed\n        return stored.to(original)"),
         "saved tensors as float64, not as torch."),
        # A pack hook that returns nothing.
        (COMPRESS.format(pack="t.to(dtype)", unpack="return packed"), "your pack returns None"),
    ],
    "04_ex5": [
        # AccumulateGrad's post-hook before the post-accumulate-grad hook.
        (f"predicted = {RIGHT_ORDER[:4] + [RIGHT_ORDER[5], RIGHT_ORDER[4]]!r}", "the right items in the wrong order"),
        # b's tensor hook once per use of b.
        (f"predicted = {RIGHT_ORDER[:1] * 2 + RIGHT_ORDER[1:]!r}", "too many items"),
        # The registration order, as written in the cell.
        ("predicted = list(labels)", "the right items in the wrong order"),
        # A label retyped from memory.
        (f"predicted = {RIGHT_ORDER[:5] + ['AccumulateGrad post-hook']!r}", "none of the labels"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solutions_pass():
    check_exercises("04", WRONG)


def test_the_clip_check_accepts_a_float64_hook(capsys):
    run("04_ex1", {"make_clip_hook": lambda limit: (lambda g: torch.clamp(g, -limit, limit))}, graded=True)
    assert capsys.readouterr().out.startswith("✅")


def test_the_logger_check_finds_the_layer_names_of_nested_models():
    def grad_norms(model, x):                       # right on flat models only
        norms, handles = {}, []
        for index, layer in enumerate(model):
            if isinstance(layer, nn.Linear):
                handles.append(layer.register_full_backward_pre_hook(
                    lambda m, go, name=str(index): norms.__setitem__(name, go[0].norm().item())))
        torch.autograd.grad(model(x).pow(2).mean(), list(model.parameters()))
        for handle in handles:
            handle.remove()
        return norms

    run("04_ex2", {"grad_norms": grad_norms})       # the visible model is flat
    with pytest.raises(checks.CheckFailed, match="layer names"):
        run("04_ex2", {"grad_norms": grad_norms}, graded=True)
