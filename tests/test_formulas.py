"""The formula table: each rule recomputes what the engine sent, and its text says what it used.

For every Node type in ``helpers.formulas.RULES`` at least one graph below makes
it, on several shapes (broadcasting included); the test runs a real traced
backward and recomputes each Node's gradients from the rule, the Node's saved
values and what it received.
"""
import math
import zlib

import pytest
import torch
import torch.nn.functional as F

from helpers import formulas
from helpers.describe import describe
from helpers.trace import trace_backward


def rand(*shape, lo=-2.0, hi=2.0, dtype=torch.float64):
    return (torch.rand(list(shape), dtype=dtype) * (hi - lo) + lo).requires_grad_()


def pos(*shape):
    return rand(*shape, lo=0.5, hi=2.0)


def unit(*shape):
    return rand(*shape, lo=-0.9, hi=0.9)


def ints(*shape, n=4):
    return torch.randint(0, n, shape)


# Shapes of (a, b) for binary elementwise ops: same shape, broadcast both ways, scalars.
PAIRS = [((), ()), ((3,), (3,)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((2, 3), ()), ((3,), (2, 3))]
UNARY = [(), (4,), (2, 3)]


def for_pairs(make):
    return [lambda sa=sa, sb=sb: make(sa, sb) for sa, sb in PAIRS]


def for_unary(make):
    return [lambda s=s: make(s) for s in UNARY]


class Passthrough(torch.nn.Module):
    def forward(self, x):
        return x * 2


def with_module_hook(shape):
    m = Passthrough()
    m.register_full_backward_hook(lambda mod, gi, go: None)  # puts BackwardHookFunctionBackward Nodes in
    return m(rand(*shape))


def double_backward(f, shape):
    x = rand(*shape)
    (g,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return g * rand(*shape)


def select_double_backward():
    a = rand(4)
    v = rand()
    (g,) = torch.autograd.grad(a[1] * 1.0, a, grad_outputs=v, create_graph=True)
    return g * rand(4)


def mse_double_backward(reduction):
    a, b = rand(2, 3), rand(2, 3)
    (g,) = torch.autograd.grad(F.mse_loss(a, b, reduction=reduction), a, create_graph=True)
    return g * rand(2, 3)


def log_softmax_double_backward(dim):
    x, u = rand(3, 4), rand(3, 4)
    (g,) = torch.autograd.grad(x.log_softmax(dim), x, grad_outputs=u, create_graph=True)
    return g * rand(3, 4)


def nll_double_backward(weight=False, reduction="mean", ignore=False):
    logp = rand(4, 5).log_softmax(1)
    target = torch.tensor([1, 0, 4, 2])
    if ignore:
        target[1] = -100
    w = torch.rand(5, dtype=logp.dtype) if weight else None
    loss = F.nll_loss(logp, target, weight=w, reduction=reduction)
    (g,) = torch.autograd.grad(loss, logp, grad_outputs=rand(*loss.shape), create_graph=True)
    return g * rand(4, 5)


def learnable_fake_quantize(grad_factor):
    x = rand(40, lo=-3.0, hi=3.0, dtype=torch.float32)
    scale = torch.tensor([0.3], requires_grad=True)
    zero_point = torch.tensor([1.0], requires_grad=True)
    return torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero_point, -8, 7, grad_factor)


def cat_with_constant():
    a, b = rand(2, 3), rand(1, 3)
    return torch.cat([a, torch.ones(4, 3, dtype=a.dtype), b])


def selu_like(s):
    return F.selu(rand(*s))


def nll(weight=False, reduction="mean", ignore=False):
    x = rand(4, 5)
    target = torch.tensor([1, 0, 4, 2])
    if ignore:
        target[2] = -100
    w = torch.rand(5, dtype=x.dtype) if weight else None
    return F.nll_loss(x.log_softmax(1), target, weight=w, reduction=reduction)


CASES = {
    # elementwise arithmetic
    "add": for_pairs(lambda sa, sb: rand(*sa) + rand(*sb)),
    "add alpha": for_pairs(lambda sa, sb: torch.add(rand(*sa), rand(*sb), alpha=2.5)),
    "add constant": for_unary(lambda s: rand(*s) + 2),
    "add.Scalar": for_unary(lambda s: torch.ops.aten.add.Scalar(rand(*s), 2.0)),
    "sub": for_pairs(lambda sa, sb: torch.sub(rand(*sa), rand(*sb), alpha=0.5)),
    "sub.Scalar": for_unary(lambda s: torch.ops.aten.sub.Scalar(rand(*s), 2.0)),
    "rsub": for_pairs(lambda sa, sb: torch.rsub(rand(*sa), rand(*sb), alpha=3)),
    "rsub scalar": for_unary(lambda s: 2 - rand(*s)),
    "mul": for_pairs(lambda sa, sb: rand(*sa) * rand(*sb)),
    "mul constant tensor": [lambda: rand(2, 3) * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)],
    "mul.Scalar": for_unary(lambda s: torch.ops.aten.mul.Scalar(rand(*s), 3.0)),
    "div": for_pairs(lambda sa, sb: rand(*sa) / pos(*sb)),
    "div.Scalar": for_unary(lambda s: torch.ops.aten.div.Scalar(rand(*s), 4.0)),
    "neg": for_unary(lambda s: -rand(*s)),
    "pow scalar": for_unary(lambda s: pos(*s) ** 2) + for_unary(lambda s: pos(*s) ** 0.5)
    + for_unary(lambda s: rand(*s) ** 3) + [lambda: rand(3) ** 0],
    "pow tensor": for_pairs(lambda sa, sb: pos(*sa) ** rand(*sb))
    + [lambda: torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64, requires_grad=True) ** rand(3)],
    "rpow": for_unary(lambda s: 2 ** rand(*s)),
    # exponentials, logs, roots, trigonometry
    "exp": for_unary(lambda s: rand(*s).exp()),
    "exp2": for_unary(lambda s: rand(*s).exp2()),
    "expm1": for_unary(lambda s: rand(*s).expm1()),
    "log": for_unary(lambda s: pos(*s).log()),
    "log2": for_unary(lambda s: pos(*s).log2()),
    "log10": for_unary(lambda s: pos(*s).log10()),
    "log1p": for_unary(lambda s: pos(*s).log1p()),
    "sqrt": for_unary(lambda s: pos(*s).sqrt()),
    "rsqrt": for_unary(lambda s: pos(*s).rsqrt()),
    "reciprocal": for_unary(lambda s: pos(*s).reciprocal()),
    "sin": for_unary(lambda s: rand(*s).sin()),
    "cos": for_unary(lambda s: rand(*s).cos()),
    "tan": for_unary(lambda s: unit(*s).tan()),
    "asin": for_unary(lambda s: unit(*s).asin()),
    "acos": for_unary(lambda s: unit(*s).acos()),
    "atan": for_unary(lambda s: rand(*s).atan()),
    "sinh": for_unary(lambda s: rand(*s).sinh()),
    "cosh": for_unary(lambda s: rand(*s).cosh()),
    "tanh": for_unary(lambda s: rand(*s).tanh()),
    # activations
    "sigmoid": for_unary(lambda s: rand(*s).sigmoid()),
    "relu": for_unary(lambda s: rand(*s).relu()),
    "leaky_relu": for_unary(lambda s: F.leaky_relu(rand(*s), 0.2)),
    "elu": for_unary(lambda s: F.elu(rand(*s), alpha=0.7)) + for_unary(selu_like),
    "gelu": for_unary(lambda s: F.gelu(rand(*s))) + for_unary(lambda s: F.gelu(rand(*s), approximate="tanh")),
    "silu": for_unary(lambda s: F.silu(rand(*s))),
    "softplus": for_unary(lambda s: F.softplus(rand(*s))) + for_unary(lambda s: F.softplus(rand(*s), beta=2))
    + [lambda: F.softplus(rand(4, lo=-30, hi=30), threshold=5.0)],
    "hardtanh": for_unary(lambda s: F.hardtanh(rand(*s), -0.5, 0.7)),
    "abs": for_unary(lambda s: rand(*s).abs()),
    "flat": [lambda: rand(4).sign(), lambda: rand(4).round(), lambda: rand(2, 3).round(decimals=1),
             lambda: rand(4).floor(), lambda: rand(4).ceil(), lambda: rand(4).trunc()],
    "clamp": [lambda: rand(2, 3).clamp(-0.5, 0.5), lambda: rand(4).clamp(min=0.1), lambda: rand(4).clamp(max=0.1),
              lambda: rand(4).clamp_min(0.2), lambda: rand(4).clamp_max(0.2)],
    "maximum": for_pairs(lambda sa, sb: torch.maximum(rand(*sa), rand(*sb)))
    + [lambda: torch.maximum(torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 3.0], requires_grad=True))],
    "minimum": for_pairs(lambda sa, sb: torch.minimum(rand(*sa), rand(*sb)))
    + [lambda: torch.minimum(torch.tensor([1.0, 2.0], requires_grad=True), torch.tensor([1.0, 3.0], requires_grad=True))],
    "where": for_pairs(lambda sa, sb: torch.where(torch.rand(2, 3) > 0.5, rand(*sa), rand(*sb))),
    "masked_fill": [lambda: rand(2, 3).masked_fill(torch.rand(2, 3) > 0.5, 0.0),
                    lambda: rand(2, 3).masked_fill(torch.rand(3) > 0.5, rand())],
    "nan_to_num": [lambda: torch.tensor([1.0, float("nan"), float("inf"), 2.0], requires_grad=True).nan_to_num()],
    "fake_quantize": [lambda: torch.fake_quantize_per_tensor_affine(rand(6, lo=-20, hi=20, dtype=torch.float32),
                                                                    0.1, 0, -128, 127)],
    # copies and identities
    "clone": for_unary(lambda s: rand(*s).clone()),
    "alias": [lambda: torch.ops.aten.alias(rand(2, 3))],
    "to": [lambda: rand(2, 3, dtype=torch.float32).double(), lambda: rand(3).float()],
    "module hook": for_unary(with_module_hook),
    # matrix products
    "mm": [lambda: rand(2, 3) @ rand(3, 4), lambda: rand(5, 1) @ rand(1, 2)],
    "bmm": [lambda: torch.bmm(rand(2, 3, 4), rand(2, 4, 5))],
    "addmm": [lambda: torch.addmm(rand(4), rand(2, 3), rand(3, 4)),
              lambda: torch.addmm(rand(2, 4), rand(2, 3), rand(3, 4), beta=0.5, alpha=2.0),
              lambda: F.linear(rand(2, 3), rand(4, 3), rand(4))],
    "matmul": [lambda: rand(2, 3, 4) @ rand(4, 5), lambda: rand(3, 4) @ rand(4), lambda: rand(4) @ rand(4)],
    # reductions
    "sum": [lambda: rand(2, 3).sum(), lambda: rand(2, 3).sum(1), lambda: rand(2, 3, 4).sum((0, 2), keepdim=True),
            lambda: rand(2, 3).sum(-1, keepdim=True)],
    "mean": [lambda: rand(2, 3).mean(), lambda: rand(2, 3).mean(0), lambda: rand(2, 3, 4).mean((1, 2), keepdim=True)],
    "prod": [lambda: rand(5).prod(), lambda: torch.tensor([2.0, 0.0, 3.0], requires_grad=True).prod()],
    "cumsum": [lambda: rand(2, 3).cumsum(1), lambda: rand(4).cumsum(0)],
    "max/min all": [lambda: rand(2, 3).max(), lambda: rand(2, 3).min(),
                    lambda: torch.tensor([1.0, 3.0, 3.0], requires_grad=True).max(),
                    lambda: rand(5).median(), lambda: torch.tensor([2.0, 1.0, 2.0], requires_grad=True).median()],
    "max/min dim": [lambda: rand(2, 3).max(1).values, lambda: rand(2, 3).min(0, keepdim=True).values,
                    lambda: rand(3, 4).topk(2).values, lambda: rand(3, 4).topk(2, dim=0).values,
                    lambda: rand(3, 4).sort(1).values, lambda: rand(3, 4).kthvalue(2, 1).values,
                    lambda: rand(3, 4).median(1).values],
    "amax": [lambda: rand(2, 3).amax(1), lambda: rand(2, 3).amin((0, 1)),
             lambda: torch.tensor([[1.0, 1.0], [0.0, 2.0]], requires_grad=True).amax(1, keepdim=True)],
    "norm": [lambda: rand(2, 3).norm(), lambda: rand(2, 3).norm(dim=1), lambda: rand(2, 3).norm(dim=0, keepdim=True),
             lambda: torch.linalg.vector_norm(rand(4), ord=1), lambda: torch.zeros(3, requires_grad=True).norm()],
    "var/std": [lambda: rand(5).var(), lambda: rand(2, 3).var(1), lambda: rand(2, 3).std(),
                lambda: rand(2, 3).std(0, keepdim=True), lambda: torch.var(rand(2, 4), dim=1, correction=0)],
    "logsumexp": [lambda: rand(2, 3).logsumexp(1), lambda: rand(2, 3).logsumexp((0, 1), keepdim=True)],
    "softmax": [lambda: rand(2, 3).softmax(1), lambda: rand(2, 3).softmax(0), lambda: rand(4).softmax(0)],
    "log_softmax": [lambda: rand(2, 3).log_softmax(1), lambda: rand(4).log_softmax(0)],
    # losses
    "cross_entropy": [lambda: F.cross_entropy(rand(4, 5), torch.tensor([1, 0, 4, 2])),
                      lambda: F.cross_entropy(rand(5), torch.tensor(3))],
    "nll_loss": [lambda: nll(), lambda: nll(weight=True), lambda: nll(reduction="sum"),
                 lambda: nll(reduction="none"), lambda: nll(ignore=True), lambda: nll(weight=True, ignore=True)],
    "mse_loss": [lambda: F.mse_loss(rand(2, 3), rand(2, 3)), lambda: F.mse_loss(rand(4), rand(4), reduction="sum"),
                 lambda: F.mse_loss(rand(2, 3), rand(2, 3), reduction="none")],
    "bce": [lambda: F.binary_cross_entropy(rand(4, lo=0.1, hi=0.9), rand(4, lo=0, hi=1)),
            lambda: F.binary_cross_entropy(rand(2, 3, lo=0.1, hi=0.9), torch.rand(2, 3, dtype=torch.float64),
                                           weight=torch.rand(3, dtype=torch.float64), reduction="sum")],
    "bce with logits": [lambda: F.binary_cross_entropy_with_logits(rand(4), rand(4, lo=0, hi=1)),
                        lambda: F.binary_cross_entropy_with_logits(rand(2, 3), torch.rand(2, 3, dtype=torch.float64),
                                                                   weight=torch.rand(3, dtype=torch.float64))],
    # views and pieces
    "view": [lambda: rand(2, 3).view(6), lambda: rand(2, 3).reshape(3, 2), lambda: rand(2, 3, 4).flatten(1),
             lambda: rand(2, 3).t().reshape(6)],
    "squeeze": [lambda: rand(1, 3, 1).squeeze(), lambda: rand(1, 3).squeeze(0), lambda: rand(1, 3, 1).squeeze((0, 2)),
                lambda: rand(1, 3, 1).clone().squeeze_(), lambda: rand(1, 3).clone().squeeze_(0),
                lambda: rand(1, 3, 1).clone().squeeze_((0, 2))],
    "unsqueeze": [lambda: rand(3).unsqueeze(0), lambda: rand(2, 3).unsqueeze(-1)],
    "transpose": [lambda: rand(2, 3).t(), lambda: rand(2, 3, 4).transpose(0, 2), lambda: rand(2, 3, 4).permute(2, 0, 1)],
    "expand": [lambda: rand(3).expand(2, 3), lambda: rand(2, 1).expand(2, 4), lambda: rand().expand(3)],
    "flip": [lambda: rand(2, 3).flip(0), lambda: rand(2, 3).flip((0, 1))],
    "repeat": [lambda: rand(3).repeat(2), lambda: rand(2, 3).repeat(2, 1, 2)],
    "select": [lambda: rand(3, 4)[1], lambda: rand(3, 4)[:, -1]],
    "slice": [lambda: rand(5, 3)[1:4], lambda: rand(6)[::2], lambda: rand(3, 4)[:, 1:]],
    "index": [lambda: rand(4, 3)[torch.tensor([0, 2, 2])], lambda: rand(3, 4)[:, torch.tensor([1, 3])],
              lambda: rand(4)[torch.tensor([True, False, True, True])]],
    "index_select": [lambda: rand(4, 3).index_select(0, torch.tensor([3, 0, 3])),
                     lambda: rand(4, 3).index_select(1, torch.tensor([2]))],
    "gather": [lambda: rand(3, 4).gather(1, torch.tensor([[0, 0], [1, 3], [2, 2]]))],
    "embedding": [lambda: F.embedding(torch.tensor([[1, 0], [3, 1]]), rand(5, 3)),
                  lambda: F.embedding(torch.tensor([2, 0, 2]), rand(4, 2), padding_idx=0)],
    "cat": [lambda: torch.cat([rand(2, 3), rand(1, 3)]), lambda: torch.cat([rand(2, 1), rand(2, 2)], 1),
            cat_with_constant],
    "stack": [lambda: torch.stack([rand(2, 3), rand(2, 3)]), lambda: torch.stack([rand(3), rand(3), rand(3)], 1)],
    "split": [lambda: sum(p.sum() * (i + 1) for i, p in enumerate(rand(6, 2).split(2)) if i != 1),
              lambda: sum(p.sum() for p in rand(2, 5).split([1, 4], 1)),
              lambda: rand(4, 3).chunk(2)[1],
              lambda: rand(3, 2).unbind()[0] + rand(3, 2).unbind(1)[1].sum()],
    # double backward
    "tanh double backward": [lambda: double_backward(torch.tanh, (3,))],
    "select double backward": [select_double_backward],
    "softplus double backward": [lambda: double_backward(F.softplus, (4,)),
                                 lambda: double_backward(lambda x: F.softplus(x, beta=2), (3,))],
    "mse double backward": [lambda: mse_double_backward("mean"), lambda: mse_double_backward("sum")],
    "log_softmax double backward": [lambda: log_softmax_double_backward(1), lambda: log_softmax_double_backward(0)],
    "nll_loss double backward": [lambda: nll_double_backward(), lambda: nll_double_backward(weight=True),
                                 lambda: nll_double_backward(reduction="sum"),
                                 lambda: nll_double_backward(reduction="none", ignore=True)],
    "learnable fake quantize": [lambda: learnable_fake_quantize(1.0), lambda: learnable_fake_quantize(0.5)],
}

