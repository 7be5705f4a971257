"""The stepper widgets' Python side: payload, ids, step state and errors (no browser)."""
import json
import re
import types
import urllib.parse
from html import unescape
from pathlib import Path

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


# --- what each step explains ------------------------------------------------------

def test_each_step_shows_the_rule_the_node_applied():
    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(3.0)
    stepper = step_backward(w * x + b, {"w": w, "x": x, "b": b})
    steps = stepper._payload["steps"]
    assert "formula" not in steps[0]  # before backward: no Node ran
    for step, s in zip(steps[1:], stepper.trace):
        assert s.formula.endswith(step["formula"])  # the Node's name is the panel's title
    mul = next(st for st in steps if st["title"] == "MulBackward0")
    assert mul["formula"] == "grad_w = grad · x = 1 · 3 = 3"


def test_predict_mode_carries_what_to_ask_and_the_answers():
    root, params = wxb()
    stepper = step_backward(root, params, predict=True)
    payload = stepper._payload
    assert payload["predict"] is True
    json.dumps(payload, allow_nan=False)  # the browser's JSON has no NaN
    for step in payload["steps"]:
        if step.get("leaf") or step["title"] == "before backward":
            assert "guess" not in step  # AccumulateGrad only adds up; nothing to predict
    add = payload["steps"][1]
    assert [g["row"] for g in add["guess"]] == [1, 2]  # rows: received, sent, sent
    assert [add["rows"][g["row"]][0] for g in add["guess"]] == ["sent → MulBackward0", "sent → AccumulateGrad(b)"]
    mul = payload["steps"][3]
    assert mul["guess"] == [{"row": 1, "text": "3", "value": 3.0, "received": 1.0}]
    assert "guess" not in step_backward(*wxb())._payload["steps"][3]  # only when asked


def test_predict_mode_offers_choices_for_tensors():
    v = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    stepper = step_backward((v.exp() * 2).sum(), {"v": v}, predict=True)
    exp = next(s for s in stepper._payload["steps"] if s["title"] == "ExpBackward0")
    (guess,) = exp["guess"]
    texts = [c[0] for c in guess["choices"]]
    assert len(texts) == len(set(texts)) >= 3
    right = [c for c in guess["choices"] if c[1] is None]
    assert right == [[guess["text"], None]] and guess["text"] == exp["rows"][guess["row"]][1]
    assert all(c[1] for c in guess["choices"] if c[0] != guess["text"])  # each wrong one says why
    again = step_backward((v.exp() * 2).sum(), {"v": v}, predict=True)
    assert next(s for s in again._payload["steps"] if s["title"] == "ExpBackward0")["guess"] == [guess]


# --- the stepper as a debugger ------------------------------------------------------

def nan_graph():
    z = torch.tensor([0.0, 4.0], requires_grad=True)
    return (z.sqrt() * 2).sum(), {"z": z}


def test_stop_at_nonfinite_opens_where_the_first_nan_or_inf_was_sent():
    root, params = nan_graph()
    stepper = step_backward(root, params, stop_at="nonfinite")
    first = stepper.trace.first_nonfinite()
    assert first is not None and first.name == "SqrtBackward0"
    assert stepper.step == first.index and stepper.current is first
    where = stepper._payload["steps"][first.index]
    assert where["alert"].startswith("First NaN or infinity: ") and first.nonfinite in where["alert"]
    assert sum("alert" in s for s in stepper._payload["steps"]) == 1
    json.dumps(stepper._payload, allow_nan=False)


def test_stop_at_when_everything_is_finite_and_bad_values():
    stepper = step_backward(*wxb(), stop_at="nonfinite")
    assert stepper.step == 0 and "every gradient of this backward is finite" in stepper._payload["steps"][0]["note"]
    assert step_backward(*wxb(), stop_at=3).step == 3
    with pytest.raises(ValueError, match='stop_at can be "nonfinite"'):
        step_backward(*wxb(), stop_at="nan!")


# --- grouping by module -----------------------------------------------------------

