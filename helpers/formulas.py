"""The local derivative rule of each backward Node, as text and as a function, from one table.

A backward Node (``MulBackward0``, ``TanhBackward0``, ...) receives the gradient
of its output(s), ``grad``, and sends one gradient per input: the chain rule with
the op's own local derivative. PyTorch writes those rules in its
``derivatives.yaml`` (e.g. ``mul: self: grad * other``) and compiles them to
C++; a Node keeps the values the rule needs as ``_saved_self``,
``_saved_other``, ``_saved_result``, ... This module restates the rules for the
Node types a learner meets, each as a small expression such as
``G * V("other")``. One expression gives both:

- the text, in the op's own terms, with the values substituted when they are
  small: ``MulBackward0: grad_self = grad · other = 1 · 2 = 2`` (names given by
  ``params`` replace ``self``/``other``: ``grad_w = grad · x``), shapes when large;
- the numbers: evaluated on the Node's saved tensors and the gradient it
  received, it gives what the engine sent. The tests do exactly that for every
  rule in the table (several shapes, broadcasting included), so the text cannot
  drift from what PyTorch computes.

The table covers real floating-point tensors. A Node type that is not in it --
or a variant it does not cover (a complex tensor, a ``pos_weight``) -- is said
to be outside the table, with what went in and out, never with a guessed rule.
A custom ``autograd.Function`` (or a ``torch.library`` op's registered backward)
shows "your backward" with the values in and out; ``AccumulateGrad`` shows
``w.grad += ...``; the two Nodes whose rule Python cannot read (``CopySlices``,
``AsStridedBackward0``: the view's geometry is not exposed) are described in
words (``DESCRIBED``), with their values in and out.

Why by hand: PyTorch keeps its rules as C++ and YAML (``tools/autograd``), with
no Python-readable form tied to a Node; so the expressions here are ours, and
the tests are what ties them to the engine.
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .describe import MAX_VALUES, TensorSummary, describe

__all__ = ["RULES", "rule_for", "formula", "symbolic", "recompute", "nonfinite_reason", "kind_of",
           "diagram_rules"]

ATOM, PHRASE = 9, 0  # precedence of names and function calls; of phrases ("grad expanded to ...")


# --- expressions ------------------------------------------------------------------

class Expr:
    """A formula: ``.value(env)`` computes it, ``.text(r)`` writes it (symbols or values)."""

    prec = ATOM
    children = ()

    def __add__(self, o):
        return Bin("+", self, lift(o))

    def __radd__(self, o):
        return Bin("+", lift(o), self)

    def __sub__(self, o):
        return Bin("−", self, lift(o))

    def __rsub__(self, o):
        return Bin("−", lift(o), self)

    def __mul__(self, o):
        return Bin("·", self, lift(o))

    def __rmul__(self, o):
        return Bin("·", lift(o), self)

    def __truediv__(self, o):
        return Bin("/", self, lift(o))

    def __rtruediv__(self, o):
        return Bin("/", lift(o), self)

    def __matmul__(self, o):
        return Bin("@", self, lift(o))

    def __neg__(self):
        return Neg(self)

    def __pow__(self, k):
        return Pow(self, lift(k))

    def vars(self):
        for c in self.children:
            yield from c.vars()

    def shape(self, env):
        """The shape of the value, worked out from the inputs' shapes alone (None: not known)."""
        return None

    def _broadcast_shape(self, env):
        shapes = [c.shape(env) for c in self.children]
        if any(s is None for s in shapes):
            return None
        out = []
        for sizes in zip(*(((1,) * (max(map(len, shapes)) - len(s))) + tuple(s) for s in shapes)):
            big = {n for n in sizes if n != 1}
            if len(big) > 1:
                return None
            out.append(big.pop() if big else 1)
        return tuple(out)


def lift(x):
    return x if isinstance(x, Expr) else Const(x)


def _num(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:.4g}"
    return str(v)


class Const(Expr):
    def __init__(self, value, label=None):
        self.value_, self.label = value, label
        self.prec = 3 if isinstance(value, (int, float)) and value < 0 and label is None else ATOM

    def value(self, env):
        return self.value_

    def shape(self, env):
        return ()

    def text(self, r):
        return self.label if self.label is not None and not r.values else _num(self.value_)


class Var(Expr):
    """A value the rule reads: ``grad`` (what the Node received) or a saved value (``other``)."""

    def __init__(self, name, label=None):
        self.name, self.label = name, label or name

    def value(self, env):
        return env[self.name]

    def shape(self, env):
        v = env[self.name]
        if isinstance(v, (torch.Tensor, TensorSummary)):
            return tuple(v.shape)
        return () if isinstance(v, (int, float, bool)) else None

    def text(self, r):
        return r.var(self)

    def vars(self):
        yield self


_BIN = {
    "+": (1, lambda a, b: a + b), "−": (1, lambda a, b: a - b),
    "·": (2, lambda a, b: a * b), "/": (2, lambda a, b: a / b), "@": (2, lambda a, b: torch.matmul(a, b)),
}


class Bin(Expr):
    def __init__(self, op, a, b):
        self.op, self.children = op, (a, b)
        self.prec = _BIN[op][0]

    def value(self, env):
        a, b = self.children
        return _BIN[self.op][1](a.value(env), b.value(env))

    def shape(self, env):
        return None if self.op == "@" else self._broadcast_shape(env)

    def text(self, r):
        a, b = self.children
        left, right = a.text(r), b.text(r)
        if a.prec < self.prec:
            left = f"({left})"
        if b.prec < self.prec or (b.prec == self.prec and self.op in "−/") or (
                r.values and right.startswith("-")):
            right = f"({right})"
        return f"{left} {self.op} {right}"


class Neg(Expr):
    prec = 3

    def __init__(self, a):
        self.children = (a,)

    def value(self, env):
        return -self.children[0].value(env)

    def shape(self, env):
        return self.children[0].shape(env)

    def text(self, r):
        (a,) = self.children
        inner = a.text(r)
        return f"−({inner})" if a.prec < 4 or inner.startswith("-") else f"−{inner}"


_SUPERSCRIPT = {2: "²", 3: "³"}


class Pow(Expr):
    prec = 4

    def __init__(self, a, k):
        self.children = (a, k)

    def value(self, env):
        a, k = self.children
        return a.value(env) ** k.value(env)

    def shape(self, env):
        return self._broadcast_shape(env)

    def text(self, r):
        a, k = self.children
        base = a.text(r)
        if a.prec < ATOM or (r.values and base.startswith("-")):
            base = f"({base})"
        if isinstance(k, Const) and k.value_ in _SUPERSCRIPT:
            return base + _SUPERSCRIPT[k.value_]
        exp = k.text(r)
        return f"{base}^({exp})" if k.prec < ATOM or exp.startswith("-") else f"{base}^{exp}"


class Call(Expr):
    """``template`` with the arguments' texts in ``{0}``, ``{1}``...; ``fn`` computes it.

    ``wrap``: put compound arguments in parentheses (for postfix and phrase templates,
    not for function-call templates like ``exp({0})``).
    """

    def __init__(self, template, fn, *args, prec=ATOM, wrap=True, elementwise=False):
        self.template, self.fn, self.children, self.prec, self.wrap = template, fn, args, prec, wrap
        self.elementwise = elementwise  # its value has the broadcast shape of its arguments

    def value(self, env):
        return self.fn(*(a.value(env) for a in self.children))

    def shape(self, env):
        return self._broadcast_shape(env) if self.elementwise else None

    def text(self, r):
        texts = []
        for a in self.children:
            t = a.text(r)
            texts.append(f"({t})" if self.wrap and a.prec < ATOM else t)
        return self.template.format(*texts)


_CMP = {">": torch.gt, "≥": torch.ge, "<": torch.lt, "≤": torch.le, "=": torch.eq}


