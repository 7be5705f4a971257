"""trace_backward records the engine's real backward and leaves the learner's state alone."""
import pytest
import torch

import helpers.trace as trace_module
from helpers.trace import BackwardTrace, Step, TraceError, trace_backward
from helpers.walk import GraphError


# --- graph shapes: each returns (root, leaves) ----------------------------------

def leaf_used_twice():
    w = torch.tensor([2.0, -1.0], requires_grad=True)
    return (w * w + 3 * w).sum(), [w]


def input_without_grad():
    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(3.0)  # requires_grad=False: no edge for it
    return w * x + b, [w, b]


def split_outputs():
    a = torch.arange(6.0, requires_grad=True)
    p, q, r = a.split(2)  # one SplitBackward0 with three outputs; q is never used
    return (p * 2).sum() + (r ** 2).sum(), [a]


class Cube(torch.autograd.Function):
    """x ** 3 with a hand-written backward, modern style (forward without ctx + setup_context)."""

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


def custom_function():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    w = torch.tensor(0.5, requires_grad=True)
    return (Cube.apply(x) * w).sum(), [x, w]


def inplace_on_view():
    a = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = torch.tensor([3.0, 4.0], requires_grad=True)
    b = a * 2
    b[1:].mul_(m)  # in-place on a view of b: b's grad_fn becomes CopySlices
    return (b * b).sum(), [a, m]


def double_backward():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (g,) = torch.autograd.grad((x ** 3).sum(), x, create_graph=True)  # g = 3 x^2, with a graph
    return (g * x).sum(), [x]


SHAPES = [leaf_used_twice, input_without_grad, split_outputs, custom_function, inplace_on_view,
          double_backward]


def engine_order(root):
    """Node names in the order a plain backward runs them, seen by our own pre-hooks."""
    seen, queue, order, handles = set(), [root.grad_fn], [], []
    while queue:
        fn = queue.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        handles.append(fn.register_prehook(lambda g, fn=fn: order.append(fn)))
        queue.extend(u for u, _ in fn.next_functions)
    try:
        torch.autograd.backward(root, retain_graph=True)
    finally:
        for h in handles:
            h.remove()
    return order


@pytest.mark.parametrize("shape", SHAPES, ids=lambda f: f.__name__)
def test_final_leaf_grads_equal_autograd_grad(shape):
    root, leaves = shape()
    expected = torch.autograd.grad(root, leaves, retain_graph=True)
    trace = trace_backward(root)
    assert set(map(id, trace.leaf_grads)) == set(map(id, leaves))
    for leaf, grad in zip(leaves, expected):
        assert torch.equal(trace.grad_of(leaf), grad)
        assert torch.equal(trace.leaf_grads[leaf], grad)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda f: f.__name__)
def test_order_is_the_engines(shape):
    root, leaves = shape()
    trace = trace_backward(root)
    for leaf in leaves:
        leaf.grad = None
    assert [s.node for s in trace] == engine_order(root)
    assert [s.index for s in trace] == list(range(1, len(trace) + 1))


@pytest.mark.parametrize("shape", SHAPES, ids=lambda f: f.__name__)
def test_every_step_is_consistent_with_the_diagram(shape):
    root, _ = shape()
    trace = trace_backward(root)
    diagram = trace.diagram
    svg = diagram.svg
    assert {s.node_id for s in trace} == {diagram.id_of(fn) for fn in diagram.graph.fns}
    for s in trace:
        assert s.node_id == diagram.id_of(s.node) and f'id="{s.node_id}"' in svg
        assert len(s.grad_inputs) == len(s.edge_ids) == len(s.node.next_functions)
        for slot, (u, _) in enumerate(s.node.next_functions):
            if u is None:
                assert s.edge_ids[slot] is None and s.grad_inputs[slot] is None
            else:
                assert s.edge_ids[slot] == diagram.edge_id(s.node, slot) and f'id="{s.edge_ids[slot]}"' in svg
                assert s.target_ids[slot] == diagram.id_of(u)
        if s.name == "AccumulateGrad":
            assert s.leaf is s.node.variable and s.leaf_id == diagram.id_of(s.leaf)
            assert f'id="{s.leaf_edge_id}"' in svg
        else:
            assert s.leaf is None and s.leaf_grad is None


