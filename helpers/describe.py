"""A tensor in a few words: its values when it is small, its shape and norm when it is not.

Diagrams, traces and the stepper's panel all show gradients this way, so a
learner reads the same format everywhere.
"""
import torch

MAX_VALUES = 6  # more entries than this and we show shape and norm instead


def _number(v):
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, complex):
        return f"{v.real:.3g}{v.imag:+.3g}j"
    return str(v)


def _nested(values):
    if isinstance(values, list):
        return "[" + ", ".join(_nested(v) for v in values) + "]"
    return _number(values)


def describe(t, max_values=MAX_VALUES, shape=True):
    """Return a short human string for a tensor (or None).

    ``shape=False`` leaves the shape out of a large tensor's text ("norm 3.2"),
    for labels that must be short.

    >>> describe(torch.tensor([1.0, 2.5]))
    '[1, 2.5]'
    >>> describe(torch.zeros(100, 100))
    'shape (100, 100), norm 0'
    """
    if t is None:
        return "None"
    if isinstance(t, TensorSummary):
        return t.describe(max_values, shape)
    if not isinstance(t, torch.Tensor):
        return repr(t)
    t = t.detach()
    special = _no_values(t)
    if special is not None:
        return special
    if t.numel() <= max_values:
        return _nested(t.cpu().tolist())
    # linalg.vector_norm: the same number as .norm(), without torch.norm's slow Python wrapper
    norm = torch.linalg.vector_norm(t.float() if not t.is_complex() else t.abs()).item()
    return f"shape {tuple(t.shape)}, norm {norm:.4g}" if shape else f"norm {norm:.4g}"


class TensorSummary:
    """A tensor reduced to what ``describe`` shows: shape, dtype, norm, finiteness.

    ``trace_backward`` keeps one of these instead of a copy of a large gradient,
    so a trace costs a few numbers per step, not a second copy of every gradient.
    ``describe(summary)`` gives the same text as ``describe(tensor)``.
    """

    __slots__ = ("shape", "dtype", "numel", "norm", "finite", "values")

    def __init__(self, t):
        t = t.detach()
        self.shape, self.dtype, self.numel = t.shape, t.dtype, t.numel()
        self.values = t.cpu().tolist() if self.numel <= MAX_VALUES else None
        if t.is_sparse or t.layout != torch.strided:
            self.norm, self.finite = float("nan"), True
            return
        self.norm = torch.linalg.vector_norm(t.abs() if t.is_complex() else t, dtype=torch.float32
                                             if t.dtype in (torch.float16, torch.bfloat16) else None).item()
        # A NaN or an infinity anywhere makes the norm NaN or infinite; only then look closer
        # (a finite tensor's norm can overflow float32).
        self.finite = self.norm == self.norm and self.norm != float("inf") or bool(torch.isfinite(t).all())

    def describe(self, max_values=MAX_VALUES, shape=True):
        if self.values is not None and self.numel <= max_values:
            return _nested(self.values)
        return f"shape {tuple(self.shape)}, norm {self.norm:.4g}" if shape else f"norm {self.norm:.4g}"

    def __repr__(self):
        return f"<TensorSummary: {self.describe()}>"


def shape_text(t):
    """``(2, 3)`` for a tensor of that shape, ``()`` for a scalar (``(nested)`` for a nested tensor)."""
    if t.is_nested and t.layout == torch.strided:  # its sizes differ per component: no shape
        return "(nested)"
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def _no_values(t):
    """One sentence for a tensor whose values cannot (or should not) be read, else None.

    Meta tensors have a shape but no data; a nested tensor's components have
    different shapes; sparse and other layouts would print their internals.
    """
    if t.is_nested:
        try:
            count = f" of {t.size(0)} tensors"
        except RuntimeError:
            count = ""
        return f"nested tensor{count}"
    if t.is_meta:
        return f"{shape_words(t)} on the meta device (a shape, no values)"
    if t.is_sparse or t.layout != torch.strided:
        return f"{t.layout} tensor, shape {tuple(t.shape)}"
    return None


def shape_words(t):
    """A tensor's shape in words: ``scalar``, ``vector of 8``, ``3×4 matrix``, ``2×3×4 tensor``."""
    if t.is_nested:
        return _no_values(t)
    dims = [str(s) for s in t.shape]
    if not dims:
        return "scalar"
    if len(dims) == 1:
        return f"vector of {dims[0]}"
    return "×".join(dims) + (" matrix" if len(dims) == 2 else " tensor")


def value_text(t, max_values=MAX_VALUES):
    """What a box in a diagram says about a tensor: ``= [1, 2.5]`` (its values) when it has
    at most ``max_values`` entries, its shape in words (``8×8 matrix``) when it is larger."""
    t = t.detach()
    special = _no_values(t)
    if special is not None:
        return special
    if t.numel() <= max_values:
        return "= " + _nested(t.cpu().tolist())
    return shape_words(t)
