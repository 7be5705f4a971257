"""``draw()``: the backward graph as a make_dot-style Graphviz diagram.

The picture speaks torchviz's visual language, so what learners see here is
what they will see with ``torchviz.make_dot`` outside the course:

- light blue: a leaf that requires grad (its ``.grad`` is filled by backward),
  named from ``params``;
- grey: a backward Node, named by its type (``MulBackward0``);
- orange: a tensor a Node saved for backward (``show_saved=True``);
- green: the output you called ``draw`` on.

What we add: stable, page-unique ids on every node and edge (``Diagram.id_of``),
a leaf's value in its box when it is small (its shape in words when it is not)
and its ``.grad`` once it has one, named intermediates, values of small saved
tensors, freed buffers (``mark_freed=True``), one box per ``nn.Module``
(``modules=model``, optionally ``collapse=[...]``), an optional legend, an
iterative walk, and a layout that is computed once and cached.

What we take from torchviz and what we own: its vocabulary (colours, Node
names by type, ``_saved_*`` attributes as saved tensors and attributes) is
kept as it is. Its code is not extended, because ``make_dot`` is one recursive
function that names nodes by ``id()`` and returns finished DOT: there is no
place to hook ids, values or depth into it. So the walk is ours (``walk.py``)
and so is the labelling below; raw ``make_dot`` stays in the chapters as the
tool learners will use outside the course.

The DOT text is built with the ``graphviz`` package and laid out by Graphviz:
the system ``dot`` when it is installed and works, otherwise the pip-installed
``graphviz-pure`` (a Rust port of Graphviz's dot). How the layout is kept fast
(figures from ``benchmarks/draw.py``, 2-core machine):

- ``newrank=true``: the one-pass ranking of newer Graphviz. It cut a 2,000-op
  chain from 0.34 s to 0.10 s of CPU with system dot 2.43, and lets module
  clusters share ranks.
- Long edges from a shared leaf are cut in the walk (``walk._cut_long_edges``):
  a 60-step RNN went from > 100 s (system dot; 52 s graphviz-pure) to the time
  of a same-size MLP. ``constraint=false`` on those edges alone still took 45 s.
- Medium graphs (``MEDIUM`` to ``LARGE`` nodes) go to graphviz-pure; from
  ``ROUGH`` nodes on with ``nslimit=0.02`` (network simplex for x coordinates
  stops after 2 % of the node count in iterations). dot 2.43 (Debian's) builds its first spanning tree
  in quadratic time, which no nslimit shortens: a 2,000-node residual MLP took
  2.9 s of CPU with system dot, 2.1 s with graphviz-pure, 0.66 s with
  graphviz-pure and nslimit, drawn much the same; at 1,000 nodes 0.55 s against
  0.21 s. But a stopped network simplex leaves parents off-centre over their
  inputs: on a wide graph, one branch's Nodes then lie thousands of pixels
  apart, and the stepper's view jumps at every step. Below ``ROUGH`` nodes the
  full pass costs little (the 1,000-node wide MLP of benchmarks/stepper.py
  lays out in the same 0.3 s either way) and keeps branches straight.
  Small graphs (the chapters') keep the system dot's reference layout.
- Large graphs (more than ``LARGE`` nodes, i.e. drawn with a raised
  ``max_nodes``) are not laid out by dot at all. dot's x-coordinate pass (network
  simplex) grows much faster than the graph: on a 5,000-node MLP graph it took
  5-9 s of CPU in both engines even with ``nslimit`` cutting it to 50
  iterations, and a 20,000-node one did not finish in 120 s. No other Graphviz
  engine draws a layered picture. So above ``LARGE`` we place the nodes
  ourselves (``_positions``: ranks by longest path to the output, order by
  barycenter sweeps, the simplest layered layout) and Graphviz only draws them
  where we put them (``neato -n2``, straight edges): 20,000 nodes in about a
  second of CPU. The picture keeps every id and class, so the stepper works
  the same; module boxes are left out at that size.

We call the layout command ourselves because the ``graphviz`` package can only
run a command named after the engine (``dot``). When only graphviz-pure exists
we also put a ``dot`` alias for it on PATH, so raw ``make_dot(...)`` displays
work in the notebooks too; the alias lives in a private directory that
``tempfile.mkdtemp`` makes for this process alone (mode 0700, random name),
never at a predictable path in the shared temp dir.
"""
import atexit
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import graphviz
import torch