def test_leaf_used_twice_is_accumulated_before_its_node_runs():
    w = torch.tensor([2.0, -1.0], requires_grad=True)
    trace = trace_backward((w * w + 3 * w).sum())
    (acc,) = [s for s in trace if s.name == "AccumulateGrad"]
    assert acc is trace.steps[-1]  # runs once, after both paths delivered
    assert torch.equal(acc.grad_outputs[0], 2 * w.detach() + 3)  # the engine summed 2w and 3
    sent = [g for s in trace for g, t in zip(s.grad_inputs, s.target_ids) if t == acc.node_id]
    assert len(sent) == 3  # w * w sends twice (self and other), 3 * w once
    assert torch.equal(sum(sent), acc.grad_outputs[0])


def test_input_without_grad_has_no_edge_and_sends_none():
    root, (w, b) = input_without_grad()
    trace = trace_backward(root)
    (mul,) = [s for s in trace if s.name == "MulBackward0"]
    assert mul.edge_ids[1] is None and mul.grad_inputs[1] is None and mul.target_ids[1] is None
    assert torch.equal(mul.grad_inputs[0], torch.tensor(3.0))
    assert [s.name for s in trace] == ["AddBackward0", "AccumulateGrad", "MulBackward0", "AccumulateGrad"]


def test_split_unused_output_receives_none_and_shows_none():
    root, _ = split_outputs()
    trace = trace_backward(root)
    (split,) = [s for s in trace if s.name == "SplitBackward0"]
    assert len(split.grad_outputs) == 3
    assert split.grad_outputs[1] is None
    assert torch.equal(split.grad_outputs[2], 2 * torch.tensor([4.0, 5.0]))
    row = [r for r in trace.rows() if r[1] == "SplitBackward0"][0]
    assert row[2] == "[2, 2]; None; [8, 10]"


def test_custom_function_node_is_recorded():
    root, (x, w) = custom_function()
    trace = trace_backward(root)
    (cube,) = [s for s in trace if s.name == "CubeBackward"]
    assert torch.equal(cube.grad_outputs[0], torch.tensor([0.5, 0.5]))
    assert torch.equal(cube.grad_inputs[0], 3 * x.detach() ** 2 * 0.5)


def test_recorded_tensors_are_detached_copies():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    trace = trace_backward((w * 2).sum())
    (acc,) = [s for s in trace if s.leaf is not None]
    w.grad = torch.zeros(2)
    torch.autograd.backward((w * 2).sum())  # the learner's own backward, after the trace
    assert torch.equal(acc.leaf_grad, torch.tensor([2.0, 2.0]))
    for s in trace:
        for t in [*s.grad_outputs, *s.grad_inputs, s.leaf_grad]:
            assert t is None or (not t.requires_grad and t.grad_fn is None)
    assert acc.leaf_grad is not w.grad and acc.grad_outputs[0].data_ptr() != w.grad.data_ptr()


# --- the learner's state --------------------------------------------------------

def test_existing_grad_is_the_same_object_and_unchanged():
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    w.grad = torch.tensor([10.0, 20.0])  # AccumulateGrad would add into this in place
    before = w.grad
    loss = (w * w + b).sum()
    trace = trace_backward(loss)
    assert w.grad is before and torch.equal(w.grad, torch.tensor([10.0, 20.0]))
    assert b.grad is None
    assert torch.equal(trace.grad_of(w), torch.tensor([4.0, 6.0]))  # this backward alone


def test_graph_can_be_backpropagated_afterwards():
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    loss = (w.exp() * w).sum()  # saves tensors: a freed graph would fail below
    trace = trace_backward(loss)
    loss.backward()
    assert torch.equal(w.grad, trace.grad_of(w))


def test_hooks_are_removed(monkeypatch):
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    loss = (w * w).sum()
    trace = trace_backward(loss)
    n = len(trace)
    loss.backward(retain_graph=True)
    assert len(trace) == n  # a hook left behind would have appended to trace.steps


def test_hooks_are_removed_and_grads_restored_when_backward_fails(monkeypatch):
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    w.grad = before = torch.ones(2)
    h = w * 2
    h.register_hook(lambda g: (_ for _ in ()).throw(ValueError("learner's hook failed")))
    loss = (h * w).sum()
    with pytest.raises(ValueError, match="learner's hook failed"):
        trace_backward(loss)
    assert w.grad is before and torch.equal(before, torch.ones(2))
    calls = []
    monkeypatch.setattr(trace_module, "Step", lambda *a: calls.append(a))
    with pytest.raises(ValueError):
        loss.backward(retain_graph=True)  # the same graph, without the trace
    assert calls == []


