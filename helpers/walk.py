"""The autograd graph as plain data: nodes, edges and stable ids.

When a tensor that requires grad goes through an operation, PyTorch records a
backward *Node* (``y.grad_fn``, e.g. ``MulBackward0``). Each Node points at the
Nodes that produced its inputs through ``next_functions``; a leaf tensor is
reached through its ``AccumulateGrad`` Node (whose ``.variable`` is the leaf).
Walking ``next_functions`` from the output therefore visits the whole backward
graph -- the graph ``backward()`` will run, not the forward model.

Why we own this walk instead of calling torchviz's ``make_dot``:

- ``make_dot`` recurses once per Node, so a chain a few thousand ops deep hits
  ``RecursionError``. This walk is a plain loop over a queue, and it stops
  counting as soon as the graph passes ``max_nodes``.
- ``make_dot`` names nodes by ``id()`` (a CPython address). We number nodes in
  the order a breadth-first walk from the output meets them, so the same
  expression always gets the same ids, and we put a per-diagram prefix in front
  so two diagrams on one page never share an id.
- ``make_dot`` merges a saved tensor into the input it *is* (``x * x`` saves
  ``x``), so the orange node overwrites the blue one. Here every saved slot
  gets its own node, linked to the tensor it is by a dashed "same tensor" edge.
- The stepper needs to find a Node's id and the edge for each
  ``next_functions`` slot; the ``Graph`` keeps both maps.
- A leaf used far apart (an RNN's weight at every time step) gets a small
  "ref" box next to each distant use instead of one long edge per use; see
  ``_cut_long_edges`` for why (layout time) and how the ids stay the same.
- ``modules=model`` puts each Node in the ``nn.Module`` it belongs to
  (``Node.group``), so a diagram can draw one box per module; see
  ``_group_by_module`` for the rules and their limits, and ``record_modules``
  for the forward recording that lifts them.
- Walking a graph from Python must not leave it unfreeable; see "Freeing a
  walked graph" at the end of this file.
"""
import atexit
import contextlib
import functools
import gc
import itertools
import re
import secrets
import sys
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from .notebook import OneLineError  # shown as one line in a notebook, like a failing check

SAVED_PREFIX = "_saved_"
HOOK_NODE = "BackwardHookFunctionBackward"  # made by nn.Module.register_full_backward_hook

# One token per Python process plus a counter: ids stay unique on a page even
# when a notebook keeps old outputs from before a kernel restart.
_SESSION = secrets.token_hex(2)
_COUNTER = itertools.count(1)


class GraphError(OneLineError, ValueError):
    """The graph cannot be walked or drawn as asked; the message says what to do."""


@dataclass(eq=False)
class Node:
    id: str
    kind: str  # "fn" | "leaf" | "saved" | "freed" | "output" | "base" | "ref" | "module"
    obj: Any  # the autograd Node, or the tensor (None for a freed saved tensor; the nn.Module of a "module" box)
    name: str  # "MulBackward0", "w", "self", ...
    attrs: dict = field(default_factory=dict)  # non-tensor saved attributes ("show_attrs")
    result: Optional[tuple] = None  # (name, tensor): a named intermediate this Node produced
    group: Optional[str] = None  # the module path it belongs to ("" = the model itself), or None
    note: Optional[str] = None  # e.g. "input of fc2 (Linear)" for a backward-hook Node
    ref: Optional["Node"] = None  # for a "ref" box: the node it stands for
    box: Optional["Node"] = None  # for a node folded into a collapsed module: that module's box
    members: list = field(default_factory=list)  # for a "module" box: the nodes folded into it


@dataclass(eq=False)
class Edge:
    id: str
    tail: Node
    head: Node
    kind: str  # "grad" (gradient flows head -> tail) | "saved" (tail saved by head) | "same" | "view"
    slot: Optional[int] = None  # for "grad" edges into an fn: index in head.next_functions


