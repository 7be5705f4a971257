"""Checks for chapter 07's exercises (custom Modules and straight-through estimators).

Expected values are computed inside each function: forwards with PyTorch's own
operations (``torch.sign``, ``torch.fake_quantize_per_channel_affine``, PyTorch's
learnable fake-quantizer), straight-through gradients from autograd through
PyTorch's ops or from the masks the exercises describe.
"""
import torch
import torch.nn.functional as F

from .. import checks
from ..exercises import exercise


def _function_class(name, value):
    if not (isinstance(value, type) and issubclass(value, torch.autograd.Function)):
        kind = "a class" if isinstance(value, type) else f"a {type(value).__name__}"
        checks.fail(f"`{name}` should be a torch.autograd.Function subclass (the class itself), "
                    f"not {kind}.")


def _run(where, thunk, Function):
    """Run ``thunk`` (which calls into the learner's ``Function``) under the checks' time
    limit; an error becomes one line naming the learner's method and line."""
    __tracebackhide__ = True
    return checks._run(where, thunk, Function)


def _no_tensor_attributes(name, out):
    """Fail if the Node behind ``out`` (the ctx) keeps a tensor as a plain attribute: tensors
    go through ctx.save_for_backward (chapter 06, section 3.3)."""
    for attr, value in getattr(out.grad_fn, "__dict__", {}).items():
        items = value if isinstance(value, (tuple, list)) else (value,)
        if any(isinstance(item, torch.Tensor) for item in items):
            checks.fail(f"{name} keeps a tensor as a plain ctx attribute (`ctx.{attr}`): tensors go "
                        f"through ctx.save_for_backward, which checks them for in-place changes "
                        f"(chapter 06, section 3.3).")


def _tensor_out(what, out):
    if not isinstance(out, torch.Tensor):
        checks.fail(f"`{what}` should return a tensor, not {type(out).__name__}.")
    if not out.requires_grad:
        checks.fail(f"`{what}` does not require grad: it is not connected to its input, so no "
                    f"gradient can flow back (is everything detached?).")
    return out


# ------------------------------------------------------------------ exercise 1

@exercise("07_ex1")
def ex1(SignSTE, *, graded=False):
    _function_class("SignSTE", SignSTE)
    gen = torch.Generator().manual_seed(71)
    cases = [(3 * torch.rand(40, generator=gen) - 1.5, torch.randn(40, generator=gen))]
    if graded:
        cases.append((torch.tensor([[-2.0, -0.5], [0.25, 1.5]], dtype=torch.float64),
                      torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)))
    for x0, upstream in cases:
        x = x0.clone().requires_grad_()
        shape = "x" if x0.dim() == 1 else "a 2-D x"
        out = _tensor_out("SignSTE.apply(x)", _run("SignSTE.apply(x)", lambda: SignSTE.apply(x), SignSTE))
        checks.check_value(f"SignSTE.apply({shape})", out.detach(), torch.sign(x0))
        grad, = _run("SignSTE.backward", lambda: torch.autograd.grad(out, x, upstream), SignSTE)
        # the straight-through gradient of sign is the derivative of hard tanh
        ref = x0.clone().requires_grad_()
        want, = torch.autograd.grad(F.hardtanh(ref), ref, upstream)
        checks.check_value(f"the gradient through SignSTE ({shape})", grad, want)
        _no_tensor_attributes("SignSTE", out)


# ------------------------------------------------------------------ exercise 2

@exercise("07_ex2")
def ex2(clipped_round_ste, *, graded=False):
    gen = torch.Generator().manual_seed(72)
    cases = [(8 * torch.rand(50, generator=gen) - 4, -2, 1)]
    if graded:
        cases.append((torch.tensor([-5.2, -0.4, 0.6, 2.7, 9.0], dtype=torch.float64), 0, 3))
    for x0, lo, hi in cases:
        x = x0.clone().requires_grad_()
        what = f"clipped_round_ste(x, {lo}, {hi})"
        out = _tensor_out(what, checks.call(clipped_round_ste, x, lo, hi, what=what))
        checks.check_value(what, out.detach(), torch.round(x0).clamp(lo, hi))
        upstream = torch.randn(x0.shape, generator=gen, dtype=x0.dtype)
        grad, = checks.call(torch.autograd.grad, out, x, upstream, allow_unused=True,
                            what=f"the backward pass through {what}")
        if grad is None:
            checks.fail(f"No gradient reaches x through `{what}`.")
        inside = (x0 >= lo) & (x0 <= hi)
        checks.check_value(f"the gradient through {what}", grad, upstream * inside)


# ------------------------------------------------------------------ exercise 3

def _per_channel_reference(layer, x):
    """PyTorch's own per-channel fake-quantizer, and F.linear."""
    w, qmax = layer.weight, 2 ** (layer.bits - 1) - 1
    scales = w.detach().abs().amax(dim=1) / qmax
    zero_points = torch.zeros(w.shape[0], dtype=torch.int32)
    w_q = torch.fake_quantize_per_channel_affine(w, scales, zero_points, 0, -qmax, qmax)
    return F.linear(x, w_q, layer.bias)


