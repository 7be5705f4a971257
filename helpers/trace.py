"""``trace_backward()``: record a real backward pass, node by node.

The idea: ``loss.backward()`` hands a seed gradient (1 for a scalar loss) to
PyTorch's engine. The engine runs each backward Node once all the gradient
meant for it has arrived: the Node receives the gradients of its outputs
(``grad_outputs``), computes the gradients of its inputs (``grad_inputs``) and
sends one along each of its ``next_functions`` edges. An ``AccumulateGrad``
Node, at the end of every path, adds what it receives into its leaf's ``.grad``.

To watch that happen we do not re-implement any of it. We put a *pre-hook*
(called just before a Node runs, with what it received) and a *hook* (called
just after, with what it sent) on every Node of the graph, run one real
backward, and keep copies of what the hooks saw, in the order the engine called
them. PyTorch has the hooks but no recorder that keeps their order together
with the drawn diagram's ids, which is the part written here. That order is the
engine's for a backward on one device (among the ready Nodes, the one created
last runs first); with several roots the engine first runs a ``GraphRoot`` Node
of its own that hands out the seeds, and the trace leaves it out: it is in no
drawn graph and takes no hooks.

The learner's state is left as it was found: each leaf's ``.grad`` -- and the
``.grad`` of a root or an intermediate that ``retain_grad()`` -- is set to None
for the traced backward (so the trace shows this backward's gradient on its
own, as ``torch.autograd.grad`` would compute it) and the original object is
put back afterwards; the graph is kept (``retain_graph=True``); our hooks are
removed even when the backward fails.

What it keeps: a gradient of up to ``KEEP_ELEMENTS`` elements is copied whole;
a larger one is kept as a ``TensorSummary`` (shape, norm, finite or not: what
``describe`` shows), so tracing costs about what the backward itself costs, not
a second copy of every gradient. ``keep="all"`` copies everything. A leaf's
gradient is always kept whole (backward writes one into ``.grad`` anyway), and
so is the first step that sends a NaN or an infinity, for ``first_nonfinite``.
Each step's ``formula`` (``formulas.py``) explains the rule the Node applied.
"""
import gc
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from typing import Any, Optional

import torch

from . import formulas
from .describe import TensorSummary, describe
from .render import Diagram, to_dot
from .walk import GraphError, walk

KEEP_ELEMENTS = 4096  # keep="auto": gradients up to this many elements are copied whole


class TraceError(GraphError, RuntimeError):
    """The backward cannot be traced as asked; the message says what to do.

    A ``GraphError`` (so a ``ValueError``) like every graph problem in the
    helpers, and a ``RuntimeError`` like the error ``backward()`` itself raises.
    """