class Cmp(Expr):
    """An Iverson bracket: ``[self > 0]`` is 1 where true, 0 where false."""

    def __init__(self, a, op, b):
        self.op, self.children = op, (lift(a), lift(b))

    def value(self, env):
        a, b = (c.value(env) for c in self.children)
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(a)
        return _CMP[self.op](a, b)

    def shape(self, env):
        return self._broadcast_shape(env)

    def text(self, r):
        a, b = (c.text(r) for c in self.children)
        return f"[{a} {self.op} {b}]"


# --- building blocks of the table ------------------------------------------------

G = Var("grad")


def V(name, label=None):
    return Var(name, label)


def _t(v):
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(v)


def fn1(name, f):
    return lambda x: Call(name + "({0})", lambda v: f(_t(v)), x, wrap=False, elementwise=True)


exp, log, sqrt = fn1("exp", torch.exp), fn1("log", torch.log), fn1("sqrt", torch.sqrt)
sin, cos, sinh, cosh = fn1("sin", torch.sin), fn1("cos", torch.cos), fn1("sinh", torch.sinh), fn1("cosh", torch.cosh)
sign, sigma, logit = fn1("sign", torch.sign), fn1("σ", torch.sigmoid), fn1("logit", torch.logit)
Phi = fn1("Φ", lambda x: 0.5 * (1 + torch.erf(x / math.sqrt(2))))
phi = fn1("φ", lambda x: torch.exp(-0.5 * x * x) / math.sqrt(2 * math.pi))
isfinite = fn1("isfinite", torch.isfinite)
LN2, LN10 = Const(math.log(2), "ln 2"), Const(math.log(10), "ln 10")


def T(x):
    """Transposed (the last two dims, so batched matrices work too)."""
    return Call("{0}ᵀ", lambda v: v.mT, x)


def where(cond, a, b, template="{1} where {0}, else {2}"):
    return Call(template, lambda c, x, y: torch.where(_t(c), x, y), cond, lift(a), lift(b), prec=PHRASE,
                elementwise=True)


def zero_where(cond, a):
    return where(cond, 0, a, "{2}, 0 where {0}")


def times(e, name, value):
    """``e · name``, or just ``e`` when the saved value is 1 (``alpha=1``)."""
    return e if value == 1 else e * V(name)


def phrase(template, fn, *args):
    return Call(template, fn, *args, prec=PHRASE)


def shape_of(sizes):
    return "(" + ", ".join(str(int(s)) for s in sizes) + (",)" if len(sizes) == 1 else ")")


def _dims(dim, ndim):
    """Saved dims as a sorted tuple of non-negative ints (None or () means all dims)."""
    if dim is None or dim == ():
        return tuple(range(ndim))
    dims = dim if isinstance(dim, (tuple, list)) else (dim,)
    return tuple(sorted(d % ndim if ndim else 0 for d in dims))


def _unsqueeze(v, dims, keepdim):
    if keepdim or not isinstance(v, torch.Tensor):
        return v
    for d in dims:
        v = v.unsqueeze(d)
    return v


def _dims_text(dims):
    return f"dim {dims[0]}" if len(dims) == 1 else f"dims {dims}"


# --- the table ---------------------------------------------------------------------

@dataclass
class Rule:
    """How one kind of Node computes its gradients.

    ``build(a)`` gets the Node's values (``a["dim"]``, ``a.meta(i)``) and returns one
    ``(input name, Expr)`` per ``next_functions`` slot -- or None when this Node is a
    variant the table does not cover. ``note`` is a line of explanation shown with it.
    """

    names: tuple
    build: object
    note: object = ""  # a line of text, or a function of the Node's values that returns one
    no_derivative: str = ""  # for ops PyTorch cannot differentiate: the Node only raises


RULES = {}


def rule(*names, note="", no_derivative=""):
    def register(build):
        r = Rule(names, build, note, no_derivative)
        for n in names:
            RULES[n] = r
        return build
    return register


# Elementwise arithmetic.

@rule("AddBackward0")
def _add(a):
    return [("self", G), ("other", times(G, "alpha", a["alpha"]))]


@rule("AddBackward1", "SubBackward1")
def _add_scalar(a):
    return [("self", G)]


@rule("SubBackward0")
def _sub(a):
    return [("self", G), ("other", -times(G, "alpha", a["alpha"]))]


@rule("RsubBackward0")
def _rsub(a):  # other - alpha * self
    return [("self", -times(G, "alpha", a["alpha"])), ("other", G)]


@rule("RsubBackward1")
def _rsub_scalar(a):
    return [("self", -times(G, "alpha", a["alpha"]))]


@rule("MulBackward0")
def _mul(a):
    return [("self", G * V("other")), ("other", G * V("self"))]


@rule("MulBackward1")
def _mul_scalar(a):
    return [("self", G * V("other"))]


@rule("DivBackward0")
def _div(a):
    return [("self", G / V("other")), ("other", -G * V("self") / V("other") ** 2)]


@rule("DivBackward1")
def _div_scalar(a):
    return [("self", G / V("other"))]


@rule("NegBackward0")
def _neg(a):
    return [("self", -G)]


@rule("PowBackward0")
def _pow(a):
    if a["exponent"] == 0:
        return [("self", phrase("0 (self⁰ = 1 is constant)", torch.zeros_like, G))]
    return [("self", G * V("exponent") * V("self") ** (V("exponent") - 1))]


@rule("PowBackward1")
def _pow_tensor(a):
    return [
        ("self", zero_where(Cmp(V("exponent"), "=", 0), G * V("exponent") * V("self") ** (V("exponent") - 1))),
        ("exponent", G * zero_where(
            Call("{0} ∧ {1}", torch.logical_and, Cmp(V("self"), "=", 0), Cmp(V("exponent"), "≥", 0)),
            V("result") * log(V("self")))),
    ]


@rule("PowBackward2")
def _pow_scalar_base(a):  # base ** exponent, with a number as the base ("self")
    if a["self"] == 0:
        return None
    return [("exponent", G * V("result") * log(V("self")))]


# Exponentials, logarithms, roots.

@rule("ExpBackward0")
def _exp(a):
    return [("self", G * V("result"))]


@rule("Exp2Backward0")
def _exp2(a):
    return [("self", G * V("result") * LN2)]


@rule("Expm1Backward0")
def _expm1(a):
    return [("self", G * (V("result") + 1))]


@rule("LogBackward0")
def _log(a):
    return [("self", G / V("self"))]


@rule("Log2Backward0")
def _log2(a):
    return [("self", G / (V("self") * LN2))]


@rule("Log10Backward0")
def _log10(a):
    return [("self", G / (V("self") * LN10))]


@rule("Log1PBackward0")
def _log1p(a):
    return [("self", G / (V("self") + 1))]


@rule("SqrtBackward0")
def _sqrt(a):
    return [("self", G / (2 * V("result")))]


@rule("RsqrtBackward0")
def _rsqrt(a):
    return [("self", -0.5 * G * V("result") ** 3)]


@rule("ReciprocalBackward0")
def _reciprocal(a):
    return [("self", -G * V("result") ** 2)]


# Trigonometric and hyperbolic functions.

@rule("SinBackward0")
def _sin(a):
    return [("self", G * cos(V("self")))]


@rule("CosBackward0")
def _cos(a):
    return [("self", -G * sin(V("self")))]


@rule("TanBackward0")
def _tan(a):
    return [("self", G * (1 + V("result") ** 2))]


@rule("AsinBackward0")
def _asin(a):
    return [("self", G / sqrt(1 - V("self") ** 2))]


@rule("AcosBackward0")
def _acos(a):
    return [("self", -G / sqrt(1 - V("self") ** 2))]


@rule("AtanBackward0")
def _atan(a):
    return [("self", G / (1 + V("self") ** 2))]


@rule("SinhBackward0")
def _sinh(a):
    return [("self", G * cosh(V("self")))]