def test_retained_grad_of_root_is_restored_and_learners_hooks_run():
    w = torch.tensor(2.0, requires_grad=True)
    mid = w * 3
    mid.retain_grad()
    loss = mid * 2
    loss.retain_grad()
    loss.grad = sentinel = torch.tensor(42.0)
    calls = []
    w.register_hook(lambda g: calls.append(g))
    trace_backward(loss)
    assert loss.grad is sentinel
    assert len(calls) == 1  # documented: the learner's own tensor hooks run
    assert mid.grad is None  # a retained intermediate is left as it was


def test_retained_intermediates_are_left_as_they_were_wherever_they_are_kept():
    from helpers.stepper import step_backward

    class Box:
        pass

    def forward(w):  # keeps one in a local of a function that has returned
        h = w * 2
        h.retain_grad()
        return h * h, lambda: h

    w = torch.tensor([1.0, 2.0], requires_grad=True)
    out, peek = forward(w)
    box, nested = Box(), {"acts": {"layer1": out * 3}}  # an attribute; two levels deep
    box.h = out + 1
    for t in (box.h, nested["acts"]["layer1"]):
        t.retain_grad()
    loss = (box.h + nested["acts"]["layer1"]).sum()
    del out
    for call in (trace_backward, step_backward):
        call(loss)
        assert [peek().grad, box.h.grad, nested["acts"]["layer1"].grad] == [None, None, None], call.__name__


def test_retained_intermediate_grad_is_left_as_it_was_not_doubled():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    mid = w * 3
    mid.retain_grad()
    held = {"h": w * w}  # one level inside a dict, as a notebook might keep it
    held["h"].retain_grad()
    loss = (mid * 2 + held["h"]).sum()
    loss.backward(retain_graph=True)
    before, before_h = mid.grad, held["h"].grad
    values, values_h = before.clone(), before_h.clone()
    trace = trace_backward(loss)
    assert mid.grad is before and torch.equal(mid.grad, values)  # was doubled before
    assert held["h"].grad is before_h and torch.equal(held["h"].grad, values_h)
    assert torch.equal(trace.grad_of(w), w.grad)  # and the trace still has this backward's gradient


def test_leaf_gradient_is_what_accumulategrad_received_whatever_hooks_do_after():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w.register_hook(lambda g: g * 10)  # a tensor hook changes what AccumulateGrad receives

    def step_in_place(p):  # e.g. an optimizer's step and zero_grad(set_to_none=False)
        p.grad.zero_()
    w.register_post_accumulate_grad_hook(step_in_place)
    b = torch.tensor(1.0, requires_grad=True)
    b.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    trace = trace_backward((w * 3 + b).sum())
    assert torch.equal(trace.grad_of(w), torch.tensor([30.0, 30.0]))
    assert torch.equal(trace.grad_of(b), torch.tensor(2.0))  # b is broadcast over w's 2 entries
    assert w.grad is None and b.grad is None


def test_gradient_for_non_scalar_root():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    trace = trace_backward(w * w, gradient=torch.tensor([1.0, 10.0]))
    assert torch.equal(trace.grad_of(w), torch.tensor([2.0, 40.0]))
    assert torch.equal(trace.seeds[0], torch.tensor([1.0, 10.0]))


def test_tuple_of_roots():
    w = torch.tensor(2.0, requires_grad=True)
    trace = trace_backward((w * 3, w * w))
    assert torch.equal(trace.grad_of(w), torch.tensor(7.0))


# --- errors: one sentence, the natural exception type, no chained traceback -----

def one_sentence(err):
    text = str(err.value)
    assert text.endswith(".") and text.replace("e.g. ", "").count(". ") == 0, text
    shown_chain = err.value.__cause__ or (not err.value.__suppress_context__ and err.value.__context__)
    assert not shown_chain  # raised "from None": no torch traceback underneath
    return text


def test_non_scalar_root_without_gradient():
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(TraceError) as err:
        trace_backward(w * 2)
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, GraphError)
    assert "gradient=torch.ones_like" in one_sentence(err)


def test_wrong_gradient_shape():
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(TraceError) as err:
        trace_backward(w * 2, gradient=torch.ones(2))
    assert "(3,)" in one_sentence(err)


@pytest.mark.parametrize("root, words", [
    (torch.ones(2), "requires_grad=True"),
    (torch.ones(2, requires_grad=True), "leaf"),
    (3.0, "Expected a tensor"),
])
def test_root_without_graph(root, words):
    with pytest.raises(TraceError) as err:
        trace_backward(root)
    assert isinstance(err.value, ValueError) and isinstance(err.value, RuntimeError)
    assert words in one_sentence(err)