BUILDS = [(f"{name} {i}", build) for name, builds in CASES.items() for i, build in enumerate(builds)]


def seeded_root(build, seed):
    torch.manual_seed(seed)
    root = build()
    if root.dim() or root.dtype.is_complex:
        g = torch.rand_like(root) + 0.5  # not all ones, so a rule that ignores grad would fail
        return root, g
    return root, None


@pytest.mark.parametrize("label, build", BUILDS, ids=[b[0] for b in BUILDS])
def test_every_rule_recomputes_what_the_engine_sent(label, build):
    root, gradient = seeded_root(build, zlib.crc32(label.encode()))
    trace = trace_backward(root, gradient, keep="all")
    checked = 0
    for step in trace:
        if formulas.kind_of(step.node) != "rule":
            continue
        mine = formulas.recompute(step.node, step.grad_outputs)
        assert len(mine) == len(step.grad_inputs)
        for slot, (got, sent) in enumerate(zip(mine, step.grad_inputs)):
            if sent is None:
                continue
            torch.testing.assert_close(got, sent, msg=lambda m: f"{step.name}, input {slot}: {m}")
            checked += 1
        # The text ends with what the engine sent, computed from the same rule.
        text = step.formula
        assert text.startswith(step.name + ": ") and "not in the formula table" not in text
        for sent in step.grad_inputs:
            if sent is not None:
                assert describe(sent) in text
    assert checked


