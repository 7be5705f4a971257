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
    (1, True, "should be True or False, not an int"),
    (False, True, "not quite right"),
    ("mulbackward0", "MulBackward0", "upper/lower case"),
    ("AddBackward0", "MulBackward0", "not quite right"),
    ([MUL, ADD, POW], [MUL, ADD], "has too many items"),
    ([ADD, MUL], [MUL, ADD], "wrong order"),
    ([MUL, POW], [MUL, ADD], "item 1 is not quite right"),
    ([MUL, POW], {MUL, ADD}, "1 item is missing and 'PowBackward0' should not be there"),
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
    with pytest.raises(checks.CheckMisuse, match="requires_grad=True"):
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


# ------------------------------------------------------- wording (issues found in use)

@pytest.mark.parametrize("answer, expected, says", [
    ([1, 5, 3], [1, 2, 3], "item 1 is too large"),
    ([True, True], [False, True], "item 0 is not quite right"),
    ([True, False], [False, True], "item 0 is not quite right; item 1 is not quite right"),
    (["True", False], [True, False], "item 0 should be True or False, not the string 'True'"),
    ([2, 1], [1, 2], "right items in the wrong order"),
    ([1, 2, 3, 4], [5, 6, 7, 8], "items 0, 1, 2 and 3 are wrong"),
    ({"w": 1, "b": 3}, {"w": 1, "b": 2}, "the value for 'b' is too large"),
    ({"w": 1}, {"w": 1, "b": 2}, "key 'b' is missing"),
    ({"w": 1, "b": 2, "x": 0}, {"w": 1, "b": 2}, "key 'x' should not be there"),
    ("True", True, "should be True or False, not the string 'True'"),
    (-3, 3, "has the wrong sign"),
    ([-2.0, 4.0], [2.0, 4.0], "item 0 has the wrong sign"),
])
def test_check_equal_says_which_item_or_key(answer, expected, says):
    message = failure(check_equal, "answer", answer, expected)
    assert says in message, message


def test_booleans_are_never_in_the_wrong_order():
    for answer, expected in (([True, False], [False, True]), ([False, True, True], [True, True, False])):
        assert "wrong order" not in failure(check_equal, "flags", answer, expected)


def test_numpy_and_torch_scalars_are_accepted(capsys):
    np = pytest.importorskip("numpy")
    check_equal("is_leaf", np.bool_(True), True)
    check_equal("flags", [np.bool_(True), False], [True, False])
    check_equal("n", np.int64(3), 3)
    check_equal("n", torch.tensor(3), 3)
    check_equal("flag", torch.tensor(True), True)
    assert capsys.readouterr().out.count("✅") == 5


def test_nan_is_not_in_the_wrong_order(capsys):
    check_equal("values", [float("nan")], [float("nan")])
    message = failure(check_equal, "values", [float("nan"), 1.0], [2.0, 1.0])
    assert "wrong order" not in message and "item 0 is NaN" in message


def test_lists_and_dicts_of_tensors_compare_without_a_torch_error(capsys):
    grads = [torch.tensor([1.0, 2.0]), torch.tensor([3.0])]
    check_equal("grads", [g.clone() for g in grads], grads)
    check_equal("grads", {"w": grads[0].clone(), "b": grads[1].clone()}, {"w": grads[0], "b": grads[1]})
    message = failure(check_equal, "grads", [torch.tensor([1.0, 2.5]), torch.tensor([3.0])], grads)
    assert "item 0 is off in 1 of 2 entries (at 1 too large)" in message
    message = failure(check_equal, "grads", {"w": grads[0], "b": torch.ones(2)}, {"w": grads[0], "b": grads[1]})
    assert "the value for 'b' has shape (2,); expected shape (1,)" in message
    assert "ambiguous" not in failure(check_equal, "grads", [1.0, 2.0], grads)


def test_a_one_element_answer_never_gets_an_absolute_error():
    for answer in (torch.tensor([0.5]), torch.tensor(0.5), [0.5]):
        message = failure(check_value, "grad", answer, torch.tensor([0.62]))
        assert "too small" in message and "error" not in message and "0.1" not in message


@pytest.mark.parametrize("answer, says", [
    (-8.0, "has the wrong sign"),        # the wrong sign, not "too small by more than 100%"
    (-3.0, "has the wrong sign"),
    (0.0, "is 0, and it should not be"),
])
def test_a_wrong_sign_is_said_first(answer, says):
    assert says in failure(check_value, "dw", answer, torch.tensor(8.0))


