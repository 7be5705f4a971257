"""``draw()``: the backward graph as a make_dot-style Graphviz diagram.

The picture speaks torchviz's visual language, so what learners see here is
what they will see with ``torchviz.make_dot`` outside the course:

- light blue: a leaf that requires grad (its ``.grad`` is filled by backward),
  named from ``params``;
- grey: a backward Node, named by its type (``MulBackward0``);
- orange: a tensor a Node saved for backward (``show_saved=True``);
- green: the output you called ``draw`` on.

What we add: stable, page-unique ids on every node and edge (``Diagram.id_of``),
leaf gradients in the box (``show_grads=True``), named intermediates, values of
small saved tensors, freed buffers (``mark_freed=True``), an optional legend, an
iterative walk, and a layout that is computed once and cached.

What we take from torchviz and what we own: its vocabulary (colours, Node
names by type, ``_saved_*`` attributes as saved tensors and attributes) is
kept as it is. Its code is not extended, because ``make_dot`` is one recursive
function that names nodes by ``id()`` and returns finished DOT: there is no
place to hook ids, values or depth into it. So the walk is ours (``walk.py``)
and so is the labelling below; raw ``make_dot`` stays in the chapters as the
tool learners will use outside the course.

The DOT text is built with the ``graphviz`` package. The layout is done by the
system Graphviz ``dot`` when it is on PATH, otherwise by the pip-installed
``graphviz-pure`` (a Rust port of dot). We call the layout command ourselves
because the ``graphviz`` package can only run a command named after the engine
(``dot``); when only ``graphviz-pure`` exists we also put a ``dot`` alias for it
on PATH so raw ``make_dot(...)`` displays work in the notebooks too.
"""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import graphviz

from .describe import MAX_VALUES, describe, shape_text
from .walk import GraphError, walk

FONT = "Courier"  # graphviz-pure has metrics for Courier but not for "monospace"
COLORS = {
    "leaf": "lightblue",
    "fn": "lightgrey",
    "saved": "orange",
    "freed": "white",
    "output": "darkolivegreen1",
    "base": "darkolivegreen3",
}
LEGEND = [
    ("leaf", "leaf tensor\n(requires grad)"),
    ("fn", "backward Node"),
    ("saved", "saved tensor"),
    ("output", "output"),
]
LAYOUT_TIMEOUT = 300  # seconds; max_nodes keeps real graphs far below this


# --- the layout command -------------------------------------------------------

def _pure_command():
    """Path of graphviz-pure: on PATH, or next to this Python (a venv not activated)."""
    found = shutil.which("graphviz-pure")
    if found:
        return found
    beside = Path(sys.executable).parent / "graphviz-pure"
    return str(beside) if beside.exists() else None


def layout_command():
    """``(command list, description)`` of the Graphviz we lay out with, or ``(None, why)``."""
    dot = shutil.which("dot")
    if dot and Path(dot).parent != _ALIAS_DIR:
        return [dot], f"system Graphviz ({dot})"
    pure = _pure_command()
    if pure:
        return [pure, "-Kdot"], f"graphviz-pure ({pure})"
    return None, (
        "No Graphviz found: install the system package (e.g. 'apt-get install graphviz') "
        "or run 'pip install graphviz-pure'."
    )


_ALIAS_DIR = Path(tempfile.gettempdir()) / f"autograd-lab-dot-{os.getuid() if hasattr(os, 'getuid') else 0}"


def alias_dot_to_pure():
    """Make ``dot`` on PATH run graphviz-pure when no system Graphviz exists.

    Returns True when the alias is in place (or not needed because ``dot`` exists).
    """
    if shutil.which("dot"):
        return True
    pure = _pure_command()
    if not pure:
        return False
    _ALIAS_DIR.mkdir(exist_ok=True)
    link = _ALIAS_DIR / "dot"
    if not link.exists():
        link.symlink_to(pure)
    os.environ["PATH"] = f"{_ALIAS_DIR}{os.pathsep}{os.environ.get('PATH', '')}"
    return True


def run_layout(source, fmt="svg"):
    """Lay out DOT ``source`` and return the rendered bytes."""
    cmd, what = layout_command()
    if cmd is None:
        raise RuntimeError(what)
    try:
        done = subprocess.run(
            cmd + [f"-T{fmt}"], input=source.encode(), capture_output=True, timeout=LAYOUT_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"Graphviz took more than {LAYOUT_TIMEOUT} s; draw a smaller part of the graph."
        ) from None
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed: {done.stderr.decode(errors='replace').strip()[:500]}")
    return done.stdout


