"""helpers.draw: the picture, its ids, its errors, and both Graphviz back ends."""
import html
import os
import re
import shutil
import sys

import pytest
import torch

import helpers
from helpers import render
from helpers.render import Diagram, draw
from helpers.walk import GraphError


def line():
    """The course's classic example, y = w * x + b."""
    w = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(2.0)
    return w, x, b, w * x + b


def svg_ids(svg):
    return set(re.findall(r'<g id="([^"]+)" class="(?:node|edge)', svg))


def node_fill(svg, node_id):
    block = svg.split(f'<g id="{node_id}"', 1)[1].split("</g>", 1)[0]
    return re.search(r'fill="([^"]+)"', block).group(1)


def node_text(svg, node_id):
    block = svg.split(f'<g id="{node_id}"', 1)[1].split("</g>", 1)[0]
    return html.unescape(" ".join(re.findall(r">([^<]*)</text>", block)))


@pytest.fixture(params=["system", "pure"])
def engine(request, monkeypatch, tmp_path):
    """Run a test with the system `dot`, then with it hidden from PATH (pip-only)."""
    if request.param == "system":
        if not shutil.which("dot"):
            if os.environ.get("CI") == "true":
                pytest.fail("CI must have the system Graphviz: .ci/run installs it.")
            pytest.skip("the system Graphviz `dot` is not installed")
    else:
        monkeypatch.setenv("PATH", str(tmp_path))  # no `dot`, no `graphviz-pure` on PATH
        assert shutil.which("dot") is None
    cmd, what = render.layout_command()
    assert cmd is not None, what
    assert ("graphviz-pure" in what) == (request.param == "pure")
    return request.param


# --- the picture ---------------------------------------------------------------

def test_draw_returns_an_svg_diagram_with_make_dot_colours(engine):
    w, x, b, y = line()
    d = draw(y, params={"w": w, "b": b})
    assert isinstance(d, Diagram)
    svg = d._repr_svg_()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert node_fill(svg, d.id_of(w)) == "lightblue"
    assert node_text(svg, d.id_of(w)).startswith("w ")
    assert node_text(svg, d.id_of(b)).startswith("b ")
    assert node_fill(svg, d.id_of(y)) == "#caff70"  # darkolivegreen1, torchviz's output colour
    assert node_fill(svg, d.id_of(y.grad_fn)) == "lightgrey"
    assert node_text(svg, d.id_of(y.grad_fn)) == "AddBackward0"
    names = sorted(name for kind, name in d.ids.values() if kind == "fn")
    assert names == ["AccumulateGrad", "AccumulateGrad", "AddBackward0", "MulBackward0"]


def test_x_is_not_drawn_because_it_does_not_require_grad():
    w, x, b, y = line()
    d = draw(y, params={"w": w, "b": b, "x": x})
    assert [n.name for n in d.graph.nodes if n.kind == "leaf"] == ["b", "w"]
    with pytest.raises(KeyError, match="not part of this diagram"):
        d.id_of(x)


def test_saved_tensors_are_orange_and_attrs_listed(engine):
    w, x, b, y = line()
    d = draw(y, {"w": w, "b": b}, show_saved=True, show_attrs=True)
    saved = [n for n in d.graph.nodes if n.kind == "saved"]
    assert [n.name for n in saved] == ["other"]  # MulBackward0 keeps x to compute dy/dw
    assert node_fill(d.svg, saved[0].id) == "orange"
    assert "alpha: 1" in node_text(d.svg, d.id_of(y.grad_fn))
    plain = draw(y, {"w": w, "b": b})
    assert not any(n.kind == "saved" for n in plain.graph.nodes)
    assert "alpha" not in plain.source


def test_legend_only_when_asked():
    w, x, b, y = line()
    assert "legend" not in draw(y).source
    d = draw(y, legend=True)
    for text in ("leaf tensor", "backward Node", "saved tensor", "output"):
        assert text in d.svg


def test_grads_shown_before_and_after_backward(engine):
    w, x, b, y = line()
    before = draw(y, {"w": w, "b": b}, show_grads=True)
    assert "grad None" in node_text(before.svg, before.id_of(w))
    y.backward(retain_graph=True)
    after = draw(y, {"w": w, "b": b}, show_grads=True)
    assert "grad 2" in node_text(after.svg, after.id_of(w))
    assert "grad 1" in node_text(after.svg, after.id_of(b))
    plain = draw(y, {"w": w, "b": b})
    assert "grad" not in node_text(plain.svg, plain.id_of(w))


def test_large_grads_show_shape_and_norm():
    W = torch.ones(30, 40, requires_grad=True)
    (W * 2).sum().backward()
    d = draw((W * 2).sum(), {"W": W}, show_grads=True)
    assert "grad shape (30, 40), norm 69.28" in d.source  # 2 * sqrt(1200)


def test_drawing_does_not_touch_the_learners_tensors():
    w, x, b, y = line()
    draw(y, {"w": w}, show_saved=True, show_attrs=True, show_grads=True).svg
    assert w.grad is None and b.grad is None
    y.backward()  # the graph is intact: saved tensors were not freed by drawing
    assert w.grad.item() == 2.0