def test_tensor_entries_with_the_wrong_sign_are_named():
    message = failure(check_value, "grad", torch.tensor([1.0, -2.0, 3.0]), torch.tensor([1.0, 2.0, 3.0]))
    assert "has the wrong sign in 1 of 3 entries (at 1)" in message


@pytest.mark.parametrize("call, says", [
    (lambda: check_value("x", 1.0, 1.0, rtol="a"), "`rtol` should be a number >= 0, not 'a'"),
    (lambda: check_value("x", 1.0, 1.0, atol=-1), "`atol` should be a number >= 0"),
    (lambda: check_equal("x", 1, object()), "check_equal cannot compare answers with an object"),
    (lambda: check_function(Mul, *inputs(), reference=3), "`reference` should be a function"),
    (lambda: check_function(Mul, *inputs(), reference=lambda x, y: "no"), "should return a tensor"),
    (lambda: check_function(Mul, *inputs(), reference=lambda x: x), "the reference raised TypeError"),
])
def test_instructor_mistakes_get_one_sentence(call, says):
    with pytest.raises(checks.CheckMisuse) as info:
        call()
    assert says in str(info.value)
    assert len(info.value._render_traceback_()) == 1


# ------------------------------------------------------- check_function in the learner's dtype

class Scale(torch.nn.Module):
    """A float32 module with a parameter: it cannot take float64 inputs."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([1.5, -2.0, 0.5]))

    def forward(self, x):
        return x * self.weight


def test_a_correct_float32_module_passes(capsys):
    torch.manual_seed(0)
    x = torch.randn(3, requires_grad=True)
    module = Scale()
    check_function(module, x, reference=lambda x: x * torch.tensor([1.5, -2.0, 0.5], dtype=x.dtype))
    check_function(module, x)  # against finite differences, in float32
    assert module.weight.grad is None and x.grad is None
    assert capsys.readouterr().out.count("✅ Scale") == 2


def test_a_correct_float32_function_passes_and_a_wrong_one_fails():
    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            assert x.dtype == torch.float32  # works in the learner's dtype only
            ctx.save_for_backward(x)
            return x ** 3

        @staticmethod
        def backward(ctx, grad):
            x, = ctx.saved_tensors
            return 3 * x ** 2 * grad

    x = torch.linspace(-2, 2, 50, requires_grad=True)
    check_function(Cube, x, reference=lambda x: x ** 3)
    check_function(Cube, x)
    wrong = type("Cube", (torch.autograd.Function,), {
        "forward": Cube.forward, "backward": staticmethod(lambda ctx, g: 2.9 * ctx.saved_tensors[0] ** 2 * g)})
    assert "gradient for `x` is off" in failure(check_function, wrong, x, reference=lambda x: x ** 3)


# ------------------------------------------------------------------ call()

def cell_function(source, name, number=7):
    """A function defined in a 'notebook cell' (compiled under IPython's cell file name)."""
    namespace = {}
    filename = f"<ipython-input-{number}-0123abcd>"
    import linecache
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def test_call_names_the_error_and_the_learners_line():
    f = cell_function("def f(x):\n    y = x + 1\n    return y / 0\n", "f")
    with pytest.raises(checks.CheckFailed) as info:
        checks.call(f, 1, what="f(1)")
    assert str(info.value) == ("`f(1)` raised ZeroDivisionError: division by zero "
                               "(at line 3 of In[7]: `return y / 0`).")


def test_call_names_the_learners_line_when_torch_raises():
    f = cell_function("import torch\ndef f(x):\n    return x.view(4)\n", "f", number=9)
    with pytest.raises(checks.CheckFailed) as info:
        checks.call(f, torch.ones(3))
    assert "`f` raised RuntimeError: shape '[4]' is invalid" in str(info.value)
    assert "(at line 3 of In[9]: `return x.view(4)`)" in str(info.value)


def test_call_says_not_implemented_yet():
    def find_leaves(fn):
        raise NotImplementedError()

    with pytest.raises(checks.CheckFailed, match=r"^`find_leaves` is not implemented yet"):
        checks.call(find_leaves, None, what="find_leaves(the graph)")


def test_call_stops_a_loop_that_never_ends(monkeypatch):
    monkeypatch.setattr(checks, "TIME_LIMIT", 0.3)

    def spin():
        while True:
            pass

    with pytest.raises(checks.CheckFailed) as info:
        checks.call(spin, what="spin()")
    assert str(info.value) == "`spin()` did not finish in 0.3 s -- is there a loop that never ends?"
    assert checks.call(lambda: 5) == 5  # the timer is gone and nothing else fires


def test_check_function_stops_a_backward_that_never_ends(monkeypatch):
    monkeypatch.setattr(checks, "TIME_LIMIT", 0.3)

    def forever(ctx, g):
        while True:
            pass

    message = failure(check_function, wrong_mul(forever), *inputs(), reference=reference)
    assert "did not finish in 0.3 s" in message


def test_call_refuses_what_is_not_a_function():
    with pytest.raises(checks.CheckFailed, match="`f` should be a function, not an int"):
        checks.call(3, what="f")


# ------------------------------------------------------------------ exercises.run

from helpers import exercises  # noqa: E402


@pytest.fixture
def toy_exercise():
    @exercises.exercise("99_toy", may_be_none=("maybe",))
    def toy(count, fn, maybe, *, graded=False):
        checks.check_equal("count", count, 3)
        if fn(2) != 4:
            checks.fail("`fn` does not double its input.")
        if graded and fn(-1) != -2:
            checks.fail("`fn` does not double negative numbers.")

    yield "99_toy"
    exercises._VERIFIERS.pop("99_toy")


def test_run_passes_and_prints_one_line_per_check(toy_exercise, capsys):
    exercises.run(toy_exercise, {"count": 3, "fn": lambda x: 2 * x, "maybe": None})
    assert capsys.readouterr().out == "✅ count is right.\n"


def test_a_check_repeated_on_another_case_says_so_once(capsys):
    @exercises.exercise("99_twice")
    def twice(count):
        for _ in range(2):
            checks.check_equal("count", count, 3)
    try:
        exercises.run("99_twice", {"count": 3})
    finally:
        exercises._VERIFIERS.pop("99_twice")
    assert capsys.readouterr().out == "✅ count is right.\n"


@pytest.mark.parametrize("namespace, says", [
    ({"fn": abs, "maybe": 1}, "`count` is not defined: run the exercise cell above first."),
    ({"count": None, "fn": abs, "maybe": 1}, "`count` is still None: not written yet"),
    ({"count": 3, "fn": lambda x: x, "maybe": 1}, "`fn` does not double its input."),
    ({"count": 3, "fn": 5, "maybe": 1}, "the check could not use your answer: TypeError: 'int' object is not callable"),
    ({"count": "3", "fn": abs, "maybe": 1}, "`count` should be an integer, not the string '3'"),
])
def test_run_fails_with_one_line(toy_exercise, capsys, namespace, says):
    with pytest.raises(checks.CheckFailed) as info:
        exercises.run(toy_exercise, namespace)
    assert says in str(info.value)
    assert capsys.readouterr().out == ""  # no ✅ line from a check that passed before the failure
    assert len(info.value._render_traceback_()) == 1


def test_graded_runs_extra_cases(toy_exercise):
    namespace = {"count": 3, "fn": lambda x: abs(2 * x), "maybe": None}
    exercises.run(toy_exercise, namespace)
    with pytest.raises(checks.CheckFailed, match="negative"):
        exercises.run(toy_exercise, namespace, graded=True)


def test_an_unknown_exercise_is_an_instructors_mistake():
    with pytest.raises(checks.CheckMisuse, match="no module helpers.exercises.ch98"):
        exercises.run("98_ex1", {})
    with pytest.raises(checks.CheckMisuse, match="no verifier is registered as '00_nope'"):
        exercises.run("00_nope", {})
    with pytest.raises(checks.CheckMisuse, match="ids look like"):
        exercises.exercise("ex1")


def test_checks_exercise_reads_the_callers_globals_and_leaves_no_name(capsys):
    namespace = {"checks": checks, "dw": 33.0, "db": -11.0}
    exec("checks.exercise('00_warmup')", namespace)
    assert set(namespace) == {"checks", "dw", "db", "__builtins__"}
    assert "✅ dw is right." in capsys.readouterr().out


# ------------------------------------------------------------------ grading

import builtins  # noqa: E402
import sys  # noqa: E402

from helpers import grading  # noqa: E402


SNIPPET = grading.snippet("00_warmup")


def hidden_test(namespace):
    """Run chapter 00's hidden test in ``namespace``, as its grade cell would."""
    namespace.setdefault("__builtins__", builtins)
    exec(compile(SNIPPET, "<ipython-input-5-00ff>", "exec"), namespace)


def test_the_hidden_test_passes_a_right_answer_and_leaves_no_name(capsys):
    namespace = {"dw": 33.0, "db": -11.0}
    hidden_test(namespace)
    assert set(namespace) == {"dw", "db", "__builtins__"}
    assert capsys.readouterr().out == ""  # the visible check already said ✅


def test_the_hidden_test_fails_a_wrong_answer_with_one_line():
    with pytest.raises(AssertionError) as info:
        hidden_test({"dw": 33.0, "db": 11.0})
    assert "`db` has the wrong sign" in str(info.value)
    assert len(info.value._render_traceback_()) == 1


def test_the_grade_cell_is_the_visible_check_and_the_snippet():
    cell = grading.grade_cell("01_ex2")
    assert cell.startswith('checks.exercise("01_ex2")\n### BEGIN HIDDEN TESTS\n')
    assert cell.endswith("### END HIDDEN TESTS") and grading.snippet("01_ex2") in cell
    assert grading.snippet("01_ex2").replace("01_ex2", "00_warmup") == grading.snippet("00_warmup")


def noop(*args, **kwargs):
    return None


@pytest.mark.parametrize("attack", [
    "checks.check_value = noop",
    "exercises.run = noop",
    "checks.fail = noop; checks.CheckFailed = type('X', (Exception,), {})",
    "sys.modules['helpers.grading'] = None; sys.modules['helpers.checks'] = None",
    "grading.grade = noop; grading._grade = noop; grading.snippet = noop",
    "import helpers.exercises.ch00 as ch00; ch00.warmup.__code__ = noop.__code__",
    "exercises._VERIFIERS['00_warmup'] = noop",
    "sys.modules['helpers'] = None",
])
def test_monkeypatching_the_helpers_does_not_pass_a_wrong_answer(attack):
    saved = dict(sys.modules)
    import helpers.exercises.ch00 as ch00
    code = ch00.warmup.__code__
    saved_attrs = {m: dict(vars(m)) for m in (checks, exercises, grading)}
    saved_verifiers = dict(exercises._VERIFIERS)
    try:
        exec(attack, {"checks": checks, "exercises": exercises, "grading": grading, "sys": sys,
                      "noop": noop})
        with pytest.raises(AssertionError, match="`dw`"):
            hidden_test({"dw": 30.0, "db": -11.0})
    finally:
        ch00.warmup.__code__ = code
        for module, attrs in saved_attrs.items():
            vars(module).clear()
            vars(module).update(attrs)
        exercises._VERIFIERS.clear()
        exercises._VERIFIERS.update(saved_verifiers)
        sys.modules.clear()
        sys.modules.update(saved)


@pytest.mark.parametrize("name", ["print", "isinstance", "len", "AssertionError", "type", "sum",
                                  "open", "getattr"])
def test_a_replaced_builtin_fails_the_hidden_test(name):
    original, caught = getattr(builtins, name), None
    setattr(builtins, name, noop)
    try:
        hidden_test({"dw": 33.0, "db": -11.0})  # a right answer
    except BaseException as error:  # noqa: B036 -- pytest itself needs the real builtins back first
        caught = error
    finally:
        setattr(builtins, name, original)
    assert caught is not None, f"a replaced `{name}` went unnoticed"
    if name in ("print", "sum", "AssertionError"):  # replaced after the finders ran
        assert f"replaced Python's builtin `{name}`" in str(caught)


@pytest.mark.parametrize("replace", [{"__import__": noop}, {"exec": noop, "isinstance": noop},
                                     {"__build_class__": noop}])
def test_a_cells_own_builtins_cannot_pass_a_wrong_answer(replace):
    fake = dict(vars(builtins), **replace)
    with pytest.raises(AssertionError):
        hidden_test({"dw": 30.0, "db": -11.0, "__builtins__": fake})


def test_a_cell_that_replaces_exec_is_caught():
    original, caught = builtins.exec, None
    builtins.exec = eval
    try:
        hidden_test({"dw": 33.0, "db": -11.0})
    except AssertionError as error:
        caught = error
    finally:
        builtins.exec = original
    assert "grading needs Python's own exec" in str(caught)


# ------------------------------------------------------------------ one-line errors

def test_helper_errors_render_as_one_line():
    from helpers.release import HandEdited, ReleaseError
    from helpers.trace import TraceError
    from helpers.walk import GraphError
    from pathlib import Path

    for error in (GraphError("no graph"), TraceError("cannot trace"), ReleaseError("bad input"),
                  HandEdited({Path("notebooks/a.ipynb"): "was edited by hand",
                              Path("notebooks/b.ipynb"): "was edited by hand"}),
                  checks.CheckFailed("`x` is wrong."), checks.CheckMisuse("bad rtol")):
        lines = error._render_traceback_()
        assert len(lines) == 1 and "\n" not in lines[0], lines


# ------------------------------------------------------------------ in a real kernel

def test_in_a_notebook_errors_are_short_and_checks_are_one_line(tmp_path):
    """short_tracebacks(): the learner's frames and the message; the helpers' errors, one line."""
    import nbformat
    from exercise_harness import Kernel, lines_of

    cells = {
        "setup": "import torch\nfrom helpers import checks, draw\n"
                 "from helpers.notebook import short_tracebacks; short_tracebacks()",
        "torch": "def twice(t):\n    return t.view(4) * 2\n\ntwice(torch.ones(3))",
        "backward": "y = (torch.ones(2, requires_grad=True) * 2).sum()\ny.backward()\ny.backward()",
        "graph": "draw(torch.ones(3) * 2)",
        "check": "dw, db = 30.0, -11.0\nchecks.exercise('00_warmup')",
        "learner": "def f(x):\n    return x / 0\nchecks.call(f, 1)",
        "off": "short_tracebacks(False)\ntorch.ones(3).view(4)",
    }
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in cells.values()])
    kernel = Kernel(nb, str(tmp_path))
    with kernel.client.setup_kernel():
        shown = {name: lines_of(kernel.run_cell(i)) for i, name in enumerate(cells)}
    assert shown["setup"] == []
    torch_error = shown["torch"]
    assert len(torch_error) <= 6 and torch_error[-1].startswith("RuntimeError: shape '[4]' is invalid")
    assert any("return t.view(4) * 2" in line for line in torch_error)     # the learner's own line
    assert not any("site-packages" in line for line in torch_error)
    assert len(shown["backward"]) <= 6 and "backward through the graph a second time" in shown["backward"][-1]
    assert len(shown["graph"]) == 1 and shown["graph"][0].startswith("GraphError: This tensor has no graph")
    assert shown["check"] == ["❌ `dw` is too small (by less than 10%)."]
    assert len(shown["learner"]) == 1 and "`f` raised ZeroDivisionError: division by zero (at line 2 of In[" \
        in shown["learner"][0] and "`return x / 0`" in shown["learner"][0]
    assert shown["off"][0].startswith("-----")  # IPython's own traceback again