def test_freed_graph():
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    w.grad = before = torch.zeros(2)
    loss = (w.exp() * w).sum()
    loss.backward()  # frees the saved tensors
    with pytest.raises(TraceError) as err:
        trace_backward(loss)
    assert "compute the result again" in one_sentence(err)
    assert w.grad is before


def test_too_large_graph_says_what_to_do():
    x = torch.ones(2, requires_grad=True)
    for _ in range(30):
        x = x * 1.5
    with pytest.raises(TraceError, match="max_nodes"):
        trace_backward(x.sum(), max_nodes=10)


# --- notebook niceties ------------------------------------------------------------

def test_table_repr_and_html():
    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    trace = trace_backward(w * torch.tensor(3.0) + b, params={"w": w, "b": b})
    assert isinstance(trace, BackwardTrace) and isinstance(trace.steps[0], Step)
    lines = repr(trace).splitlines()
    assert "4 steps" in lines[0]
    assert lines[1].split() == ["step", "node", "received", "sent"]
    assert lines[2].split() == ["1", "AddBackward0", "1", "1", "→", "MulBackward0,", "1", "→", "AccumulateGrad(b)"]
    assert lines[3].split() == ["2", "AccumulateGrad(b)", "1", "b.grad", "=", "1"]
    assert lines[5].split() == ["4", "AccumulateGrad(w)", "3", "w.grad", "=", "3"]
    html = trace._repr_html_()
    assert html.count("<tr>") == 1 + len(trace) and "AccumulateGrad(w)" in html
    assert repr(trace.steps[0]) == "<Step 1: AddBackward0>"


def test_long_table_is_cut_in_repr():
    x = torch.ones(2, requires_grad=True)
    y = x
    for _ in range(80):
        y = y * 1.01
    trace = trace_backward(y.sum())
    assert "more steps" in repr(trace)
    assert len(trace.table().splitlines()) == len(trace) + 1


def test_diagram_shows_final_grads_and_uses_the_trace_ids():
    w = torch.tensor(2.0, requires_grad=True)
    trace = trace_backward(w * 3 + 1, params={"w": w})
    assert trace.diagram.graph is trace.graph
    assert "grad 3" in trace.diagram.svg


# --- what backward() refuses, modes and Functions -------------------------------------

def test_complex_scalar_root_is_refused_as_backward_refuses_it():
    z = torch.tensor(1 + 2j, requires_grad=True)
    with pytest.raises(RuntimeError, match="grad can be implicitly created only for real scalar outputs"):
        (z * z).backward()
    with pytest.raises(TraceError) as err:
        trace_backward(z * z)
    assert "grad can be implicitly created only for real scalar outputs" in one_sentence(err)
    assert "complex64" in str(err.value) and z.grad is None
    trace = trace_backward(z * z, gradient=torch.tensor(1 + 0j))  # with a gradient, as backward() allows
    assert torch.equal(trace.grad_of(z), torch.autograd.grad(z * z, z, torch.tensor(1 + 0j))[0])


def test_reentrant_checkpoint_is_refused_in_one_sentence_and_touches_no_grad():
    from torch.utils.checkpoint import checkpoint
    lin = torch.nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    y = checkpoint(lambda t: torch.tanh(lin(t)), x, use_reentrant=True)
    with pytest.raises(TraceError) as err:
        trace_backward(y.sum())
    assert "use_reentrant=False" in one_sentence(err)
    assert lin.weight.grad is None and lin.bias.grad is None and x.grad is None


def test_non_reentrant_checkpoint_is_traced_completely():
    from torch.utils.checkpoint import checkpoint
    lin = torch.nn.Linear(3, 3)
    x = torch.randn(2, 3, requires_grad=True)
    y = checkpoint(lambda t: torch.tanh(lin(t)), x, use_reentrant=False).sum()
    trace = trace_backward(y, params=dict(lin.named_parameters()))
    expected = torch.autograd.grad(y, [lin.weight, lin.bias, x], retain_graph=True)
    for t, g in zip([lin.weight, lin.bias, x], expected):
        assert torch.allclose(trace.grad_of(t), g)
    assert lin.weight.grad is None and x.grad is None


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad])
def test_works_inside_inference_mode_as_backward_does(mode):
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    loss = (w * w.exp()).sum()
    with mode():
        loss.backward(retain_graph=True)
        expected, w.grad = w.grad, None
        trace = trace_backward(loss)
    assert torch.equal(trace.grad_of(w), expected) and w.grad is None
    assert all(s.formula for s in trace)