from .describe import describe, shape_text, value_text
from .walk import GraphError, walk

FONT = "Courier"  # graphviz-pure has metrics for Courier but not for "monospace"
COLORS = {
    "leaf": "lightblue",
    "fn": "lightgrey",
    "saved": "orange",
    "freed": "white",
    "output": "darkolivegreen1",
    "base": "darkolivegreen3",
    "ref": "lightgrey",
    "module": "lightyellow",
}
LEGEND = [
    ("leaf", "leaf tensor\n(requires grad)"),
    ("fn", "backward Node"),
    ("saved", "saved tensor"),
    ("output", "output"),
]
LAYOUT_TIMEOUT = 300  # seconds; max_nodes keeps real graphs far below this

# Graph sizes (drawn nodes), measured in benchmarks/draw.py (see the module docstring):
# up to MEDIUM the system dot with its defaults; up to LARGE graphviz-pure (with
# ROUGH_ATTRS from ROUGH nodes on); above LARGE our own placement, drawn by Graphviz.
MEDIUM = 600
ROUGH = 1500  # from here on medium graphs get ROUGH_ATTRS
ROUGH_ATTRS = {"nslimit": "0.02"}
LARGE = 2500

# Wall-clock time of a whole draw(...).svg (walk, DOT text, layout), rounded up,
# from benchmarks/draw.py on a quiet 2-core machine: 0.44-0.59 s for the 2,000-node
# graphs, 2.5-3.7 s for the 20,000-node ones. The size message quotes them.
# Update them with the benchmark's figures.
LAYOUT_SECONDS = [(2000, 1), (20000, 4)]


# --- the layout command -------------------------------------------------------

def _pure_command():
    """Path of graphviz-pure: on PATH, or next to this Python (a venv not activated)."""
    found = shutil.which("graphviz-pure")
    if found:
        return found
    beside = Path(sys.executable).parent / "graphviz-pure"
    return str(beside) if beside.exists() else None


_alias_dir = None  # our private directory with a `dot` alias for graphviz-pure, once made
_system_failed = None  # why the system `dot` failed in this process (then graphviz-pure lays out)


def _is_pure(path):
    """Is the command at ``path`` graphviz-pure (maybe under the name `dot`, through an alias)?"""
    if path is None:
        return False
    pure = _pure_command()
    real = os.path.realpath(path)
    return (pure is not None and real == os.path.realpath(pure)) or Path(real).name.startswith("graphviz-pure")


def _system_dot():
    dot = shutil.which("dot")
    return None if dot is None or _is_pure(dot) else dot


def layout_command(size="small"):
    """``(command list, description)`` of the Graphviz we lay out with, or ``(None, why)``.

    ``size`` (see ``size_of``): "small" graphs go to the system Graphviz when it
    is installed and has not failed in this process (the reference layout), else
    to graphviz-pure; "medium" ones to graphviz-pure first (faster there, see
    ``MEDIUM``); "large" ones are already placed and only drawn (``neato -n2``),
    fastest by the system Graphviz.
    """
    return (_commands(size) or [(None, (
        "No Graphviz found: install the system package (e.g. 'apt-get install graphviz') "
        "or run 'pip install graphviz-pure'."))])[0]


def _commands(size="small"):
    """The usable layout commands for a graph of this size, best first."""
    dot, pure = _system_dot(), _pure_command()
    engine = ["-Kneato", "-n2"] if size == "large" else []
    system = [([dot, *engine], f"system Graphviz ({dot})")] if dot else []
    pip = [([pure, *(engine or ["-Kdot"])], f"graphviz-pure ({pure})")] if pure else []
    if _system_failed is not None or size == "medium":
        return pip + system
    return system + pip