class Graph:
    """Nodes and edges of one backward graph, with lookups by autograd object.

    ``nodes``/``edges`` are what a diagram draws (each has its id in the SVG).
    With ``collapse=``, the Nodes folded into a module's box move to ``hidden``
    (and the edges between them to ``hidden_edges``): ``node_of`` then answers
    with the box, ``grad_edge`` with None for an edge inside the box, and
    ``fns``/``leaves`` still list every autograd Node and leaf of the graph.
    ``modules`` maps each module path used by a ``group`` to its class name.
    """

    def __init__(self):
        self.prefix = f"g{_SESSION}x{next(_COUNTER)}"
        self.nodes = []
        self.edges = []
        self.hidden = []
        self.hidden_edges = []
        self.modules = {}  # module path -> class name, for the groups in use
        self._by_fn = {}  # autograd Node -> Node
        self._by_tensor = {}  # id(tensor) -> Node (tensors are kept alive by Node.obj)
        self._grad_edge = {}  # (autograd Node, slot) -> Edge
        self._leaf_edge = {}  # AccumulateGrad Node -> the Edge from its leaf
        self._count = 0  # nodes made so far: ids are never reused
        self.roots = []

    def add_node(self, kind, obj, name, **kw):
        node = Node(f"{self.prefix}n{self._count}", kind, obj, name, **kw)
        self._count += 1
        self.nodes.append(node)
        if kind == "fn":
            self._by_fn[obj] = node
        elif kind in ("leaf", "output", "base"):
            self._by_tensor.setdefault(id(obj), node)
        return node

    def add_edge(self, tail, head, kind, slot=None):
        edge = Edge(f"{self.prefix}e{len(self.edges) + len(self.hidden_edges)}", tail, head, kind, slot)
        self.edges.append(edge)
        if kind == "grad" and head.kind == "fn" and slot is not None:
            self._grad_edge[(head.obj, slot)] = edge
        if kind == "grad" and tail.kind == "leaf":
            self._leaf_edge[head.obj] = edge
        return edge

    def node_of(self, obj):
        """The drawn node of an autograd Node or a tensor (leaf or output); a module's box if folded."""
        node = None
        if isinstance(obj, torch.Tensor):
            node = self._by_tensor.get(id(obj))
            if node is not None and node.obj is not obj:
                node = None
        elif obj in self._by_fn:
            node = self._by_fn[obj]
        if node is None:
            raise KeyError(f"{_what(obj)} is not part of this diagram.")
        return node.box or node

    def grad_edge(self, fn, slot):
        """The edge along which ``fn`` sends the gradient of its input number ``slot``
        (None when that input needs no gradient, or the edge is folded inside a module's box)."""
        return self._grad_edge.get((fn, slot))

    def leaf_edge(self, fn):
        """For an AccumulateGrad Node: the edge from the leaf it fills (None for other Nodes).

        For a leaf folded into a module's box the edge is in ``hidden_edges`` (not drawn)."""
        return self._leaf_edge.get(fn)

    @property
    def fns(self):
        return [n.obj for n in itertools.chain(self.nodes, self.hidden) if n.kind == "fn"]

    @property
    def leaves(self):
        return [n.obj for n in itertools.chain(self.nodes, self.hidden) if n.kind == "leaf"]


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
            raise GraphError(_no_graph_message(r))
    return roots


def _no_graph_message(r):
    """Why ``r`` has no graph, in one sentence and a fix; names the mode that switched recording off."""
    if r.is_inference():
        return ("This tensor was computed under torch.inference_mode(), which records no graph (and its "
                "results can never get one): compute it again outside inference_mode to draw it.")
    if not torch.is_grad_enabled():
        return ("Gradient recording is off here (inside torch.no_grad() or set_grad_enabled(False)), so "
                "this tensor has no graph: compute it, and draw it, outside the no_grad block.")
    if r.requires_grad and r._is_view() and r._base is not None:
        return ("This tensor is a view made under torch.no_grad() of a tensor that requires grad: it "
                "says requires_grad=True but no graph was recorded. Make the view outside no_grad.")
    if r.requires_grad:
        return "This tensor is a leaf: it has no graph yet. Draw a result computed from it, e.g. draw(x * 2)."
    return ("This tensor has no graph: it was computed under torch.no_grad() or torch.inference_mode(), "
            "or from tensors none of which requires grad. Compute it with recording on from an input "
            "created with requires_grad=True (e.g. x = torch.ones(3, requires_grad=True)).")


def _next_fns(fn):
    return getattr(fn, "next_functions", ())


def count_nodes(roots, show_saved=False, mark_freed=False, limit=None):
    """Number of nodes ``walk`` would draw (without ``ref`` boxes), counting at most up to
    ``limit + 1``: a loop-only pass without labels. ``roots``: a list of tensors."""
    _reap()
    seen, queue, count = {}, [(r.grad_fn, None) for r in roots], len(roots)
    cache = {}
    while queue and (limit is None or count <= limit):
        fn, parent_seq = queue.pop()
        if fn is None:
            continue
        seq = seen.get(fn)
        if seq is None:
            seq = seen[fn] = _seq(fn)
            is_acc = hasattr(fn, "variable")
            count += 1 + is_acc
            if show_saved:
                count += sum(len(_saved_tensor_slots(fn, name, mark_freed, cache)) for name in _saved_names(fn))
            queue.extend((u, seq) for u, _ in _next_fns(fn))
        if parent_seq is not None:
            _maybe_anchor(fn, seq, parent_seq)
    for fn, parent_seq in queue:  # wrapped by next_functions but not visited: check them too
        if fn is not None and parent_seq is not None:
            _maybe_anchor(fn, seen.get(fn) or _seq(fn), parent_seq)
    return count


def _is_custom(fn):
    """A custom autograd.Function's node: it is its own ``ctx``."""
    return isinstance(fn, torch.autograd.function.BackwardCFunction)


def _saved_names(fn):
    if _is_custom(fn):
        return ["saved_tensors"]
    # `self` (the first input) first, not alphabetically after `other`: the saved boxes then sit
    # in the inputs' left-to-right order, so their "same tensor" links do not pull the leaves
    # across, and a diagram keeps its layout when a backward frees them (mark_freed=True).
    names = [a for a in dir(fn) if a.startswith(SAVED_PREFIX)]
    return sorted(names, key=lambda a: a != SAVED_PREFIX + "self")


def _freed_message(fn):
    return (
        f"The saved tensors of {type(fn).__name__} were freed by an earlier backward(). "
        "Draw with mark_freed=True to see which were freed, or run the forward again and call "
        "backward(retain_graph=True) to keep them."
    )