@rule("CoshBackward0")
def _cosh(a):
    return [("self", G * sinh(V("self")))]


@rule("TanhBackward0")
def _tanh(a):
    return [("self", G * (1 - V("result") ** 2))]


# Activations.

@rule("SigmoidBackward0")
def _sigmoid(a):
    return [("self", G * V("result") * (1 - V("result")))]


@rule("ReluBackward0")
def _relu(a):
    return [("self", G * Cmp(V("result"), ">", 0))]


@rule("LeakyReluBackward0")
def _leaky_relu(a):
    return [("self", where(Cmp(V("self"), ">", 0), G, G * V("negative_slope")))]


@rule("EluBackward0")
def _elu(a):
    if a.has("result"):  # elu_ (in place) saves its result instead: not covered
        return None
    positive = times(G, "scale", a["scale"])
    negative = G * V("alpha")
    negative = times(times(negative, "scale", a["scale"]), "input_scale", a["input_scale"])
    inner = V("self") if a["input_scale"] == 1 else V("self") * V("input_scale")
    return [("self", where(Cmp(V("self"), ">", 0), positive, negative * exp(inner)))]


@rule("GeluBackward0", note=lambda a: (
    "gelu_tanh′(x) = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 0.134145x²), t = tanh(√(2/π)(x + 0.044715x³))"
    if a["approximate"] == "tanh" else "Φ, φ: the standard normal distribution's CDF and density"))
def _gelu(a):
    if a["approximate"] == "tanh":
        return [("self", G * Call("gelu_tanh′({0})", lambda v: _gelu_tanh_grad(_t(v)), V("self"), wrap=False))]
    return [("self", G * (Phi(V("self")) + V("self") * phi(V("self"))))]


def _gelu_tanh_grad(x):
    k = math.sqrt(2 / math.pi)
    t = torch.tanh(k * (x + 0.044715 * x ** 3))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)


@rule("SiluBackward0")
def _silu(a):
    return [("self", G * sigma(V("self")) * (1 + V("self") * (1 - sigma(V("self")))))]


@rule("SoftplusBackward0")
def _softplus(a):
    bx = V("self") if a["beta"] == 1 else V("beta") * V("self")
    return [("self", where(Cmp(bx, ">", V("threshold")), G, G * sigma(bx), "{2}, grad where {0}"))]


@rule("HardtanhBackward0")
def _hardtanh(a):
    inside = Call("[{0} < {1} < {2}]", lambda lo, x, hi: (x > lo) & (x < hi), V("min_val"), V("self"), V("max_val"),
                  elementwise=True)
    return [("self", G * inside)]


@rule("AbsBackward0")
def _abs(a):
    return [("self", G * sign(V("self")))]


@rule("SignBackward0", "RoundBackward0", "RoundBackward1", "FloorBackward0", "CeilBackward0", "TruncBackward0",
      note="a step function: its derivative is 0 wherever it is defined")
def _flat(a):
    return [("self", phrase("0", torch.zeros_like, G))]


@rule("ClampBackward1")
def _clamp(a):
    lo, hi = a["min"], a["max"]
    if lo is not None and hi is not None:
        inside = Call("[{0} ≤ {1} ≤ {2}]", lambda lo, x, hi: (x >= lo) & (x <= hi), V("min"), V("self"), V("max"),
                      elementwise=True)
    elif lo is not None:
        inside = Cmp(V("self"), "≥", V("min"))
    else:
        inside = Cmp(V("self"), "≤", V("max"))
    return [("self", G * inside)]


@rule("ClampMinBackward0")
def _clamp_min(a):
    return [("self", G * Cmp(V("self"), "≥", V("min")))]


@rule("ClampMaxBackward0")
def _clamp_max(a):
    return [("self", G * Cmp(V("self"), "≤", V("max")))]


@rule("MaximumBackward0", "MinimumBackward0", note="a tie shares the gradient: half to each input")
def _maximum(a):
    win = ">" if a.name == "MaximumBackward0" else "<"
    tie = 0.5 * Cmp(V("self"), "=", V("other"))
    return [("self", G * (Cmp(V("self"), win, V("other")) + tie)),
            ("other", G * (Cmp(V("other"), win, V("self")) + tie))]


@rule("WhereBackward0")
def _where(a):
    return [("self", where(V("condition"), G, 0, "{1} where {0}, 0 elsewhere")),
            ("other", where(V("condition"), 0, G, "{2} where not {0}, 0 elsewhere"))]


@rule("MaskedFillBackward0")
def _masked_fill(a):
    return [("self", zero_where(V("mask"), G))]


@rule("MaskedFillBackward1")
def _masked_fill_tensor(a):
    return [("self", zero_where(V("mask"), G)),
            ("value", Call("sum({0} where {1})", lambda g, m: torch.where(m, g, 0).sum(), G, V("mask"), wrap=False))]


@rule("NanToNumBackward0")
def _nan_to_num(a):
    return [("self", G * isfinite(V("self")))]


@rule("FakeQuantizePerTensorAffineCachemaskBackward0",
      note="straight-through: grad passes where the value was inside the quantized range")
def _fake_quantize(a):
    return [("self", G * V("mask"))]


@rule("FakeQuantizeLearnablePerTensorAffineBackward0",
      note="q = round(self / scale + zero_point); inside: q_min ≤ q ≤ q_max (the LSQ rule, PyTorch's kernel)")
def _fake_quantize_learnable(a):
    lo, hi, gf = a["quant_min"], a["quant_max"], a["grad_factor"]

    def parts(g, x, scale, zp):
        s = scale.reshape(()).to(x.dtype)
        z = zp.reshape(()).round().clamp(lo, hi).to(x.dtype)
        q = torch.round(x / s + z)  # PyTorch multiplies by 1/scale; equal but for ties
        inside = (q >= lo) & (q <= hi)
        fq = (q.clamp(lo, hi) - z) * s
        dscale = torch.where(inside, (fq - x) / s * g, torch.where(q < lo, (lo - z) * g, (hi - z) * g)) * gf
        dzero = torch.where(inside, 0.0, -g * s * gf)
        return g * inside, dscale.sum().reshape(1), dzero.sum().reshape(1)
    args = (G, V("self"), V("scale"), V("zero_point"))
    return [("self", phrase("{0} where inside, 0 elsewhere", lambda *v: parts(*v)[0], *args)),
            ("scale", phrase("sum((fake_quantized − {1}) / {2} · {0} where inside, (q_min or q_max − zero_point) "
                             "· {0} outside) · grad_factor", lambda *v: parts(*v)[1], *args)),
            ("zero_point", phrase("sum(−{0} · {2} outside, 0 inside) · grad_factor", lambda *v: parts(*v)[2], *args))]


# Copies and identities.

@rule("CloneBackward0", "AliasBackward0", "BackwardHookFunctionBackward",
      note="passes the gradient through unchanged")
def _identity(a):
    if a.name == "BackwardHookFunctionBackward":
        return [(f"input[{i}]" if a.n_inputs > 1 else "input", V(_grad_name(i, a.n_outputs)))
                for i in range(a.n_inputs)]
    return [("self", G)]


@rule("ToCopyBackward0")
def _to_copy(a):
    meta = a.meta(0)
    dtype = str(meta[1]).replace("torch.", "") if meta else "the input's dtype"
    return [("self", phrase("{0} converted to " + dtype, lambda g: g.to(meta[1]) if meta else g, G))]


# Matrix products.

@rule("MmBackward0", "BmmBackward0")
def _mm(a):
    return [("self", G @ T(V("mat2"))), ("mat2", T(V("self")) @ G)]


@rule("AddmmBackward0")
def _addmm(a):
    return [("self", times(G, "beta", a["beta"])),
            ("mat1", times(G @ T(V("mat2")), "alpha", a["alpha"])),
            ("mat2", times(T(V("mat1")) @ G, "alpha", a["alpha"]))]