@exercise("07_ex3")
def ex3(PerChannelQuantLinear, *, graded=False):
    if not (isinstance(PerChannelQuantLinear, type) and issubclass(PerChannelQuantLinear, torch.nn.Module)):
        checks.fail("`PerChannelQuantLinear` should be a class (an nn.Module subclass).")
    settings = [(4, 5, 4), (2, 5, 4)] + ([(3, 7, 6)] if graded else [])
    for bits, n_in, n_out in settings:
        state = torch.random.get_rng_state()   # the layer's init draws random numbers: leave the
        try:                                    # learner's random stream as it was
            torch.manual_seed(70 + bits)
            layer = checks.call(PerChannelQuantLinear, n_in, n_out, bits=bits,
                                what=f"PerChannelQuantLinear({n_in}, {n_out}, bits={bits})")
            gen = torch.Generator().manual_seed(bits)
            x = torch.randn(8, n_in, generator=gen)
            upstream = torch.randn(8, n_out, generator=gen)
        finally:
            torch.random.set_rng_state(state)
        with torch.no_grad():
            layer.weight[1] *= 10                     # one row with much larger weights
        what = f"PerChannelQuantLinear(bits={bits})"
        out = _tensor_out(f"{what}(x)", checks.call(layer, x, what=f"{what}(x)"))
        expected = _per_channel_reference(layer, x)
        checks.check_value(f"{what}'s output", out.detach(), expected.detach(), atol=1e-5)
        got = torch.autograd.grad(out, (layer.weight, layer.bias), upstream, allow_unused=True)
        want = torch.autograd.grad(expected, (layer.weight, layer.bias), upstream)
        if got[0] is None:
            checks.fail("No gradient reaches `layer.weight`: the quantized weight must be computed "
                        "from self.weight through the straight-through estimator.")
        checks.check_value(f"the gradient for weight ({what})", got[0], want[0], atol=1e-5)
        checks.check_value(f"the gradient for bias ({what})", got[1], want[1], atol=1e-5)


# ------------------------------------------------------------------ exercise 4

def _learnable_reference(x, scale, quant_min, quant_max):
    """PyTorch's learnable fake-quantizer (float32, a one-element scale, zero point 0)."""
    return torch._fake_quantize_learnable_per_tensor_affine(
        x, scale.reshape(1), torch.zeros(1), quant_min, quant_max, 1.0)


@exercise("07_ex4")
def ex4(LearnedScaleQuantize, *, graded=False):
    _function_class("LearnedScaleQuantize", LearnedScaleQuantize)
    gen = torch.Generator().manual_seed(74)
    cases = [(1.5 * torch.randn(200, generator=gen), torch.tensor(0.3), -4, 3)]
    if graded:
        cases.append((torch.randn(6, 7, generator=gen), torch.tensor([0.45]), -2, 1))
    for x0, s0, quant_min, quant_max in cases:
        x, scale = x0.clone().requires_grad_(), s0.clone().requires_grad_()
        what = f"LearnedScaleQuantize.apply(x, scale, {quant_min}, {quant_max})"
        out = _run(what, lambda: LearnedScaleQuantize.apply(x, scale, quant_min, quant_max),
                   LearnedScaleQuantize)
        out = _tensor_out(what, out)
        ref_x, ref_scale = x0.clone().requires_grad_(), s0.clone().requires_grad_()
        expected = _learnable_reference(ref_x, ref_scale, quant_min, quant_max)
        checks.check_value(f"{what}'s output", out.detach(), expected.detach())

        upstream = torch.randn(x0.shape, generator=gen)
        returned = _run("LearnedScaleQuantize.backward", lambda: out.grad_fn.apply(upstream),
                        LearnedScaleQuantize)
        returned = returned if isinstance(returned, tuple) else (returned,)
        if len(returned) < 2 or returned[1] is None:
            checks.fail("LearnedScaleQuantize.backward returns no gradient for `scale`: the point "
                        "of this exercise is to give the scale one.")
        if tuple(returned[1].shape) != tuple(s0.shape):
            checks.fail(f"LearnedScaleQuantize.backward returns a gradient of shape "
                        f"{tuple(returned[1].shape)} for `scale`, whose shape is {tuple(s0.shape)}: "
                        f"scale was used by every entry of x, so its gradient is a sum.")
        got = _run("LearnedScaleQuantize.backward",
                   lambda: torch.autograd.grad(out, (x, scale), upstream, allow_unused=True),
                   LearnedScaleQuantize)
        want = torch.autograd.grad(expected, (ref_x, ref_scale), upstream)
        if got[0] is None:
            checks.fail("No gradient reaches `x` through LearnedScaleQuantize.")
        checks.check_value("the gradient for x", got[0], want[0])
        checks.check_value("the gradient for scale", got[1], want[1], rtol=1e-4, atol=1e-3)
        _no_tensor_attributes("LearnedScaleQuantize", out)
