"""helpers.checks: each check accepts the right answer, rejects plausible wrong ones,
and its message says what is wrong without giving the expected value away."""
import doctest
import re

import pytest
import torch

from helpers import checks
from helpers.checks import check_equal, check_function, check_value


def failure(check, *args, **kwargs):
    """The message of the AssertionError a check raises (the test fails if it passes)."""
    with pytest.raises(AssertionError) as info:
        check(*args, **kwargs)
    message = str(info.value)
    assert "Traceback" not in message and len(message) < 400, message
    return message


def assert_hides(message, *values):
    """None of the expected values appears in the message, in any usual formatting."""
    for value in values:
        numbers = value.flatten().tolist() if isinstance(value, torch.Tensor) else [value]
        for number in numbers:
            forms = {repr(number), str(number), f"{number:g}", f"{number:.2g}", f"{number:.3g}",
                     f"{number:.4g}", f"{number:.2f}", f"{number:.3f}"}
            for form in forms:
                assert form not in message, f"{message!r} gives away {form}"


# ---------------------------------------------------------------- check_value

def test_check_value_accepts_the_right_answer_in_any_numeric_form(capsys):
    w = torch.tensor(1.7, requires_grad=True)
    (w ** 3).backward()                       # expected 3 * 1.7**2 = 8.67
    check_value("dw", 8.67, w.grad)
    check_value("dw", torch.tensor([8.67]), w.grad)  # a 1-element tensor is the same answer
    assert capsys.readouterr().out == "✅ dw is right.\n" * 2


@pytest.mark.parametrize("wrong, hint", [
    (9.31, "too large"),
    (4.12, "too small"),
    (-8.67, "wrong sign"),
])
def test_check_value_says_too_large_or_too_small_but_not_the_value(wrong, hint):
    message = failure(check_value, "dw", wrong, torch.tensor(8.67))
    assert "`dw`" in message and hint in message
    assert_hides(message, 8.67)


def test_check_value_names_the_wrong_entries_of_a_tensor():
    expected = torch.tensor([[1.25, -3.5], [0.75, 6.125]])
    wrong = expected.clone()
    wrong[1, 0] = 0.8
    message = failure(check_value, "grad", wrong, expected)
    assert "1 of 4 entries" in message and "(1, 0)" in message
    assert_hides(message, expected)


@pytest.mark.parametrize("answer, hint", [
    (None, "not written yet"),
    ("8.67", "should be a number or a tensor"),
    (torch.ones(3), "shape (3,)"),
    (torch.ones(2, 2, dtype=torch.long), "dtype torch.int64"),
    (torch.tensor([[1.0, float("nan")], [0.0, 0.0]]), "NaN"),
])
def test_check_value_rejects_answers_of_the_wrong_kind(answer, hint):
    message = failure(check_value, "grad", answer, torch.tensor([[1.25, -3.5], [0.75, 6.125]]))
    assert hint in message


def test_check_value_on_a_missing_grad_hints_at_backward():
    assert "backward" in failure(check_value, "x.grad", None, torch.ones(2))


def test_check_value_leaves_the_answer_untouched():
    answer = torch.tensor([1.0, 2.0], requires_grad=True) * 1
    check_value("y", answer, torch.tensor([1.0, 2.0]))
    assert answer.requires_grad and answer.grad_fn is not None


def test_check_value_tells_the_instructor_when_expected_is_not_numeric():
    with pytest.raises(TypeError, match="check_equal"):
        check_value("name", 1.0, "MulBackward0")


# ---------------------------------------------------------------- check_equal

MUL, ADD, POW = "MulBackward0", "AddBackward0", "PowBackward0"


def test_check_equal_accepts_the_right_answer(capsys):
    check_equal("n_nodes", 4, 4)
    check_equal("leaves", ["b", "w"], {"w", "b"})   # a set: order does not matter
    check_equal("name", "MulBackward0", "MulBackward0")
    check_equal("names", [MUL, ADD], (MUL, ADD))     # a tuple and a list are both a list
    check_equal("n_positive", torch.tensor([1.0, -2.0, 3.0]).gt(0).sum(), 2)
    assert capsys.readouterr().out.count("✅") == 5


@pytest.mark.parametrize("answer, expected, hint", [
    (5, 7, "too small"),
    (9, 7, "too large"),
    (7.0, 7, "should be an integer"),
    (1, True, "should be a boolean"),
    (False, True, "not quite right"),
    ("mulbackward0", "MulBackward0", "upper/lower case"),
    ("AddBackward0", "MulBackward0", "not quite right"),
    ([MUL, ADD, POW], [MUL, ADD], "has too many items"),
    ([ADD, MUL], [MUL, ADD], "wrong order"),
    ([MUL, POW], [MUL, ADD], "1 of 2 items is wrong"),
    ([MUL, POW], {MUL, ADD}, "1 item is missing and 1 item should not be there"),
    (None, [MUL, ADD], "not written yet"),
])
def test_check_equal_says_how_it_differs_without_the_answer(answer, expected, hint):
    message = failure(check_equal, "answer", answer, expected)
    assert hint in message
    secrets = [expected] if not isinstance(expected, (list, set)) else list(expected)
    for secret in secrets:
        if isinstance(secret, str):
            assert secret not in message and repr(secret) not in message
        elif not isinstance(secret, bool):
            assert_hides(message, secret)


# ------------------------------------------------------------- check_function

class Mul(torch.autograd.Function):
    """The right answer: x * y with its two gradients."""

    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * y, grad_output * x


