"""Chapter 07's claims about its own training runs, read from the executed notebook.

The prose after the results table says what the table shows: 4 bits costs little,
2-bit PTQ falls to about chance level, 2-bit QAT comes back close to float. Exercise 4
needs the per-tensor 2-bit recipe on two moons to miss its 95% goal for at least one of
the three seeds it shows. If a PyTorch release or a change of seed breaks one of these,
the text must change with it.

The runs are seeded, but another BLAS, CPU or PyTorch version sums in another order, and
2-bit QAT amplifies such differences: scaling the initial weights by (1 + 1e-6 noise) moved
"QAT 2-bit" between 93.0% and 99.5% in 30 runs (float 99.5%, the PTQ rows unchanged), and
the per-tensor moons baseline above 95% in 6 runs of 30 for one seed. The bounds below
leave room for that. Speed is not tested here (benchmarks/notebooks.py prints each chapter's run time).
"""
import re

import pytest

import nbexec
from nbexec import SOLUTIONS

PATH = SOLUTIONS / "07_custom_modules_ste.ipynb"


def output_of(marker):
    """The printed text of the one code cell whose source contains ``marker``."""
    return nbexec.output_of(PATH, marker)


@pytest.fixture(scope="module")
def acc():
    text = output_of("results = {name:")
    rows = re.findall(r"^(float|PTQ \d-bit|QAT \d-bit)\s+([\d.]+)%\s+([\d.]+)%$", text, re.MULTILINE)
    assert len(rows) == 5, f"results table not found in:\n{text}"
    return {name: float(test) / 100 for name, _, test in rows}


def test_four_bits_cost_little(acc):
    assert acc["PTQ 4-bit"] >= acc["float"] - 0.02
    assert acc["QAT 4-bit"] >= acc["float"] - 0.02


def test_two_bit_ptq_falls_to_about_chance(acc):
    assert acc["PTQ 2-bit"] <= 0.6


def test_ptq_two_bit_rounds_most_weights_to_zero():
    shares = [int(s) for s in re.findall(r"(\d+)% of the weights survive", output_of("survive the rounding"))]
    assert len(shares) == 3 and min(shares) <= 10, shares


def test_two_bit_qat_comes_back_close_to_float(acc):
    assert acc["QAT 2-bit"] >= 0.90
    assert acc["QAT 2-bit"] >= acc["PTQ 2-bit"] + 0.3


def test_exercise_4_per_tensor_baseline_misses_the_goal_for_some_seed():
    text = output_of("train_per_tensor(X_moons, y_moons)")
    baselines = [float(a) / 100 for a in re.findall(r"seed \d: test accuracy ([\d.]+)%", text)]
    assert len(baselines) == 3, text
    assert min(baselines) < 0.95


def test_fake_quantize_needs_the_reciprocal_of_the_scale():
    text = output_of("x_half = torch.tensor(-2.25)")
    assert "x / s       = -7.4999995 -> rounds to -7" in text
    assert "x * (1 / s) = -7.5000000 -> rounds to -8" in text
    assert "PyTorch's level: -8" in text


def test_the_stepper_shows_the_gradient_passing_straight_through():
    text = output_of("for step in stepper.trace")
    ste = re.search(r"RoundSTEBackward\s+received (.*?)  sent (.*)", text)
    plain = re.search(r"RoundBackward0\s+received (.*?)  sent (.*)", text)
    assert ste and ste.group(1) == ste.group(2)
    assert plain and plain.group(2) == "tensor([0., 0., 0.])" != plain.group(1)
    assert "a.grad = tensor(0.)" in text