# --- labels and DOT -----------------------------------------------------------

def _tensor_label(node, grad_text=None):
    lines = [node.name] if node.name else []
    lines.append(shape_text(node.obj))
    if grad_text is not None:
        lines.append(f"grad {grad_text}")
    return "\n".join(lines)


def _fn_label(node, grad_text=None):
    head = [node.name]
    if node.result is not None:  # a tensor the learner named, e.g. params={"h": h}
        name, t = node.result
        head.append(f"-> {name} {shape_text(t)}")
        if grad_text is not None:
            head.append(f"grad {grad_text}")
    if not node.attrs:
        return "\n".join(head)
    width = max(len(k) for k in node.attrs)
    rows = [f"{k:<{width}}: {_short(v)}" for k, v in node.attrs.items()]
    rule = "-" * max(*(len(h) for h in head), *(len(r) for r in rows))
    return "\n".join([*head, rule, *rows])


def _short(value, limit=40):
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _saved_label(node, same_as):
    lines = [node.name, shape_text(node.obj)]
    if node.obj.numel() <= MAX_VALUES:  # small saved tensors show their values
        lines.append(f"= {describe(node.obj)}")
    if same_as is not None:
        lines.append(f"same tensor as {same_as.name or same_as.kind}")
    return "\n".join(lines)


def labels(graph, grad_texts=None):
    """{node id: label text} for every node of a walked ``Graph``."""
    same = {e.tail.id: e.head for e in graph.edges if e.kind == "same"}
    grad_texts = grad_texts or {}
    out = {}
    for node in graph.nodes:
        if node.kind == "fn":
            out[node.id] = _fn_label(node, grad_texts.get(node.id))
        elif node.kind == "saved":
            out[node.id] = _saved_label(node, same.get(node.id))
        elif node.kind == "freed":
            out[node.id] = f"{node.name}\nfreed"
        else:
            out[node.id] = _tensor_label(node, grad_texts.get(node.id) if node.kind == "leaf" else None)
    return out


EDGE_STYLE = {
    "saved": {"dir": "none", "class": "ag-saved"},
    "freed": {"dir": "none", "style": "dashed", "class": "ag-saved"},
    # "same" only points out identity; it must not pull the layout around.
    "same": {"dir": "none", "style": "dashed", "color": "darkorange", "constraint": "false",
             "class": "ag-same"},
    "view": {"style": "dotted", "class": "ag-view"},
}


def to_dot(graph, *, grad_texts=None, legend=False):
    """DOT source for a walked ``Graph``. ``grad_texts`` maps leaf id -> gradient text."""
    # Defaults are those of backward Nodes and gradient edges, the most common
    # kinds, so most lines carry only their id and label.
    dot = graphviz.Digraph(
        name=graph.prefix,
        graph_attr={"id": graph.prefix, "rankdir": "TB", "bgcolor": "white"},
        node_attr={
            "style": "filled",
            "shape": "box",
            "fontsize": "10",
            "height": "0.2",
            "fontname": FONT,
            "fillcolor": COLORS["fn"],
            "class": "ag-fn",
        },
        edge_attr={"class": "ag-grad"},
    )
    texts = labels(graph, grad_texts)
    for node in graph.nodes:
        # "\l" ends a left-aligned line (make_dot asks for align=left, which dot ignores).
        text = texts[node.id].replace("\n", "\\l") + "\\l"
        if node.kind == "fn":
            dot.node(node.id, text, id=node.id)
        elif node.kind == "freed":  # an empty dashed box where the buffer was
            dot.node(node.id, text, id=node.id, fillcolor=COLORS["freed"], style="dashed,filled",
                     fontcolor="grey40", color="grey50", **{"class": "ag-freed"})
        else:
            dot.node(node.id, text, id=node.id, fillcolor=COLORS[node.kind], **{"class": f"ag-{node.kind}"})
    for e in graph.edges:
        kind = "freed" if e.kind == "saved" and e.tail.kind == "freed" else e.kind
        dot.edge(e.tail.id, e.head.id, id=e.id, **EDGE_STYLE.get(kind, {}))
    if legend:
        _add_legend(dot, graph.prefix)
    return dot.source