@rule("MvBackward0")
def _mv(a):
    outer = Call("outer({0}, {1})", lambda g, v: torch.outer(g, v), G, V("vec"), wrap=False)
    return [("self", outer), ("vec", T(V("self")) @ G)]


@rule("DotBackward0")
def _dot(a):
    return [("self", G * V("tensor")), ("tensor", G * V("self"))]


# Reductions.

@rule("SumBackward0")
def _sum(a):
    sizes = a["self_sym_sizes"]
    return [("self", phrase("{0} expanded to " + shape_of(sizes), lambda g: g.expand(sizes), G))]


@rule("SumBackward1")
def _sum_dim(a):
    sizes, keep = a["self_sym_sizes"], a["keepdim"]
    dims = _dims(a["dim"], len(sizes))
    return [("self", phrase(f"{{0}} expanded back along {_dims_text(dims)} to {shape_of(sizes)}",
                            lambda g: _unsqueeze(g, dims, keep).expand(sizes), G))]


@rule("MeanBackward0")
def _mean(a):
    sizes = a["self_sym_sizes"]
    return [("self", phrase("{0} expanded to " + shape_of(sizes), lambda g: g.expand(sizes),
                            G / V("self_sym_numel", "numel")))]


@rule("MeanBackward1")
def _mean_dim(a):
    sizes, keep = a["self_sym_sizes"], a["keepdim"]
    dims = _dims(a["dim"], len(sizes))
    count = math.prod(sizes[d] for d in dims)
    return [("self", phrase(f"{{0}} expanded back along {_dims_text(dims)} to {shape_of(sizes)}",
                            lambda g: _unsqueeze(g, dims, keep).expand(sizes), G / Const(count)))]


def _product_of_others(x):
    flat = x.reshape(-1)
    left = torch.cat([flat.new_ones(1), flat.cumprod(0)[:-1]])
    right = torch.cat([flat.flip(0).cumprod(0)[:-1].flip(0), flat.new_ones(1)])
    return (left * right).reshape(x.shape)


@rule("ProdBackward0")
def _prod(a):
    others = Call("(product of the other elements of {0})", _product_of_others, V("self"), wrap=False)
    return [("self", G * others)]


@rule("CumsumBackward0")
def _cumsum(a):
    d = a["dim"]
    return [("self", phrase(f"cumsum of {{0}} from the end, along dim {d}",
                            lambda g: g.flip(d).cumsum(d).flip(d), G))]


def _ties(x, r):
    return torch.isnan(x) if torch.isnan(r).all() else x == r


@rule("MaxBackward1", "MinBackward1", "MedianBackward0", note="a tie shares the gradient equally")
def _max_all(a):
    return [("self", phrase("{0} shared equally by the elements of {1} equal to {2}, 0 elsewhere",
                            lambda g, x, r: g * _ties(x, r) / _ties(x, r).sum(), G, V("self"), V("result")))]


@rule("AmaxBackward0", "AminBackward0", note="a tie shares the gradient equally")
def _amax(a):
    keep = a["keepdim"]

    def f(g, x, r):
        dims = _dims(a["dim"], x.dim())
        mask = x == _unsqueeze(r, dims, keep)
        return _unsqueeze(g, dims, keep) * mask / mask.sum(dims, keepdim=True)
    return [("self", phrase("{0} shared equally by the elements of {1} equal to {2} along the reduced dims, "
                            "0 elsewhere", f, G, V("self"), V("result")))]


def _scatter_at(sizes, dim, keep):
    def f(g, idx):
        if not keep and len(sizes):
            g, idx = g.unsqueeze(dim), idx.unsqueeze(dim)
        return g.new_zeros(sizes).scatter(dim, idx, g)
    return f


@rule("MaxBackward0", "MinBackward0", "TopkBackward0", "SortBackward0", "KthvalueBackward0", "MedianBackward1")
def _values_at_indices(a):
    sizes = a["self_sym_sizes"]
    dim = a["dim"] % max(len(sizes), 1)
    keep = a["keepdim"] if a.has("keepdim") else True
    return [("self", phrase(f"{{0}} placed at {{1}} along dim {dim}, 0 elsewhere in {shape_of(sizes)}",
                            _scatter_at(sizes, dim, keep), G, V("indices")))]


@rule("LinalgVectorNormBackward0")
def _vector_norm(a):
    ord, keep = a["ord"], a["keepdim"]
    dim = a["dim"]

    def up(f):  # grad and result have the reduced dims back, for broadcasting
        def g(*vals):
            x = vals[-1]
            dims = _dims(dim, x.dim())
            return f(*(_unsqueeze(v, dims, keep) for v in vals[:-1]), x)
        return g
    if ord == 2:
        return [("self", phrase("{0} · {2} / {1}, 0 where {1} = 0",
                                up(lambda g, r, x: x * (g / r).masked_fill(r == 0, 0)), G, V("result"), V("self")))]
    if ord == 1:
        return [("self", phrase("{0} · sign({1})", up(lambda g, x: g * torch.sign(x)), G, V("self")))]
    return None


@rule("VarBackward0", "StdBackward0")
def _var(a):
    keep, correction = a["keepdim"], a["correction"]
    c = 1 if correction is None else correction
    std = a.name == "StdBackward0"

    def f(g, x, *r):
        dims = _dims(a["dim"], x.dim())
        n = math.prod(x.shape[d] for d in dims)
        centred = x - x.mean(dims, keepdim=True)
        if std:
            return _unsqueeze(g, dims, keep) * centred / ((n - c) * _unsqueeze(r[0], dims, keep))
        return _unsqueeze(g, dims, keep) * 2 * centred / (n - c)
    if std:
        return [("self", phrase(f"{{0}} · ({{1}} − mean({{1}})) / ((N − {c}) · {{2}})", f, G, V("self"), V("result")))]
    return [("self", phrase(f"{{0}} · 2 · ({{1}} − mean({{1}})) / (N − {c})", f, G, V("self")))]


@rule("LogsumexpBackward0")
def _logsumexp(a):
    keep = a["keepdim"]

    def f(g, x, r):
        dims = _dims(a["dim"], x.dim())
        return _unsqueeze(g, dims, keep) * torch.exp(x - _unsqueeze(r, dims, keep))
    return [("self", phrase("{0} · exp({1} − {2})", f, G, V("self"), V("result")))]


@rule("SoftmaxBackward0")
def _softmax(a):
    d = a["dim"]
    s = Call(f"sum({{0}}, dim={d})", lambda v: v.sum(d, keepdim=True), G * V("result"), wrap=False)
    return [("self", V("result") * (G - s))]


@rule("LogSoftmaxBackward0")
def _log_softmax(a):
    d = a["dim"]
    s = Call(f"sum({{0}}, dim={d})", lambda v: v.sum(d, keepdim=True), G, wrap=False)
    return [("self", G - exp(V("result")) * s)]


# Losses (the pieces cross_entropy and mse_loss are made of).

@rule("NllLossBackward0")
def _nll_loss(a):
    reduction, ignore = a["reduction"], a["ignore_index"]
    weighted = a["weight"] is not None

    def f(g, x, target, *rest):
        w = rest[0] if weighted else None
        out = torch.zeros_like(x)
        two_d = x.dim() == 2
        t = target.reshape(-1, 1) if two_d else target.reshape(1)
        keep = (t != ignore)
        tw = (w[t.clamp(min=0)] if w is not None else torch.ones_like(t, dtype=x.dtype)) * keep
        scale = -tw
        if reduction == 1:
            scale = scale / rest[-1]
        gg = g.reshape(-1, 1) if (reduction == 0 and two_d) else g
        return out.scatter(1 if two_d else 0, t.clamp(min=0), scale * gg)
    args = [G, V("self"), V("target")] + ([V("weight")] if weighted else [])
    w = " · weight[target]" if weighted else ""
    if reduction == 1:
        args.append(V("total_weight"))
        text = f"−{{0}}{w} / total_weight at each row's target class, 0 elsewhere"
    else:
        text = f"−{{0}}{w} at each row's target class, 0 elsewhere"
    return [("self", phrase(text, f, *args))]