def test_the_table_is_exercised_by_the_cases():
    seen = set()
    for label, build in BUILDS:
        root, gradient = seeded_root(build, 0)
        seen |= {s.name for s in trace_backward(root, gradient, keep="all")}
    untested = {n for n, r in formulas.RULES.items() if not r.no_derivative} - seen
    assert not untested, f"rules without a case: {sorted(untested)}"


# Every built-in Node type the course's notebooks create (listed by running solutions/*.ipynb
# with a recorder of each new grad_fn, and from the Node names the outputs show). The
# chapters' own custom Functions are not listed: they are shown as "your backward".
COURSE_NODES = """
AbsBackward0 AccumulateGrad AddBackward0 AddBackward1 AddmmBackward0 AsStridedBackward0 AtanBackward0
BackwardHookFunctionBackward CatBackward0 ClampBackward1 CloneBackward0 CompiledFunctionBackward CopySlices
CosBackward0 CoshBackward0 DivBackward0 DotBackward0 EmbeddingBackward0 ExpBackward0 ExpandBackward0
FakeQuantizeLearnablePerTensorAffineBackward0 FakeQuantizePerTensorAffineCachemaskBackward0 HardtanhBackward0
IndexSelectBackward0 LinalgVectorNormBackward0 Log1PBackward0 LogBackward0 LogSoftmaxBackward0
LogSoftmaxBackwardDataBackward0 MaskedFillBackward0 MaxBackward0 MaxBackward1 MeanBackward0 MmBackward0
MseLossBackward0 MseLossBackwardBackward0 MulBackward0 MulBackward1 MvBackward0 NanToNumBackward0 NegBackward0
NllLossBackward0 NllLossBackwardBackward0 PermuteBackward0 PowBackward0 PowBackward1 PowBackward2
ReciprocalBackward0 ReluBackward0 RoundBackward0 RsubBackward1 SelectBackward0 SelectBackwardBackward0
SigmoidBackward0 SignBackward0 SiluBackward0 SinBackward0 SinhBackward0 SliceBackward0 SoftplusBackward0
SoftplusBackwardBackward0 SplitBackward0 SplitWithSizesBackward0 SqrtBackward0 SqueezeBackward0
SqueezeBackward1 SqueezeBackward2 SqueezeBackward4 SqueezeBackward5 StackBackward0 SubBackward0 SumBackward0
SumBackward1 TBackward0 TanhBackward0 TanhBackwardBackward0 ToCopyBackward0 TopkBackward0 Unique2Backward0
UnsafeViewBackward0 UnsqueezeBackward0 ViewBackward0 WhereBackward0
""".split()