class TwoOutputs(torch.autograd.Function):
    lazy = False

    @classmethod
    def forward(cls, ctx, x):
        ctx.set_materialize_grads(not cls.lazy)
        return x * 2, x * 3

    @staticmethod
    def backward(ctx, g1, g2):
        TwoOutputs.got = (g1, g2)
        return g1 * 2 if g2 is None else g1 * 2 + g2 * 3


class TwoOutputsLazy(TwoOutputs):
    lazy = True


@pytest.mark.parametrize("cls", [TwoOutputs, TwoOutputsLazy])
def test_custom_function_unused_output_is_shown_as_its_backward_receives_it(cls):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    a, _ = cls.apply(x)  # the second output is never used
    trace = trace_backward(a.sum())
    (step,) = [s for s in trace if s.name == f"{cls.__name__}Backward"]
    received = TwoOutputs.got[1]
    if cls.lazy:
        assert received is None and step.grad_outputs[1] is None
    else:
        assert torch.equal(received, torch.zeros(2)) and torch.equal(step.grad_outputs[1], torch.zeros(2))
    assert "apply" not in vars(step.node)  # nothing of ours is left on the ctx
    row = [r for r in trace.rows() if r[1] == step.name][0]
    assert row[2] == ("[1, 1]; None" if cls.lazy else "[1, 1]; [0, 0]")


def test_trace_error_shows_as_one_line_in_a_notebook():
    with pytest.raises(TraceError) as err:
        trace_backward(torch.ones(3, requires_grad=True) * 2)
    shown = err.value._render_traceback_()
    assert len(shown) == 1 and "\n" not in shown[0] and "TraceError" in shown[0]


# --- what the trace keeps -----------------------------------------------------------

def test_large_gradients_are_kept_as_summaries_small_ones_and_leaf_grads_whole():
    from helpers.describe import TensorSummary, describe
    from helpers.trace import KEEP_ELEMENTS
    x = torch.randn(10_000, requires_grad=True)
    small = torch.randn(3, requires_grad=True)
    y = x
    for _ in range(5):
        y = y * 1.5
    loss = y.sum() + (small * 2).sum()
    trace = trace_backward(loss)
    recorded = [g for s in trace if s.leaf is None for g in [*s.grad_outputs, *s.grad_inputs] if g is not None]
    large = [g for g in recorded if g.shape == (10_000,)]
    assert large and all(isinstance(g, TensorSummary) and g.finite for g in large)
    assert all(isinstance(g, torch.Tensor) for g in recorded if g.shape != (10_000,))
    assert 10_000 > KEEP_ELEMENTS
    assert torch.equal(trace.grad_of(x), torch.full((10_000,), 1.5 ** 5))  # leaves: whole
    assert describe(large[-1]) == describe(torch.full((10_000,), 1.5 ** 5))  # the same text as the tensor's
    whole = trace_backward(loss, keep="all")
    assert all(isinstance(g, torch.Tensor) for s in whole for g in s.grad_inputs if g is not None)
    summaries = trace_backward(loss, keep=0)
    assert all(isinstance(g, TensorSummary) for s in summaries for g in s.grad_inputs if g is not None)
    assert describe(summaries.steps[0].grad_outputs[0]) == "1"
    assert torch.equal(summaries.grad_of(small), torch.full((3,), 2.0))


@pytest.mark.parametrize("keep", ["some", -1, 2.5, True])
def test_bad_keep_is_one_sentence(keep):
    with pytest.raises(TraceError) as err:
        trace_backward((torch.ones(2, requires_grad=True) * 2).sum(), keep=keep)
    assert "keep must be" in one_sentence(err)


def test_the_trace_does_not_keep_large_gradients_alive():
    import weakref
    x = torch.randn(100_000, requires_grad=True)
    y = x
    for _ in range(3):
        y = y * 2.0
    seen = []
    for fn in [y.grad_fn, y.grad_fn.next_functions[0][0]]:
        fn.register_hook(lambda gi, go: seen.extend(weakref.ref(g) for g in gi if g is not None))
    trace = trace_backward(y.sum())
    assert seen and all(r() is None for r in seen), "a gradient the engine freed is still alive"
    assert len(trace) == 5


# --- the first NaN or infinity ----------------------------------------------------------

def where_sqrt():
    x = torch.tensor([0.0, 4.0], requires_grad=True)
    return x, torch.where(x > 0, x.sqrt(), torch.zeros_like(x)).sum()