def _mean_or_sum(e, reduction, n_name="self"):
    if reduction == 1:
        return e / Call("numel({0})", lambda v: v.numel(), V(n_name), wrap=False)
    return e


@rule("MseLossBackward0")
def _mse_loss(a):
    r = a["reduction"]
    d = _mean_or_sum(G * 2 * (V("self") - V("target")), r)
    return [("self", d), ("target", -d)]


@rule("BinaryCrossEntropyBackward0")
def _bce(a):
    r = a["reduction"]
    w = (lambda e: e * V("weight")) if a["weight"] is not None else (lambda e: e)
    denom = Call("max({0}, 1e-12)", lambda v: torch.clamp(v, min=1e-12), (1 - V("self")) * V("self"), wrap=False)
    return [("self", _mean_or_sum(w(G * (V("self") - V("target")) / denom), r)),
            ("target", _mean_or_sum(w(-G * logit(V("self"))), r))]


@rule("BinaryCrossEntropyWithLogitsBackward0")
def _bce_logits(a):
    if a["pos_weight"] is not None:
        return None
    r = a["reduction"]
    w = (lambda e: e * V("weight")) if a["weight"] is not None else (lambda e: e)
    return [("self", _mean_or_sum(w(G * (sigma(V("self")) - V("target"))), r)),
            ("target", _mean_or_sum(w(-G * V("self")), r))]


# Views, reshapes and copies of parts.

@rule("ViewBackward0", "UnsafeViewBackward0",
      "SqueezeBackward0", "SqueezeBackward1", "SqueezeBackward2", "SqueezeBackward3",
      "SqueezeBackward4", "SqueezeBackward5")
def _view(a):
    sizes = a["self_sym_sizes"]
    return [("self", phrase("{0} reshaped to " + shape_of(sizes), lambda g: g.reshape(sizes), G))]


@rule("UnsqueezeBackward0")
def _unsqueeze_rule(a):
    d = a["dim"]
    return [("self", phrase(f"{{0}} with dim {d} squeezed out", lambda g: g.squeeze(d), G))]


@rule("TBackward0")
def _t_rule(a):
    return [("self", Call("{0}ᵀ", lambda g: g.t(), G))]


@rule("TransposeBackward0")
def _transpose(a):
    d0, d1 = a["dim0"], a["dim1"]
    return [("self", phrase(f"{{0}} with dims {d0} and {d1} swapped back", lambda g: g.transpose(d0, d1), G))]


@rule("PermuteBackward0")
def _permute(a):
    dims = a["dims"]
    inverse = tuple(sorted(range(len(dims)), key=lambda i: dims[i] % len(dims)))
    return [("self", phrase(f"{{0}} permuted back by {inverse}", lambda g: g.permute(inverse), G))]


@rule("ExpandBackward0")
def _expand(a):
    sizes = a["self_sym_sizes"]
    return [("self", phrase("{0} summed over the expanded dims to " + shape_of(sizes),
                            lambda g: g.sum_to_size(sizes), G))]


@rule("FlipBackward0")
def _flip(a):
    dims = a["dims"]
    return [("self", phrase(f"{{0}} flipped back along dims {tuple(dims)}", lambda g: g.flip(dims), G))]


@rule("RepeatBackward0")
def _repeat(a):
    sizes, repeats = list(a["self_sym_sizes"]), list(a["repeats"])

    def f(g):
        padded = [1] * (len(repeats) - len(sizes)) + sizes
        tiles = [n for r, s in zip(repeats, padded) for n in (r, s)]
        return g.reshape(tiles).sum(tuple(range(0, 2 * len(repeats), 2))).reshape(sizes)
    return [("self", phrase("the tiles of {0} summed back to " + shape_of(sizes), f, G))]


@rule("SelectBackward0")
def _select(a):
    sizes, d, i = a["self_sym_sizes"], a["dim"], a["index"]
    return [("self", phrase(f"{{0}} placed at index {i} of dim {d} in zeros {shape_of(sizes)}",
                            lambda g: g.new_zeros(sizes).select_scatter(g, d, i), G))]


@rule("SliceBackward0")
def _slice(a):
    sizes, d, step = a["self_sym_sizes"], a["dim"], a["step"]
    start, end = a["start"], min(a["end"], sizes[d])
    where_ = f"{start}:{end}" + (f":{step}" if step != 1 else "")
    return [("self", phrase(f"{{0}} placed at [{where_}] of dim {d} in zeros {shape_of(sizes)}",
                            lambda g: g.new_zeros(sizes).slice_scatter(g, d, start, end, step), G))]


@rule("IndexBackward0")
def _index(a):
    sizes = a["self_sym_sizes"]
    return [("self", phrase(f"{{0}} added at self[indices] into zeros {shape_of(sizes)}",
                            lambda g, idx: torch.ops.aten.index_put(g.new_zeros(sizes), list(idx), g, True),
                            G, V("indices")))]


@rule("IndexSelectBackward0")
def _index_select(a):
    sizes, d = a["self_sym_sizes"], a["dim"]
    return [("self", phrase(f"{{0}} added at {{1}} along dim {d} into zeros {shape_of(sizes)}",
                            lambda g, idx: g.new_zeros(sizes).index_add(d, idx, g), G, V("index")))]


@rule("GatherBackward0")
def _gather(a):
    d = a["dim"]
    return [("self", phrase(f"{{0}} added at {{1}} along dim {d} into zeros like self",
                            lambda g, idx, x: torch.zeros_like(x).scatter_add(d, idx, g), G, V("index"), V("self")))]


@rule("EmbeddingBackward0", note="each row of grad is added into the row of weight its index picked")
def _embedding(a):
    if a["scale_grad_by_freq"] or a["sparse"]:
        return None
    n, pad = a["weight_sym_argsize_0"], a["padding_idx"]

    def f(g, idx):
        rows = g.reshape(-1, g.shape[-1])
        out = rows.new_zeros(n, g.shape[-1]).index_add(0, idx.reshape(-1), rows)
        if pad != -1:
            out[pad] = 0
        return out
    note = "" if pad == -1 else f", except row {pad} (padding_idx)"
    return [("weight", phrase(f"rows of {{0}} added at {{1}} into zeros ({n}, D){note}", f, G, V("indices")))]


@rule("CatBackward0")
def _cat(a):
    d = a["dim"]
    sizes = [m[0][d] if m else None for m in (a.meta(i) for i in range(a.n_inputs))]
    if sizes.count(None) > 1:
        return None
    if None in sizes:
        sizes[sizes.index(None)] = a.grad_shape(0)[d] - sum(s for s in sizes if s is not None)
    out, start = [], 0
    for i, s in enumerate(sizes):
        out.append((f"tensors[{i}]", phrase(f"{{0}}[{start}:{start + s} along dim {d}]",
                                            lambda g, start=start, s=s: g.narrow(d, start, s), G)))
        start += s
    return out


@rule("StackBackward0")
def _stack(a):
    d = a["dim"]
    return [(f"tensors[{i}]", phrase(f"{{0}}[{i} along dim {d}]", lambda g, i=i: g.select(d, i), G))
            for i in range(a.n_inputs)]


@rule("SplitBackward0", "SplitWithSizesBackward0", "UnbindBackward0",
      note="an output nobody used counts as zeros")