def test_every_node_type_of_the_course_is_explained():
    explained = set(formulas.RULES) | set(formulas.DESCRIBED)
    # AccumulateGrad ("w.grad += ...") and torch.compile's Node have texts of their own.
    assert set(COURSE_NODES) - explained == {"AccumulateGrad", "CompiledFunctionBackward"}
    assert len(formulas.RULES) >= 100


# --- the text ---------------------------------------------------------------------

def test_w_times_x_plus_b_reads_grad_times_x_with_the_values():
    w, x, b = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0), torch.tensor(1.0, requires_grad=True)
    trace = trace_backward(w * x + b, params={"w": w, "x": x, "b": b})
    text = {s.name: s.formula for s in trace if s.leaf is None}
    assert text["MulBackward0"] == "MulBackward0: grad_w = grad · x = 1 · 3 = 3"
    assert text["AddBackward0"] == "AddBackward0: grad_self = grad = 1\ngrad_b = grad = 1"
    accs = [s.formula for s in trace if s.leaf is not None]
    assert accs == ["AccumulateGrad: b.grad += 1", "AccumulateGrad: w.grad += 3"]


def test_op_terms_without_names():
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(-0.5, requires_grad=True)
    trace = trace_backward(a * b)
    (mul,) = [s for s in trace if s.name == "MulBackward0"]
    assert mul.formula == ("MulBackward0: grad_self = grad · other = 1 · (-0.5) = -0.5\n"
                           "grad_other = grad · self = 1 · 2 = 2")
    assert sorted(s.formula for s in trace if s.leaf is not None) == ["AccumulateGrad: leaf.grad += -0.5",
                                                                      "AccumulateGrad: leaf.grad += 2"]