@dataclass(eq=False, slots=True)
class Step:
    """One backward Node as the engine ran it.

    ``index`` is the step number shown in tables and in the stepper: step 1 is
    the first Node the engine ran (``trace.steps[k - 1].index == k``), step 0
    is "before backward".

    Gradients (``grad_outputs``, ``grad_inputs``) are detached copies, or a
    ``TensorSummary`` for a large one (see ``trace_backward(keep=...)``); for a
    custom ``autograd.Function``, ``grad_outputs`` is what its ``backward``
    received (zeros for an unused output unless ``set_materialize_grads(False)``).
    ``formula`` is the rule the Node applied, with its values, as text (one
    line per input); ``nonfinite`` says in one sentence which gradient it sent
    is NaN or infinite and what made it (None when all are finite), and
    ``nonfinite_edges`` are the drawn edges that gradient travels along.
    """

    index: int
    node: Any  # the autograd Node, e.g. <MulBackward0>
    node_id: str  # its id in trace.diagram
    name: str  # "MulBackward0", "AccumulateGrad", ...
    grad_outputs: tuple = ()  # received: one per output of the Node (None: no gradient)
    grad_inputs: list = field(default_factory=list)  # sent: one per next_functions slot
    edge_ids: list = field(default_factory=list)  # per slot: the drawn edge, None where no edge
    target_ids: list = field(default_factory=list)  # per slot: the Node the gradient goes to
    leaf: Optional[torch.Tensor] = None  # AccumulateGrad only: the leaf it fills
    leaf_id: Optional[str] = None
    leaf_edge_id: Optional[str] = None  # the edge between the leaf and its AccumulateGrad
    leaf_grad: Optional[torch.Tensor] = None  # what AccumulateGrad received: this backward's gradient
    _naming: Any = None  # the trace's _Naming: the learner's names, for formula and nonfinite
    _full: Any = None  # (received, sent) as whole tensors when the kept ones are summaries
    _formula: Optional[str] = None
    _nonfinite: Any = False  # False: not worked out yet

    def __repr__(self):
        return f"<Step {self.index}: {self.name}>"

    def __str__(self):
        reason = self.nonfinite
        return f"step {self.index}: {reason}" if reason else f"step {self.index}: {self.name}"

    def _context(self):
        return self._naming.of(self) if self._naming is not None else {}

    @property
    def formula(self):
        """The local derivative rule this Node applied, with the values it used (text)."""
        if self._formula is None:
            ctx = self._context()
            if self.leaf is not None:
                received = self.grad_outputs
            else:
                received = self._full[0] if self._full is not None else self.grad_outputs
            self._formula = formulas.formula(
                self.node, received, self.grad_inputs if self.leaf is None else None,
                names=ctx.get("names"), inputs=ctx.get("inputs"), leaf=ctx.get("leaf"))
        return self._formula

    @property
    def nonfinite_edges(self):
        """Ids of the drawn edges along which this step sent a NaN or an infinity (for highlighting)."""
        if self.leaf is not None:
            return [] if _finite(self.leaf_grad) else [self.leaf_edge_id]
        return [e for g, e in zip(self.grad_inputs, self.edge_ids) if e is not None and not _finite(g)]

    @property
    def nonfinite(self):
        """None if every gradient this step sent is finite; else one sentence on what made it."""
        if self._nonfinite is False:
            sent = [self.leaf_grad] if self.leaf is not None else self.grad_inputs
            if all(map(_finite, sent)):
                self._nonfinite = None
                return None
            ctx = self._context()
            received, sent = self._full if self._full is not None else (self.grad_outputs, self.grad_inputs)
            if self.leaf is not None:
                sent = [self.leaf_grad]
                ctx = dict(ctx, inputs=[f"{ctx.get('leaf') or 'the leaf'}.grad"])
            self._nonfinite = formulas.nonfinite_reason(
                self.node, received, sent, names=ctx.get("names"), inputs=ctx.get("inputs"),
                target=ctx.get("targets"))
        return self._nonfinite


class _Naming:
    """What a step's formula calls things: the learner's names for tensors and Nodes."""

    def __init__(self, graph, nodes, names):
        self.graph, self.nodes = graph, nodes
        self.names = names  # id(tensor) -> (name, tensor), from params

    def name_of(self, node_id):
        node = self.nodes[node_id]
        edge = self.graph.leaf_edge(node.obj) if node.kind == "fn" else None
        return f"{node.name}({edge.tail.name})" if edge is not None and edge.tail.name else node.name

    def of(self, step):
        """``names``, per slot the input's name (a named leaf or intermediate) and target, the leaf's name."""
        inputs, targets = [], []
        for t in step.target_ids:
            node = self.nodes.get(t) if t is not None else None
            edge = self.graph.leaf_edge(node.obj) if node is not None and node.kind == "fn" else None
            if edge is not None and edge.tail.name:
                inputs.append(edge.tail.name)  # a named leaf: grad_w
            elif node is not None and node.result is not None:
                inputs.append(node.result[0])  # a named intermediate: grad_h
            else:
                inputs.append(None)
            targets.append(self.name_of(t) if t is not None else None)
        leaf = (self.nodes[step.leaf_id].name or None) if step.leaf_id is not None else None
        return {"names": self.names, "inputs": inputs, "targets": targets, "leaf": leaf}


