"""Chapter 03's exercises: every plausible wrong answer fails with one line, the solutions pass.

WRONG lists, per exercise, answer-cell sources a learner might write (the mistake the
exercise is about first) and a fragment of the one-line feedback each must get.
"""
import pytest
import torch

from exercise_harness import check_exercises
from helpers import checks
from helpers.exercises import run

TBPTT = '''
def tbptt_grads(W_h, W_x, xs, chunk_len):
    h = torch.zeros(W_h.shape[0])
    grads = []
    for start in range(0, len(xs), chunk_len):
        {cut}
        loss = 0
        for x_t in xs[start:start + chunk_len]:
            h = torch.tanh(W_h @ h + W_x @ x_t)
            loss = loss + (h ** 2).sum()
        {zero}
        loss.backward({retain})
        grads.append(W_h.grad.clone())
    return grads
'''

SEGMENTED = '''
def forward_checkpointed(model, x, per_segment):
    def run_segment(h, blocks):
        for block in blocks:
            h = h + torch.tanh(block(h))
        return h

    for start in range(0, len(model.blocks), per_segment):
        x = checkpoint(run_segment, x, model.blocks[start:start + per_segment], use_reentrant={reentrant})
    return model.head(x)
'''

WRONG = {
    "03_ex1": [
        # sigmoid's derivative is usually written with its input in mind: σ(a)(1 - σ(a)).
        ('saves = {"sigmoid": "input", "sqrt": "output", "log": "input", "neg": "nothing", '
         '"tanh": "output", "atan": "input"}', "the value for 'sigmoid' is not quite right"),
        # "Every op saves its input."
        ('saves = {"sigmoid": "input", "sqrt": "input", "log": "input", "neg": "input", '
         '"tanh": "input", "atan": "input"}', "are wrong"),
        # The Node's attribute name instead of the kind.
        ('saves = {"sigmoid": "result", "sqrt": "result", "log": "self", "neg": "nothing", '
         '"tanh": "result", "atan": "self"}', "should be \"input\", \"output\" or \"nothing\""),
        # One operation left out.
        ('saves = {"sigmoid": "output", "sqrt": "output", "log": "input", "neg": "nothing", '
         '"tanh": "output"}', "has no key 'atan'"),
        # The template left as it is.
        ('saves = {"sigmoid": None, "sqrt": None, "log": None, "neg": None, "tanh": None, "atan": None}',
         "not None"),
    ],
    "03_ex2": [
        # "3 is a number, not a tensor: nothing saved" -- but PyTorch saves it as a 0-dim tensor.
        ('raises_again = {"(p + c).sum()": False, "(p * 3).sum()": False, "p.mean()": False, '
         '"p.norm()": True, "torch.cat([p, p]).sum()": False, "p.abs().sum()": True}',
         "the value for '(p * 3).sum()' is not quite right"),
        # "A second backward always fails."
        ('raises_again = {"(p + c).sum()": True, "(p * 3).sum()": True, "p.mean()": True, '
         '"p.norm()": True, "torch.cat([p, p]).sum()": True, "p.abs().sum()": True}', "are wrong"),
        # Strings for booleans.
        ('raises_again = {"(p + c).sum()": "False", "(p * 3).sum()": "True", "p.mean()": "False", '
         '"p.norm()": "True", "torch.cat([p, p]).sum()": "False", "p.abs().sum()": "True"}',
         "should be True or False, not the string 'False'"),
        # A list instead of the dict.
        ("raises_again = [False, True, False, True, False, True]", "should be a dict"),
    ],
    "03_ex3": [
        # Each distinct tensor *object* counted once: W2.T is another object in W2's storage.
        ("saved = []\n"
         "with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):\n"
         "    expression(x, W1, W2)\n"
         "n_saves, total_bytes = len(saved), sum(t.nbytes for t in saved)\n"
         "unique_bytes = sum({id(t): t.nbytes for t in saved}.values())",
         "`unique_bytes` is too large"),
        # Every save counted once per storage for the total too.
        ("saved = []\n"
         "with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):\n"
         "    expression(x, W1, W2)\n"
         "n_saves = len(saved)\n"
         "total_bytes = unique_bytes = sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()"
         " for t in saved}.values())",
         "`total_bytes` is too small"),
        # Counting distinct storages as the number of saves.
        ("saved = []\n"
         "with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):\n"
         "    expression(x, W1, W2)\n"
         "storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in saved}\n"
         "n_saves, total_bytes, unique_bytes = len(storages), sum(t.nbytes for t in saved), "
         "sum(storages.values())",
         "`n_saves` is too small"),
        # Elements instead of bytes, as floats.
        ("saved = []\n"
         "with torch.autograd.graph.saved_tensors_hooks(lambda t: (saved.append(t), t)[1], lambda t: t):\n"
         "    expression(x, W1, W2)\n"
         "n_saves, total_bytes, unique_bytes = len(saved), sum(t.numel() for t in saved) * 1.0, 0.0",
         "`total_bytes` should be a Python int, not a float"),
    ],
    "03_ex4": [
        # The unpacking comma forgotten: a tuple of one gradient.
        ("vjp = torch.autograd.grad(g(s), s, grad_outputs=u)", "is a tuple holding one tensor"),
        # grad_outputs left out, a sum instead: 1ᵀJ, not uᵀJ.
        ("vjp, = torch.autograd.grad(g(s).sum(), s)", "`vjp` is off in"),
        # The Jacobian times u: J u, not uᵀ J.
        ("vjp = torch.autograd.functional.jacobian(g, s) @ u", "`vjp` is off in"),
        # Not written.
        ("vjp = None", "still None"),
    ],
    "03_ex5": [
        # The version from the exercise text: the graph is not cut between chunks.
        (TBPTT.format(cut="pass", zero="W_h.grad = None", retain=""),
         "raised RuntimeError: Trying to backward through the graph a second time"),
        # retain_graph=True silences the error, and sends gradients into earlier chunks.
        (TBPTT.format(cut="pass", zero="W_h.grad = None", retain="retain_graph=True"),
         "items 1, 2, 3 and 4 are wrong"),
        # The hidden state reset, not carried over.
        (TBPTT.format(cut="h = torch.zeros(W_h.shape[0])", zero="W_h.grad = None", retain=""),
         "items 1, 2, 3 and 4 are wrong"),
        # .grad not reset between chunks: each entry accumulates the earlier ones.
        (TBPTT.format(cut="h = h.detach()", zero="pass", retain=""), "items 1, 2, 3 and 4 are wrong"),
        # The loss's sign flipped (gradient ascent): every chunk's gradient has the wrong sign.
        (TBPTT.format(cut="h = h.detach()", zero="W_h.grad = None", retain="").replace(
            "loss = loss + (h ** 2)", "loss = loss - (h ** 2)"), "every gradient"),
    ],
    "03_ex6": [
        # A closure made in the loop: the recomputation reads `start` after the loop has ended.
        ('''
def forward_checkpointed(model, x, per_segment):
    for start in range(0, len(model.blocks), per_segment):
        def segment(h):
            for block in model.blocks[start:start + per_segment]:
                h = h + torch.tanh(block(h))
            return h
        x = checkpoint(segment, x, use_reentrant=False)
    return model.head(x)
''', "does the recomputation run the same blocks as the forward"),
        # The reentrant implementation: x needs no grad, so the blocks' weights get none.
        (SEGMENTED.format(reentrant="True"), "no gradient reaches `blocks.0.weight`"),
        # Every block checkpointed on its own: nothing kept is saved.
        ('''
def forward_checkpointed(model, x, per_segment):
    for block in model.blocks:
        x = checkpoint(lambda h, block=block: h + torch.tanh(block(h)), x, use_reentrant=False)
    return model.head(x)
''', "keeps 12 activation-sized tensors"),
        # Segments as nn.Sequential, as in 3.6: the residual connections and tanh are lost.
        ('''
def forward_checkpointed(model, x, per_segment):
    for start in range(0, len(model.blocks), per_segment):
        x = checkpoint(nn.Sequential(*model.blocks[start:start + per_segment]), x, use_reentrant=False)
    return model.head(x)
''', "the output of forward_checkpointed(model, x, 4)` is off"),
        # No checkpoint at all.
        ("def forward_checkpointed(model, x, per_segment):\n    return model(x)", "block 0 ran once"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solutions_pass():
    check_exercises("03", WRONG)


def test_using_backward_for_the_vjp_is_caught():
    s = torch.tensor([0.5, -1.0, 2.0], requires_grad=True)
    u = torch.tensor([2.0, -1.0, 0.5])
    y = torch.stack([s[0] * s[1], torch.sin(s[1]) * s[2], (s ** 2).sum()])
    y.backward(u)
    with pytest.raises(checks.CheckFailed, match="`s.grad` was filled"):
        run("03_ex4", {"vjp": s.grad.clone(), "s": s})


def test_the_vjp_check_works_in_float64_too(capsys):
    s = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    y = torch.stack([s[0] * s[1], torch.sin(s[1]) * s[2], (s ** 2).sum()])
    vjp, = torch.autograd.grad(y, s, grad_outputs=u)
    run("03_ex4", {"vjp": vjp, "s": s})
    assert capsys.readouterr().out == "✅ vjp is right.\n"


def test_the_checkpoint_check_leaves_the_random_state_alone():
    from torch.utils.checkpoint import checkpoint

    def forward_checkpointed(model, x, per_segment):
        def run_segment(h, blocks):
            for block in blocks:
                h = h + torch.tanh(block(h))
            return h
        for start in range(0, len(model.blocks), per_segment):
            x = checkpoint(run_segment, x, model.blocks[start:start + per_segment], use_reentrant=False)
        return model.head(x)

    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    run("03_ex6", {"forward_checkpointed": forward_checkpointed}, graded=True)
    assert torch.equal(torch.random.get_rng_state(), before)