@pytest.mark.parametrize("make, expected", [
    (lambda x: x.tanh(), "TanhBackward0: grad_self = grad · (1 − result²)"),
    (lambda x: x.sigmoid(), "SigmoidBackward0: grad_self = grad · result · (1 − result)"),
    (lambda x: x.relu(), "ReluBackward0: grad_self = grad · [result > 0]"),
    (lambda x: x.exp(), "ExpBackward0: grad_self = grad · result"),
    (lambda x: x.sqrt(), "SqrtBackward0: grad_self = grad / (2 · result)"),
    (lambda x: x ** 3, "PowBackward0: grad_self = grad · exponent · self^(exponent − 1)"),
    (lambda x: x / torch.tensor([2.0, 4.0]), "DivBackward0: grad_self = grad / other"),
    (lambda x: x.log_softmax(0), "LogSoftmaxBackward0: grad_self = grad − exp(result) · sum(grad, dim=0)"),
])
def test_rules_in_the_ops_own_terms(make, expected):
    x = torch.tensor([0.5, 2.0], requires_grad=True)
    trace = trace_backward(make(x).sum())
    (step,) = [s for s in trace if s.name == expected.split(":")[0]]
    assert step.formula.startswith(expected + " = ")


def test_large_tensors_show_shapes_not_values():
    a, w = torch.randn(40, 50, requires_grad=True), torch.randn(50, 30, requires_grad=True)
    trace = trace_backward((a @ w).sum(), params={"a": a})
    (mm,) = [s for s in trace if s.name == "MmBackward0"]
    lines = mm.formula.splitlines()
    assert lines[0].startswith("MmBackward0: grad_a = grad @ mat2ᵀ = shape (40, 50), norm ")
    assert lines[0].endswith("(grad (40, 30), mat2 (50, 30))")
    assert lines[1].startswith("grad_mat2 = aᵀ @ grad = shape (50, 30), norm ")
    (total,) = [s for s in trace if s.name == "SumBackward0"]
    assert total.formula.startswith("SumBackward0: grad_self = grad expanded to (40, 30) = 1 expanded to (40, 30) = ")