class BackwardTrace:
    """The Nodes of one backward pass, in the order PyTorch's engine ran them.

    - ``len(trace)``, ``for step in trace``, ``trace.steps[k - 1]`` (see ``Step``);
    - ``trace.seeds``: the gradient each output started with;
    - ``trace.leaf_grads``: ``{leaf: gradient}``; ``trace.grad_of(leaf)``;
    - ``trace.diagram``: the diagram whose ids the steps use, with the final
      gradients written in the leaf boxes;
    - ``trace.first_nonfinite()``: the first step that sent a NaN or an infinity
      (``step.index``, ``step.nonfinite``), or None;
    - ``step.formula``: the rule each Node applied, with its values;
    - ``print(trace)`` or display it: the engine's order as a table.
    """

    def __init__(self, graph, steps, seeds, names=None):
        self.graph = graph
        self.steps = steps
        self.seeds = seeds
        self._diagram = None
        self._nodes = {n.id: n for n in (*graph.nodes, *graph.hidden)}  # hidden: folded into a module's box
        self._naming = _Naming(graph, self._nodes, names or {})
        for s in steps:  # a step keeps its names even when the trace is gone (trace_backward(l).steps[0])
            s._naming = self._naming

    def first_nonfinite(self):
        """The first ``Step``, in the engine's order, that sent a NaN or an infinite gradient; or None.

        ``step.index`` is its step number (the stepper opens there), ``step.nonfinite``
        says which gradient and what in the Node's rule made it, ``print(step)`` shows both.
        """
        for step in self.steps:
            if step.nonfinite:
                return step
        return None

    def __len__(self):
        return len(self.steps)

    def __iter__(self):
        return iter(self.steps)

    @property
    def leaf_grads(self):
        """``{leaf tensor: its gradient from this backward}`` (None if none arrived)."""
        grads = {leaf: None for leaf in self.graph.leaves}
        for step in self.steps:
            if step.leaf is not None:
                grads[step.leaf] = step.leaf_grad
        return grads

    def grad_of(self, tensor):
        """The gradient this backward computed for the leaf ``tensor``."""
        node = self.graph.node_of(tensor)  # KeyError with a sentence if it is not drawn
        for step in reversed(self.steps):
            if step.leaf is not None and step.leaf_id == node.id:
                return step.leaf_grad
        return None

    @property
    def diagram(self):
        """The ``Diagram`` these steps refer to; leaf boxes show the traced gradients."""
        if self._diagram is None:
            # At least as wide as "None", which the stepper shows before a leaf's gradient arrives.
            grads = {self.graph.node_of(leaf).id: describe(g).ljust(4)
                     for leaf, g in self.leaf_grads.items()}
            self._diagram = Diagram(self.graph, to_dot(self.graph, grad_texts=grads))
        return self._diagram

    # --- the table ------------------------------------------------------------

    def name_of(self, node_id):
        """A drawn node's name; an AccumulateGrad is named after its leaf: ``AccumulateGrad(w)``."""
        return self._naming.name_of(node_id)

    def rows(self):
        """``[(step, node, received, sent)]`` as text, one row per step."""
        rows = []
        for s in self.steps:
            received = "; ".join(describe(g) for g in s.grad_outputs)
            if s.leaf is not None:
                leaf = self._nodes[s.leaf_id].name or "leaf"
                sent = f"{leaf}.grad = {describe(s.leaf_grad)}"
            else:
                sent = ", ".join(
                    f"{describe(g)} → {self.name_of(t)}"
                    for g, t in zip(s.grad_inputs, s.target_ids) if t is not None
                )
            rows.append((str(s.index), self.name_of(s.node_id), received, sent))
        return rows

    def table(self, limit=None):
        """The engine's order as a text table (``limit``: at most that many rows)."""
        head = ("step", "node", "received", "sent")
        rows = self.rows()
        more = len(rows) - limit if limit is not None and len(rows) > limit else 0
        if more:
            rows = rows[:limit]
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
        lines = [
            f"{r[0]:>{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip()
            for r in [head, *rows]
        ]
        if more:
            lines.append(f"... {more} more steps (trace.table() shows them all)")
        return "\n".join(lines)

    def _title(self):
        return f"BackwardTrace: {len(self)} steps, in the order PyTorch's engine ran them"

    def __repr__(self):
        return f"{self._title()}\n{self.table(limit=50)}"

    def _repr_html_(self, limit=200):
        rows = self.rows()
        cells = "".join(
            "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows[:limit]
        )
        more = (f"<tr><td colspan='4'>... {len(rows) - limit} more steps</td></tr>"
                if len(rows) > limit else "")
        return (
            f"<table class='ag-trace' style='font-family: var(--jp-code-font-family, monospace)'>"
            f"<caption style='text-align:left'>{escape(self._title())}</caption>"
            "<tr><th>step</th><th>node</th><th>received</th><th>sent</th></tr>"
            f"{cells}{more}</table>"
        )


