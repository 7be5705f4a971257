"""helpers.draw: the picture, its ids, its errors, and both Graphviz back ends."""
import html
import os
import re
import shutil
import subprocess
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
    assert "grad " not in draw(y, {"w": w, "b": b}).source  # by default: only the grads that exist
    y.backward(retain_graph=True)
    after = draw(y, {"w": w, "b": b}, show_grads=True)
    assert "grad 2" in node_text(after.svg, after.id_of(w))
    assert "grad 1" in node_text(after.svg, after.id_of(b))
    auto = draw(y, {"w": w, "b": b})  # after backward, as micrograd: data and grad
    assert node_text(auto.svg, auto.id_of(w)) == "w = 3 grad 2"
    plain = draw(y, {"w": w, "b": b}, show_grads=False)
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
    assert node_text(d.svg, saved[0].id).startswith(f"{saved[0].name} = [1, 2]")
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
    assert "more than max_nodes=2,000 nodes" in msg and "max_nodes=20000," in msg
    assert "max_nodes=None" in msg
    # Real figures, measured (benchmarks/draw.py), not "Graphviz needs seconds".
    assert re.search(r"2,000 nodes [\d.]+ s, 20,000 nodes [\d.]+ s", msg)


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


# --- the numbers on the boxes ---------------------------------------------------------------

def test_a_small_leaf_shows_its_values_and_a_large_one_its_shape_in_words(engine):
    v = torch.tensor([1.0, 2.5], requires_grad=True)
    W = torch.ones(8, 8, requires_grad=True)
    T = torch.ones(2, 3, 4, requires_grad=True)
    out = (W @ W).sum() + (v * 0.1).sum() + T.sum()
    d = draw(out, {"v": v, "W": W, "T": T})
    assert node_text(d.svg, d.id_of(v)) == "v = [1, 2.5]"
    assert node_text(d.svg, d.id_of(W)) == "W 8×8 matrix"
    assert node_text(d.svg, d.id_of(T)) == "T 2×3×4 tensor"
    assert node_text(d.svg, d.id_of(out)) == f"output = {out.item():.4g}"
    big = torch.zeros(300, requires_grad=True)
    assert "vector of 300" in draw(big * 2, {"b": big}).source
    assert "= 0.1" in draw(torch.tensor(0.1, requires_grad=True) * 1).source  # as written, not 0.100000001


# --- draw's promises (one test each) ------------------------------------------------------------

@pytest.mark.parametrize("mode, words", [
    (torch.no_grad, "torch.no_grad()"),
    (torch.inference_mode, "torch.inference_mode()"),
])
def test_a_result_computed_with_recording_off_gets_a_message_naming_the_mode(mode, words):
    w = torch.ones(2, requires_grad=True)
    with mode():
        y = (w * 2).sum()
    with pytest.raises(GraphError, match=re.escape(words)) as err:
        draw(y)
    assert "none of the tensors it was computed from requires grad" not in str(err.value)
    with torch.no_grad():  # drawing while recording is off says so too
        with pytest.raises(GraphError, match="Gradient recording is off here"):
            draw(torch.ones(2) * 2)
        v = w[:1]  # a view made under no_grad says requires_grad=True but has no graph
    with pytest.raises(GraphError, match="view made under torch.no_grad"):
        draw(v)


def test_show_saved_calls_an_unpack_hook_at_most_once_per_saved_tensor():
    calls = []

    def unpack(t):
        calls.append(t.shape)
        return t

    x = torch.tensor([1.0, 2.0], requires_grad=True)
    with torch.autograd.graph.saved_tensors_hooks(lambda t: t, unpack):
        y = (x.exp() * x).sum()  # ExpBackward saves result, MulBackward saves self and other
    d = draw(y, {"x": x}, show_saved=True, show_attrs=True)
    saved = [n for n in d.graph.nodes if n.kind == "saved"]
    assert len(saved) == 3 and len(calls) == 3


@pytest.mark.filterwarnings("ignore:The PyTorch API of nested tensors is in prototype stage")
def test_meta_and_nested_tensors_get_one_sentence_not_torch_internals(engine):
    m = torch.ones(2, 3, device="meta", requires_grad=True)
    y = (m * m).sum()
    d = draw(y, {"m": m}, show_saved=True)
    assert node_text(d.svg, d.id_of(m)) == "m 2×3 matrix on the meta device (a shape, no values)"
    assert "meta device" in node_text(d.svg, d.id_of(y))
    parts = [torch.ones(2), torch.ones(3)]
    for layout in (torch.strided, torch.jagged):
        nt = torch.nested.nested_tensor(parts, layout=layout, requires_grad=True)
        d = draw(nt * 2, {"nt": nt})
        assert node_text(d.svg, d.id_of(nt)) == "nt nested tensor of 2 tensors"


