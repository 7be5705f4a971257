"""Chapter 07's exercises: every plausible wrong answer fails with one line, the solutions pass.

WRONG lists, per exercise, answer-cell sources a learner might write (the mistake the
exercise is about first) and a fragment of the one-line feedback each must get.
"""
import inspect

import torch

from exercise_harness import check_exercises
from helpers.exercises import ch07

SIGN = '''class SignSTE(Function):
    @staticmethod
    def forward(x):
        return torch.sign(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        {sc}

    @staticmethod
    def backward(ctx, grad_output):
        {bw}
'''
def sign(bw, sc="x, = inputs\nctx.save_for_backward(x)"):
    return SIGN.format(sc=sc.replace("\n", "\n        "), bw=bw.replace("\n", "\n        "))

def clipped(body):
    return "def clipped_round_ste(x, lo, hi):\n    " + body.replace("\n", "\n    ") + "\n"

def per_channel(body):
    return ("class PerChannelQuantLinear(QuantLinear):\n    def quantized_weight(self):\n"
            "        qmax = 2 ** (self.bits - 1) - 1\n        " + body.replace("\n", "\n        ") + "\n")

LSQ = '''class LearnedScaleQuantize(LearnedScaleForward):
    @staticmethod
    def setup_context(ctx, inputs, output):
        x, scale, quant_min, quant_max = inputs
        ctx.save_for_backward(x, scale)
        ctx.limits = (quant_min, quant_max)

    @staticmethod
    def backward(ctx, grad_output):
        x, scale = ctx.saved_tensors
        quant_min, quant_max = ctx.limits
        q = to_level(x, scale, 0)
        inside = (q >= quant_min) & (q <= quant_max)
        {bw}
'''
def lsq(bw):
    return LSQ.format(bw=bw.replace("\n", "\n        "))

WRONG = {
    "07_ex1": [
        (sign("return grad_output"), "the gradient through SignSTE"),
        (sign("return torch.zeros_like(grad_output)"), "the gradient through SignSTE"),
        (sign("y, = ctx.saved_tensors\nreturn grad_output * (y.abs() <= 1)", sc="ctx.save_for_backward(output)"),
         "the gradient through SignSTE"),
        (sign("x, = ctx.saved_tensors\nreturn (x.abs() <= 1).float()"), "the gradient through SignSTE"),
        (sign("x = ctx.saved_tensors\nreturn grad_output * (x.abs() <= 1)"), "SignSTE.backward raised"),
        (sign("return grad_output * (ctx.x.abs() <= 1)", sc="ctx.x = inputs[0]"),
         "plain ctx attribute (`ctx.x`)"),
    ],
    "07_ex2": [
        (clipped("return x + (torch.round(x) - x).detach()"), "clipped_round_ste(x, -2, 1)` is off"),
        (clipped("return x + (torch.round(x).clamp(lo, hi) - x).detach()"), "the gradient through clipped_round_ste"),
        (clipped("return torch.round(x).clamp(lo, hi)"), "the gradient through clipped_round_ste"),
        (clipped("return torch.round(x.detach()).clamp(lo, hi)"), "does not require grad"),
        (clipped("return torch.round(x.clamp(lo, hi))"), "the gradient through clipped_round_ste"),
    ],
    "07_ex3": [
        (per_channel("scale = self.weight.detach().abs().max() / qmax\nreturn FakeQuantize.apply(self.weight, scale, 0, -qmax, qmax)"),
         "output"),
        (per_channel("scale = self.weight.detach().abs().amax(dim=1) / qmax\nreturn FakeQuantize.apply(self.weight, scale, 0, -qmax, qmax)"),
         "raised RuntimeError"),
        (per_channel("scale = self.weight.detach().abs().amax(dim=1, keepdim=True) / qmax\nreturn torch.round(self.weight / scale).clamp(-qmax, qmax) * scale"),
         "the gradient for weight"),
        (per_channel("scale = self.weight.detach().abs().amax(dim=0, keepdim=True) / qmax\nreturn FakeQuantize.apply(self.weight, scale, 0, -qmax, qmax)"),
         "output"),
    ],
    "07_ex4": [
        (lsq("return grad_output * inside, None, None, None"), "no gradient for `scale`"),
        (lsq("d = torch.where(inside, q - x / scale, q.clamp(quant_min, quant_max))\nreturn grad_output * inside, grad_output * d, None, None"),
         "shape (200,) for `scale`"),
        (lsq("d = torch.where(inside, x / scale - q, q.clamp(quant_min, quant_max))\nreturn grad_output * inside, (grad_output * d).sum(), None, None"),
         "the gradient for scale"),
        (lsq("d = torch.where(inside, q - x / scale, torch.zeros_like(q))\nreturn grad_output * inside, (grad_output * d).sum(), None, None"),
         "the gradient for scale"),
        (lsq("d = torch.where(inside, q - x / scale, q.clamp(quant_min, quant_max))\nreturn grad_output, (grad_output * d).sum(), None, None"),
         "the gradient for x"),
        (lsq("ctx.q = q\nd = torch.where(inside, q - x / scale, q.clamp(quant_min, quant_max))\nreturn grad_output * inside, (grad_output * d).sum(), None, None"),
         "plain ctx attribute (`ctx.q`)"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solutions_pass():
    check_exercises("07", WRONG)


def test_no_verifier_holds_a_solution():
    """The verifiers compare with PyTorch's own quantizers and masks; none writes the answers."""
    source = inspect.getsource(ch07)
    for giveaway in ("x).detach()", "def backward", "amax(dim=1, keepdim=True)", "q - x", "torch.where("):
        assert giveaway not in source, giveaway


def test_the_per_channel_check_leaves_the_random_state_alone():
    """The check seeds the layers it builds; the learner's random stream goes on as before."""
    from helpers.exercises import run

    class FakeLayer(torch.nn.Module):   # fails the check quickly, after drawing random numbers
        def __init__(self, n_in, n_out, bits):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(n_out, n_in))
            self.bias = torch.nn.Parameter(torch.zeros(n_out))
            self.bits = bits

        def forward(self, x):
            return x @ self.weight.T + self.bias

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    try:
        run("07_ex3", {"PerChannelQuantLinear": FakeLayer})
    except AssertionError:
        pass
    assert torch.equal(torch.rand(3), expected)
