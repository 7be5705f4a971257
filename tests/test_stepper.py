"""The stepper widgets' Python side: payload, ids, step state and errors (no browser)."""
import re

import pytest
import torch
import traitlets

import helpers.render as render
from helpers.stepper import BackwardStepper, ForwardStepper, _op_name, step_backward, step_forward
from helpers.trace import TraceError, trace_backward
from helpers.walk import GraphError


def svg_ids(svg):
    return set(re.findall(r'<g id="([^"]+)" class="(?:node|edge)', svg))


def payload_ids(payload):
    ids = set()
    for s in payload["steps"]:
        ids.update(s["run"], (e for e, _ in s["flow"]), s.get("to", ()), s.get("reveal", ()))
        if s.get("leaf"):
            ids.add(s["leaf"])
    return ids | set(payload.get("all", ()))


def wxb():
    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    return w * torch.tensor(3.0) + b, {"w": w, "b": b}


def mlp_loss():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
    loss = ((model(torch.randn(5, 3)) - 1) ** 2).mean()
    return loss, dict(model.named_parameters())


# --- backward -------------------------------------------------------------------

@pytest.mark.parametrize("make", [wxb, mlp_loss])
def test_every_payload_id_is_in_the_svg(make):
    root, params = make()
    stepper = step_backward(root, params)
    ids = payload_ids(stepper._payload)
    assert ids and ids <= svg_ids(stepper._svg)


def test_steps_follow_the_trace_in_the_engines_order():
    root, params = mlp_loss()
    stepper = step_backward(root, params)
    trace = stepper.trace
    steps = stepper._payload["steps"]
    assert stepper.n_steps == len(trace) == len(steps) - 1
    assert steps[0]["title"] == "before backward"
    assert [s["run"] for s in steps[1:]] == [[s.node_id] for s in trace]
    # The order is the engine's: the same as an independent recording of a plain backward.
    order, handles = [], [fn.register_prehook(lambda g, fn=fn: order.append(fn)) for fn in trace.graph.fns]
    root.backward(retain_graph=True)
    for h in handles:
        h.remove()
    assert [trace.graph.node_of(fn).id for fn in order] == [s["run"][0] for s in steps[1:]]


def test_step_contents_for_w_x_plus_b():
    root, params = wxb()
    stepper = step_backward(root, params)
    start, add, acc_b, mul, acc_w = stepper._payload["steps"]
    graph = stepper.trace.graph
    out = next(n for n in graph.nodes if n.kind == "output")
    assert start["run"] == [out.id] and start["flow"][0][1] == "1"
    assert start["to"] == [graph.node_of(root.grad_fn).id]
    assert add["title"] == "AddBackward0" and [t for _, t in add["flow"]] == ["1", "1"]
    assert add["rows"] == [["received", "1"], ["sent → MulBackward0", "1"], ["sent → AccumulateGrad(b)", "1"]]
    assert acc_b["leaf"] == graph.node_of(params["b"]).id and acc_b["grad"] == "1"
    assert mul["rows"][-1] == ["sent → AccumulateGrad(w)", "3"]  # x has no edge: nothing sent to it
    assert acc_w["rows"][-1] == ["w.grad", "3"] and "w.grad" in acc_w["note"]
    # The leaf boxes are drawn with room for the final gradient (rewritten per step in the browser).
    assert "grad 3" in stepper._svg and "grad 1" in stepper._svg


def test_a_summed_gradient_is_explained():
    w = torch.tensor(2.0, requires_grad=True)
    stepper = step_backward(w * w + w, {"w": w})
    acc = stepper._payload["steps"][-1]
    assert acc["title"] == "AccumulateGrad(w)" and "3 incoming edges" in acc["note"]


def test_large_tensors_are_described_by_shape_and_norm():
    w = torch.ones(10, 10, requires_grad=True)
    stepper = step_backward((w * 2).sum(), {"w": w})
    assert stepper._payload["steps"][-1]["grad"] == "shape (10, 10), norm 20"


def test_step_is_clamped_and_validated():
    stepper = step_backward(*wxb())
    assert stepper.step == 0 and stepper.current is None
    stepper.step = 2
    assert stepper.current is stepper.trace.steps[1]
    stepper.step = 99
    assert stepper.step == stepper.n_steps == 4
    stepper.step = -3
    assert stepper.step == 0
    with pytest.raises(traitlets.TraitError):
        stepper.step = "next"
    with pytest.raises(traitlets.TraitError):
        stepper.n_steps = 10
    with pytest.raises(traitlets.TraitError, match="positive"):
        stepper.speed = 0


def test_step_and_n_steps_are_synced_traits():
    stepper = step_backward(*wxb())
    synced = stepper.keys  # the traits ipywidgets sends to the browser
    assert {"step", "n_steps", "speed", "_svg", "_payload", "_esm", "_css"} <= set(synced)
    assert "export default" in stepper._esm and ".ag-stepper" in stepper._css


