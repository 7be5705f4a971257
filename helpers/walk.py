"""The autograd graph as plain data: nodes, edges and stable ids.

When a tensor that requires grad goes through an operation, PyTorch records a
backward *Node* (``y.grad_fn``, e.g. ``MulBackward0``). Each Node points at the
Nodes that produced its inputs through ``next_functions``; a leaf tensor is
reached through its ``AccumulateGrad`` Node (whose ``.variable`` is the leaf).
Walking ``next_functions`` from the output therefore visits the whole backward
graph -- the graph ``backward()`` will run, not the forward model.

Why we own this walk instead of calling torchviz's ``make_dot``:

- ``make_dot`` recurses once per Node, so a chain a few thousand ops deep hits
  ``RecursionError``. This walk is a plain loop over a queue.
- ``make_dot`` names nodes by ``id()`` (a CPython address). We number nodes in
  the order a breadth-first walk from the output meets them, so the same
  expression always gets the same ids, and we put a per-diagram prefix in front
  so two diagrams on one page never share an id.
- ``make_dot`` merges a saved tensor into the input it *is* (``x * x`` saves
  ``x``), so the orange node overwrites the blue one. Here every saved slot
  gets its own node, linked to the tensor it is by a dashed "same tensor" edge.
- The stepper needs to find a Node's id and the edge for each
  ``next_functions`` slot; the ``Graph`` keeps both maps.
"""
import itertools
import secrets
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

SAVED_PREFIX = "_saved_"

# One token per Python process plus a counter: ids stay unique on a page even
# when a notebook keeps old outputs from before a kernel restart.
_SESSION = secrets.token_hex(2)
_COUNTER = itertools.count(1)


class GraphError(ValueError):
    """The graph cannot be walked or drawn as asked; the message says what to do."""


@dataclass(eq=False)
class Node:
    id: str
    kind: str  # "fn" | "leaf" | "saved" | "freed" | "output" | "base"
    obj: Any  # the autograd Node, or the tensor (None for a freed saved tensor)
    name: str  # "MulBackward0", "w", "self", ...
    attrs: dict = field(default_factory=dict)  # non-tensor saved attributes ("show_attrs")
    result: Optional[tuple] = None  # (name, tensor): a named intermediate this Node produced


@dataclass(eq=False)
class Edge:
    id: str
    tail: Node
    head: Node
    kind: str  # "grad" (gradient flows head -> tail) | "saved" (tail saved by head) | "same" | "view"
    slot: Optional[int] = None  # for "grad" edges into an fn: index in head.next_functions


class Graph:
    """Nodes and edges of one backward graph, with lookups by autograd object."""

    def __init__(self):
        self.prefix = f"g{_SESSION}x{next(_COUNTER)}"
        self.nodes = []
        self.edges = []
        self._by_fn = {}  # autograd Node -> Node
        self._by_tensor = {}  # id(tensor) -> Node (tensors are kept alive by Node.obj)
        self._grad_edge = {}  # (autograd Node, slot) -> Edge
        self._leaf_edge = {}  # AccumulateGrad Node -> the Edge from its leaf
        self.roots = []

    def add_node(self, kind, obj, name, **kw):
        node = Node(f"{self.prefix}n{len(self.nodes)}", kind, obj, name, **kw)
        self.nodes.append(node)
        if kind == "fn":
            self._by_fn[obj] = node
        elif kind in ("leaf", "output", "base"):
            self._by_tensor.setdefault(id(obj), node)
        return node

    def add_edge(self, tail, head, kind, slot=None):
        edge = Edge(f"{self.prefix}e{len(self.edges)}", tail, head, kind, slot)
        self.edges.append(edge)
        if kind == "grad" and head.kind == "fn" and slot is not None:
            self._grad_edge[(head.obj, slot)] = edge
        if kind == "grad" and tail.kind == "leaf":
            self._leaf_edge[head.obj] = edge
        return edge

    def node_of(self, obj):
        """The drawn node of an autograd Node or a tensor (leaf or output)."""
        if isinstance(obj, torch.Tensor):
            node = self._by_tensor.get(id(obj))
            if node is not None and node.obj is obj:
                return node
        elif obj in self._by_fn:
            return self._by_fn[obj]
        raise KeyError(f"{_what(obj)} is not part of this diagram.")

    def grad_edge(self, fn, slot):
        """The edge along which ``fn`` sends the gradient of its input number ``slot``."""
        return self._grad_edge.get((fn, slot))

    def leaf_edge(self, fn):
        """For an AccumulateGrad Node: the edge from the leaf it fills (None for other Nodes)."""
        return self._leaf_edge.get(fn)

    @property
    def fns(self):
        return [n.obj for n in self.nodes if n.kind == "fn"]

    @property
    def leaves(self):
        return [n.obj for n in self.nodes if n.kind == "leaf"]


