"""Chapter 06's exercises: every plausible wrong answer fails with one line, the solutions pass.

WRONG lists, per exercise, answer-cell sources a learner might write (the mistake the
exercise is about first) and a fragment of the one-line feedback each must get.
"""
import inspect

import torch

from exercise_harness import check_exercises
from helpers.exercises import ch06, run

RECIP = '''class Reciprocal(Function):
    @staticmethod
    def forward(x):
        return 1 / x

    @staticmethod
    def setup_context(ctx, inputs, output):
        {sc}

    @staticmethod
    def backward(ctx, grad_output):
        {bw}
'''
def recip(sc, bw):
    return RECIP.format(sc=sc, bw=bw.replace("\n", "\n        "))

SILU = '''class SiLU(Function):
    @staticmethod
    def forward(x):
        return x * torch.sigmoid(x)

    @staticmethod
    def setup_context(ctx, inputs, output):
        {sc}

    @staticmethod
    def backward(ctx, grad_output):
        {bw}
'''
def silu(sc, bw):
    return SILU.format(sc=sc.replace("\n", "\n        "), bw=bw.replace("\n", "\n        "))

AFFINE = '''class Affine(AffineForward):
    @staticmethod
    def setup_context(ctx, inputs, output):
        x, scale, shift = inputs
        ctx.save_for_backward(x, scale)

    @staticmethod
    def backward(ctx, grad_out):
        x, scale = ctx.saved_tensors
        {bw}
'''
AFFINE_SHIFT_FLAG = '''class Affine(AffineForward):
    @staticmethod
    def setup_context(ctx, inputs, output):
        x, scale, shift = inputs
        ctx.save_for_backward(x, scale)
        ctx.has_shift = shift is not None       # tests "given", not "needs a gradient"

    @staticmethod
    def backward(ctx, grad_out):
        x, scale = ctx.saved_tensors
        gx = grad_out * scale if ctx.needs_input_grad[0] else None
        gs = (grad_out * x).sum(0) if ctx.needs_input_grad[1] else None
        gh = grad_out.sum(0) if ctx.has_shift else None
        return gx, gs, gh
'''

def affine(bw):
    return AFFINE.format(bw=bw.replace("\n", "\n        "))

TOPK = '''class TopKMask(Function):
    @staticmethod
    def forward(ctx, x, k):
        {fw}

    @staticmethod
    def backward(ctx, grad_values, grad_mask):
        {bw}
'''
GOOD_TOPK_BW = "indices, = ctx.saved_tensors\nreturn grad_values.new_zeros(ctx.n).scatter(0, indices, grad_values), None"
def topk(fw, bw=GOOD_TOPK_BW):
    return TOPK.format(fw=fw.replace("\n", "\n        "), bw=bw.replace("\n", "\n        "))
GOOD_TOPK_FW_TAIL = "ctx.save_for_backward(indices)\nctx.n = x.shape[0]\nreturn values, mask"

SOFTPLUS = '''class Softplus(SoftplusForward):
    @staticmethod
    def setup_context(ctx, inputs, output):
        {sc}

    @staticmethod
    def backward(ctx, grad_output):
        {bw}
{jvp}'''
GOOD_SC = "x, = inputs\nctx.save_for_backward(x)\nctx.save_for_forward(x)"
GOOD_BW = "x, = ctx.saved_tensors\nreturn grad_output * torch.sigmoid(x)"
def jvp(body):
    return "\n    @staticmethod\n    def jvp(ctx, x_tangent):\n        " + body.replace("\n", "\n        ") + "\n"
GOOD_JVP = jvp("x, = ctx.saved_tensors\nreturn x_tangent * torch.sigmoid(x)")
def softplus(sc=GOOD_SC, bw=GOOD_BW, jv=GOOD_JVP):
    return SOFTPLUS.format(sc=sc.replace("\n", "\n        "), bw=bw.replace("\n", "\n        "), jvp=jv)