def _check_roots(root, gradient):
    """``(roots, gradients)`` as lists, or a ``TraceError`` that says what to do."""
    roots = list(root) if isinstance(root, (tuple, list)) else [root]
    grads = list(gradient) if isinstance(gradient, (tuple, list)) else [gradient] * len(roots)
    if not roots or len(grads) != len(roots):
        raise TraceError("Pass one tensor to trace (e.g. trace_backward(loss)), or a tuple of "
                         "tensors with a tuple of as many gradients.")
    for r, g in zip(roots, grads):
        if not isinstance(r, torch.Tensor):
            raise TraceError(f"Expected a tensor with a graph (e.g. loss = (w * x).sum()), "
                             f"got {type(r).__name__}.")
        if r.grad_fn is None:
            raise TraceError(
                "This tensor is a leaf, so there is no backward to trace: trace a result computed "
                "from it, e.g. trace_backward((x * 2).sum())." if r.requires_grad else
                "This tensor has no graph because nothing it was computed from requires grad: "
                "create an input with requires_grad=True and compute the result from it."
            )
        if g is None and r.is_complex():  # backward() refuses it too: the seed would be a guess
            raise TraceError(
                f"grad can be implicitly created only for real scalar outputs, and this result is "
                f"{r.dtype}: trace a real number made from it (e.g. result.abs()), or pass gradient= a tensor like it."
            )
        if g is None and r.numel() != 1:
            raise TraceError(
                f"The result has shape {tuple(r.shape)}, so backward needs a starting gradient of "
                "that shape: pass gradient=torch.ones_like(result), or trace result.sum()."
            )
        if g is not None and (not isinstance(g, torch.Tensor) or g.shape != r.shape):
            got = f"shape {tuple(g.shape)}" if isinstance(g, torch.Tensor) else type(g).__name__
            raise TraceError(f"gradient must be a tensor of the result's shape {tuple(r.shape)} "
                             f"(got {got}), e.g. gradient=torch.ones_like(result).")
    return roots, grads


def trace_backward(root, gradient=None, *, params=None, keep="auto", show_saved=False, show_attrs=False,
                   max_nodes=2000, modules=None, collapse=()):
    """Run a real backward from ``root`` and record every Node the engine runs, in order.

    ``root``: the tensor you would call ``.backward()`` on (or a tuple of them).
    ``gradient``: the starting gradient, needed when ``root`` is not a scalar
    (same as ``root.backward(gradient)``). ``params`` names tensors (``{name: tensor}``
    or ``model.named_parameters()``): leaves in the diagram, and in the formulas
    (``grad_w = grad · x``). ``keep``: which gradients are copied whole -- ``"auto"``
    (up to ``KEEP_ELEMENTS`` elements; larger ones are kept as a ``TensorSummary``),
    ``"all"``, or a number of elements. ``show_saved``/``show_attrs``/``max_nodes``
    (and ``modules``/``collapse``) are passed to the diagram, as in ``draw``.

    What it touches: the backward is real, so everything a backward runs, runs.
    The ``.grad`` of leaves, of ``root`` and of intermediates that ``retain_grad()``
    are set to None for it and the original objects are put back afterwards
    (wherever the intermediates are kept); the graph is kept for another
    backward. Hooks *you* registered run as in any backward:
    ``tensor.register_hook`` functions are called, ``register_post_accumulate_grad_hook``
    functions too (one that steps an optimizer would step it). A leaf's recorded
    gradient is what its AccumulateGrad received, whatever such hooks do after.

    Works inside ``torch.inference_mode()`` and ``torch.no_grad()`` as ``backward()``
    does. Refuses what ``backward()`` refuses (a non-scalar or complex root without
    ``gradient``) and a graph with a ``use_reentrant=True`` checkpoint, whose hidden
    inner backward no hook can follow.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> trace = trace_backward(w * 3 + 1)
    >>> [s.name for s in trace]
    ['AddBackward0', 'MulBackward0', 'AccumulateGrad']
    """
    roots, grads = _check_roots(root, gradient)
    limit = _keep_limit(keep)
    if params is not None and not hasattr(params, "items"):
        try:
            params = list(params)  # model.named_parameters() is an iterator: read it once
        except TypeError:
            pass  # walk() says what params must be
    with _gc_paused():
        try:
            graph = walk(root, params, show_saved=show_saved, show_attrs=show_attrs, max_nodes=max_nodes,
                         modules=modules, collapse=collapse)  # modules/collapse: grouped as draw() does
        except GraphError as err:
            raise TraceError(str(err)) from None
        _refuse_hidden_backward(graph)
        retained = _retained_intermediates(graph, roots)
        seeds = [torch.ones_like(r) if g is None else g.detach() for r, g in zip(roots, grads)]
        steps = _record(graph, roots, seeds, limit, retained)
    return BackwardTrace(graph, steps, [s.clone() for s in seeds], _named(params, graph))


