"""Chapter 05: the claims its prose makes about numbers the notebook prints.

The prose says what the printed numbers show (Newton lands on the minimum without
descending at every step; the WGAN-GP critic levels off above the distance between
the clouds; a penalty without create_graph changes nothing). These tests read the
executed solution notebook's printed output and check them. The timing tables are
not asserted: timings depend on the machine, and speed is not a test's business.
"""
import re

import pytest

from nbexec import SOLUTIONS, output_with
from nbexec import printed as printed_by_cell

NOTEBOOK = SOLUTIONS / "05_higher_order_gradients.ipynb"


@pytest.fixture(scope="module")
def printed():
    """Everything the notebook printed, one string per code cell."""
    return printed_by_cell(NOTEBOOK)



def test_newton_lands_on_the_minimum_but_not_monotonically(printed):
    text = output_with(printed, "Newton: point")
    rows = [line.split("|") for line in text.splitlines() if re.match(r"\s*\d+ \|", line)]
    newton_f = [float(r[1].split()[-1]) for r in rows]
    descent_f = [float(r[2]) for r in rows]
    assert len(rows) == 9 and newton_f[-1] < 1e-8 and descent_f[-1] > 1.0, text
    assert newton_f[4] > newton_f[3], text  # "f goes up from step 3 to step 4"


def test_wgan_gp_critic_levels_off_above_the_distance(printed):
    training = output_with(printed, "W estimate")
    estimates = [float(x) for x in re.findall(r"W estimate\s+(-?[\d.]+)", training)]
    text = output_with(printed, "distance between the two centres")
    slope = float(re.search(r"between the clouds: ([\d.]+)", text).group(1))
    distance = float(re.search(r"two centres:\s+([\d.]+)", text).group(1))
    assert estimates[1] < estimates[0] < 0, training  # "the estimate first goes down"
    assert distance < estimates[-1] < 1.5 * distance, training
    assert 1.0 < slope < 1.5, text


def test_the_silent_penalty_changes_nothing(printed):
    text = output_with(printed, "with vs without the penalty")
    assert "requires_grad: False" in text and text.strip().endswith(" 0.0"), text




def test_the_penalty_graph_grouped_by_layer_has_no_second_bias():
    import torch
    from torch import nn

    from helpers import draw
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
    eps = torch.rand(4, 1)
    x_hat = (eps * torch.randn(4, 2) + (1 - eps) * torch.randn(4, 2)).requires_grad_(True)
    slope, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    picture = draw(((slope.norm(dim=1) - 1) ** 2).mean(), dict(critic.named_parameters()), modules=critic)
    leaves = {n.name for n in picture.graph.nodes if n.kind == "leaf"}
    assert {"0.weight", "0.bias", "2.weight"} <= leaves and "2.bias" not in leaves
    groups = {n.name: n.group for n in picture.graph.nodes if n.kind == "fn"}
    assert groups["TanhBackwardBackward0"] == ""       # the model's own box, "between the two layers"


def test_a_constant_first_derivative_has_no_graph_but_x_cubed_keeps_one(printed):
    """Section 4.4: grad of 3z has no graph even with create_graph; x**3's 4th derivative is a zero tensor."""
    assert "tensor(3.)  requires_grad: False" in output_with(printed, "tensor(3.)  requires_grad")
    text = output_with(printed, "4th derivative of x³")
    assert "4th derivative of x³ with autograd.grad: tensor(0.)" in text
    assert "2nd derivative of 3z with torch.func:     tensor(0.)" in text