FREED = object()  # stands for a saved tensor that a backward() has freed


def _get_saved(fn, name, mark_freed=False, cache=None):
    """``fn.<name>``, unpacked once per walk: ``cache`` keeps it, so a user's saved-tensor
    unpack hook (``torch.autograd.graph.saved_tensors_hooks``) runs at most once per tensor."""
    if cache is not None:
        hit = cache.get((fn, name), cache)
        if hit is not cache:
            return hit
    try:
        val = getattr(fn, name)
    except RuntimeError as err:
        if "freed" not in str(err) and "second time" not in str(err):
            raise
        if not mark_freed:
            raise GraphError(_freed_message(fn)) from None
        if _is_custom(fn):  # a freed custom Function no longer says how many it saved
            val = FREED
        else:
            raw = getattr(fn, "_raw" + name, None)  # _raw_saved_x: the SavedTensor slot(s), kept when freed
            val = [FREED] * len(raw) if isinstance(raw, (tuple, list)) else FREED
    if cache is not None:
        cache[(fn, name)] = val
    return val


def _saved_tensor_slots(fn, name, mark_freed=False, cache=None):
    """[(label, tensor or FREED)] for one ``_saved_*`` attribute (or a Function's saved_tensors)."""
    val = _get_saved(fn, name, mark_freed, cache)
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


def _attrs(fn, mark_freed=False, cache=None):
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
        val = _get_saved(fn, name, mark_freed, cache)
        if val is FREED or (isinstance(val, list) and val and val[0] is FREED):
            val = "[freed]"
        elif isinstance(val, torch.Tensor):
            val = "[saved tensor]"
        elif isinstance(val, (tuple, list)) and any(isinstance(t, torch.Tensor) for t in val):
            val = "[saved tensors]"
        out[name[len(SAVED_PREFIX):]] = val
    return out


def too_big_message(limit):
    """The sentence for a graph larger than ``max_nodes``, with measured layout times."""
    from .render import LAYOUT_SECONDS  # measured by benchmarks/draw.py; render owns the layout

    figures = ", ".join(f"{n:,} nodes {s:g} s" for n, s in LAYOUT_SECONDS)
    return (
        f"This graph has more than max_nodes={limit:,} nodes. Draw a smaller part (e.g. one layer's "
        f"output or a shorter loop), or raise the cap, e.g. max_nodes={limit * 10}, or "
        f"max_nodes=None for no cap (layout times measured on a 2-core machine: {figures})."
    )


def walk(root, params=None, *, show_saved=False, show_attrs=False, mark_freed=False, max_nodes=2000,
         modules=None, collapse=()):
    """Walk the backward graph of ``root`` (a tensor or a tuple of tensors) into a ``Graph``.

    ``params`` names tensors: a dict ``{name: tensor}`` or pairs such as
    ``model.named_parameters()``. ``modules``: an ``nn.Module``; each Node gets the
    path of the module it belongs to in ``Node.group`` (and leaves are named after
    its parameters unless ``params`` names them). The graph alone shows no module
    without parameters (ReLU, Dropout): run the forward inside
    ``record_modules(model)`` to give those their groups too. ``collapse``:
    module paths (or modules) whose Nodes fold into one "module" box.
    ``max_nodes``: stop (and raise) once the graph has more nodes than this;
    ``None``: no cap.

    Raises ``GraphError`` with one sentence when the input is wrong, the graph is
    larger than ``max_nodes``, or saved tensors were asked for after a backward
    freed them -- unless ``mark_freed=True``, which draws each freed slot as a
    "freed" node instead.
    """
    roots = as_roots(root)
    if max_nodes is not None and (not isinstance(max_nodes, int) or max_nodes < 1):
        raise GraphError(f"max_nodes must be a positive whole number or None (no cap), not {max_nodes!r}.")
    model = _check_model(modules)
    if params is None and model is not None:
        params = model.named_parameters()
    names, results = _param_names(params)
    _reap()

    g = Graph()
    g.roots = roots
    cache = {}  # (autograd Node, attribute) -> unpacked saved value: each unpack hook runs once
    queue = []  # breadth-first, so ids are numbered by distance from the output
    for r in roots:
        out = g.add_node("output", r, names.get(id(r), "output"))
        queue.append((r.grad_fn, out, None))
        if r._is_view() and r._base is not None and id(r._base) not in g._by_tensor:
            base = g.add_node("base", r._base, names.get(id(r._base), "base"))
            g.add_edge(base, out, "view")

    seqs = {}  # drawn Node -> its autograd Node's sequence number
    head = 0
    while head < len(queue):
        if max_nodes is not None and len(g.nodes) > max_nodes:
            break  # counting stops at the cap
        fn, parent, slot = queue[head]
        head += 1
        node = g._by_fn.get(fn)
        if node is None:
            node = g.add_node("fn", fn, type(fn).__name__, result=results.get(fn))
            seqs[node] = _seq(fn)
            if show_attrs:
                node.attrs = _attrs(fn, mark_freed, cache)
            if hasattr(fn, "variable"):  # AccumulateGrad: the leaf it fills
                var = fn.variable
                leaf = g.add_node("leaf", var, names.get(id(var), ""))
                g.add_edge(leaf, node, "grad")
            if show_saved:
                for name in _saved_names(fn):
                    for label, t in _saved_tensor_slots(fn, name, mark_freed, cache):
                        saved = (g.add_node("freed", None, label) if t is FREED
                                 else g.add_node("saved", t, label))
                        g.add_edge(saved, node, "saved")  # drawn above the Node that uses it
            for i, (u, _) in enumerate(_next_fns(fn)):
                if u is not None:
                    queue.append((u, node, i))
        if parent.kind == "fn":
            _maybe_anchor(fn, seqs[node], seqs[parent])
            g.add_edge(node, parent, "grad", slot)
        else:  # the output tensor: its grad_fn produced it
            g.add_edge(node, parent, "grad")
    if max_nodes is not None and len(g.nodes) > max_nodes:
        for fn, parent, _ in queue[head:]:  # wrapped by next_functions but not visited
            if fn is not None and parent.kind == "fn":
                _maybe_anchor(fn, _seq(fn), seqs[parent])
        # The traceback (a notebook keeps the last one) must not keep the half-walked graph alive.
        queue.clear()
        seqs.clear()
        cache.clear()
        g = fn = parent = node = None
        raise GraphError(too_big_message(max_nodes))

    _link_same_tensors(g)
    if model is not None:
        _group_by_module(g, model)
    _cut_long_edges(g)
    if collapse:
        _collapse(g, model, collapse)
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