# --- ids -------------------------------------------------------------------------

def test_every_node_and_edge_has_its_id_in_the_svg(engine):
    w, x, b, y = line()
    d = draw(y, {"w": w, "b": b}, show_saved=True)
    ours = {n.id for n in d.graph.nodes} | {e.id for e in d.graph.edges}
    assert svg_ids(d.svg) == ours
    assert all(re.fullmatch(r"[A-Za-z][\w-]*", i) for i in ours)


def test_ids_are_unique_across_diagrams_and_stable_within():
    w, x, b, y = line()
    d1, d2 = draw(y), draw(y)
    assert not svg_ids(d1.svg) & svg_ids(d2.svg)
    graph_ids = re.findall(r'<g id="([^"]+)" class="(?:graph|cluster)"', d1.svg + d2.svg)
    assert len(graph_ids) == len(set(graph_ids))
    suffix = lambda d: [n.id[len(d.graph.prefix):] for n in d.graph.nodes]
    assert suffix(d1) == suffix(d2) == [f"n{i}" for i in range(len(d1.graph.nodes))]
    # The same expression built again (new tensors) numbers its nodes the same way.
    d3 = draw(line()[3])
    assert [(n.kind, n.name) for n in d3.graph.nodes] == [(n.kind, n.name) for n in d1.graph.nodes]


def test_id_mapping_for_nodes_tensors_and_edges():
    w, x, b, y = line()
    d = draw(y, {"w": w, "b": b})
    mul = y.grad_fn.next_functions[0][0]
    acc_w = mul.next_functions[0][0]
    assert d.ids[d.id_of(mul)] == ("fn", "MulBackward0")
    assert d.ids[d.id_of(w)] == ("leaf", "w")
    edge = d.edge_id(mul, 0)  # MulBackward0 sends w's gradient to AccumulateGrad(w)
    e = next(e for e in d.graph.edges if e.id == edge)
    assert (e.tail.obj, e.head.obj) == (acc_w, mul)
    with pytest.raises(KeyError, match="no drawn input number 1"):
        d.edge_id(mul, 1)  # x needs no gradient: no edge


# --- torchviz issue #69: x * x ------------------------------------------------------

def test_saved_input_is_drawn_separately_from_the_leaf(engine):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = (x * x).sum()
    d = draw(y, {"x": x}, show_saved=True)
    leaf = d.graph.node_of(x)
    saved = [n for n in d.graph.nodes if n.kind == "saved"]
    assert sorted(n.name for n in saved) == ["other", "self"]
    assert all(n.id != leaf.id for n in saved)
    same = [e for e in d.graph.edges if e.kind == "same"]
    assert sorted((e.tail.name, e.head.id) for e in same) == [("other", leaf.id), ("self", leaf.id)]
    assert node_fill(d.svg, leaf.id) == "lightblue"
    assert "same tensor as x" in node_text(d.svg, saved[0].id)
    assert node_text(d.svg, saved[0].id).startswith(f"{saved[0].name} (2) = [1, 2]")
    # Both of MulBackward0's inputs are x: two edges, one per next_functions slot.
    mul = y.grad_fn.next_functions[0][0]
    assert d.edge_id(mul, 0) != d.edge_id(mul, 1)


# --- size and depth -------------------------------------------------------------------

def chain(n):
    x = torch.tensor(1.0, requires_grad=True)
    h = x
    for _ in range(n):
        h = h * 1.0001
    return h


def test_a_5000_op_chain_is_refused_with_its_size_not_a_recursion_error():
    h = chain(5000)
    with pytest.raises(GraphError) as err:
        draw(h)
    msg = str(err.value)
    assert "5,003 nodes" in msg and "max_nodes=2,000" in msg and "max_nodes=5003" in msg


def test_a_5000_op_chain_draws_when_allowed():
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # a recursive walk could not get through this graph
    try:
        d = draw(chain(5000), max_nodes=6000)
    finally:
        sys.setrecursionlimit(limit)
    assert sum(n.kind == "fn" for n in d.graph.nodes) == 5001
    assert d.source.count("MulBackward0") == 5000


# --- caching and files ------------------------------------------------------------------

def test_svg_is_laid_out_once(monkeypatch):
    calls = []
    real = render.run_layout
    monkeypatch.setattr(render, "run_layout", lambda *a, **k: calls.append(a) or real(*a, **k))
    d = draw(line()[3])
    assert d.svg is d.svg and d._repr_svg_() is d.svg
    assert len(calls) == 1


def test_source_and_save(tmp_path, engine):
    d = draw(line()[3])
    assert d.source.startswith("digraph")
    assert d.save(tmp_path / "g.dot").read_text() == d.source
    assert d.save(tmp_path / "g.svg").read_text() == d.svg
    if engine == "system":
        assert d.save(tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="suffix"):
        d.save(tmp_path / "noext")


# --- bad input: one clear sentence ----------------------------------------------------------