def test_save_pdf_works_or_names_the_formats_the_pip_only_engine_writes(tmp_path, engine):
    d = draw(line()[3])
    if engine == "system":
        assert d.save(tmp_path / "g.pdf").read_bytes()[:5] == b"%PDF-"
    else:
        with pytest.raises(ValueError) as err:
            d.save(tmp_path / "g.pdf")
        msg = str(err.value)
        assert "graphviz-pure" in msg and "cannot write .pdf" in msg
        assert all(f in msg for f in ("svg", "png", "jpg")) and "apt-get install graphviz" in msg
        assert d.save(tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"


def test_a_broken_system_dot_falls_back_to_graphviz_pure(monkeypatch, tmp_path):
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'Error: could not find plugins (a broken install)' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(render, "_system_failed", None)
    assert render.layout_command()[1].startswith("system Graphviz")
    svg = draw(line()[3]).svg
    assert "AddBackward0" in svg
    assert "graphviz-pure" in render.layout_command()[1]  # and for the rest of the session
    assert "broken install" in render._system_failed


def test_max_nodes_none_means_no_cap():
    d = draw(chain(2500), max_nodes=None)
    assert sum(n.kind == "fn" for n in d.graph.nodes) == 2501
    with pytest.raises(GraphError, match="positive whole number or None"):
        draw(line()[3], max_nodes=0)


# --- layout time depends on size, not on sharing ---------------------------------------------

def rnn(steps):
    """A shared-weight RNN: W and U are used at every step."""
    torch.manual_seed(0)
    W = torch.randn(8, 8, requires_grad=True)
    U = torch.randn(8, 8, requires_grad=True)
    h, xs = torch.zeros(1, 8), torch.randn(steps, 1, 8)
    for t in range(steps):
        h = torch.tanh(h @ W + xs[t] @ U)
    return h.sum(), W, U


def test_a_shared_leaf_gets_a_ref_box_by_each_distant_use_and_keeps_its_ids(engine):
    loss, W, U = rnn(12)
    d = draw(loss, {"W": W, "U": U})
    refs = [n for n in d.graph.nodes if n.kind == "ref"]
    acc_w = d.graph.node_of(W).id  # the leaf keeps its box ...
    acc_nodes = {e.head for e in d.graph.edges if e.tail.kind == "leaf"}
    assert len(acc_nodes) == 2 and refs and {r.ref for r in refs} == acc_nodes
    assert {r.name for r in refs} == {"AccumulateGrad(W)", "AccumulateGrad(U)"}
    # ... every use still has the edge for its next_functions slot, drawn from the
    # AccumulateGrad itself when near, from a ref box by the use when far.
    for r in refs:
        assert [e.tail for e in d.graph.edges if e.head is r or e.tail is r] == [r]
    mms = [fn for fn in d.graph.fns if type(fn).__name__ == "MmBackward0"]
    tails = [d.graph.grad_edge(fn, 1).tail for fn in mms]
    assert {t.kind for t in tails} == {"fn", "ref"} and len(mms) == 24
    svg = d.svg
    assert svg_ids(svg) == {n.id for n in d.graph.nodes} | {e.id for e in d.graph.edges}
    assert "shared: drawn once, above" in node_text(svg, refs[0].id)
    assert node_fill(svg, acc_w) == "lightblue"


def layout_cpu(d):
    """CPU seconds the layout command spent on ``d`` (robust on a shared machine)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    d.svg
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def test_a_60_step_shared_weight_rnn_lays_out_about_as_fast_as_an_mlp_of_its_size():
    # Before the cut, system dot needed > 100 s for this graph and 0.04 s for the MLP.
    loss, W, U = rnn(60)
    d = draw(loss, {"W": W, "U": U})
    torch.manual_seed(0)
    h = torch.randn(4, 8)
    for _ in range(35):
        h = torch.tanh(h @ torch.randn(8, 8, requires_grad=True) + torch.zeros(8, requires_grad=True))
    mlp = draw(h.sum())
    assert abs(len(mlp.graph.nodes) - 246) < 5
    assert layout_cpu(d) < max(1.0, 5 * layout_cpu(mlp))


def test_a_medium_graph_goes_to_graphviz_pure_with_bounded_network_simplex_only_when_big(monkeypatch):
    monkeypatch.setattr(render, "MEDIUM", 20)
    loss, W, U = rnn(8)
    d = draw(loss, {"W": W, "U": U})
    assert render.size_of(d.graph) == "medium" and "nslimit" not in d.source  # straight branches
    monkeypatch.setattr(render, "ROUGH", 30)
    d = draw(loss, {"W": W, "U": U})
    assert render.size_of(d.graph) == "medium" and "nslimit=0.02" in d.source
    assert "graphviz-pure" in render.layout_command("medium")[1]
    assert svg_ids(d.svg) == {n.id for n in d.graph.nodes} | {e.id for e in d.graph.edges}


def test_a_graph_above_large_is_placed_by_us_and_keeps_every_id(monkeypatch):
    monkeypatch.setattr(render, "LARGE", 20)
    loss, W, U = rnn(8)
    d = draw(loss, {"W": W, "U": U})
    assert render.is_large(d.graph) and d.source.count('pos="') == len(d.graph.nodes)
    svg = d.svg
    assert svg_ids(svg) == {n.id for n in d.graph.nodes} | {e.id for e in d.graph.edges}
    ys = {n.kind: float(re.search(r'pos="[-\d.]+,([-\d.]+)!"', d.source.split(f"{n.id} [", 1)[1]).group(1))
          for n in d.graph.nodes if n.kind in ("output", "leaf")}
    assert ys["leaf"] > ys["output"]  # Graphviz's y points up: the output at the bottom


# --- never crash: walking a huge graph, then freeing it --------------------------------------

HUGE = r"""
import gc, sys
import torch
from helpers import draw
from helpers.walk import GraphError, walk, _anchors

def chain(n):
    x = torch.tensor(1.0, requires_grad=True); h = x; middle = []
    for i in range(n):
        h = h * 1.0001
        if i == n // 2:
            middle.append(h)
    return h, middle

h, middle = chain(100_000)
try:
    draw(h)
except GraphError as err:
    print("refused", "max_nodes=2,000" in str(err))
touched = sum(type(o).__name__ == "MulBackward0" for o in gc.get_objects())
print("touched", touched)
g = walk(h, max_nodes=None)
print("walked", len(g.nodes))
del g
del h
gc.collect()
middle.clear()  # the learner frees the rest later
gc.collect()
print("anchors left", len(_anchors))
h, _ = chain(50_000)
walk(h, max_nodes=None)
del h, _
print("freed", flush=True)
"""


@pytest.mark.timeout(600)
def test_no_helper_call_leaves_a_100k_node_graph_unfreeable(tmp_path):
    import subprocess

    script = tmp_path / "huge.py"
    script.write_text(HUGE)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600,
                          cwd=root, env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # -11: a segfault
    lines = dict((line + " ").split(" ", 1) for line in done.stdout.splitlines())
    assert lines["refused"] == "True "
    assert int(lines["touched"]) <= 2010  # counting stopped at the cap
    assert lines["walked"] == "100003 " and lines["anchors"] == "left 0 " and "freed" in lines


# --- module boxes --------------------------------------------------------------------------

class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 4)
        self.fc2 = torch.nn.Linear(4, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


def model_and_loss(hooks=False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), Block(), torch.nn.Linear(4, 1))
    if hooks:
        for m in (model[0], model[2], model[3]):
            m.register_full_backward_hook(lambda module, grad_input, grad_output: None)
    loss = model(torch.randn(2, 3)).pow(2).mean()
    return model, loss


def test_modules_draw_one_box_per_module_labelled_with_its_path(engine):
    model, loss = model_and_loss()
    d = draw(loss, modules=model)
    group = {n.name: n.group for n in d.graph.nodes if n.kind == "leaf"}
    assert group == {"0.weight": "0", "0.bias": "0", "2.fc1.weight": "2.fc1", "2.fc1.bias": "2.fc1",
                     "2.fc2.weight": "2.fc2", "2.fc2.bias": "2.fc2", "3.weight": "3", "3.bias": "3"}
    ops = [(n.name, n.group) for n in d.graph.nodes if n.kind == "fn" and n.name != "AccumulateGrad"]
    assert ops.count(("AddmmBackward0", "2.fc1")) == 1 and ("ReluBackward0", "2") in ops  # inside the Block
    assert ("ReluBackward0", "") in ops  # the Sequential's own ReLU: a module without parameters
    assert ("MeanBackward0", None) in ops and ("PowBackward0", None) in ops  # the loss is outside
    svg = d.svg
    clusters = re.findall(r'<g id="[^"]+" class="cluster ag&#45;module">\s*<title>[^<]*</title>\s*'
                          r'<path[^>]*/>\s*<text[^>]*>([^<]*)</text>', svg)
    assert sorted(clusters) == ["0 (Linear)", "2 (Block)", "2.fc1 (Linear)", "2.fc2 (Linear)",
                                "3 (Linear)", "Sequential"]
    assert svg_ids(svg) == {n.id for n in d.graph.nodes} | {e.id for e in d.graph.edges}


def test_hook_nodes_say_which_module_they_wrap(engine):
    model, loss = model_and_loss(hooks=True)
    d = draw(loss, modules=model)
    notes = sorted(n.note for n in d.graph.nodes if n.name == "BackwardHookFunctionBackward")
    assert notes == ["input of 2 (Block)", "input of 3 (Linear)", "output of 0 (Linear)",
                     "output of 2 (Block)", "output of 3 (Linear)"]  # layer 0's input needs no grad
    hook = next(n for n in d.graph.nodes if n.note == "input of 3 (Linear)")
    assert node_text(d.svg, hook.id) == "BackwardHookFunctionBackward input of 3 (Linear)"


def test_a_recording_names_hook_nodes_of_the_whole_model_and_of_a_module_without_parameters():
    # Module.__call__ makes the output hook Node after the forward hooks, outside the recorded
    # call: the recording's numbers place it all the same (the graph alone would name the
    # Linear next to the ReLU, or the model's last child).
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    for m in (model, model[1]):
        m.register_full_backward_hook(lambda module, grad_input, grad_output: None)
    with helpers.record_modules(model):
        out = model(torch.randn(5, 3, requires_grad=True))
    d = draw(out.sum(), modules=model)
    hooks = sorted((n.obj._sequence_nr(), n.group, n.note) for n in d.graph.nodes
                   if n.name == "BackwardHookFunctionBackward")
    assert [(g, note) for _, g, note in hooks] == [
        ("", "input of the model (Sequential)"), ("1", "input of 1 (ReLU)"),
        ("1", "output of 1 (ReLU)"), ("", "output of the model (Sequential)")]


class _Inner(torch.nn.Module):  # a hooked module whose output is a dict gets no output hook
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        return {"y": self.lin(x)}


class _Outer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = _Inner()

    def forward(self, x):
        return self.inner(x)["y"]


class _Query(torch.nn.Module):  # passes its own parameter to a hooked Linear
    def __init__(self):
        super().__init__()
        self.query = torch.nn.Parameter(torch.randn(5, 3))
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.lin(self.query) + x


def _late_hook():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.ReLU())
    return model, [model], [model[1]], True  # model[1] hooked only after the forward


@pytest.mark.parametrize("case, want", [
    # A hook added after the recorded forward made no Node in it.
    (_late_hook, ["input of the model (Sequential)", "output of the model (Sequential)"]),
    # Calls that end at one number: only the outer one made an output hook there.
    (lambda: (m := _Outer(), [m, m.inner], [], True),
     ["input of inner (_Inner)", "input of the model (_Outer)", "output of the model (_Outer)"]),
    # Calls that start at one number (the input needs no grad): only the inner one made an input hook.
    (lambda: (m := torch.nn.Sequential(_Query()), [m, m[0], m[0].lin], [], False),
     ["input of 0.lin (Linear)", "output of 0 (_Query)", "output of 0.lin (Linear)",
      "output of the model (Sequential)"]),
], ids=["hook-added-later", "shared-end", "shared-start"])
@pytest.mark.filterwarnings("ignore:For backward hooks to be called")
def test_a_recording_gives_a_shared_number_to_the_call_that_made_the_hook_node(case, want):
    torch.manual_seed(0)
    model, hooked, later, input_needs_grad = case()
    hook = lambda module, grad_input, grad_output: None
    for m in hooked:
        m.register_full_backward_hook(hook)
    with helpers.record_modules(model):
        out = model(torch.randn(5, 3, requires_grad=input_needs_grad))
    for m in later:
        m.register_full_backward_hook(hook)
    d = draw(out.sum(), modules=model)
    assert sorted(n.note for n in d.graph.nodes if n.name == "BackwardHookFunctionBackward") == want


def test_collapse_folds_a_module_into_one_box_and_keeps_the_lookups():
    model, loss = model_and_loss()
    full = draw(loss, modules=model)
    d = draw(loss, modules=model, collapse=["2"])
    box = next(n for n in d.graph.nodes if n.kind == "module")
    assert box.name == "2" and d.graph.modules["2"] == "Block"
    inner = model[2].fc1.weight
    assert d.id_of(inner) == box.id and d.graph.node_of(inner).kind == "module"
    assert any(t is inner for t in d.graph.leaves) and len(d.graph.fns) == len(full.graph.fns)
    assert len(d.graph.nodes) < len(full.graph.nodes)
    text = node_text(d.svg, box.id)
    # fc1 and fc2: AddmmBackward0, TBackward0 and 2 AccumulateGrad each; the ReLU between them.
    assert text.startswith("2 (Block) 9 backward Nodes inside") and "fc2.weight: 4×4 matrix" in text
    assert "fc1.bias = [-0.3241, -0.2302, -0.3493, -0.4683]" in text
    assert svg_ids(d.svg) == {n.id for n in d.graph.nodes} | {e.id for e in d.graph.edges}
    # The gradient out of the box still has its edge; edges inside the box are not drawn.
    addmm = {n.group: n.obj for n in full.graph.nodes if n.name == "AddmmBackward0"}
    assert d.graph.grad_edge(addmm["2.fc2"], 0) is None  # fc2's bias, inside the box
    into = [e for e in d.graph.edges if e.tail is box]
    suffix = lambda e, d: e.id[len(d.graph.prefix):]
    assert into and {suffix(e, d) for e in into} <= {suffix(x, full) for x in full.graph.edges}  # same ids
    assert draw(loss, modules=model, collapse=[model[2]]).graph.nodes[-1].name == "2"
    with pytest.raises(GraphError, match="'decoder' is not a module of the model"):
        draw(loss, modules=model, collapse=["decoder"])
    with pytest.raises(GraphError, match="collapse needs the model"):
        draw(loss, collapse=["2"])
    with pytest.raises(GraphError, match="modules must be the model"):
        draw(loss, modules={"a": 1})


# --- a shared machine: no predictable paths in the shared temp dir ----------------------------

IMPORT = r"""
import os, shutil, stat, sys
import helpers
from helpers import render
d = render._alias_dir
print("alias", d)
print("mode", oct(stat.S_IMODE(os.stat(d).st_mode)) if d else None)
print("dot", shutil.which("dot"))
"""


def test_two_users_importing_at_once_get_private_aliases_and_a_planted_one_is_ignored(tmp_path):
    import subprocess

    shared = tmp_path / "shared-tmp"
    shared.mkdir()
    # What another user could leave at the old predictable path: a directory with a `dot`.
    planted = shared / f"autograd-lab-dot-{os.getuid()}"
    planted.mkdir()
    (planted / "dot").write_text("#!/bin/sh\necho planted >&2\nexit 3\n")
    (planted / "dot").chmod(0o755)
    stale = shared / f"autograd-lab-dot-{os.getuid() + 1}"
    stale.write_text("a stale file where the old code made a directory")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PATH": os.path.dirname(sys.executable), "TMPDIR": str(shared), "PYTHONPATH": root}
    assert shutil.which("dot", path=env["PATH"]) is None  # only graphviz-pure: the alias is needed
    runs = [subprocess.Popen([sys.executable, "-c", IMPORT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=env, cwd=str(tmp_path)) for _ in range(2)]
    outs = [r.communicate(timeout=120) for r in runs]
    assert all(r.returncode == 0 for r in runs), outs
    found = [dict(line.split(" ", 1) for line in out.splitlines()) for out, _ in outs]
    dirs = [f["alias"] for f in found]
    assert dirs[0] != dirs[1] and all(os.path.dirname(d) == str(shared) for d in dirs)
    assert all(f["mode"] == "0o700" for f in found)
    assert all(f["dot"] == os.path.join(d, "dot") for f, d in zip(found, dirs))
    assert all(not os.path.exists(d) for d in dirs)  # removed when the process ends
    assert str(planted) not in " ".join(dirs)


def test_a_chain_of_nodes_is_drawn_straight():
    """A Node whose only consumer has no other input sits right below it (Graphviz ``group``):
    many small layers side by side keep each branch vertical, TanhBackward0 over AddmmBackward0."""
    import json
    torch.manual_seed(0)
    x = torch.randn(2, 4)
    d = draw(torch.stack([torch.tanh(torch.nn.Linear(4, 4)(x)) for _ in range(100)]).sum(), max_nodes=5000)
    assert render.size_of(d.graph) == "medium"
    pairs = [(e.head.id, e.tail.id) for e in d.graph.edges
             if e.kind == "grad" and e.head.name == "TanhBackward0" and e.tail.name == "AddmmBackward0"]
    command, _ = render.layout_command("medium")
    laid = json.loads(subprocess.run([*command, "-Tjson0"], input=d.source.encode(), capture_output=True,
                                     check=True, timeout=120).stdout)
    x_of = {o["id"]: float(o["pos"].split(",")[0]) for o in laid["objects"] if "pos" in o and "id" in o}
    assert len(pairs) == 100
    assert max(abs(x_of[a] - x_of[b]) for a, b in pairs) < 1, "a branch is bent"