# --- long edges from shared leaves --------------------------------------------------------
#
# A leaf used at every step of a loop (an RNN's weight, a tied embedding) has one
# AccumulateGrad Node with an edge to every use. Graphviz's `dot` turns an edge
# that spans k ranks into a chain of k-1 invisible nodes, so 120 such edges of a
# 60-step RNN add ~20,000 nodes to a 246-node graph: the layout took > 100 s
# with system dot (network simplex over the invisible nodes, then routing them),
# while a same-size MLP takes 0.04 s -- and constraint=false on those edges still
# left 45 s. So an edge from a shared AccumulateGrad that would span more than
# CUT_SPAN ranks is cut: its tail becomes a small dashed "ref" box, placed by its
# use, that names the AccumulateGrad it stands for. The edge keeps its id and
# slot (``Graph.grad_edge`` still finds it), the AccumulateGrad keeps its id, and
# its nearest uses keep their direct edges, so a short loop looks as torchviz
# draws it. Figures: benchmarks/draw.py.

CUT_SPAN = 6  # ranks; a step of a small RNN is 3-5 ranks, so the previous step's use stays direct


def _ranks(g):
    """Rank of each node as dot would put it with the outputs at the bottom: the longest
    path (over gradient and view edges) to an output, counted from the bottom."""
    heads = {}
    tails = {}
    for e in g.edges:
        if e.kind in ("grad", "view"):
            heads.setdefault(e.tail, []).append(e.head)
            tails.setdefault(e.head, []).append(e.tail)
    pending = {n: len(heads.get(n, ())) for n in g.nodes}
    rank = {n: 0 for n in g.nodes}
    ready = [n for n in g.nodes if pending[n] == 0]
    while ready:
        n = ready.pop()
        for t in tails.get(n, ()):
            rank[t] = max(rank[t], rank[n] + 1)
            pending[t] -= 1
            if pending[t] == 0:
                ready.append(t)
    return rank


def _cut_long_edges(g, span=None):
    span = CUT_SPAN if span is None else span
    if span is None:
        return
    uses = {}
    for e in g.edges:
        if e.kind == "grad" and e.tail.kind == "fn" and e.head.kind == "fn" and hasattr(e.tail.obj, "variable"):
            uses.setdefault(e.tail, []).append(e)
    shared = {acc: es for acc, es in uses.items() if len(es) > 1}
    if not shared:
        return
    rank = _ranks(g)
    for acc, es in shared.items():
        top = max(rank[e.head] for e in es)  # the AccumulateGrad sits just above its farthest use
        leaf_edge = g.leaf_edge(acc.obj)
        label = f"AccumulateGrad({leaf_edge.tail.name})" if leaf_edge and leaf_edge.tail.name else acc.name
        for e in es:
            if top - rank[e.head] >= span:
                ref = g.add_node("ref", acc.obj, label, ref=acc, group=e.head.group)
                e.tail = ref