WRONG = {
    "06_ex1": [
        (recip("ctx.save_for_backward(output)", "y, = ctx.saved_tensors\nreturn grad_output * y * y"),
         "has the wrong sign"),
        (recip("ctx.save_for_backward(output)", "y, = ctx.saved_tensors\nreturn -y * y"),
         "the gradient for `x`"),
        (recip("ctx.save_for_backward(output)", "y = ctx.saved_tensors\nreturn -grad_output * y * y"),
         "is a tuple multiplied there? (ctx.saved_tensors is a tuple: unpack it)"),
        (recip("ctx.save_for_backward(inputs[0])", "y, = ctx.saved_tensors\nreturn -grad_output * y * y"),
         "the gradient for `x`"),
        (recip("ctx.y = output", "return -grad_output * ctx.y * ctx.y"),
         "keeps a tensor as a plain ctx attribute (`ctx.y`)"),
    ],
    "06_ex2": [
        (silu("ctx.save_for_backward(output)", "x, = ctx.saved_tensors\ns = torch.sigmoid(x)\nreturn grad_output * s * (1 + x * (1 - s))"),
         "the gradient for `x`"),
        (silu("x, = inputs\nctx.save_for_backward(x)", "x = ctx.saved_tensors\ns = torch.sigmoid(x)\nreturn grad_output * s * (1 + x * (1 - s))"),
         "SiLU.backward raised TypeError"),
        (silu("x, = inputs\nctx.save_for_backward(x)", "x, = ctx.saved_tensors\ns = torch.sigmoid(x)\nreturn s * (1 + x * (1 - s))"),
         "the gradient for `x`"),
        (silu("x, = inputs\nctx.save_for_backward(x)", "x, = ctx.saved_tensors\ns = torch.sigmoid(x)\nreturn grad_output * s * (1 - s)"),
         "the gradient for `x`"),
    ],
    "06_ex3": [
        (affine("return grad_out * scale, grad_out * x, grad_out"),
         "Affine.backward returns a gradient of shape (4, 3) for `scale`"),
        (affine("return grad_out * scale, (grad_out * x).sum(0), grad_out.sum(0)"),
         "when `x` does not require grad"),
        (affine("gx = grad_out * scale if ctx.needs_input_grad[0] else None\ngs = (grad_out * x).sum(0) if ctx.needs_input_grad[1] else None\nreturn gx, gs, grad_out.sum(0)"),
         "when `shift` is None"),
        (affine("gx = grad_out * x if ctx.needs_input_grad[0] else None\ngs = (grad_out * x).sum(0) if ctx.needs_input_grad[1] else None\ngh = grad_out.sum(0) if ctx.needs_input_grad[2] else None\nreturn gx, gs, gh"),
         "the gradient for `x`"),
        (AFFINE_SHIFT_FLAG, "when `shift` does not require grad"),
    ],
    "06_ex4": [
        (topk("values, indices = torch.topk(x, k)\nmask = torch.zeros_like(x, dtype=torch.bool).scatter(0, indices, True)\n" + GOOD_TOPK_FW_TAIL),
         "`mask` has dtype torch.bool"),
        (topk("values, indices = torch.topk(x, k)\nmask = torch.zeros_like(x).scatter(0, indices, 1.0)\n" + GOOD_TOPK_FW_TAIL),
         "`mask` requires grad"),
        (topk("values, indices = torch.topk(x, k)\nmask = torch.zeros_like(x).scatter(0, indices, 1.0)\nctx.mark_non_differentiable(mask)\n" + GOOD_TOPK_FW_TAIL,
              "indices, = ctx.saved_tensors\nreturn grad_values.new_zeros(ctx.n).scatter(0, indices, 1.0), None"),
         "the gradient for `x`"),
        (topk("values, indices = torch.topk(x, k)\nmask = torch.zeros(x.shape).scatter(0, indices, 1.0)\nctx.mark_non_differentiable(mask)\n" + GOOD_TOPK_FW_TAIL),
         "`mask` has dtype torch.float32"),
        (topk("values, indices = torch.topk(x, k)\nmask = torch.zeros_like(x).scatter(0, indices, 1.0)\nctx.mark_non_differentiable(mask)\nctx.indices = indices\nctx.n = x.shape[0]\nreturn values, mask",
              "return grad_values.new_zeros(ctx.n).scatter(0, ctx.indices, grad_values), None"),
         "plain ctx attribute (`ctx.indices`)"),
        (topk("values, indices = torch.sort(x)\nvalues, indices = values[-k:], indices[-k:]\nmask = torch.zeros_like(x).scatter(0, indices, 1.0)\nctx.mark_non_differentiable(mask)\n" + GOOD_TOPK_FW_TAIL),
         "`values (k=3)`"),
    ],
    "06_ex5": [
        (softplus(jv=""), "forward mode"),
        (softplus(jv=jvp("x, = ctx.saved_tensors\nreturn torch.sigmoid(x)")), "the Jacobian torch.func.jacfwd builds"),
        (softplus(bw="x, = ctx.saved_tensors\nreturn grad_output * torch.sigmoid(x.detach())"), "second-order gradient"),
        (softplus(sc="x, = inputs\nctx.save_for_backward(x)"), "jvp sees only the tensors setup_context saved with"),
        (softplus(sc="ctx.save_for_backward(output)\nctx.save_for_forward(output)"), "Softplus"),
        (softplus(sc="x, = inputs\nctx.save_for_backward(x)\nctx.x = x", jv=jvp("return x_tangent * torch.sigmoid(ctx.x)")),
         "plain ctx attribute (`ctx.x`)"),
    ],
}


def test_each_wrong_answer_fails_with_one_line_and_the_solutions_pass():
    check_exercises("06", WRONG)


def test_no_verifier_holds_a_solution():
    """The verifiers compare with PyTorch's own ops; none writes the Functions asked for."""
    source = inspect.getsource(ch06)
    for giveaway in ("save_for_forward", "def jvp", "needs_input_grad[",
                     "-grad_output", "def backward"):
        assert giveaway not in source, giveaway


def _namespace(source):
    namespace = {"torch": torch, "Function": torch.autograd.Function}
    exec(source, namespace)
    return namespace


def test_the_checks_pass_float64_answers_too(capsys):
    """An answer written for float64 (torch.zeros(..., dtype=torch.float64)) is not what the
    checks feed; a dtype-agnostic one passes in both, graded or not."""
    namespace = _namespace(recip("ctx.save_for_backward(output)",
                                 "y, = ctx.saved_tensors\nreturn -grad_output * y * y"))
    run("06_ex1", namespace)
    run("06_ex1", namespace, graded=True)
    assert "✅" in capsys.readouterr().out


def test_the_topk_check_rejects_a_bool_mask_even_when_marked():
    namespace = _namespace(topk("values, indices = torch.topk(x, k)\n"
                                "mask = torch.zeros_like(x, dtype=torch.bool).scatter(0, indices, True)\n"
                                "ctx.mark_non_differentiable(mask)\n" + GOOD_TOPK_FW_TAIL))
    try:
        run("06_ex4", namespace)
    except AssertionError as error:
        assert "dtype torch.bool" in str(error)
    else:
        raise AssertionError("a bool mask passed the TopKMask check")