def alias_dot_to_pure():
    """Make ``dot`` on PATH run graphviz-pure when no system Graphviz exists.

    The alias goes in a directory made for this process by ``tempfile.mkdtemp``
    (mode 0700, unpredictable name, removed at exit): another user cannot plant
    a program there, and two users importing the helpers never share it.
    Returns True when the alias is in place (or not needed because ``dot`` exists).
    """
    global _alias_dir
    found = shutil.which("dot")
    if found and (not _is_pure(found) or _alias_dir is not None and Path(found).parent == Path(_alias_dir)):
        return True
    pure = _pure_command()
    if not pure:
        return bool(found)
    if _alias_dir is None:
        folder = tempfile.mkdtemp(prefix="autograd-lab-dot-")
        atexit.register(shutil.rmtree, folder, True)
        name = "dot.exe" if os.name == "nt" else "dot"
        try:
            os.symlink(pure, os.path.join(folder, name))
        except OSError:  # no symlinks (Windows without the privilege): a copy works as well
            shutil.copy2(pure, os.path.join(folder, name))
        _alias_dir = folder
    path = os.environ.get("PATH", "")
    if path.split(os.pathsep)[0] != _alias_dir:
        os.environ["PATH"] = f"{_alias_dir}{os.pathsep}{path}"
    return True