# --- modules ------------------------------------------------------------------------------
#
# The graph knows nothing of nn.Module: a Node is only an op. Hooks can record
# which module made each Node, but only during the forward, and draw() is called
# after it. So the mapping is rebuilt from what the graph does show (rules 1-4),
# and from what ``record_modules`` recorded if the forward ran inside it (rule 5):
#
# 1. A parameter belongs to the module that owns it (``named_parameters``; a
#    parameter shared by two modules belongs to their common parent).
# 2. A Node that consumes a parameter -- directly, or through views of it
#    (``TBackward0`` of a Linear's weight) -- belongs to that parameter's module
#    (to the common parent of several). Only views count: when the model's input
#    needs no gradient, every Node is a function of parameters alone, and an
#    activation after layer 0 must not become part of layer 0.
# 3. Any other Node belongs to the common parent of the nearest modules found
#    below it (towards the inputs) and above it (towards the output): an
#    activation between two layers of a Sequential belongs to the Sequential.
#    A Node with a module only on one side (the loss after the model, the
#    input's preprocessing) belongs to none.
# 4. A ``BackwardHookFunctionBackward`` (a module with a full backward hook wraps
#    its inputs and outputs in one) belongs to the nearest module with such a
#    hook above it ("input of ...") or below it ("output of ..."). Inside
#    ``record_modules`` the recorded numbers decide instead: the first number of a
#    hooked call is its input hook, the one after its end its output hook.
# 5. A Node created while a module's forward ran inside ``record_modules(model)``
#    belongs to the innermost such module; this overrides rules 2 and 3 for it.
#    Leaves keep rule 1 and hook Nodes rule 4 (they name the module whose input
#    or output they wrap). Forward hooks time each call in autograd sequence
#    numbers (the order Nodes are created), so only numbers are kept: the graph
#    frees as before. Nodes made outside every recorded call (the loss) keep 2-3.
#
# Limits without a recording: a module without parameters (ReLU, Dropout,
# pooling) gets no box of its own; its Nodes go to the enclosing module by rule
# 3, and the hook Nodes of such a module, if hooked, name the nearest hooked
# module with parameters. An op at the very edge of a module that is not a
# parameter's (an activation applied inside a block after its last layer) goes
# to the enclosing module too.
# Functional code that uses a module's parameter outside its forward is
# attributed to that module. Rule 5 lifts the first two for the Nodes a
# recorded forward made; the third is code outside every forward, which no
# recording sees. A module that made no Node (Dropout in eval mode, Identity)
# has nothing to draw either way. A view's Node that autograd rebuilds later (after an
# in-place op on its base) is numbered where it is first used, and drawn there. A
# TorchScript submodule cannot be hooked: its Nodes go to the module that calls it.


# Nodes that only reshape or cast what they get: a view of a parameter is still the parameter.
_VIEW = re.compile(r"(T|Transpose|Permute|View|UnsafeView|ReshapeAlias|Expand|Slice|Select|Unsqueeze|"
                   r"Squeeze|ToCopy|Alias|Unbind|Split|SplitWithSizes|Clone|Narrow|AsStrided)Backward\d*")


def _check_model(modules):
    if modules is None:
        return None
    if not isinstance(modules, torch.nn.Module):
        raise GraphError(
            f"modules must be the model (an nn.Module), e.g. draw(loss, modules=model); got {type(modules).__name__}."
        )
    return modules


def _lca(a, b):
    """The common parent of module paths ``a`` and ``b`` (None means "none known")."""
    if a is None:
        return b
    if b is None or a == b:
        return a
    pa, pb = a.split(".") if a else [], b.split(".") if b else []
    common = []
    for x, y in zip(pa, pb):
        if x != y:
            break
        common.append(x)
    return ".".join(common)


def _has_backward_hook(m):
    return bool(m._backward_hooks or m._backward_pre_hooks
                or torch.nn.modules.module._global_backward_hooks
                or torch.nn.modules.module._global_backward_pre_hooks)


def _group_by_module(g, model):
    paths = dict(model.named_modules(remove_duplicate=False))
    owner = {}  # id(parameter) -> module path
    for mpath, m in paths.items():
        for _, p in m.named_parameters(recurse=False, remove_duplicate=False):
            owner[id(p)] = _lca(owner.get(id(p)), mpath) if id(p) in owner else mpath

    children, parents = {}, {}
    for e in g.edges:
        if e.kind == "grad":
            children.setdefault(e.head, []).append(e.tail)
            parents.setdefault(e.tail, []).append(e.head)
    order = _inputs_first(g, children, parents)

    def is_hook(n):
        return n.kind == "fn" and n.name == HOOK_NODE

    param_like = {}  # node -> True if it is a parameter, its AccumulateGrad, or a view of those
    for n in order:  # rules 1 and 2
        if n.kind == "leaf":
            n.group = owner.get(id(n.obj))
            param_like[n] = n.group is not None
        elif n.kind == "fn" and not is_hook(n):
            kids = children.get(n, [])
            from_params = [c for c in kids if param_like.get(c)]
            for c in from_params:
                n.group = _lca(n.group, c.group)
            param_like[n] = (bool(kids) and len(from_params) == len(kids)
                             and (hasattr(n.obj, "variable") or _VIEW.fullmatch(n.name) is not None))
    _recorded_groups(g, model, paths, is_hook)  # rule 5, before rule 3 so that rule 3 sees its groups

    below, above = {}, {}  # rule 3: the nearest modules' common parent on each side
    for n in order:
        for c in children.get(n, []):
            side = c.group if c.group is not None and not is_hook(c) else below.get(c)
            if side is not None:
                below[n] = _lca(below.get(n), side) if n in below else side
    for n in reversed(order):
        for p in parents.get(n, []):
            side = p.group if p.group is not None and not is_hook(p) else above.get(p)
            if side is not None:
                above[n] = _lca(above.get(n), side) if n in above else side
    for n in order:
        if n.kind == "fn" and n.group is None and not is_hook(n) and n in below and n in above:
            n.group = _lca(below[n], above[n])

    hooks_made = _recorded_hooks(model, paths)
    for n in order:  # rule 4
        if is_hook(n):
            _place_hook(n, children, parents, paths, is_hook, hooks_made)

    for e in g.edges:  # saved tensors sit with the Node that saved them
        if e.kind == "saved":
            e.tail.group = e.head.group
    for n in g.nodes:
        if n.group is not None:
            parts = n.group.split(".") if n.group else []
            for k in range(len(parts) + 1):
                p = ".".join(parts[:k])
                if p in paths:
                    g.modules.setdefault(p, type(paths[p]).__name__)


