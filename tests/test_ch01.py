"""Chapter 01's claims about PyTorch itself, checked directly (they can change between versions).

The notebook states these in prose; the generic notebook tests only check that its cells run.
"""
import sys

import pytest
import torch
import torch.nn as nn
from torchviz import make_dot

from helpers import trace_backward
from helpers.walk import walk


def test_number_suffix_tells_apart_the_pow_overloads():
    t = torch.tensor([1.0, 2.0], requires_grad=True)
    names = [type(e.grad_fn).__name__ for e in (t ** 2, t ** t, 2 ** t)]
    assert names == ["PowBackward0", "PowBackward1", "PowBackward2"]


def test_accumulate_grad_name_and_variable():
    w = torch.tensor(3.0, requires_grad=True)
    acc = (w * 2).grad_fn.next_functions[0][0]
    assert type(acc).__name__ == "AccumulateGrad" and acc.variable is w
    assert acc.name() == "torch::autograd::AccumulateGrad"


def test_split_outputs_are_numbered_in_next_functions():
    a = torch.randn(4, requires_grad=True)
    first, second = a.split(2)
    pairs = (first * second).grad_fn.next_functions
    assert pairs[0][0] is pairs[1][0] and [n for _, n in pairs] == [0, 1]


def test_mul_saves_only_what_backward_needs():
    w, x = torch.tensor(3.0, requires_grad=True), torch.tensor(2.0)
    mul = (w * x).grad_fn
    assert mul._saved_self is None and mul._saved_other is x


def test_first_addmm_saves_mat2_only_when_the_input_needs_grad():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))

    def first_addmm(inputs):  # the AddmmBackward0 of nn.Linear(3, 4): its mat2 is weight.T, (3, 4)
        fns = walk(model(inputs).sum()).fns
        found = [fn for fn in fns
                 if type(fn).__name__ == "AddmmBackward0" and tuple(fn._saved_mat2_sym_sizes) == (3, 4)]
        assert len(found) == 1
        return found[0]

    assert first_addmm(torch.randn(2, 3))._saved_mat2 is None
    assert first_addmm(torch.randn(2, 3, requires_grad=True))._saved_mat2 is not None


