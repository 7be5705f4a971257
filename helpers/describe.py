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
    if not isinstance(t, torch.Tensor):
        return repr(t)
    t = t.detach()
    if t.is_sparse or t.layout != torch.strided:
        return f"{t.layout} tensor, shape {tuple(t.shape)}"
    if t.numel() <= max_values:
        return _nested(t.cpu().tolist())
    norm = t.float().norm().item() if not t.is_complex() else t.abs().norm().item()
    return f"shape {tuple(t.shape)}, norm {norm:.4g}" if shape else f"norm {norm:.4g}"


def shape_text(t):
    """``(2, 3)`` for a tensor of that shape, ``()`` for a scalar."""
    return "(" + ", ".join(str(s) for s in t.shape) + ")"