class _Recording:
    """What ``record_modules`` keeps of one model: numbers and paths only, never a Node,
    tensor or module (so a recorded forward frees exactly as an unrecorded one)."""

    def __init__(self):
        self.depth = 0  # ``with record_modules(model)`` blocks open on this model
        self.intervals = []  # (start, end, path, hooked): one per finished call; sequence numbers, end
                             # excluded; hooked: the module had a full backward hook during the call
        self.calls = []  # calls under way, outermost first: (id(module), path, start, hooked)
        self.handles = []  # the hooks to remove on exit


_recordings = weakref.WeakKeyDictionary()  # model -> its _Recording; gone with the model


@contextlib.contextmanager
def record_modules(model):
    """Record which module's forward creates each Node, for ``draw(..., modules=model)``.

    ``with record_modules(model): out = model(x)``, then ``draw(out, modules=model)``
    puts every Node made inside a module's forward in that module's box (the
    innermost one), also for modules without parameters (ReLU, Dropout, pooling)
    that the graph alone cannot show; see rule 5 in walk.py's module section.

    Each module's forward pre-hook and forward hook note
    ``torch.autograd._get_sequence_nr()``, the number the next Node created on
    this thread will get, so a call spans the numbers ``[start, end)``. Nodes are
    matched by that number, which counts per thread: run the forward on the thread
    that opened the block, one forward at a time, and draw graphs made on that
    thread (another thread's Nodes reuse the same numbers). The hooks are removed on exit
    (also after an error); the recording stays with the model for later draws,
    until the next ``with`` on it starts afresh. Nested blocks on one model and
    several forwards in one block add to the same recording.
    """
    if not isinstance(model, torch.nn.Module):
        raise GraphError(f"record_modules needs the model (an nn.Module), e.g. "
                         f"with record_modules(model): out = model(x); got {type(model).__name__}.")
    rec = _recordings.get(model)
    nested = rec is not None and rec.depth > 0
    if not nested:
        rec = _recordings[model] = _Recording()
    rec.depth += 1
    finished = False
    try:
        if not nested:
            _hook_calls(model, rec)
        yield
        finished = True
    finally:
        rec.depth -= 1
        if rec.depth == 0:
            for handle in rec.handles:
                handle.remove()
            rec.handles, rec.calls = [], []
            if finished and not rec.intervals:  # e.g. only draw(...) inside, the forward before it
                warnings.warn("record_modules recorded nothing: no forward of the model ran inside the "
                              "with block. Run the forward there, e.g. with record_modules(model): "
                              "out = model(x), then draw(out, modules=model).", stacklevel=3)


def _hook_calls(model, rec):
    paths = {}  # id(module) -> (module, its paths): one instance may sit at several places
    for path, m in model.named_modules(remove_duplicate=False):
        paths.setdefault(id(m), (m, []))[1].append(path)
    for m, where in paths.values():
        if isinstance(m, torch.jit.ScriptModule):
            continue  # takes no Python hooks; its caller's call covers its Nodes
        # The pre-hook runs first and the forward hook last, so Nodes the model's own
        # hooks create count as the module's; always_call closes the call on an error.
        rec.handles.append(m.register_forward_pre_hook(functools.partial(_call_starts, rec, where),
                                                       prepend=True))
        rec.handles.append(m.register_forward_hook(functools.partial(_call_ends, rec), always_call=True))


def _parent(path):
    return None if path == "" else (path.rsplit(".", 1)[0] if "." in path else "")


def _call_starts(rec, where, module, args):
    path = where[0]
    if len(where) > 1:  # one instance at several paths: the one under its caller, if that decides
        caller = rec.calls[-1][1] if rec.calls else None
        under = [p for p in where if _parent(p) == caller]
        path = under[0] if len(under) == 1 else functools.reduce(_lca, where)  # else their common parent
    rec.calls.append((id(module), path, torch.autograd._get_sequence_nr(), _has_backward_hook(module)))


def _call_ends(rec, module, args, output):
    if rec.calls and rec.calls[-1][0] == id(module):
        _, path, start, hooked = rec.calls.pop()
        rec.intervals.append((start, torch.autograd._get_sequence_nr(), path, hooked))


