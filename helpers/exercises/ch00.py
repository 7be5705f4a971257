"""Checks for chapter 00's warm-up. Expected values are computed inside each function."""
import torch

from helpers import checks
from helpers.exercises import exercise


@exercise("00_warmup")
def warmup(dw, db):
    """loss = (w0 * x0 + b0) ** 2 at the given numbers: its two gradients, worked out by hand."""
    w0 = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    b0 = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)
    dw_want, db_want = torch.autograd.grad((w0 * -3.0 + b0) ** 2, (w0, b0))
    checks.check_value("dw", dw, dw_want)
    checks.check_value("db", db, db_want)
