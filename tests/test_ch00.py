"""Chapter 00 (start here): the claims its prose makes, and what its cells show.

The prose says that ``AddBackward0`` passes the gradient it receives to each input unchanged
(it does not split it), that ``x`` gets no box because ``MulBackward0`` sends it nothing, that
``()`` is the shape of a 0-dimensional tensor (a box shows the value), and that the before/after pictures of ``y`` are
the same picture with new numbers.
"""
import ast
import re

import torch

from helpers import draw, trace_backward
from nbexec import SOLUTIONS, executed, output_of

NOTEBOOK = SOLUTIONS / "00_start_here.ipynb"


def _line():
    w = torch.tensor(3.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(2.0)
    return w, b, x, w * x + b


def test_add_backward_passes_the_same_gradient_to_each_input():
    w, b, x, y = _line()
    for seed in (1.0, 3.0):  # with a seed other than 1, "split" and "same" differ visibly
        trace = trace_backward(y, torch.tensor(seed), params={"w": w, "b": b})
        add = next(s for s in trace.steps if s.name == "AddBackward0")
        received = add.grad_outputs[0]
        assert [g.item() for g in add.grad_inputs] == [received.item()] * 2 == [seed] * 2
        assert trace.grad_of(w).item() == seed * x.item() and trace.grad_of(b).item() == seed


def test_x_has_no_edge_and_no_box():
    w, b, x, y = _line()
    mul = y.grad_fn.next_functions[0][0]
    assert type(mul).__name__ == "MulBackward0" and mul.next_functions[1] == (None, 0)
    kinds = [kind for kind, _ in draw(y, params={"w": w, "b": b}).ids.values()]
    assert kinds.count("leaf") == 2  # w and b only


def test_a_0_dim_tensor_has_shape_empty_tuple_and_its_box_shows_its_value():
    w, b, x, y = _line()
    assert tuple(w.shape) == () and w.dim() == 0 and tuple(torch.zeros(3).shape) == (3,)
    source = draw(y, params={"w": w, "b": b}).source
    assert "w\\l= 3\\l" in source and "b\\l= 1\\l" in source  # the prose: "its value (`= 3`)"
    v = torch.zeros(300, requires_grad=True)
    assert "vector of 300" in draw((v * 2).sum(), params={"v": v}).source
    text = output_of(NOTEBOOK, "w.dim()")
    assert "w.shape: ()   w.dim(): 0" in text and "torch.zeros(3).shape: (3,)" in text
    assert "x.requires_grad: False" in text


def test_the_predict_first_stepper_is_used_once_on_a_new_expression():
    cells = [c for c in executed(NOTEBOOK).cells if c.cell_type == "code" and "predict=True" in c.source]
    assert len(cells) == 1 and "(w + b) * x" in cells[0].source
    w, b, x, _ = _line()
    add = next(s for s in trace_backward((w + b) * x, params={"w": w, "b": b}).steps
               if s.name == "AddBackward0")  # the numbers the prose asks for
    assert [g.item() for g in add.grad_outputs] == [2.0] and [g.item() for g in add.grad_inputs] == [2.0, 2.0]


def _layout(svg):
    """{node number: (rank y, x)} of the boxes in one drawn graph (legend included)."""
    boxes = {}
    for name, points in re.findall(r'<g id="g\w+?(n\d+|L\w+)" class="node[^>]*>.*?points="([^"]+)"', svg, re.S):
        xy = [tuple(map(float, p.split(","))) for p in points.split()]
        boxes[name] = (round(sum(y for _, y in xy) / len(xy)), sum(x for x, _ in xy) / len(xy))
    return boxes


def test_the_before_and_after_pictures_keep_their_layout():
    svgs = [o.data["image/svg+xml"] for c in executed(NOTEBOOK).cells if c.cell_type == "code"
            and "show_grads=True" in c.source for o in c.outputs if "image/svg+xml" in o.get("data", {})]
    assert len(svgs) == 2
    before, after = map(_layout, svgs)
    assert before.keys() == after.keys() and any(k.startswith("L") for k in before)
    for k in before:  # same rank for every box, same left-to-right order within a rank
        assert before[k][0] == after[k][0], k
    order = lambda lay: sorted(lay, key=lambda k: (lay[k][0], lay[k][1]))
    assert order(before) == order(after)


def test_the_prose_no_longer_says_add_splits_the_gradient():
    text = "\n".join(c.source for c in executed(NOTEBOOK).cells if c.cell_type == "markdown")
    assert "splits the" not in text and "passes the gradient it receives to **each**" in text


def test_the_warm_up_does_not_rebind_the_names_cells_above_it_use():
    cells = [c for c in executed(NOTEBOOK).cells if c.cell_type == "code"]
    graded = [i for i, c in enumerate(cells) if c.metadata.get("nbgrader", {}).get("grade")]
    first_exercise = min(i for i, c in enumerate(cells) if "nbgrader" in c.metadata)
    assigned = set()

    def stores(node):  # names a cell binds in the notebook's namespace (not inside functions)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            assigned.add(node.id)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            for child in ast.iter_child_nodes(node):
                stores(child)

    for c in cells[first_exercise:graded[-1] + 1]:
        stores(ast.parse(c.source))
    assert not assigned & {"w", "x", "b", "y"}, sorted(assigned & {"w", "x", "b", "y"})




def test_the_chapter_table_lists_every_chapter_and_none_as_coming():
    import nbformat
    source = "\n".join(c.source for c in nbformat.read(NOTEBOOK, as_version=4).cells)
    chapters = sorted(p.name[:2] for p in SOLUTIONS.glob("[0-9][0-9]_*.ipynb") if p.name[:2] != "00")
    for number in chapters:
        assert f"\n| {number} | " in source, number
    assert f"`{chapters[-1]}_…`" in source and not re.search(r"\bcoming\b", source)