@pytest.mark.parametrize(
    "bad, message",
    [
        (3.0, "Expected a tensor with a graph"),
        ([], "Nothing to draw"),
        (torch.ones(3), "This tensor has no graph"),
        (torch.ones(3, requires_grad=True), "This tensor is a leaf"),
    ],
)
def test_bad_roots(bad, message):
    with pytest.raises(GraphError, match=message):
        draw(bad)


@pytest.mark.parametrize("option", ["show_saved", "show_attrs"])
def test_saved_tensors_freed_by_backward(option):
    w, x, b, y = line()
    y.backward()
    with pytest.raises(GraphError) as err:
        draw(y, **{option: True})
    msg = str(err.value)
    assert "freed by an earlier backward()" in msg and "retain_graph=True" in msg
    assert "mark_freed=True" in msg
    assert msg.count(". ") <= 1  # one sentence of what, one of what to do
    draw(y)  # without saved tensors the graph is still drawable


def test_mark_freed_draws_the_freed_slots(engine):
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    before = draw(y, {"x": x}, show_saved=True)
    y.backward()
    after = draw(y, {"x": x}, show_saved=True, show_attrs=True, mark_freed=True)
    saved_before = sorted(n.name for n in before.graph.nodes if n.kind == "saved")
    freed_after = sorted(n.name for n in after.graph.nodes if n.kind == "freed")
    assert saved_before == freed_after == ["other", "result", "self"]
    assert not any(n.kind == "saved" for n in after.graph.nodes)
    node = next(n for n in after.graph.nodes if n.kind == "freed")
    assert node_text(after.svg, node.id) == f"{node.name} freed" and node_fill(after.svg, node.id) == "white"
    assert "[freed]" in after.source  # show_attrs lists the freed tensor attributes too


def test_params_must_name_tensors():
    w, x, b, y = line()
    with pytest.raises(GraphError, match="not a tensor"):
        draw(y, params={"w": 3.0})
    with pytest.raises(GraphError, match="params must be a dict"):
        draw(y, params=[w])
    d = draw(y, params=[("w", w)])  # pairs, like model.named_parameters()
    assert d.ids[d.id_of(w)] == ("leaf", "w")


def test_modules_named_parameters_and_views():
    lin = torch.nn.Linear(3, 2)
    out = lin(torch.ones(1, 3))[0]  # a view of the layer's output
    d = draw(out, dict(lin.named_parameters()))
    assert {n.name for n in d.graph.nodes if n.kind == "leaf"} == {"weight", "bias"}
    assert any(n.kind == "base" for n in d.graph.nodes)


# --- Graphviz back ends and check_setup ---------------------------------------------------

def test_torchviz_make_dot_works_pip_only(monkeypatch, tmp_path):
    import torchviz

    monkeypatch.setenv("PATH", str(tmp_path))
    assert render.alias_dot_to_pure()
    assert shutil.which("dot") is not None
    svg = torchviz.make_dot(line()[3]).pipe(format="svg")
    assert b"AddBackward0" in svg


def test_check_setup_reports_ready(capsys):
    helpers.check_setup()
    out = capsys.readouterr().out
    assert out.count("✅") == 3 and "❌" not in out and "ready for the course" in out


def test_check_setup_says_how_to_install_graphviz(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(render, "_pure_command", lambda: None)
    helpers.check_setup()
    out = capsys.readouterr().out
    assert "❌ Graphviz" in out and "apt-get install graphviz" in out and "pip install graphviz-pure" in out
    with pytest.raises(RuntimeError, match="No Graphviz found"):
        draw(line()[3]).svg


def test_named_intermediates_are_drawn_inside_their_node():
    w, x, b, y = line()
    h = w * x
    h.retain_grad()
    out = h + b
    d = draw(out, {"w": w, "h": h}, show_grads=True)
    assert node_text(d.svg, d.id_of(h.grad_fn)) == "MulBackward0 -> h () grad None"
    out.backward(retain_graph=True)
    d = draw(out, {"w": w, "h": h}, show_grads=True, show_attrs=True)
    assert node_text(d.svg, d.id_of(h.grad_fn)).startswith("MulBackward0 -> h () grad 1 ---")
    assert "-> h" not in draw(out, {"w": w}).source


class MulConstant(torch.autograd.Function):
    @staticmethod
    def forward(x, c):
        return x * c

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.constant = inputs[1]
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.constant, None


def test_custom_function_saved_tensors_and_ctx_attributes():
    x = torch.ones(2, requires_grad=True)
    y = MulConstant.apply(x, 3.0)
    d = draw(y, {"x": x}, show_saved=True, show_attrs=True)
    assert "constant: 3.0" in node_text(d.svg, d.id_of(y.grad_fn))
    saved = [n for n in d.graph.nodes if n.kind == "saved"]
    assert [n.name for n in saved] == ["saved[0]"]
    y.sum().backward()
    with pytest.raises(GraphError, match="MulConstantBackward were freed"):
        draw(y, show_saved=True)
    d = draw(y, show_saved=True, mark_freed=True)
    assert [n.name for n in d.graph.nodes if n.kind == "freed"] == ["saved"]