def _split(a):
    d = a["dim"]
    grads = [V(_grad_name(k, a.n_outputs)) for k in range(a.n_outputs)]
    slots = ", ".join("{%d}" % k for k in range(a.n_outputs))
    if a.name == "UnbindBackward0":
        return [("self", Call(f"stack({slots}, dim={d})", lambda *g: torch.stack(g, d), *grads, wrap=False))]
    return [("self", Call(f"cat({slots}, dim={d})", lambda *g: torch.cat(g, d), *grads, wrap=False))]


# Nodes of a double backward (create_graph=True): the backward formula's own derivative.

@rule("TanhBackwardBackward0")
def _tanh_bb(a):  # forward: grad_output · (1 − output²)
    return [("grad_output", G * (1 - V("output") ** 2)),
            ("output", -2 * G * V("grad_output") * V("output"))]


@rule("SelectBackwardBackward0")
def _select_bb(a):  # forward: grad_output placed at index of dim in zeros
    d, i = a["dim"], a["index"]
    return [("grad_output", phrase(f"{{0}}[index {i} of dim {d}]", lambda g: g.select(d, i), G))]


@rule("SoftplusBackwardBackward0")
def _softplus_bb(a):  # forward: grad_output · σ(beta · self), or grad_output above the threshold
    bx = V("self") if a["beta"] == 1 else V("beta") * V("self")
    over = Cmp(bx, ">", V("threshold"))
    slope = G * V("grad_output") * sigma(bx) * (1 - sigma(bx))
    return [("grad_output", where(over, G, G * sigma(bx), "{2}, grad where {0}")),
            ("self", zero_where(over, slope if a["beta"] == 1 else slope * V("beta")))]


@rule("MseLossBackwardBackward0")
def _mse_bb(a):  # forward: grad_output · 2 · (self − target) [/ N]
    r = a["reduction"]
    return [("grad_output", _mean_or_sum(G * 2 * (V("self") - V("target")), r)),
            ("self", _mean_or_sum(G * V("grad_output") * 2, r)),
            ("target", -_mean_or_sum(G * V("grad_output") * 2, r))]


@rule("LogSoftmaxBackwardDataBackward0")
def _log_softmax_bb(a):  # forward: grad_output − exp(output) · sum(grad_output, dim)
    d = a["dim"]

    def total(v):
        return v.sum(d, keepdim=True)
    s = Call(f"sum({{0}}, dim={d})", total, G * exp(V("output")), wrap=False)
    so = Call(f"sum({{0}}, dim={d})", total, V("grad_output"), wrap=False)
    return [("grad_output", G - s), ("output", -so * exp(V("output")) * G)]


@rule("NllLossBackwardBackward0", note="nll_loss's backward is linear in grad_output and does not use self's values")
def _nll_loss_bb(a):  # forward: nll_loss_backward(grad_output, self, target, ...)
    reduction = {0: "none", 1: "mean", 2: "sum"}[a["reduction"]]
    ignore, weighted = a["ignore_index"], a["weight"] is not None

    def f(g, target, *w):
        return F.nll_loss(g, target, weight=w[0] if w else None, reduction=reduction, ignore_index=ignore)
    args = [G, V("target")] + ([V("weight")] if weighted else [])
    template = "nll_loss({0}, {1}" + (", weight={2}" if weighted else "") + f", reduction={reduction!r})"
    return [("grad_output", Call(template, f, *args, wrap=False)),
            ("self", phrase("0", torch.zeros_like, G))]


# Ops PyTorch cannot differentiate: the Node exists, and raises if a gradient reaches it.

@rule("Unique2Backward0", no_derivative="torch.unique has no derivative")
def _no_derivative(a):
    return None


# Nodes whose rule cannot be recomputed from what Python can read (the view's geometry and the
# wrapped in-place op are not exposed): described in words, with the values in and out.
DESCRIBED = {
    "CopySlices": "an in-place op on a view: runs that op's backward on the view's part of grad, "
                  "and passes the rest of grad to the base unchanged",
    "AsStridedBackward0": lambda a: (
        f"grad added into zeros of the input's shape at the elements the view read "
        f"(size {tuple(a['size'])}, stride {tuple(a['stride'])}, offset {a['storage_offset']})"),
}


def _grad_name(k, n):
    """What a Node with ``n`` outputs received for output ``k``: ``grad``, or ``grad[k]``."""
    return "grad" if n == 1 else f"grad[{k}]"


# --- reading a Node ---------------------------------------------------------------

_UNSIGNED = 2 ** 64


def _clean(v):
    """PyTorch hands some saved ints (dim=-1, ignore_index=-100) to Python as unsigned."""
    if isinstance(v, int) and not isinstance(v, bool) and v >= 2 ** 63:
        return v - _UNSIGNED
    if isinstance(v, (tuple, list)) and not any(isinstance(x, torch.Tensor) for x in v):
        return type(v)(_clean(x) for x in v)
    return v


class Env(dict):
    """The values a rule reads, fetched once each: received gradients and saved values.

    ``grad`` (or ``grad[k]`` for a Node with several outputs) is what the Node
    received; an unused output's None counts as zeros, as the Node itself does.
    Any other name is the Node's ``_saved_<name>``.
    """

    def __init__(self, fn, received):
        super().__init__()
        self.fn, self.received = fn, received
        self._metas = None
        self.name = type(fn).__name__
        self.n_inputs = len(fn.next_functions)
        self.n_outputs = len(received) if received else len(getattr(fn, "_input_metadata", ())) or 1

    def __missing__(self, key):
        if key == "grad" or key.startswith("grad["):
            k = 0 if key == "grad" else int(key[5:-1])
            g = self.received[k] if self.received and k < len(self.received) else None
            if g is None:
                meta = self.fn._input_metadata[k]
                g = torch.zeros(tuple(meta.shape), dtype=meta.dtype)
            value = g
        else:
            value = _clean(getattr(self.fn, "_saved_" + key))
        self[key] = value
        return value

    def has(self, key):
        return hasattr(self.fn, "_saved_" + key) and self[key] is not None

    def meta(self, i):
        """(shape, dtype) the gradient of input ``i`` must have, or None if it goes nowhere."""
        if self._metas is None:
            self._metas = []
            for nxt, k in self.fn.next_functions:
                m = nxt._input_metadata[k] if nxt is not None else None
                self._metas.append(None if m is None else (tuple(m.shape), m.dtype))
        return self._metas[i]

    def grad_shape(self, k):
        g = self.received[k] if self.received else None
        return tuple(g.shape) if g is not None else tuple(self.fn._input_metadata[k].shape)


def kind_of(fn):
    """"accumulate", "rule", "described", "custom", "function" (torch's own Python Function), or "unknown"."""
    name = type(fn).__name__
    if name == "AccumulateGrad":
        return "accumulate"
    if name in RULES:
        return "rule"
    if name in DESCRIBED:
        return "described"
    if isinstance(fn, torch.autograd.function.BackwardCFunction):
        cls = getattr(type(fn), "_forward_cls", None)
        module = getattr(cls, "__module__", "") or ""
        if module.startswith("torch._library"):  # torch.library.register_autograd: the learner's backward
            return "custom"
        return "function" if module.startswith("torch.") else "custom"
    return "unknown"


def rule_for(fn):
    """The table's ``Rule`` for this Node's type, or None."""
    return RULES.get(type(fn).__name__)


def _build(fn, received):
    """(env, [(input name, Expr)] per slot) or (env, None) when the table does not cover it."""
    env = Env(fn, received)
    r = rule_for(fn)
    if r is None or r.no_derivative:
        return env, None
    built = r.build(env)
    if built is not None and len(built) != env.n_inputs:
        return env, None
    return env, built


def _is_complex(values):
    return any(isinstance(v, (torch.Tensor, TensorSummary)) and v.dtype.is_complex for v in values)


def _fit(v, meta):
    """What the engine does to every gradient a Node returns: sum a broadcast one back, cast."""
    shape, dtype = meta
    if not isinstance(v, torch.Tensor):
        v = torch.full(shape, v, dtype=dtype)
    if tuple(v.shape) != shape:
        v = v.sum_to_size(shape)
    return v.to(dtype)