def _keep_limit(keep):
    if keep == "auto":
        return KEEP_ELEMENTS
    if keep == "all":
        return float("inf")
    if isinstance(keep, int) and not isinstance(keep, bool) and keep >= 0:
        return keep
    raise TraceError(f'keep must be "auto", "all" or a number of elements (e.g. keep=100_000), not {keep!r}.')


def _named(params, graph):
    """``{id(tensor): (name, tensor)}`` for the tensors ``params`` names and the named leaves."""
    named = {id(n.obj): (n.name, n.obj) for n in graph.nodes if n.kind == "leaf" and n.name}
    if params is not None:
        items = params.items() if hasattr(params, "items") else params
        named.update({id(t): (str(n), t) for n, t in items if isinstance(t, torch.Tensor)})
    return named


def _refuse_hidden_backward(graph):
    for fn in graph.fns:
        if type(fn).__name__ == "CheckpointFunctionBackward":
            raise TraceError(
                "This graph holds a torch.utils.checkpoint with use_reentrant=True, whose backward runs a "
                "second, hidden backward that no hook can follow (and that fills the parameters' .grad "
                "directly): checkpoint with use_reentrant=False to trace it."
            )


_IS_TENSOR = {}  # type -> is it a tensor type (asked once per type)


def _retained_intermediates(graph, roots):
    """Non-leaf tensors of this graph that ``retain_grad()``: the backward writes their ``.grad``.

    PyTorch gives no way from a Node to the tensors it produced, and a learner keeps
    them anywhere (a dict a forward hook fills, an attribute of a model, a local of a
    function that returned), so we ask Python's garbage collector, which tracks every
    live tensor: ~20 ms in a session of 150,000 objects. (Types are looked at with
    ``issubclass``: ``isinstance`` would ask some objects for their ``__class__``.)
    """
    found = {id(r) for r in roots}
    out = []
    for v in gc.get_objects():
        kind = type(v)
        is_tensor = _IS_TENSOR.get(kind)
        if is_tensor is None:
            is_tensor = _IS_TENSOR[kind] = issubclass(kind, torch.Tensor)
        if not is_tensor or id(v) in found:
            continue
        try:
            if not v.retains_grad or v.grad_fn is None:
                continue
            graph.node_of(v.grad_fn)
        except (KeyError, RuntimeError):
            continue
        found.add(id(v))
        out.append(v)
    return out