def test_layout_happens_once(monkeypatch):
    root, params = mlp_loss()
    calls = []
    real = render.run_layout
    monkeypatch.setattr(render, "run_layout", lambda *a, **k: calls.append(a) or real(*a, **k))
    stepper = step_backward(root, params)
    for k in range(stepper.n_steps + 1):
        stepper.step = k
    assert len(calls) == 1


def test_learner_state_is_untouched():
    root, params = wxb()
    params["w"].grad = before = torch.tensor(5.0)
    step_backward(root, params)
    assert params["w"].grad is before and before.item() == 5.0 and params["b"].grad is None
    root.backward()  # the graph is still there
    assert params["w"].grad.item() == 8.0


def test_backward_errors_are_the_traces():
    w = torch.ones(3, requires_grad=True)
    with pytest.raises(TraceError, match="gradient=torch.ones_like"):
        step_backward(w * 2)
    stepper = step_backward(w * 2, gradient=torch.ones(3))
    assert isinstance(stepper, BackwardStepper) and stepper.n_steps == 2


# --- forward --------------------------------------------------------------------

def test_forward_reveals_nodes_in_creation_order():
    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    stepper = step_forward(lambda x: (w * x + b).exp(), torch.tensor(3.0), params={"w": w, "b": b})
    assert isinstance(stepper, ForwardStepper) and stepper.n_steps == 3
    steps = stepper._payload["steps"]
    graph = stepper.diagram.graph
    name = {n.id: n.name for n in graph.nodes}
    assert steps[0]["reveal"] == []  # nothing exists before fn runs
    assert [s["title"] for s in steps[1:]] == ["MulBackward0", "AddBackward0", "ExpBackward0"]
    assert sorted(name[i] for i in steps[1]["run"]) == ["AccumulateGrad", "MulBackward0", "w"]
    assert steps[1]["rows"] == [["created by", "Tensor.mul (*)"], ["result", "6"]]
    assert "First use of w" in steps[1]["note"]
    assert steps[3]["rows"][0] == ["created by", "Tensor.exp"]
    # Every node and edge appears exactly once, and an edge never before its two ends.
    revealed = [i for s in steps for i in s["reveal"]]
    assert sorted(revealed) == sorted(stepper._payload["all"]) == sorted(svg_ids(stepper._svg))
    when = {i: k for k, s in enumerate(steps) for i in s["reveal"]}
    for e in graph.edges:
        assert when[e.id] == max(when[e.tail.id], when[e.head.id])
    assert stepper.output.item() == pytest.approx(torch.tensor(7.0).exp().item())


def test_forward_nodes_made_before_fn_are_there_at_step_0():
    a = torch.tensor([1.0, 2.0], requires_grad=True)
    h = a * 2  # recorded before step_forward runs
    stepper = step_forward(lambda t: t.sum(), h)
    steps = stepper._payload["steps"]
    graph = stepper.diagram.graph
    assert stepper.n_steps == 1 and steps[1]["title"] == "SumBackward0"
    assert graph.node_of(h.grad_fn).id in steps[0]["reveal"]
    assert graph.node_of(a).id in steps[0]["reveal"]


def test_forward_payload_ids_are_in_the_svg_for_a_module():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    stepper = step_forward(lambda x: model(x).sum(), torch.randn(2, 3),
                           params=dict(model.named_parameters()), show_saved=True)
    assert payload_ids(stepper._payload) == svg_ids(stepper._svg)
    ops = [r[1] for s in stepper._payload["steps"] for r in s["rows"] if r[0] == "created by"]
    assert ops == ["F.linear", "F.relu", "F.linear", "Tensor.sum"]


def test_forward_errors():
    with pytest.raises(TypeError, match="function first"):
        step_forward(torch.ones(2))
    with pytest.raises(GraphError, match="requires_grad=True"):
        step_forward(lambda x: x * 2, torch.ones(2))


def test_op_names():
    assert _op_name(torch.mul) == "torch.mul"
    assert _op_name(torch.Tensor.mul) == "Tensor.mul (*)"
    assert _op_name(torch.Tensor.add_) == "Tensor.add_ (+=)"
    assert _op_name(torch.Tensor.__rsub__) == "Tensor.rsub (-)"
    assert _op_name(torch.Tensor.__pow__) == "Tensor.pow (**)"
    assert _op_name(torch.nn.functional.relu) == "F.relu"


def test_trace_and_stepper_share_ids():
    root, params = wxb()
    stepper = step_backward(root, params)
    trace = trace_backward(root, params=params)
    suffix = lambda i: i[i.rindex("n"):]  # noqa: E731 (ids differ only by the per-diagram prefix)
    assert [suffix(s["run"][0]) for s in stepper._payload["steps"][1:]] == [suffix(s.node_id) for s in trace]