def recompute(fn, received):
    """The gradients the table's rule computes for each of ``fn``'s inputs (None: no input there).

    ``received``: the gradients the Node received (one per output, None for an
    unused output). Raises ``KeyError`` for a Node the table does not cover.
    """
    env, built = _build(fn, received)
    if built is None:
        raise KeyError(f"{type(fn).__name__} is not in the formula table.")
    out = []
    for i, (_, expr) in enumerate(built):
        meta = env.meta(i)
        out.append(None if meta is None else _fit(expr.value(env), meta))
    return out


# --- writing it out ----------------------------------------------------------------

def _small(v):
    if isinstance(v, (tuple, list)):
        return all(_small(x) for x in v)
    return v is None or isinstance(v, (int, float, bool, str)) or (
        isinstance(v, torch.Tensor) and v.numel() <= MAX_VALUES)


def _value_text(v):
    if v is None:
        return "0"
    if isinstance(v, (int, float, bool)):
        return _num(v)
    if isinstance(v, (tuple, list)):
        return "(" + ", ".join(_value_text(x) for x in v) + ")"
    return describe(v)


class _Symbols:
    values = False

    def __init__(self, labels=None):
        self.labels = labels or {}

    def var(self, v):
        return self.labels.get(v.name, v.label)


class _Values:
    values = True

    def __init__(self, env):
        self.env = env

    def var(self, v):
        return _value_text(self.env[v.name])


def _labels(env, built, names):
    """Learners' names for saved tensors that are tensors they named (``other`` -> ``x``)."""
    if not names:
        return {}
    labels = {}
    for _, expr in built:
        for v in expr.vars():
            if v.name.startswith("grad") or v.name in labels:
                continue
            try:
                value = env[v.name]
            except Exception:
                continue
            named = names.get(id(value))
            if named is not None and named[1] is value:
                labels[v.name] = named[0]
    return labels


def _is_large(v):
    if isinstance(v, TensorSummary):
        return v.numel > MAX_VALUES
    return isinstance(v, torch.Tensor) and v.numel() > MAX_VALUES


def _shape_words(env, expr, sym):
    """``grad (32, 128), alpha = 1``: each value the rule reads, by shape when it is large."""
    parts, seen = [], set()
    for v in expr.vars():
        if v.name not in seen:
            seen.add(v.name)
            value, label = env[v.name], sym.var(v)
            parts.append(f"{label} {shape_of(value.shape)}" if _is_large(value) else f"{label} = {_value_text(value)}")
    return ", ".join(parts)


def _line(label, expr, env, sym, sent, meta):
    """``grad_self = grad · other = 1 · 2 = 2`` (values) or the rule with shapes (large tensors)."""
    rule = expr.text(sym)
    head = f"grad_{label} = {rule}"
    if sent is None and meta is None:
        return head
    result = describe(sent) if sent is not None else None
    if all(_small(env[x.name]) for x in expr.vars()):
        values = expr.text(_Values(env))
        text = head if values == rule else f"{head} = {values}"
        if _broadcast(expr, env, meta, evaluate=True):
            text += f", summed to {shape_of(meta[0])}"
            values = None
        return text + (f" = {result}" if result is not None and result != values else "")
    if _broadcast(expr, env, meta):
        head += f", summed to {shape_of(meta[0])}"
    return f"{head}{f' = {result}' if result is not None else ''}  ({_shape_words(env, expr, sym)})"


def _broadcast(expr, env, meta, evaluate=False):
    """Does the engine sum the rule's result down to the input's shape (a broadcast input)?

    Worked out from shapes; ``evaluate``: if they do not tell, compute the rule (small values).
    """
    if meta is None:
        return False
    natural = expr.shape(env)
    if natural is None and evaluate:
        try:
            value = expr.value(env)
        except Exception:
            return False
        natural = tuple(value.shape) if isinstance(value, torch.Tensor) else None
    return natural is not None and natural != meta[0]


def _custom_class(fn):
    cls = getattr(type(fn), "_forward_cls", None)
    return getattr(cls, "__qualname__", type(fn).__name__)


def _your_backward(fn):
    cls = getattr(type(fn), "_forward_cls", None)
    if (getattr(cls, "__module__", "") or "").startswith("torch._library"):
        return "the backward you registered with torch.library.register_autograd"
    return f"your backward ({_custom_class(fn)}.backward)"


def _description(fn):
    text = DESCRIBED[type(fn).__name__]
    if callable(text):
        try:
            text = text(Env(fn, None))
        except RuntimeError:
            text = "its saved values are gone"
    return text


def _in_out(received, sent, inputs):
    got = "; ".join(describe(g) for g in received) if received else "nothing"
    parts = [f"{(inputs[i] if inputs and i < len(inputs) and inputs[i] else f'input {i}')}: {describe(g)}"
             for i, g in enumerate(sent or []) if g is not None]
    return got, ", ".join(parts) if parts else "nothing"


def formula(fn, received, sent, *, names=None, inputs=None, leaf=None):
    """The rule ``fn`` applied, with its values, as text (one line per input).

    ``received``: what the Node received (one per output); ``sent``: what it sent
    (one per ``next_functions`` slot, None where nothing goes). ``names``:
    ``{id(tensor): (name, tensor)}`` of tensors the learner named; ``inputs``: per
    slot, the learner's name for that input (or None); ``leaf``: for an
    AccumulateGrad, the leaf's name.
    """
    name = type(fn).__name__
    kind = kind_of(fn)
    if kind == "accumulate":
        g = received[0] if received else None
        return f"AccumulateGrad: {leaf or 'leaf'}.grad += {describe(g)}"
    if kind == "rule" and not _is_complex(list(received or ()) + list(sent or ())):
        text = _rule_text(fn, received, sent, names, inputs)
        if text is not None:
            return text
    got, out = _in_out(received, sent, inputs)
    if kind == "custom":
        return f"{name}: {_your_backward(fn)} received {got} and returned {out}"
    if kind == "described":
        return f"{name}: {_description(fn)}; received {got}, sent {out}"
    if kind == "function":
        what = {"CompiledFunctionBackward": "the backward torch.compile compiled for this region",
                "CheckpointFunctionBackward": "recomputes the checkpointed forward, then runs its backward"}
        return f"{name}: {what.get(name, 'a Python autograd.Function inside PyTorch')}; received {got}, sent {out}"
    r = rule_for(fn)
    if r is not None and r.no_derivative:
        return f"{name}: {r.no_derivative}; a gradient that reaches this Node raises an error"
    if kind == "unknown":
        return f"{name}: not in the formula table; received {got}, sent {out}"
    if _is_complex(list(received or ()) + list(sent or ())):
        return f"{name}: complex tensors (the table covers real ones); received {got}, sent {out}"
    try:
        _build(fn, received)
    except RuntimeError:  # saved tensors freed by a later backward(), or an unpack hook failed
        rule = "; ".join(symbolic(fn, names=names, inputs=inputs))
        return (f"{name}: {rule} (its saved tensors were freed by a later backward(), so no values); "
                f"received {got}, sent {out}")
    return f"{name}: this variant is not in the formula table; received {got}, sent {out}"