def _recorded_groups(g, model, paths, is_hook):
    """Rule 5: each Node made during a recorded call goes to the innermost such call's module."""
    rec = _recordings.get(model)
    if rec is None or not rec.intervals:
        return
    nodes = sorted(((_seq(n.obj), n) for n in g.nodes
                    if n.kind == "fn" and not is_hook(n) and not hasattr(n.obj, "variable")),
                   key=lambda sn: sn[0])
    # Calls on one thread nest, so their intervals are nested or disjoint. Sorted by start (an
    # outer call before the calls it makes: longer first; on a tie the one that ended later,
    # the caller), the last one started that has not ended is the innermost. One sweep over
    # both sorted lists: O((nodes + calls) log) for a 20,000-node graph, not nodes x calls.
    calls = [iv for _, iv in sorted(enumerate(rec.intervals), key=lambda k: (k[1][0], -k[1][1], -k[0]))]
    started, k = [], 0
    for seq, n in nodes:
        while k < len(calls) and calls[k][0] <= seq:
            started.append(calls[k])
            k += 1
        while started and started[-1][1] <= seq:
            started.pop()  # ended before this Node: it cannot contain a later one either
        if started and started[-1][2] in paths:  # a path the model still has
            path = started[-1][2]
            # Rule 2 may know better: a module that uses a submodule's parameters without calling
            # it (MultiheadAttention's out_proj) -- keep a group found inside the recorded one.
            if n.group is None or n.group == path or _lca(n.group, path) != path:
                n.group = path


def _inputs_first(g, children, parents):
    """The nodes in an order where every node comes after all the nodes below it."""
    pending = {n: len(children.get(n, ())) for n in g.nodes}
    ready = [n for n in g.nodes if pending[n] == 0]
    order = []
    while ready:
        n = ready.pop()
        order.append(n)
        for p in parents.get(n, ()):
            pending[p] -= 1
            if pending[p] == 0:
                ready.append(p)
    return order


def _hooked_module(path, paths):
    """The innermost module at or above ``path`` that has a full backward hook."""
    while path is not None:
        m = paths.get(path)
        if m is not None and _has_backward_hook(m):
            return path
        path = None if path == "" else (path.rsplit(".", 1)[0] if "." in path else "")
    return None


def _recorded_hooks(model, paths):
    """Rule 4 from a recording: sequence number -> (module path, "input" or "output").

    ``Module.__call__`` makes a hooked module's input hook Node right after the forward
    pre-hooks (the first number of the call, unless the module's own pre-hooks make Nodes:
    then the graph search decides) and its output hook Node right after the forward hooks
    (the number just past the recorded call). Calls that share a number made no hook Node
    of their own there: at a shared end the inner calls made no output hook (the outer
    call would end one number later), so the outermost call's is the one; at a shared
    start the outer calls made no input hook, so the innermost call's is. Where a call ends
    and the next starts at one number, the next call's input hook has it (an output hook
    would have taken it first). Whether a module was hooked is as it was during its call."""
    rec = _recordings.get(model)
    ends, starts = {}, {}
    for start, end, path, hooked in rec.intervals if rec is not None else ():  # inner calls end first
        if hooked and path in paths:
            ends[end] = path  # the last to end: the outermost
            starts.setdefault(start, path)  # the first to end: the innermost
    made = {end: (path, "output") for end, path in ends.items()}
    made.update((start, (path, "input")) for start, path in starts.items())
    return made


def _place_hook(n, children, parents, paths, is_hook, recorded):
    """Rule 4: the module whose input (above) or output (below) this hook Node wraps."""
    if _seq(n.obj) in recorded:  # (from _recorded_hooks)
        path, side = recorded[_seq(n.obj)]
        n.group, n.note = path, f"{side} of {_module_label(path, paths)}"
        return

    def search(links):
        frontier, seen, dist = list(links.get(n, [])), set(), 1
        while frontier:
            found = [f for f in frontier if not is_hook(f) and f.group is not None]
            hooked = [(_hooked_module(f.group, paths), f) for f in found]
            hooked = [h for h, _ in hooked if h is not None]
            if hooked:
                return hooked[0], dist
            nxt = []
            for f in frontier:
                if f not in seen:
                    seen.add(f)
                    nxt.extend(links.get(f, []))
            frontier, dist = nxt, dist + 1
        return None, None

    up, d_up = search(parents)
    down, d_down = search(children)
    if up is not None and (down is None or d_up <= d_down):
        n.group, n.note = up, f"input of {_module_label(up, paths)}"
    elif down is not None:
        n.group, n.note = down, f"output of {_module_label(down, paths)}"


def _module_label(path, paths):
    m = paths.get(path)
    kind = type(m).__name__ if m is not None else "module"
    return f"{path} ({kind})" if path else f"the model ({kind})"