def test_a_stray_comma_is_named_not_compared():
    with pytest.raises(checks.CheckFailed, match="is a tuple of one item: a comma at the end of the line"):
        checks.check_value("dw", (33.0,), 33.0)
    with pytest.raises(checks.CheckFailed, match="is a tuple of one item: a comma at the end of the line"):
        checks.check_equal("n_nodes", (7,), 7)


def test_warnings_from_learner_code_stay_out_of_the_feedback(recwarn):
    import warnings

    def noisy():
        warnings.warn("from the learner's code")
        return 1

    assert checks.call(noisy) == 1
    assert not [w for w in recwarn if "learner" in str(w.message)]


@pytest.mark.parametrize("answer, expected", [(2, 3), (40, 41), (1, 100)])
def test_a_count_that_is_off_says_the_direction_and_no_percentage(answer, expected):
    message = failure(check_equal, "count", answer, expected)
    assert message.endswith("`count` is too small.") and "%" not in message, message


def test_a_value_that_should_be_zero_is_not_named():
    message = failure(check_equal, "n_div for x2", 1, 0)
    assert message.endswith("`n_div for x2` is too large.") and "0" not in message.replace("x2", ""), message


def test_a_float_tensor_for_a_count_is_named_as_a_tensor():
    message = failure(check_equal, "n_nodes", torch.tensor(7.0), 7)
    assert "not a float tensor" in message and "7" not in message.replace("n_nodes", ""), message


def test_a_numpy_array_is_an_ndarray():
    import numpy as np
    message = failure(check_equal, "count", np.array([1, 2]), 3)
    assert "not an ndarray" in message, message