def _what(obj):
    if isinstance(obj, torch.Tensor):
        return f"A tensor of shape {tuple(obj.shape)}"
    return f"The node {type(obj).__name__}"


def as_roots(root):
    """Check ``root`` and return it as a list of tensors that have a graph."""
    roots = list(root) if isinstance(root, (tuple, list)) else [root]
    if not roots:
        raise GraphError("Nothing to draw: pass a tensor, e.g. draw(loss).")
    for r in roots:
        if not isinstance(r, torch.Tensor):
            raise GraphError(
                f"Expected a tensor with a graph (e.g. loss = (w * x).sum()), got {type(r).__name__}."
            )
        if r.grad_fn is None:
            if r.requires_grad:
                raise GraphError(
                    "This tensor is a leaf: it has no graph yet. Draw a result computed from it, e.g. draw(x * 2)."
                )
            raise GraphError(
                "This tensor has no graph: none of the tensors it was computed from requires grad. "
                "Create an input with requires_grad=True (e.g. x = torch.ones(3, requires_grad=True)) and compute from it."
            )
    return roots


def _next_fns(fn):
    return getattr(fn, "next_functions", ())


def count_nodes(roots, show_saved=False, mark_freed=False):
    """Number of nodes ``walk`` would draw: a quick, loop-only pass (no labels)."""
    seen, queue, count = set(), [r.grad_fn for r in roots], len(roots)
    while queue:
        fn = queue.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        count += 1 + hasattr(fn, "variable")
        if show_saved:
            count += sum(len(_saved_tensor_slots(fn, name, mark_freed)) for name in _saved_names(fn))
        queue.extend(u for u, _ in _next_fns(fn))
    return count


def _is_custom(fn):
    """A custom autograd.Function's node: it is its own ``ctx``."""
    return isinstance(fn, torch.autograd.function.BackwardCFunction)


def _saved_names(fn):
    if _is_custom(fn):
        return ["saved_tensors"]
    return [a for a in dir(fn) if a.startswith(SAVED_PREFIX)]


def _freed_message(fn):
    return (
        f"The saved tensors of {type(fn).__name__} were freed by an earlier backward(). "
        "Draw with mark_freed=True to see which were freed, or run the forward again and call "
        "backward(retain_graph=True) to keep them."
    )


FREED = object()  # stands for a saved tensor that a backward() has freed


def _get_saved(fn, name, mark_freed=False):
    try:
        return getattr(fn, name)
    except RuntimeError as err:
        if "freed" not in str(err) and "second time" not in str(err):
            raise
        if not mark_freed:
            raise GraphError(_freed_message(fn)) from None
        if _is_custom(fn):  # a freed custom Function no longer says how many it saved
            return FREED
        raw = getattr(fn, "_raw" + name, None)  # _raw_saved_x: the SavedTensor slot(s), kept when freed
        return [FREED] * len(raw) if isinstance(raw, (tuple, list)) else FREED


def _saved_tensor_slots(fn, name, mark_freed=False):
    """[(label, tensor or FREED)] for one ``_saved_*`` attribute (or a Function's saved_tensors)."""
    val = _get_saved(fn, name, mark_freed)
    label = name[len(SAVED_PREFIX):] if name.startswith(SAVED_PREFIX) else "saved"
    if val is FREED:
        return [(label, FREED)]
    if isinstance(val, (tuple, list)) and val and val[0] is FREED:
        return [(f"{label}[{i}]", FREED) for i in range(len(val))]
    if isinstance(val, torch.Tensor):
        return [(label, val)]
    if isinstance(val, (tuple, list)):
        return [(f"{label}[{i}]", t) for i, t in enumerate(val) if isinstance(t, torch.Tensor)]
    return []