def _collapse(g, model, collapse):
    """Fold every node of each module in ``collapse`` into one "module" box."""
    if model is None:
        raise GraphError("collapse needs the model: pass it too, e.g. draw(loss, modules=model, collapse=['encoder']).")
    paths = dict(model.named_modules(remove_duplicate=False))
    by_obj = {id(m): p for p, m in paths.items()}
    wanted = []
    for c in ([collapse] if isinstance(collapse, (str, torch.nn.Module)) else collapse):
        p = by_obj.get(id(c)) if isinstance(c, torch.nn.Module) else c
        if p not in paths:
            known = ", ".join(repr(k) for k in list(paths)[1:8]) + (", ..." if len(paths) > 8 else "")
            raise GraphError(f"collapse: {c!r} is not a module of the model; its modules are {known}.")
        wanted.append(p)

    def outermost(group):
        if group is None:
            return None
        hits = [p for p in wanted if group == p or p == "" or group.startswith(p + ".")]
        return min(hits, key=len) if hits else None

    boxes = {}
    for n in list(g.nodes):
        p = outermost(n.group)
        if p is None or n.kind in ("output", "base"):
            continue
        box = boxes.get(p)
        if box is None:
            parent = None if p == "" else (p.rsplit(".", 1)[0] if "." in p else "")
            box = boxes[p] = g.add_node("module", paths[p], p, group=parent)
        n.box = box
        box.members.append(n)
    if not boxes:
        return
    g.nodes = [n for n in g.nodes if n.box is None]
    g.hidden.extend(m for b in boxes.values() for m in b.members)
    kept = []
    for e in g.edges:
        tail, head = e.tail.box or e.tail, e.head.box or e.head
        if tail is head:  # inside one box: not drawn
            g.hidden_edges.append(e)
            if e.kind == "grad" and e.head.kind == "fn" and e.slot is not None:
                g._grad_edge.pop((e.head.obj, e.slot), None)
            continue
        e.tail, e.head = tail, head
        kept.append(e)
    g.edges = kept
    for p, box in boxes.items():
        g.modules.setdefault(p, type(paths[p]).__name__)


# --- freeing a walked graph ----------------------------------------------------------------
#
# What goes wrong without this (torch 2.13, measured on Linux with the usual 8 MB
# stack): walk 43,000 or more Nodes of a chain from Python -- with this walk,
# torchviz's, or a bare loop over ``next_functions`` -- and freeing the graph
# later kills the process with a segfault; plain torch frees the same graph fine.
# The cause: touching a Node from Python gives it a Python object, and since
# torch 2.13 (Nodes became ``intrusive_ptr``s with "PyObject preservation", see
# c10/util/intrusive_ptr.h) a Node keeps that object alive for as long as
# anything else refers to the Node. Such a Node is then freed through Python's
# deallocator, one C call inside the previous one, instead of by torch's own
# loop that frees a deep graph without recursion (torch/csrc/autograd/function.cpp,
# ``deleteNode``). A chain of N such Nodes needs N nested C calls (~190 bytes of
# stack each), and the stack runs out at ~43,000. Dropping our references does
# not help: the Node keeps its Python object anyway.
#
# The fix: keep a reference to a few "anchor" Nodes, so that no chain of walked
# Nodes freed in one go is longer than ANCHOR_SPAN. Sequence numbers (the order
# in which the forward created the Nodes) fall strictly along every edge from
# an output towards the inputs, so a path whose Nodes all have sequence numbers
# within one block of ANCHOR_SPAN has at most ANCHOR_SPAN Nodes: we anchor every
# Node reached over an edge that crosses from one block into another. When
# the learner frees the graph, freeing stops at the anchors; ``_reap`` then
# releases each anchor that nothing else refers to any more, nearest the output
# first, so each release frees at most ANCHOR_SPAN Nodes in a row. ``_reap`` runs
# after each garbage collection (so within a few hundred allocations) and at the
# start of every walk. A 100,000-op chain needs 100 anchors. Cost: the part of a
# freed graph below an anchor lives until the next collection.

ANCHOR_SPAN = 1000  # 1,000 nested frees need ~0.2 MB of stack: safe in any thread

_anchors = {}  # id(autograd Node) -> (sequence number, autograd Node)
_reaping = False
_hooked = False


def _seq(fn):
    """The Node's sequence number (the order the forward created it); -1 if it has none,
    which makes every edge to it cross a block boundary: anchored, to be safe."""
    try:
        return fn._sequence_nr()
    except (AttributeError, RuntimeError):
        return -1


def _maybe_anchor(fn, seq, parent_seq):
    """Anchor ``fn`` if the edge from a Node numbered ``parent_seq`` crosses a block boundary."""
    global _hooked
    if seq // ANCHOR_SPAN == parent_seq // ANCHOR_SPAN or id(fn) in _anchors:
        return
    if hasattr(fn, "variable"):  # an AccumulateGrad frees nothing below it
        return
    _anchors[id(fn)] = (seq, fn)
    if not _hooked:
        gc.callbacks.append(_after_gc)
        _hooked = True


def _free_refs():
    """What ``sys.getrefcount`` says for an anchor that only ``_anchors`` refers to."""
    entry = (0, object())
    return sys.getrefcount(entry[1])


_FREE_REFS = _free_refs()


def _reap():
    """Release the anchors nothing else refers to, nearest the output first."""
    global _reaping
    if _reaping or not _anchors:
        return
    _reaping = True
    try:
        for key in sorted(_anchors, key=lambda k: -_anchors[k][0]):
            entry = _anchors.get(key)
            # Not referenced by anything else: no other Python reference and (by
            # PyObject preservation) no Node or tensor that still uses it.
            if entry is not None and sys.getrefcount(entry[1]) <= _FREE_REFS:
                _anchors.pop(key, None)
                entry = None  # frees the Node and the walked Nodes below it, down to the next anchors
    finally:
        _reaping = False


def _after_gc(phase, info):
    if phase == "stop" and _anchors:
        _reap()


@atexit.register
def _unhook():
    if _hooked and _after_gc in gc.callbacks:
        gc.callbacks.remove(_after_gc)