def test_broadcast_is_summed_back_and_said():
    a, v = torch.ones(2, 3, requires_grad=True), torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    trace = trace_backward((a * v).sum(), params={"a": a, "v": v})
    (mul,) = [s for s in trace if s.name == "MulBackward0"]
    assert mul.formula.splitlines()[1] == (
        "grad_v = grad · a = [[1, 1, 1], [1, 1, 1]] · [[1, 1, 1], [1, 1, 1]], summed to (3,) = [2, 2, 2]")


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(x):
        return x ** 3

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 3 * x * x * grad


def test_custom_function_shows_your_backward_with_values_in_and_out():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    trace = trace_backward(Cube.apply(x).sum(), params={"x": x})
    (cube,) = [s for s in trace if s.name == "CubeBackward"]
    assert cube.formula == "CubeBackward: your backward (Cube.backward) received [1, 1] and returned x: [3, 12]"
    assert formulas.symbolic(cube.node) == ["your Cube.backward"]


def test_an_op_outside_the_table_says_so_and_shows_in_and_out():
    x = torch.tensor([1.5, 2.5], requires_grad=True)
    trace = trace_backward(torch.lgamma(x).sum())
    (step,) = [s for s in trace if s.name == "LgammaBackward0"]
    assert step.formula.startswith("LgammaBackward0: not in the formula table; received [1, 1], sent input 0: [")
    with pytest.raises(KeyError, match="not in the formula table"):
        formulas.recompute(step.node, step.grad_outputs)