def test_module_keywords_are_passed_to_the_picture_or_refused_clearly():
    with pytest.raises(TypeError, match="unexpected keyword argument 'modulez'"):
        step_backward(*wxb(), modulez=1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    loss = model(torch.randn(2, 3)).sum()
    stepper = step_backward(loss, modules=model)
    assert payload_ids(stepper._payload) <= svg_ids(stepper._svg)
    assert stepper._svg.count('class="cluster') >= 2  # a box per Linear (and the model)
    assert "AccumulateGrad(0.weight)" in [s["title"] for s in stepper._payload["steps"]]
    forward = step_forward(lambda x: model(x).sum(), torch.randn(2, 3), modules=model)
    assert payload_ids(forward._payload) <= svg_ids(forward._svg)
    assert forward._svg.count('class="cluster') >= 2
    # A collapsed module is one box: it runs for each of its Nodes.
    folded = step_backward(loss, modules=model, collapse=["0"])
    box = [s for s in folded._payload["steps"] if s["title"].endswith(" in 0")]
    assert [s["title"] for s in box] == ["AddmmBackward0 in 0", "AccumulateGrad(0.bias) in 0", "TBackward0 in 0",
                                         "AccumulateGrad(0.weight) in 0"]
    assert len({s["run"][0] for s in box}) == 1 and box[0]["run"][0] in svg_ids(folded._svg)


# --- the static form ------------------------------------------------------------------

def static_parts(html):
    state = re.search(r'<script type="application/json" class="ag-stepper-state">(.*?)</script>', html, re.S)
    img = re.search(r'<div class="ag-static-diagram"><img src="([^"]*)"', html)
    return json.loads(state.group(1)), img.group(1)


def test_the_html_form_embeds_the_state_and_the_picture_once():
    w = torch.tensor(2.0, requires_grad=True)
    stepper = step_backward((w * 3 + 1).sin(), {"w</script><b>": w}, predict=True)  # a hostile name
    data, meta = stepper._repr_mimebundle_()
    assert set(data) == {"text/plain", "text/html", "application/vnd.jupyter.widget-view+json"}
    assert "run the cell" in data["text/plain"]
    html = data["text/html"]
    assert html.count("</script>") == 1 and "<b>" not in html
    state, src = static_parts(html)
    assert state == json.loads(json.dumps(stepper.static_state()))
    assert state["_payload"] == stepper._payload and state["n_steps"] == stepper.n_steps
    assert src.startswith("data:image/svg+xml;charset=utf-8,")
    svg = urllib.parse.unquote(unescape(src).split(",", 1)[1])
    assert svg == stepper._svg[stepper._svg.index("<svg"):]
    assert html.count("<svg") == 0  # the picture once, as an image (sanitizers strip inline SVG)
    assert "run the cell to step through it" in html


# --- a cell that runs again --------------------------------------------------------

class FakeIPython:
    def __init__(self):
        self.handlers = []
        self.events = self
        self.kernel = self
        self.cell = None

    def register(self, event, fn):
        assert event == "pre_run_cell"
        self.handlers.append(fn)

    def get_parent(self):
        return {"metadata": {"cellId": self.cell}}

    def run(self, cell):
        self.cell = cell
        for fn in self.handlers:
            fn(types.SimpleNamespace(cell_id=cell))


def test_a_cell_that_runs_again_closes_the_steppers_only_it_showed(monkeypatch):
    import helpers.stepper as stepper_module

    ip = FakeIPython()
    cells = stepper_module._CellOutputs()
    monkeypatch.setattr(stepper_module, "_cells", cells)
    monkeypatch.setattr(cells, "_ipython", lambda: ip)
    ip.run("A")
    a = step_backward(*wxb())
    a._repr_mimebundle_()
    shared = step_backward(*wxb())
    shared._repr_mimebundle_()
    ip.run("B")
    shared._repr_mimebundle_()  # shown by cell B too
    ip.run("A")  # A runs again: its old output is gone
    assert a.comm is None and shared.comm is not None
    a._repr_mimebundle_()  # showing a closed stepper again opens it again
    assert a.comm is not None and a.step == 0


def test_the_course_jupyterlab_saves_widget_state():
    """Without it, a reopened notebook shows "Error displaying widget: model not found" where
    each stepper was (ipywidgets restores a widget only from state saved in the notebook)."""
    overrides = json.loads((Path(__file__).resolve().parents[1] / "binder" / "overrides.json").read_text())
    assert overrides["@jupyter-widgets/jupyterlab-manager:plugin"] == {"saveState": True}


def test_the_front_end_sent_to_the_browser_is_compact_and_complete():
    from helpers.stepper import STATIC, Stepper

    assert "export default { render };" in Stepper._esm and not Stepper._esm.startswith("//")
    assert len(Stepper._esm) < 0.85 * len((STATIC / "stepper.js").read_text())
    assert "/*" not in Stepper._css and ".ag-stepper {" in Stepper._css
    source = [line.strip() for line in (STATIC / "stepper.js").read_text().splitlines()]
    code = [line for line in source if line and not line.startswith("//")]
    assert Stepper._esm.splitlines() == code  # only comments and indentation went


def test_a_large_graph_keeps_no_static_copy_in_the_notebook(monkeypatch):
    import helpers.stepper as stepper_module

    stepper = step_backward(*wxb())
    assert "<title>" not in stepper._svg and "<!--" not in stepper._svg and stepper._svg.startswith("<svg")
    assert "ag-stepper-state" in stepper._repr_mimebundle_()[0]["text/html"]
    monkeypatch.setattr(stepper_module, "STATIC_LIMIT", 1000)
    html = stepper._repr_mimebundle_()[0]["text/html"]
    assert "ag-stepper-state" not in html and "<img" not in html and "run the cell to show it" in html
    assert "ag-stepper-state" in stepper.static_html()  # asked for, it is always there


def test_shared_weights_ref_boxes_run_with_their_node_and_every_use_is_counted():
    torch.manual_seed(0)
    cell = torch.nn.RNNCell(3, 4)
    h = torch.zeros(1, 4)
    for _ in range(12):
        h = cell(torch.randn(1, 3), h)
    stepper = step_backward(h.sum(), dict(cell.named_parameters()))
    refs = [n for n in stepper.diagram.graph.nodes if n.kind == "ref"]
    assert refs  # the shared leaves are drawn once, with a dashed box next to each distant use
    steps = stepper._payload["steps"]
    for j, step in enumerate(steps):  # whatever receives gradient runs later (and stops waiting)
        for t in step["to"]:
            assert any(t in later["run"] for later in steps[j + 1:]), (j, t)
    acc = next(s for s in steps if s.get("leaf") and "weight_hh" in s["title"])
    assert "summed the gradients from its 12 incoming edges" in acc["note"]  # one per step of the RNN
    assert {r.id for r in refs if r.ref.id == acc["run"][0]} == set(acc["run"][1:])


def test_a_leaf_that_already_has_a_grad_is_shown_as_kept():
    w = torch.tensor(2.0, requires_grad=True)
    w.grad = torch.tensor(100.0)
    step = next(s for s in step_backward(w * 3, {"w": w})._payload["steps"] if s.get("leaf"))
    assert step["rows"][1:] == [["w.grad (this backward's)", "3"], ["w.grad before (yours, kept)", "100"]]
    assert "a real backward() adds this one to it" in step["note"]
    assert w.grad.item() == 100.0


def test_a_node_with_several_outputs_gathers_one_gradient_per_output():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    p, q, r = (w * w).unbind()
    steps = step_backward(p * q + r + q * 5, {"w": w})._payload["steps"]
    unbind = next(s for s in steps if s["title"].startswith("UnbindBackward0"))
    assert unbind["note"].startswith("It has 3 outputs: the engine gathered a gradient for each")
    assert [row[0] for row in unbind["rows"][:3]] == [f"received (output {i})" for i in range(3)]