def _add_legend(dot, prefix):
    with dot.subgraph(name=f"cluster_{prefix}legend") as box:
        box.attr(id=f"{prefix}L", label="legend", fontname=FONT, fontsize="10", style="rounded", color="grey")
        for kind, text in LEGEND:
            box.node(f"{prefix}L{kind}", text.replace("\n", "\\l") + "\\l",
                     id=f"{prefix}L{kind}", fillcolor=COLORS[kind])
        names = [f"{prefix}L{kind}" for kind, _ in LEGEND]
        for a, b in zip(names, names[1:]):
            box.edge(a, b, style="invis")


# --- the Diagram --------------------------------------------------------------

class Diagram:
    """A drawn backward graph. Displays as SVG in Jupyter.

    - ``source``: the DOT text; ``svg``: the laid-out picture (computed once).
    - ``save(path)``: ``.svg``, ``.dot``/``.gv``, or any format Graphviz writes (``.png``, ``.pdf``).
    - ``id_of(obj)``: the id of an autograd Node or a leaf/output tensor in the SVG.
    - ``edge_id(fn, slot)``: the id of the edge along which ``fn`` sends the gradient of input ``slot``.
    - ``graph``: the walked ``Graph`` (nodes, edges, lookups).
    """

    def __init__(self, graph, source):
        self.graph = graph
        self.source = source
        self._svg = None

    @property
    def svg(self):
        if self._svg is None:
            self._svg = run_layout(self.source, "svg").decode()
        return self._svg

    def id_of(self, obj):
        return self.graph.node_of(obj).id

    def edge_id(self, fn, slot):
        edge = self.graph.grad_edge(fn, slot)
        if edge is None:
            raise KeyError(f"{type(fn).__name__} has no drawn input number {slot}.")
        return edge.id

    @property
    def ids(self):
        """``{id: (kind, name)}`` for every drawn node."""
        return {n.id: (n.kind, n.name) for n in self.graph.nodes}

    def save(self, path):
        path = Path(path)
        fmt = path.suffix.lstrip(".").lower()
        if not fmt:
            raise ValueError(f"Give the file a suffix that names its format, e.g. {path.name}.svg.")
        if fmt in ("dot", "gv"):
            path.write_text(self.source)
        elif fmt == "svg":
            path.write_text(self.svg)
        else:
            path.write_bytes(run_layout(self.source, fmt))
        return path

    def _repr_svg_(self):
        return self.svg

    def __repr__(self):
        kinds = [n.kind for n in self.graph.nodes]
        counts = [(kinds.count("fn"), "backward node", "backward nodes"),
                  (kinds.count("leaf"), "leaf", "leaves"), (len(self.graph.edges), "edge", "edges")]
        text = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts)
        return f"<Diagram: {text}>"


def draw(root, params=None, *, show_saved=False, show_attrs=False, show_grads=False,
         mark_freed=False, legend=False, max_nodes=2000):
    """Draw the backward graph of ``root`` (a tensor, or a tuple of tensors).

    ``params``: ``{name: tensor}`` (or ``model.named_parameters()``) to name tensors:
    leaves in their own box, intermediate results inside the Node that made them.
    ``show_saved``: add the tensors each Node saved for backward (orange).
    ``show_attrs``: list each Node's non-tensor saved attributes (dims, sizes...).
    ``show_grads``: write each leaf's current ``.grad`` in its box.
    ``mark_freed``: after a ``backward()`` that freed the saved tensors, draw each
    freed slot as an empty dashed box instead of refusing.
    ``legend``: add a colour key. ``max_nodes``: refuse larger graphs, with their size.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> draw(w * 3 + 1, {"w": w})          # doctest: +SKIP
    """
    graph = walk(root, params, show_saved=show_saved, show_attrs=show_attrs,
                 mark_freed=mark_freed, max_nodes=max_nodes)
    grads = None
    if show_grads:
        grads = {n.id: describe(n.obj.grad) for n in graph.nodes if n.kind == "leaf"}
        # Named intermediates show a gradient only if they kept one (retain_grad()).
        grads.update({n.id: describe(n.result[1].grad) for n in graph.nodes
                      if n.result is not None and n.result[1].retains_grad})
    return Diagram(graph, to_dot(graph, grad_texts=grads, legend=legend))


__all__ = ["Diagram", "draw", "GraphError", "layout_command", "alias_dot_to_pure", "run_layout"]

# Raw torchviz.make_dot(...) displays need a `dot` command; provide it pip-only.
alias_dot_to_pure()