def test_complex_tensors_are_not_given_a_real_formula():
    z = torch.tensor([1 + 2j, 3 - 1j], requires_grad=True)
    trace = trace_backward((z * z).abs().sum())
    (mul,) = [s for s in trace if s.name == "MulBackward0"]
    assert "complex tensors (the table covers real ones)" in mul.formula


def test_unique_has_no_derivative():
    x = torch.tensor([1.0, 2.0, 1.0], requires_grad=True)
    u = torch.unique(x * 1)
    rule = formulas.rule_for(u.grad_fn)
    assert rule.no_derivative and formulas.symbolic(u.grad_fn) == ["torch.unique has no derivative"]
    with pytest.raises(NotImplementedError):
        u.sum().backward()


def test_symbolic_rules_for_a_diagram_need_no_backward():
    w, x = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0)
    y = (w * x).tanh()
    assert formulas.symbolic(y.grad_fn) == ["grad_self = grad · (1 − result²)"]
    mul = y.grad_fn.next_functions[0][0]
    assert formulas.symbolic(mul, names={id(x): ("x", x)}, inputs=["w", None]) == ["grad_w = grad · x"]


def test_text_names_the_gelu_functions():
    x = torch.tensor([0.5], requires_grad=True)
    text = [s.formula for s in trace_backward(torch.nn.functional.gelu(x).sum()) if s.name == "GeluBackward0"][0]
    assert "grad · (Φ(self) + self · φ(self))" in text and "(Φ, φ: the standard normal" in text
    assert math.isclose(float(text.split(" = ")[-1].splitlines()[0].strip("[]")), 0.5 * (1 + math.erf(0.5 / math.sqrt(2)))
                        + 0.5 * math.exp(-0.125) / math.sqrt(2 * math.pi), rel_tol=1e-3)