@contextmanager
def _gc_paused():
    """Pause Python's cycle collector while we trace, as ``timeit`` does.

    The hooks create thousands of small objects, and each batch of them makes
    the collector rescan everything young; one collection afterwards is
    cheaper (about a tenth of the tracing time on a 1,000-node graph).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _whole(t):
    return None if t is None else t.detach().clone()


def _record(graph, roots, seeds, limit, retained=()):
    """Run one real backward with a pre-hook and a hook on every Node; return the Steps."""
    received = []  # [autograd Node, records of its grad_outputs], in the order the engine ran them
    sent = {}  # autograd Node -> records of its grad_inputs
    full = {}  # autograd Node -> (received, sent) whole: the first step that sent a non-finite summary
    position = {}  # custom Function Node -> its entry in `received` (its backward's arguments replace it)
    # A gradient one Node sends is usually the very tensor the next one receives: record it
    # once (unless changed in place since). A weak reference tells a reused id() apart
    # without keeping the gradient alive -- keeping them alive doubled the memory of a trace.
    records = {}  # id(tensor) -> (weak reference, version, record)
    summarized = [False]  # has any gradient been summarized? then non-finite steps are kept whole

    lookup = records.get

    def record(t, whole=False):
        if t is None:
            return None
        seen = lookup(id(t))
        try:
            version = t._version
        except RuntimeError:  # an inference tensor has no version counter: no reuse
            version = None
        if (seen is not None and seen[1] == version and version is not None and seen[0]() is t
                and not (whole and type(seen[2]) is TensorSummary)):
            return seen[2]
        if whole or t.numel() <= limit:
            rec = t.detach().clone()
        else:
            rec = TensorSummary(t)
            summarized[0] = True
        if version is not None:
            records[id(t)] = (weakref.ref(t), version, rec)
        return rec

    def record_whole(t):
        return record(t, True)

    def prehook(fn, whole):  # before the Node runs: what it received
        rec = record_whole if whole else record

        def hook(grad_outputs):
            received.append([fn, tuple(map(rec, grad_outputs))])
        return hook

    def custom_prehook(fn):
        def hook(grad_outputs):
            position[fn] = len(received)
            received.append([fn, tuple(map(record, grad_outputs))])
        return hook

    def posthook(fn):  # after: what it sent along each next_functions edge
        def hook(grad_inputs, grad_outputs):
            recs = list(map(record, grad_inputs))
            sent[fn] = recs
            if summarized[0] and not full and not all(map(_finite, recs)):
                full[fn] = (tuple(map(_whole, grad_outputs)), list(map(_whole, grad_inputs)))
        return hook

    def custom_apply(fn, original):  # what a custom Function's backward really receives
        def apply(*args):
            if fn in position:
                received[position[fn]][1] = tuple(record(g) for g in args)
            return original(*args)
        return apply

    # Tensors whose .grad this backward writes: leaves, roots and intermediates that retain_grad().
    kept = graph.leaves + [r for r in roots if r.retains_grad] + list(retained)
    saved_grads = [t.grad for t in kept]
    handles, patched = [], []
    try:
        for fn in graph.fns:
            if graph.leaf_edge(fn) is not None:  # AccumulateGrad: what it receives is the leaf's gradient
                handles.append(fn.register_prehook(prehook(fn, True)))
                continue
            if isinstance(fn, torch.autograd.function.BackwardCFunction):
                handles.append(fn.register_prehook(custom_prehook(fn)))
                try:
                    fn.apply = custom_apply(fn, fn.apply)
                    patched.append(fn)
                except (AttributeError, TypeError):
                    pass
            else:
                handles.append(fn.register_prehook(prehook(fn, False)))
            handles.append(fn.register_hook(posthook(fn)))
        for t in kept:
            if t.grad is not None:
                t.grad = None
        torch.autograd.backward(roots, grad_tensors=seeds, retain_graph=True)
    except RuntimeError as err:
        if "second time" in str(err) or "freed" in str(err):
            raise TraceError(
                "This graph was already used by a backward() without retain_graph=True, which freed "
                "the tensors it saved: compute the result again (run the forward cell) and trace the new one."
            ) from None
        raise
    finally:
        for h in handles:
            h.remove()
        for fn in patched:
            try:
                del fn.apply
            except AttributeError:
                pass
        for t, g in zip(kept, saved_grads):
            if t.grad is not g:
                t.grad = g
    return _steps(graph, received, sent, full)


def _finite(rec):
    """Is a recorded gradient free of NaN and infinity? (A summary knows; a kept copy is small.)"""
    if rec is None:
        return True
    if type(rec) is TensorSummary:
        return rec.finite
    return formulas.is_finite(rec)


def _steps(graph, received, sent, full):
    """The recorded gradients as Steps, with the diagram's ids for each Node and edge."""
    steps = []
    for index, (fn, grad_outputs) in enumerate(received, 1):
        node = graph.node_of(fn)
        edge = graph.leaf_edge(fn)
        if edge is not None:  # AccumulateGrad: no next_functions, a leaf instead
            steps.append(Step(index, fn, node.id, node.name, grad_outputs, [], [], [],
                              edge.tail.obj, edge.tail.id, edge.id, grad_outputs[0] if grad_outputs else None))
            continue
        grads = sent.get(fn, [])
        edges = [graph.grad_edge(fn, i) for i in range(len(grads))]  # None: no drawn input there
        step = Step(
            index, fn, node.id, node.name, grad_outputs,
            [g if e is not None else None for g, e in zip(grads, edges)],
            [e.id if e is not None else None for e in edges],
            [e.tail.id if e is not None else None for e in edges],
        )
        if fn in full:
            step._full = (full[fn][0], [g if e is not None else None for g, e in zip(full[fn][1], edges)])
        steps.append(step)
    return steps


__all__ = ["trace_backward", "BackwardTrace", "Step", "TraceError"]