def _attrs(fn, mark_freed=False):
    """Non-tensor saved attributes (dims, sizes, scalars) for ``show_attrs``.

    For a custom Function these are the plain attributes its ``ctx`` was given
    (``ctx.constant = c``); built-in Nodes expose theirs as ``_saved_*``.
    """
    if _is_custom(fn):
        return {k: "[tensor]" if isinstance(v, torch.Tensor) else v for k, v in vars(fn).items()}
    out = {}
    for name in _saved_names(fn):
        if not name.startswith(SAVED_PREFIX):
            continue
        val = _get_saved(fn, name, mark_freed)
        if val is FREED or (isinstance(val, list) and val and val[0] is FREED):
            val = "[freed]"
        elif isinstance(val, torch.Tensor):
            val = "[saved tensor]"
        elif isinstance(val, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in val):
            val = "[saved tensors]"
        out[name[len(SAVED_PREFIX):]] = val
    return out


def walk(root, params=None, *, show_saved=False, show_attrs=False, mark_freed=False, max_nodes=2000):
    """Walk the backward graph of ``root`` (a tensor or a tuple of tensors) into a ``Graph``.

    ``params`` names tensors: a dict ``{name: tensor}`` or pairs such as
    ``model.named_parameters()``. Raises ``GraphError`` with one sentence when
    the input is wrong, the graph is larger than ``max_nodes``, or saved tensors
    were asked for after a backward freed them -- unless ``mark_freed=True``, which
    draws each freed slot as a "freed" node instead.
    """
    roots = as_roots(root)
    names, results = _param_names(params)
    total = count_nodes(roots, show_saved, mark_freed)
    if total > max_nodes:
        raise GraphError(
            f"This graph has {total:,} nodes, more than max_nodes={max_nodes:,}. Draw a smaller part "
            f"(e.g. one layer's output), or pass max_nodes={total} to draw it anyway "
            "(Graphviz needs seconds for a few thousand nodes)."
        )

    g = Graph()
    g.roots = roots
    queue = []  # breadth-first, so ids are numbered by distance from the output
    for r in roots:
        out = g.add_node("output", r, names.get(id(r), "output"))
        queue.append((r.grad_fn, out, None))
        if r._is_view() and r._base is not None and id(r._base) not in g._by_tensor:
            base = g.add_node("base", r._base, names.get(id(r._base), "base"))
            g.add_edge(base, out, "view")

    head = 0
    while head < len(queue):
        fn, parent, slot = queue[head]
        head += 1
        node = g._by_fn.get(fn)
        if node is None:
            node = g.add_node("fn", fn, type(fn).__name__, result=results.get(fn))
            if show_attrs:
                node.attrs = _attrs(fn, mark_freed)
            if hasattr(fn, "variable"):  # AccumulateGrad: the leaf it fills
                var = fn.variable
                leaf = g.add_node("leaf", var, names.get(id(var), ""))
                g.add_edge(leaf, node, "grad")
            if show_saved:
                for name in _saved_names(fn):
                    for label, t in _saved_tensor_slots(fn, name, mark_freed):
                        saved = (g.add_node("freed", None, label) if t is FREED
                                 else g.add_node("saved", t, label))
                        g.add_edge(saved, node, "saved")  # drawn above the Node that uses it
            for i, (u, _) in enumerate(_next_fns(fn)):
                if u is not None:
                    queue.append((u, node, i))
        if parent.kind == "fn":
            g.add_edge(node, parent, "grad", slot)
        else:  # the output tensor: its grad_fn produced it
            g.add_edge(node, parent, "grad")

    _link_same_tensors(g)
    return g


def _link_same_tensors(g):
    """A saved tensor that *is* a drawn leaf or output gets a dashed edge to it (torchviz #69)."""
    for node in g.nodes:
        if node.kind != "saved":
            continue
        other = g._by_tensor.get(id(node.obj))
        if other is not None and other.obj is node.obj:
            g.add_edge(node, other, "same")


def _param_names(params):
    """{id(tensor): name} for every named tensor, and {grad_fn: (name, tensor)} for the
    named tensors that are not leaves (drawn inside the Node that produced them)."""
    if params is None:
        return {}, {}
    items = params.items() if hasattr(params, "items") else params
    names, results = {}, {}
    try:
        for name, t in items:
            if not isinstance(t, torch.Tensor):
                raise GraphError(
                    f"params[{name!r}] is a {type(t).__name__}, not a tensor; pass a dict of tensors, "
                    "e.g. dict(model.named_parameters())."
                )
            names[id(t)] = str(name)
            if t.grad_fn is not None:
                results[t.grad_fn] = (str(name), t)
    except (TypeError, ValueError) as err:
        if isinstance(err, GraphError):
            raise
        raise GraphError(
            "params must be a dict {name: tensor} or pairs like model.named_parameters()."
        ) from None
    return names, results