def test_formula_after_a_backward_that_freed_the_graph_says_the_values_are_gone():
    a, b = torch.tensor(2.0, requires_grad=True), torch.tensor(3.0, requires_grad=True)
    loss = a * b
    trace = trace_backward(loss)
    loss.backward()  # frees the saved tensors
    (mul,) = [s for s in trace if s.name == "MulBackward0"]
    assert mul.formula == ("MulBackward0: grad_self = grad · other = 3\ngrad_other = grad · self = 2\n"
                           "(its saved tensors were freed by a later backward(), so no values)")


def test_tanh_gelu_note():
    x = torch.tensor([0.5], requires_grad=True)
    trace = trace_backward(torch.nn.functional.gelu(x, approximate="tanh").sum())
    (step,) = [s for s in trace if s.name == "GeluBackward0"]
    assert "grad · gelu_tanh′(self)" in step.formula and "t = tanh(√(2/π)(x + 0.044715x³))" in step.formula


def test_nodes_described_in_words_show_their_values():
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    b = a * 2
    view = b[:2]
    b[1:].mul_(torch.tensor([3.0, 4.0]))  # in place on a view: b's grad_fn is CopySlices, view's AsStrided
    trace = trace_backward(view.sum())
    texts = {s.name: s.formula for s in trace}
    assert texts["CopySlices"].startswith("CopySlices: an in-place op on a view: runs that op's backward")
    assert texts["CopySlices"].endswith("; received [1, 1, 0], sent input 0: [1, 3, 0]")
    assert texts["AsStridedBackward0"].startswith(
        "AsStridedBackward0: grad added into zeros of the input's shape at the elements the view read "
        "(size (2,), stride (1,), offset 0); received [1, 1], sent input 0: [1, 1, 0]")


def test_a_library_custom_op_shows_the_backward_you_registered():
    @torch.library.custom_op("autograd_lab_test::triple", mutates_args=())
    def triple(x: torch.Tensor) -> torch.Tensor:
        return x * 3

    def backward(ctx, grad):
        return grad * 3
    triple.register_autograd(backward)
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (step,) = [s for s in trace_backward(triple(x).sum(), params={"x": x}) if s.name.startswith("Generated")]
    assert step.formula.endswith(": the backward you registered with torch.library.register_autograd "
                                 "received [1, 1] and returned x: [3, 3]")


def test_a_large_broadcast_is_said_from_the_shapes():
    a, v = torch.randn(100, 50, requires_grad=True), torch.randn(50, requires_grad=True)
    trace = trace_backward((a * v).sum(), params={"a": a, "v": v})
    (mul,) = [s for s in trace if s.name == "MulBackward0"]
    line = mul.formula.splitlines()[1]
    assert line.startswith("grad_v = grad · a, summed to (50,) = shape (50,), norm ")
    assert line.endswith("(grad (100, 50), a (100, 50))")