def wrong_mul(backward):
    """Mul with another backward: the mistakes learners make."""
    return type("Mul", (torch.autograd.Function,), {
        "forward": staticmethod(Mul.forward), "backward": staticmethod(backward)})


def inputs():
    torch.manual_seed(0)
    return torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)


def reference(x, y):
    return x * y


def test_check_function_accepts_a_correct_function(capsys):
    check_function(Mul, *inputs(), reference=reference)
    check_function(Mul, *inputs())                     # against finite differences
    check_function(Mul, *inputs(), reference=reference, second_order=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith("✅ Mul") for line in lines)


@pytest.mark.parametrize("backward, hint", [
    (lambda ctx, g: (g * ctx.saved_tensors[1], g * ctx.saved_tensors[1]), "gradient for `y` is off"),
    (lambda ctx, g: (ctx.saved_tensors[1], ctx.saved_tensors[0]), "gradient for `x` is off"),
    (lambda ctx, g: (-g * ctx.saved_tensors[1], g * ctx.saved_tensors[0]), "`x` has the wrong sign"),
    (lambda ctx, g: (g * ctx.saved_tensors[1], None), "no gradient reaches `y`"),
])
@pytest.mark.parametrize("against", ["reference", "numerical"])
def test_check_function_names_the_input_whose_gradient_is_off(backward, hint, against):
    x, y = inputs()
    kwargs = {"reference": reference} if against == "reference" else {}
    message = failure(check_function, wrong_mul(backward), x, y, **kwargs)
    assert message.startswith("Mul: ") and hint in message
    # It says by how much (one size per wrong gradient), never the gradient's values.
    assert len(re.findall(r"\d\.\d", message)) <= message.count("is off by")
    assert_hides(message, x.detach(), y.detach())


def test_check_function_checks_the_forward_against_the_reference():
    message = failure(check_function, lambda x, y: x + y, *inputs(), reference=reference)
    assert "output is off in" in message


def test_check_function_checks_second_order_gradients():
    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad_output):
            x, = ctx.saved_tensors
            return grad_output * 3 * x.detach() ** 2   # .detach(): no double backward

    x = torch.randn(4, requires_grad=True)
    check_function(Cube, x, reference=lambda x: x ** 3)  # first order is right
    message = failure(check_function, Cube, x, reference=lambda x: x ** 3, second_order=True)
    assert "second-order gradient" in message and "`x`" in message


def test_check_function_accepts_a_straight_through_estimator(capsys):
    class RoundSTE(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.round()

        @staticmethod
        def backward(ctx, grad_output):
            return grad_output

    x = torch.randn(5, requires_grad=True) * 3
    check_function(RoundSTE, x, reference=lambda x: x + (x.round() - x).detach())
    message = failure(check_function, lambda x: x.round(), x,
                      reference=lambda x: x + (x.round() - x).detach())
    assert "gradient for `x` is off" in message


def test_not_implemented_yet_is_said_plainly():
    class Todo(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, y):
            raise NotImplementedError()

    message = failure(check_function, Todo, *inputs(), reference=reference)
    assert "Todo.forward is not implemented yet" in message
    backward_todo = wrong_mul(lambda ctx, g: (_ for _ in ()).throw(NotImplementedError()))
    assert "Mul.backward is not implemented yet" in failure(
        check_function, backward_todo, *inputs(), reference=reference)


def test_learner_exceptions_become_one_sentence_of_feedback():
    def typo(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * y + "1", grad_output * x

    with pytest.raises(AssertionError) as info:
        check_function(wrong_mul(typo), *inputs(), reference=reference)
    assert str(info.value).startswith("Mul.backward raised TypeError: unsupported operand")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_check_function_leaves_the_learner_tensors_alone():
    x, y = inputs()
    before = x.detach().clone()
    check_function(Mul, x, y, reference=reference, second_order=True)
    assert x.grad is None and y.grad is None and x.dtype == torch.float32
    assert torch.equal(x.detach(), before) and x.is_leaf


def test_check_function_needs_an_input_that_requires_grad():
    with pytest.raises(ValueError, match="requires_grad=True"):
        check_function(Mul, torch.ones(2), torch.ones(2), reference=reference)


def test_jupyter_shows_a_failed_check_as_one_line():
    with pytest.raises(checks.CheckFailed) as info:
        check_value("dw", 9.31, torch.tensor(8.67))
    assert isinstance(info.value, AssertionError)
    lines = info.value._render_traceback_()   # what IPython prints instead of a traceback
    assert len(lines) == 1 and lines[0].endswith("`dw` is too large (by less than 10%).")


def test_docstring_examples_run():
    result = doctest.testmod(checks)
    assert result.attempted >= 3 and result.failed == 0


def test_a_scalar_miss_does_not_pin_down_the_answer():
    """Direction plus an exact percentage would let a learner solve for the answer."""
    for answer in (12.0, 8.5, 100.0):
        with pytest.raises(AssertionError) as info:
            check_value("w_grad", answer, torch.tensor(8.0))
        message = str(info.value)
        assert re.search(r"by (less|more) than 1?0?0?%", message) and "%" in message
        assert not re.search(r"\d+\.\d+%|about \d", message)


def test_a_raise_in_setup_context_is_not_blamed_on_forward():
    class Half(torch.autograd.Function):
        @staticmethod
        def forward(x):
            return x / 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            raise NotImplementedError()

        @staticmethod
        def backward(ctx, grad):
            return grad / 2

    with pytest.raises(AssertionError, match=r"^Half\.setup_context is not implemented yet"):
        check_function(Half, torch.ones(2, requires_grad=True), reference=lambda x: x / 2)