def test_engine_runs_b_accumulate_grad_before_mul():
    w, b = torch.tensor(3.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    loss = (w * torch.tensor(2.0) + b - torch.tensor(10.0)) ** 2
    trace = trace_backward(loss, params={"w": w, "b": b})
    names = [s.name for s in trace.steps]
    assert names.index("AccumulateGrad") < names.index("MulBackward0")
    assert trace.grad_of(w).item() == -12.0 and trace.grad_of(b).item() == -6.0


def test_make_dot_recursion_fails_on_a_graph_1000_deep():
    if sys.getrecursionlimit() > 1000:
        pytest.skip("the recursion limit was raised; the notebook runs with the default 1000")
    deep = torch.tensor(1.0, requires_grad=True)
    for _ in range(1000):
        deep = deep * 0.999
    with pytest.raises(RecursionError):
        make_dot(deep)


def test_engine_runs_the_ready_node_created_last_first():
    # The notebook says: among the Nodes ready to run, the engine picks the one created last.
    for first, second in (("sin", "exp"), ("exp", "sin")):
        w = torch.tensor(3.0, requires_grad=True)
        out = getattr(w, first)() + getattr(w, second)()
        names = [s.name for s in trace_backward(out).steps]
        assert names.index(f"{second.capitalize()}Backward0") < names.index(f"{first.capitalize()}Backward0")


def test_pow_by_a_number_has_one_next_functions_entry():
    w = torch.tensor(3.0, requires_grad=True)
    assert len((w ** 2).grad_fn.next_functions) == 1
    assert (w * 2).grad_fn.next_functions[1] == (None, 0)


# ------------------------------------------------ next_functions: differentiable inputs only

def test_next_functions_has_no_entry_for_an_index_or_a_condition():
    v = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    picked = v.index_select(0, torch.tensor([2, 0]))
    assert len(picked.grad_fn.next_functions) == 1
    assert picked.grad_fn.next_functions[0][0].variable is v
    chosen = torch.where(torch.tensor([True, False, True]), v, torch.zeros(3))
    entries = chosen.grad_fn.next_functions
    assert len(entries) == 2 and entries[0][0].variable is v and entries[1] == (None, 0)


def test_a_comparison_records_no_node_although_its_input_requires_grad():
    # The prose: "each differentiable operation ... records a backward Node"; `v > 1.5` records none.
    v = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    for result in (v > 1.5, v == 2.0, v.argmax()):
        assert result.grad_fn is None and not result.requires_grad


# ------------------------------------------------ engine order: one device; GraphRoot

def _engine_ran(fn):
    from torch.profiler import profile
    with profile() as prof:
        fn()
    return [e.name.split(": ")[-1] for e in prof.events() if "evaluate_function" in e.name]


def test_a_backward_from_several_roots_runs_a_graph_root_the_trace_omits():
    u = torch.tensor(3.0, requires_grad=True)
    r1, r2 = u * 2, u.exp()
    assert _engine_ran(lambda: torch.autograd.backward([r1, r2], retain_graph=True)) == [
        "torch::autograd::GraphRoot", "ExpBackward0", "MulBackward0", "torch::autograd::AccumulateGrad"]
    assert [s.name for s in trace_backward((r1, r2))] == ["ExpBackward0", "MulBackward0", "AccumulateGrad"]
    r = u * 2  # one root: the engine starts at its grad_fn, no GraphRoot
    assert _engine_ran(lambda: r.backward()) == ["MulBackward0", "torch::autograd::AccumulateGrad"]


# ------------------------------------------------ the *_sym_* rows of show_attrs

def test_sym_rows_are_shapes_kept_only_when_needed():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    out = model(torch.randn(2, 3)).sum()
    assert tuple(out.grad_fn._saved_self_sym_sizes) == (2, 1)
    first = [fn for fn in walk(out).fns if type(fn).__name__ == "AddmmBackward0"
             and tuple(fn._saved_mat2_sym_sizes) == (3, 4)]
    assert tuple(first[0]._saved_mat1_sym_strides) == ()  # inputs needs no gradient...
    out = model(torch.randn(2, 3, requires_grad=True)).sum()
    first = [fn for fn in walk(out).fns if type(fn).__name__ == "AddmmBackward0"
             and tuple(fn._saved_mat2_sym_sizes) == (3, 4)]
    assert tuple(first[0]._saved_mat1_sym_strides) == (3, 1)  # ...and now it does


# ------------------------------------------------ what the notebook's cells show

def _notebook():
    from nbexec import SOLUTIONS
    return SOLUTIONS / "01_computational_graphs.ipynb"


def test_the_notebook_shows_the_graph_root_and_the_index_entries():
    from nbexec import output_of
    assert "['torch::autograd::GraphRoot', 'ExpBackward0', 'MulBackward0'" in output_of(_notebook(), "profile()")
    text = output_of(_notebook(), "index_select").splitlines()
    assert text[0].count("AccumulateGrad") == 1 and "None" not in text[0]
    assert text[1] == "mask: tensor([False,  True,  True])   grad_fn: None   requires_grad: False"
    assert text[2].count("AccumulateGrad") == 1 and "(None, 0)" in text[2]
    assert text[3].startswith("<MulBackward0") and "(None, 0)" in text[3]      # v * 2
    assert text[4].startswith("<PowBackward0") and "None" not in text[4]       # v ** 2


def test_leaf_values_print_as_written():
    from nbexec import executed, output_of
    assert "AccumulateGrad  -> leaf [0.1 0.1]" in output_of(_notebook(), "probe = torch.tensor(")
    for c in executed(_notebook()).cells:
        for o in c.get("outputs", []):
            assert "USDT" not in o.get("text", "") + o.get("data", {}).get("text/plain", "")


def test_the_predict_first_stepper_is_used_once_and_its_numbers_are_the_ones_asked_for():
    from nbexec import executed
    cells = [c for c in executed(_notebook()).cells if c.cell_type == "code" and "predict=True" in c.source]
    assert len(cells) == 1 and "(w - b) ** 3" in cells[0].source
    w, b = torch.tensor(3.0, requires_grad=True), torch.tensor(1.0, requires_grad=True)
    steps = {s.name: s for s in trace_backward((w - b) ** 3, params={"w": w, "b": b}).steps}
    assert [g.item() for g in steps["PowBackward0"].grad_inputs] == [12.0]   # 3 (w - b)²
    assert [g.item() for g in steps["SubBackward0"].grad_inputs] == [12.0, -12.0]


def test_modules_grouping_puts_each_node_where_the_prose_says():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    out = model(torch.randn(2, 3)).sum()
    groups = {}
    for n in walk(out, modules=model).nodes:
        groups.setdefault(n.name or type(n.obj).__name__, []).append(n.group)
    assert groups["ReluBackward0"] == [""]            # no box of its own: in the Sequential
    assert groups["SumBackward0"] == [None]           # the .sum() we added: outside the model
    assert sorted(groups["AddmmBackward0"]) == ["0", "2"]
    assert groups["0.weight"] == ["0"] and groups["2.bias"] == ["2"]


def test_the_recorded_forward_gives_the_relu_its_box():
    import re
    from nbexec import executed
    cells = [c for c in executed(_notebook()).cells if c.cell_type == "code" and "record_modules(model)" in c.source]
    assert len(cells) == 1
    svg = next(o["data"]["image/svg+xml"] for o in cells[0].outputs if "image/svg+xml" in o.get("data", {}))
    boxes = dict((label, path) for path, label in re.findall(
        r'class="cluster ag&#45;module">\s*<title>[^<]*</title>\s*<path[^>]*\bd="([^"]+)"[^>]*/>\s*'
        r'<text[^>]*>([^<]*)</text>', svg))
    assert sorted(boxes) == ["0 (Linear)", "1 (ReLU)", "2 (Linear)", "Sequential"]
    # The clusters are drawn apart from the nodes: "inside" means the node's box lies within the cluster's.
    relu = re.findall(r'class="node ag&#45;fn">\s*<title>[^<]*</title>\s*<polygon[^>]*points="([^"]+)"'
                      r'[^>]*/>\s*<text[^>]*>ReluBackward0</text>', svg)
    assert len(relu) == 1

    def bounds(text):
        xy = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", text)]
        return min(xy[0::2]), min(xy[1::2]), max(xy[0::2]), max(xy[1::2])

    (x0, y0, x1, y1), (bx0, by0, bx1, by1) = bounds(relu[0]), bounds(boxes["1 (ReLU)"])
    assert bx0 <= x0 and x1 <= bx1 and by0 <= y0 and y1 <= by1