def _run(cmd, what, source, fmt):
    try:
        done = subprocess.run(cmd + [f"-T{fmt}"], input=source.encode(), capture_output=True,
                              timeout=LAYOUT_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(
            f"Graphviz took more than {LAYOUT_TIMEOUT} s; draw a smaller part of the graph."
        ) from None
    except OSError as err:
        return None, f"{what} could not run: {err}"
    if done.returncode != 0 or not done.stdout:
        return None, f"{what} failed: {done.stderr.decode(errors='replace').strip()[:500]}"
    return done.stdout, None


def run_layout(source, fmt="svg", size="small"):
    """Lay out DOT ``source`` and return the rendered bytes.

    If the system ``dot`` fails (a broken install, missing plugins), graphviz-pure
    lays it out instead, and does so for as long as this Python process runs.
    """
    global _system_failed
    commands = _commands(size)
    if not commands:
        raise RuntimeError(layout_command(size)[1])
    errors = []
    for cmd, what in commands:
        out, error = _run(cmd, what, source, fmt)
        if out is not None:
            if errors and cmd[0] != _system_dot() and any(e.startswith("system") for e in errors):
                _system_failed = next(e for e in errors if e.startswith("system"))
            return out
        errors.append(error)
    pure_error = next((e for e in errors if e.startswith("graphviz-pure")), None)
    formats = _pure_formats(pure_error)
    if formats and fmt not in formats and len(errors) == 1:
        raise ValueError(
            f"The pip-only layout engine (graphviz-pure) cannot write .{fmt} files; it writes "
            f"{', '.join(formats)}. Save as .svg or .png, or install the system Graphviz "
            "(e.g. 'apt-get install graphviz') for PDF and the other formats."
        )
    raise RuntimeError("; ".join(errors))


def _pure_formats(error):
    """The output formats graphviz-pure lists when it refuses one."""
    found = re.search(r"Use one of: ([\w .-]+)", error or "")
    return found.group(1).split() if found else []


# --- labels and DOT -----------------------------------------------------------

def _tensor_label(node, grad_text=None):
    lines = [node.name] if node.name else []
    lines.append(value_text(node.obj))
    if grad_text is not None:
        lines.append(f"grad {grad_text}")
    return "\n".join(lines)


def _fn_label(node, grad_text=None, rule=None):
    head = [node.name]
    if node.note:  # e.g. a backward-hook Node: which module's input or output it wraps
        head.append(node.note)
    if node.result is not None:  # a tensor the learner named, e.g. params={"h": h}
        name, t = node.result
        head.append(f"-> {name} {shape_text(t)}")
        if grad_text is not None:
            head.append(f"grad {grad_text}")
    head.extend(rule or ())  # show_formulas: the Node's local derivative rule, one line per input
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
    lines = [node.name, value_text(node.obj)]
    if same_as is not None:
        lines.append(f"same tensor as {same_as.name or same_as.kind}")
    return "\n".join(lines)


def _module_label(node, graph):
    kind = graph.modules.get(node.name, type(node.obj).__name__)
    head = f"{node.name} ({kind})" if node.name else kind
    fns = sum(m.kind == "fn" for m in node.members)
    leaves = [m for m in node.members if m.kind == "leaf"]
    lines = [head, f"{fns} backward Node{'s' if fns != 1 else ''} inside"]
    for leaf in leaves[:4]:  # named from inside the module: "fc2.bias", not "block.fc2.bias"
        name = leaf.name[len(node.name) + 1:] if node.name and leaf.name.startswith(node.name + ".") else leaf.name
        value = value_text(leaf.obj)
        lines.append(f"{name or 'leaf'} {value}" if value.startswith("= ") else f"{name or 'leaf'}: {value}")
    if len(leaves) > 4:
        lines.append(f"... and {len(leaves) - 4} more leaves")
    return "\n".join(lines)


def labels(graph, grad_texts=None, rules=None):
    """{node id: label text} for every node of a walked ``Graph``."""
    same = {e.tail.id: e.head for e in graph.edges if e.kind == "same"}
    grad_texts = grad_texts or {}
    rules = rules or {}
    out = {}
    for node in graph.nodes:
        if node.kind == "fn":
            out[node.id] = _fn_label(node, grad_texts.get(node.id), rules.get(node.id))
        elif node.kind == "saved":
            out[node.id] = _saved_label(node, same.get(node.id))
        elif node.kind == "freed":
            out[node.id] = f"{node.name}\nfreed"
        elif node.kind == "ref":  # a shared leaf's AccumulateGrad, drawn once, above all its uses
            out[node.id] = f"{node.name}\nshared: drawn once, above"
        elif node.kind == "module":
            out[node.id] = _module_label(node, graph)
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
NODE_STYLE = {
    "freed": {"style": "dashed,filled", "fontcolor": "grey40", "color": "grey50"},
    "ref": {"style": "dashed,filled"},
    "module": {"style": "rounded,filled"},
}


def to_dot(graph, *, grad_texts=None, legend=False, rules=None):
    """DOT source for a walked ``Graph``. ``grad_texts`` maps leaf id -> gradient text,
    ``rules`` a backward Node's id -> the lines of its derivative rule."""
    # Defaults are those of backward Nodes and gradient edges, the most common
    # kinds, so most lines carry only their id and label.
    graph_attr = {"id": graph.prefix, "rankdir": "TB", "bgcolor": "white", "newrank": "true"}
    size = size_of(graph)
    large = size == "large"
    if large:  # placed by _positions; Graphviz draws straight edges between them
        graph_attr.update(splines="line", overlap="true")
    elif size == "medium" and len(graph.nodes) >= ROUGH:
        graph_attr.update(ROUGH_ATTRS)
    dot = graphviz.Digraph(
        name=graph.prefix,
        graph_attr=graph_attr,
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
    texts = labels(graph, grad_texts, rules)
    pos = _positions(graph, texts) if large else {}
    chain = {} if large else _chains(graph)

    def add_node(where, node):
        # "\l" ends a left-aligned line (make_dot asks for align=left, which dot ignores).
        text = texts[node.id].replace("\n", "\\l") + "\\l"
        at = {"pos": "%.0f,%.0f!" % pos[node.id]} if large else {}
        if node.id in chain:
            at["group"] = chain[node.id]
        if node.kind == "fn":
            where.node(node.id, text, id=node.id, **at)
        else:
            where.node(node.id, text, id=node.id, fillcolor=COLORS[node.kind],
                       **NODE_STYLE.get(node.kind, {}), **at, **{"class": f"ag-{node.kind}"})

    if large:
        for node in graph.nodes:
            add_node(dot, node)
    else:
        _add_clusters(dot, graph, add_node)
    for e in graph.edges:
        kind = "freed" if e.kind == "saved" and e.tail.kind == "freed" else e.kind
        dot.edge(e.tail.id, e.head.id, id=e.id, **EDGE_STYLE.get(kind, {}))
    if legend:
        _add_legend(dot, graph.prefix)
    return dot.source


def _chains(graph):
    """``{node id: group}`` for the nodes of each chain: a Node whose only consumer has no
    other input is drawn straight below it (Graphviz ``group``). Without it dot leaves a
    parent off-centre over its input where a rank is crowded: on a 1,000-node graph of 142
    small layers side by side, 66 branches had their TanhBackward0 over 1,000 pt away from
    its AddmmBackward0 (and the stepper's view jumped back and forth); with it, none, in
    the same layout time (benchmarks/draw.py keeps the timings)."""
    consumers, inputs = {}, {}
    for e in graph.edges:
        if e.kind == "grad":
            consumers.setdefault(e.tail.id, []).append(e.head.id)
            inputs.setdefault(e.head.id, []).append(e.tail.id)
    top = {}  # node id -> the first node of its chain (union by following single links up)

    def head(n):
        while n in top and top[n] != n:
            n = top[n]
        return n
    for n, up in consumers.items():
        if len(up) == 1 and len(inputs.get(up[0], ())) == 1:
            top[n] = up[0]
    found = {}
    for n in top:
        found[n] = head(n)
    groups = {}
    for n, h in found.items():
        groups.setdefault(h, []).append(n)
    return {n: h for h, ns in groups.items() for n in ns + [h]}


def _add_clusters(dot, graph, add_node):
    """Each node inside the box of its module (nested as the modules are); the rest outside."""
    members = {}  # module path -> nodes directly in it
    for node in graph.nodes:
        members.setdefault(node.group if node.group in graph.modules else None, []).append(node)
    for node in members.pop(None, []):
        add_node(dot, node)
    if not members:
        return
    children = {}  # module path -> paths of the modules right inside it, in order
    paths = sorted(set(graph.modules), key=lambda p: (p.count(".") + bool(p), p))
    for p in paths:
        if p:
            parent = p.rsplit(".", 1)[0] if "." in p else ""
            while parent not in graph.modules and parent:
                parent = parent.rsplit(".", 1)[0] if "." in parent else ""
            if parent in graph.modules:
                children.setdefault(parent, []).append(p)
                continue
        children.setdefault(None, []).append(p)
    numbers = {p: k for k, p in enumerate(paths)}

    def used(p):
        return p in members or any(used(c) for c in children.get(p, []))

    def emit(where, p):
        with where.subgraph(name=f"cluster_{graph.prefix}m{numbers[p]}") as box:
            kind = graph.modules[p]
            box.attr(id=f"{graph.prefix}m{numbers[p]}", label=f"{p} ({kind})" if p else kind,
                     fontname=FONT, fontsize="10", style="rounded,filled", color="grey55",
                     fillcolor="grey97" if p.count(".") % 2 == 0 else "white", labeljust="l",
                     **{"class": "ag-module"})
            for c in children.get(p, []):
                if used(c):
                    emit(box, c)
            for node in members.get(p, []):
                add_node(box, node)

    for p in children.get(None, []):
        if used(p):
            emit(dot, p)


def _add_legend(dot, prefix):
    with dot.subgraph(name=f"cluster_{prefix}legend") as box:
        box.attr(id=f"{prefix}L", label="legend", fontname=FONT, fontsize="10", style="rounded", color="grey")
        for kind, text in LEGEND:
            box.node(f"{prefix}L{kind}", text.replace("\n", "\\l") + "\\l",
                     id=f"{prefix}L{kind}", fillcolor=COLORS[kind])
        names = [f"{prefix}L{kind}" for kind, _ in LEGEND]
        for a, b in zip(names, names[1:]):
            box.edge(a, b, style="invis")


def size_of(graph):
    """"small", "medium" or "large": which layout a graph gets (see ``MEDIUM``, ``LARGE``)."""
    n = len(graph.nodes)
    return "large" if n > LARGE else "medium" if n > MEDIUM else "small"


def is_large(graph):
    return size_of(graph) == "large"


def _positions(graph, texts, sweeps=4):
    """``{node id: (x, y)}`` in points for a large graph: a plain layered layout.

    Ranks: the longest path to an output (outputs at the bottom, each input
    just above its first use, as dot ranks them). Order within a rank: a
    depth-first order from the outputs, then ``sweeps`` barycenter sweeps.
    x: each node as near the mean x of its neighbours in the rank just done as
    the order and the box widths allow. Linear in the graph per sweep.
    """
    from .walk import _ranks

    rank = _ranks(graph)
    up, down = {}, {}  # neighbours one way and the other (heads are nearer the output)
    for e in graph.edges:
        if e.kind != "same":
            down.setdefault(e.tail, []).append(e.head)
            up.setdefault(e.head, []).append(e.tail)
    layers = {}
    seen = set()
    stack = [n for n in graph.nodes if not down.get(n)][::-1]
    while stack:  # depth-first from the outputs: a first order that keeps branches together
        n = stack.pop()
        if n in seen:
            continue
        seen.add(n)
        layers.setdefault(rank[n], []).append(n)
        stack.extend(reversed(up.get(n, [])))
    for n in graph.nodes:
        if n not in seen:
            layers.setdefault(rank[n], []).append(n)
    order = sorted(layers)
    width = {n: max(54.0, 6.0 * max(len(t) for t in texts[n.id].split("\n")) + 16) for n in graph.nodes}
    x = {}
    for r in order:
        left = 0.0
        for n in layers[r]:
            x[n] = left + width[n] / 2
            left += width[n] + 18

    tall = {}  # longest path up to an input: the spine of the graph is the tallest path
    for n in sorted(graph.nodes, key=rank.get, reverse=True):
        tall[n] = 1 + max((tall[m] for m in up.get(n, ())), default=0)

    def place(r, links):
        row = layers[r]
        want = {}
        for n in row:
            near = links.get(n, ())
            if links is up and near:  # line up with the tallest input: the spine stays straight
                want[n] = x[max(near, key=tall.get)]
            elif near:
                want[n] = sum(x[m] for m in near) / len(near)
            else:
                want[n] = x[n]
        row.sort(key=lambda n: want[n])
        left = None
        for n in row:  # as wanted, but never overlapping the box to the left
            lo = want[n] if left is None else max(want[n], left + width[n] / 2 + 18)
            x[n] = lo
            left = lo + width[n] / 2

    for k in range(sweeps):
        if k % 2 == 0:
            for r in order[1:]:
                place(r, down)  # each rank towards the rank below it
        else:
            for r in reversed(order[:-1]):
                place(r, up)
    height = {}
    for r in order:
        height[r] = max(14.4, max(12.0 * (texts[n.id].count("\n") + 1) + 8 for n in layers[r]))
    y, top = {}, 0.0
    for r in order:
        y[r] = top + height[r] / 2
        top += height[r] + 36
    return {n.id: (x[n], y[rank[n]]) for n in graph.nodes}


# --- the Diagram --------------------------------------------------------------

class Diagram:
    """A drawn backward graph. Displays as SVG in Jupyter.

    - ``source``: the DOT text; ``svg``: the laid-out picture (computed once).
    - ``save(path)``: ``.svg``, ``.dot``/``.gv``, or any format Graphviz writes (``.png``;
      ``.pdf`` needs the system Graphviz: graphviz-pure writes svg, png, jpg and json).
    - ``id_of(obj)``: the id of an autograd Node or a leaf/output tensor in the SVG
      (for a Node folded into a module's box: the box's id).
    - ``edge_id(fn, slot)``: the id of the edge along which ``fn`` sends the gradient of input ``slot``.
    - ``graph``: the walked ``Graph`` (nodes, edges, lookups, ``Node.group``: module paths).
    """

    def __init__(self, graph, source):
        self.graph = graph
        self.source = source
        self._svg = None

    @property
    def svg(self):
        if self._svg is None:
            self._svg = run_layout(self.source, "svg", size_of(self.graph)).decode()
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
            path.write_bytes(run_layout(self.source, fmt, size_of(self.graph)))
        return path

    def _repr_svg_(self):
        return self.svg

    def __repr__(self):
        kinds = [n.kind for n in self.graph.nodes]
        counts = [(kinds.count("fn"), "backward node", "backward nodes"),
                  (kinds.count("leaf"), "leaf", "leaves"), (len(self.graph.edges), "edge", "edges")]
        text = ", ".join(f"{n} {one if n == 1 else many}" for n, one, many in counts)
        return f"<Diagram: {text}>"


def draw(root, params=None, *, show_saved=False, show_attrs=False, show_grads=None,
         mark_freed=False, legend=False, show_formulas=False, max_nodes=2000,
         modules=None, collapse=()):
    """Draw the backward graph of ``root`` (a tensor, or a tuple of tensors).

    ``params``: ``{name: tensor}`` (or ``model.named_parameters()``) to name tensors:
    leaves in their own box, intermediate results inside the Node that made them.
    A leaf's box shows its value when it is small and its shape in words when not.
    ``show_saved``: add the tensors each Node saved for backward (orange).
    ``show_attrs``: list each Node's non-tensor saved attributes (dims, sizes...).
    ``show_grads``: write each leaf's ``.grad`` in its box -- by default (None) for
    the leaves that have one, True also says "grad None", False never.
    ``mark_freed``: after a ``backward()`` that freed the saved tensors, draw each
    freed slot as an empty dashed box instead of refusing.
    ``legend``: add a colour key. ``max_nodes``: refuse larger graphs (None: no cap).
    ``show_formulas``: label each backward Node with its local derivative rule
    (``grad_self = grad · other``; see ``formulas.py``).
    ``modules``: the model (an ``nn.Module``): each Node is drawn inside a box
    labelled with the path of the module it belongs to (leaves are named after
    the model's parameters unless ``params`` names them); hook Nodes say which
    module's input or output they wrap. A module without parameters (ReLU,
    Dropout) gets a box only if the forward ran inside ``record_modules(model)``
    (``from helpers import record_modules``). ``collapse``: module paths (or
    modules) to draw as one box each, e.g. ``collapse=["encoder"]``.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> draw(w * 3 + 1, {"w": w})          # doctest: +SKIP
    """
    if params is not None and not hasattr(params, "items"):
        params = list(params)  # read an iterator (model.named_parameters()) once, for walk and the rules
    if params is None and isinstance(modules, torch.nn.Module):
        params = list(modules.named_parameters())
    graph = walk(root, params, show_saved=show_saved, show_attrs=show_attrs,
                 mark_freed=mark_freed, max_nodes=max_nodes, modules=modules, collapse=collapse)
    rules = None
    if show_formulas:
        from .formulas import diagram_rules
        rules = diagram_rules(graph, params)
    grads = None
    if show_grads is None or show_grads:
        grads = {n.id: describe(n.obj.grad) for n in graph.nodes
                 if n.kind == "leaf" and (show_grads or n.obj.grad is not None)}
        # Named intermediates show a gradient only if they kept one (retain_grad()).
        grads.update({n.id: describe(n.result[1].grad) for n in graph.nodes
                      if n.result is not None and n.result[1].retains_grad
                      and (show_grads or n.result[1].grad is not None)})
    return Diagram(graph, to_dot(graph, grad_texts=grads, legend=legend, rules=rules))


__all__ = ["Diagram", "draw", "GraphError", "layout_command", "alias_dot_to_pure", "run_layout"]

# Raw torchviz.make_dot(...) displays need a `dot` command; provide it pip-only.
alias_dot_to_pure()