def _rule_text(fn, received, sent, names, inputs):
    """The table's rule for ``fn`` with its values, or None when the table cannot say."""
    name = type(fn).__name__
    r = rule_for(fn)
    try:
        env, built = _build(fn, received)
    except RuntimeError:
        return None
    if built is None:
        return None
    sym = _Symbols(_labels(env, built, names))
    lines, freed = [], False
    for i, (label, expr) in enumerate(built):
        meta = env.meta(i)
        if meta is None:
            continue  # this input does not require grad: the engine computes nothing for it
        label = inputs[i] if inputs and i < len(inputs) and inputs[i] else label
        g = sent[i] if sent is not None and i < len(sent) else None
        try:
            lines.append(_line(label, expr, env, sym, g, meta))
        except RuntimeError:  # a saved tensor is gone (a later backward() freed it)
            lines.append(f"grad_{label} = {expr.text(sym)} = {describe(g)}")
            freed = True
    try:
        note = r.note(env) if callable(r.note) else r.note
    except RuntimeError:
        note = ""
    if freed:
        lines.append("(its saved tensors were freed by a later backward(), so no values)")
    if note:
        lines.append(f"({note})")
    if not lines:
        return f"{name}: none of its inputs needs a gradient"
    return f"{name}: " + "\n".join(lines)


def symbolic(fn, *, names=None, inputs=None):
    """The rule of ``fn`` without values (for a diagram drawn before any backward): lines of text."""
    kind = kind_of(fn)
    if kind == "accumulate":
        return ["grad += received"]
    if kind == "custom":
        return [_your_backward(fn).replace("your backward (", "your ").rstrip(")")]
    if kind == "described":
        return [_description(fn)]
    r = rule_for(fn)
    if r is not None and r.no_derivative:
        return [r.no_derivative]
    if kind != "rule":
        return ["(not in the formula table)"]
    try:
        env, built = _build(fn, None)
    except RuntimeError:
        return ["(saved values freed)"]
    if built is None:
        return ["(variant not in the formula table)"]
    sym = _Symbols(_labels(env, built, names))
    lines = []
    for i, (label, expr) in enumerate(built):
        if env.meta(i) is None:
            continue
        label = inputs[i] if inputs and i < len(inputs) and inputs[i] else label
        lines.append(f"grad_{label} = {expr.text(sym)}")
    return lines


def diagram_rules(graph, params=None):
    """``{node id: lines}``: the rule of every backward Node of a walked ``Graph`` (for ``draw``)."""
    names = {}
    if params is not None:
        items = params.items() if hasattr(params, "items") else params
        names = {id(t): (str(n), t) for n, t in items if isinstance(t, torch.Tensor)}
    out = {}
    for node in graph.nodes:
        if node.kind != "fn" or graph.leaf_edge(node.obj) is not None:
            continue
        inputs = []
        for slot in range(len(node.obj.next_functions)):
            edge = graph.grad_edge(node.obj, slot)
            target = edge.tail if edge is not None else None
            leaf = graph.leaf_edge(target.obj) if target is not None else None
            if leaf is not None and leaf.tail.name:
                inputs.append(leaf.tail.name)
            elif target is not None and target.result is not None:
                inputs.append(target.result[0])
            else:
                inputs.append(None)
        out[node.id] = symbolic(node.obj, names=names, inputs=inputs)
    return out


# --- where a NaN or an infinity came from -----------------------------------------------

def is_finite(v):
    """No NaN and no infinity in ``v`` (a tensor, a ``TensorSummary``, a number or None)."""
    if isinstance(v, TensorSummary):
        return v.finite
    if isinstance(v, torch.Tensor):
        if v.is_complex() or not v.dtype.is_floating_point:
            return True
        # A NaN or an infinity makes the sum non-finite (quicker than isfinite); a huge finite
        # sum can overflow too, so only then look at every element.
        return math.isfinite(v.sum().item()) or bool(torch.isfinite(v).all())
    if isinstance(v, float):
        return math.isfinite(v)
    return True


def _first_bad(v):
    """Index (a tuple) of the first non-finite element of tensor ``v``."""
    bad = (~torch.isfinite(v)).nonzero()
    return tuple(bad[0].tolist()) if len(bad) else ()


def _at(v, index, shape):
    """``v``'s element at ``index`` of a result of ``shape`` (``v`` broadcast to it)."""
    if not isinstance(v, torch.Tensor):
        return v
    try:
        return v.expand(shape)[index].item() if v.dim() else v.item()
    except RuntimeError:
        return None


def _culprit(expr, env):
    """The innermost sub-expression whose value is not finite although its parts are."""
    for c in expr.children:
        try:
            if not is_finite(c.value(env)):
                return _culprit(c, env)
        except Exception:
            return None
    return expr


def _what(v):
    t = torch.as_tensor(v)
    return "nan" if torch.isnan(t).any() else "inf" if torch.isposinf(t).any() else "-inf"


def nonfinite_reason(fn, received, sent, *, names=None, inputs=None, target=None):
    """One sentence: which gradient ``fn`` sent is not finite, and what in its rule made it.

    ``target``: per slot, the name of the Node the gradient goes to. Returns None when
    every gradient it sent is finite.
    """
    slots = [i for i, g in enumerate(sent or []) if g is not None and not is_finite(g)]
    if not slots:
        return None
    i = slots[0]
    name = type(fn).__name__
    g = sent[i]
    env, built = None, None
    if kind_of(fn) == "rule" and not any(isinstance(r, TensorSummary) for r in received or ()):
        try:
            env, built = _build(fn, received)
        except RuntimeError:
            pass
    label = built[i][0] if built else f"input {i}"
    if inputs and i < len(inputs) and inputs[i]:
        dest = inputs[i]
    else:
        dest = f"its input {label}" + (f" ({target[i]})" if target and i < len(target) and target[i] else "")
    head = f"{name} sent {_what_summary(g)} to {dest}"  # completed below with where and why
    bad_in = [k for k, r in enumerate(received or []) if r is not None and not is_finite(r)]
    if bad_in:
        which = "" if len(received) == 1 else f" (output {bad_in[0]})"
        return f"{head}: it received a non-finite gradient{which} itself"
    if kind_of(fn) == "custom":
        return f"{head}: {_your_backward(fn)} returned it from finite gradients"
    if built is None:
        return f"{head}: the gradients it received are finite, so the Node's own computation made it"
    label, expr = built[i]
    sym = _Symbols(_labels(env, built, names))
    try:
        whole = expr.value(env)
    except Exception:
        return f"{head}: in grad_{label} = {expr.text(sym)}"
    bad = _culprit(expr, env) if not is_finite(whole) else expr
    if not isinstance(whole, torch.Tensor):
        whole = torch.as_tensor(whole)
    index = _first_bad(whole) if whole.dim() else ()
    where_ = f" at {list(index)}" if index else ""
    if isinstance(bad, Var) and bad.name.startswith("grad"):  # cannot be: received ones are finite
        return f"{head}{where_}: in grad_{label} = {expr.text(sym)}"
    if isinstance(bad, Var):  # a saved value is itself not finite
        return (f"{head}: its saved {sym.var(bad)} is {_what(bad.value(env))}{where_}, "
                "so the forward already produced it there")
    parts = []
    seen = set()
    for v in bad.vars():
        if v.name in seen:
            continue
        seen.add(v.name)
        x = _at(env[v.name], index, whole.shape)
        if x is not None:
            parts.append(f"{sym.var(v)} = {_num(x)}")
    values = f" there, with {_and(parts)}" if parts else ""
    saved = [f"{sym.var(v)} is {SAVED_WORDS[v.name]}" for v in _unique(bad.vars())
             if v.name in SAVED_WORDS and sym.var(v) == v.label]
    why = f" ({_and(saved)})" if saved else ""
    return f"{head}{where_}: {bad.text(sym)} is {_what(bad.value(env))}{values}{why}"


# What a Node's saved values are, for the one-line NaN explanation.
SAVED_WORDS = {"self": "the op's input", "other": "its second input", "result": "the op's output",
               "mat2": "its second input", "exponent": "the exponent"}


def _unique(vars_):
    seen = set()
    for v in vars_:
        if v.name not in seen:
            seen.add(v.name)
            yield v


def _and(parts):
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _what_summary(g):
    if isinstance(g, TensorSummary):
        return "nan" if g.norm != g.norm else "inf"
    return _what(g)