def zero_over_zero():
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    return x, (x / x).sum()


def normalize_at_zero():
    x = torch.zeros(3, requires_grad=True)
    return x, (x / x.norm()).sum()


def log_of_zero():
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    return x, x.log().sum()


def where_log():
    x = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    return x, torch.where(x > 0, x.log(), torch.zeros_like(x)).sum()


@pytest.mark.parametrize("build, name, words", [
    (where_sqrt, "SqrtBackward0", "SqrtBackward0 sent nan to x at [0]: grad / (2 · result) is nan there, "
                                  "with grad = 0 and result = 0"),
    (zero_over_zero, "DivBackward0", "DivBackward0 sent inf to x at [0]: grad / x is inf there, "
                                     "with grad = 1 and x = 0"),
    (normalize_at_zero, "DivBackward0", "DivBackward0 sent inf to x at [0]: grad / other is inf there"),
    (log_of_zero, "LogBackward0", "LogBackward0 sent inf to x at [0]: grad / x is inf there, with grad = 1 and x = 0"),
    (where_log, "LogBackward0", "LogBackward0 sent nan to x at [0]: grad / x is nan there, with grad = 0 and x = 0"),
], ids=["where+sqrt", "0/0", "x/x.norm() at 0", "log(0)", "where+log"])
def test_first_nonfinite_finds_the_node_and_says_what_made_it(build, name, words):
    x, loss = build()
    trace = trace_backward(loss, params={"x": x})
    step = trace.first_nonfinite()
    assert step is not None and step.name == name
    assert step is trace.steps[step.index - 1]
    assert step.nonfinite.startswith(words), step.nonfinite
    assert str(step) == f"step {step.index}: {step.nonfinite}"
    assert all(s.nonfinite is None for s in trace.steps[:step.index - 1])  # it is the first
    bad = [e for g, e in zip(step.grad_inputs, step.edge_ids) if e and not torch.isfinite(g).all()]
    assert step.nonfinite_edges == bad and bad and all(f'id="{e}"' in trace.diagram.svg for e in bad)
    # The engine's own check: the Node's hook sees it first.
    order = []
    for s in trace:
        s.node.register_hook(lambda gi, go, s=s: order.append(s.name) if any(
            g is not None and not torch.isfinite(g).all() for g in gi) else None)
    loss.backward()
    assert order and order[0] == name


def test_first_nonfinite_is_none_when_all_is_finite():
    x = torch.tensor([1.0, 4.0], requires_grad=True)
    assert trace_backward(x.sqrt().sum()).first_nonfinite() is None


def test_a_saved_nan_is_named_as_made_by_the_forward():
    x = torch.tensor([-1.0, 4.0], requires_grad=True)
    trace = trace_backward(torch.where(x > 0, x.sqrt(), torch.zeros_like(x)).sum(), params={"x": x})
    assert trace.first_nonfinite().nonfinite == (
        "SqrtBackward0 sent nan to x: its saved result is nan at [0], so the forward already produced it there")


def test_first_nonfinite_on_large_tensors_still_explains_it():
    x = torch.zeros(100_000, requires_grad=True)
    trace = trace_backward(torch.where(x > 0, x.sqrt(), 0.0).sum())
    step = trace.first_nonfinite()
    assert step.name == "SqrtBackward0"
    assert step.nonfinite.startswith("SqrtBackward0 sent nan to its input self (AccumulateGrad) at [0]: "
                                     "grad / (2 · result) is nan there, with grad = 0 and result = 0")


# --- formulas on steps and in draw -------------------------------------------------------

def test_every_step_has_a_formula_and_draw_can_show_them():
    from helpers.render import draw
    w = torch.tensor(2.0, requires_grad=True)
    x = torch.tensor(3.0)
    trace = trace_backward(w * x + 1, params={"w": w, "x": x})
    assert [s.formula.split(":")[0] for s in trace] == [s.name for s in trace]
    svg = draw(w * x + 1, {"w": w, "x": x}, show_formulas=True).svg
    assert "grad_w = grad · x" in svg and "grad_self = grad" in svg


def test_a_step_keeps_its_names_when_the_trace_is_gone():
    x = torch.tensor([0.0, 1.0], requires_grad=True)
    step = trace_backward(x.log().sum(), params={"x": x}).first_nonfinite()  # the trace is freed here
    assert step.nonfinite.startswith("LogBackward0 sent inf to x at [0]")
    assert step.formula.startswith("LogBackward0: grad_x = grad / x = [1, 1] / [0, 1] = [inf, 1]")
