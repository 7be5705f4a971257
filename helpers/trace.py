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
with the drawn diagram's ids, which is the part written here.

The learner's state is left as it was found: each leaf's ``.grad`` is set to
None for the traced backward (so the trace shows this backward's gradient on
its own, as ``torch.autograd.grad`` would compute it) and the original object
is put back afterwards; the graph is kept (``retain_graph=True``); our hooks
are removed even when the backward fails.
"""
import gc
from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from typing import Any, Optional

import torch

from .describe import describe
from .render import Diagram, to_dot
from .walk import GraphError, walk


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
    leaf_grad: Optional[torch.Tensor] = None  # the leaf's gradient after this step

    def __repr__(self):
        return f"<Step {self.index}: {self.name}>"


class BackwardTrace:
    """The Nodes of one backward pass, in the order PyTorch's engine ran them.

    - ``len(trace)``, ``for step in trace``, ``trace.steps[k - 1]`` (see ``Step``);
    - ``trace.seeds``: the gradient each output started with;
    - ``trace.leaf_grads``: ``{leaf: gradient}``; ``trace.grad_of(leaf)``;
    - ``trace.diagram``: the diagram whose ids the steps use, with the final
      gradients written in the leaf boxes;
    - ``print(trace)`` or display it: the engine's order as a table.
    """

    def __init__(self, graph, steps, seeds):
        self.graph = graph
        self.steps = steps
        self.seeds = seeds
        self._diagram = None
        self._nodes = {n.id: n for n in graph.nodes}

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
        node = self._nodes[node_id]
        edge = self.graph.leaf_edge(node.obj) if node.kind == "fn" else None
        return f"{node.name}({edge.tail.name})" if edge is not None and edge.tail.name else node.name

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


def trace_backward(root, gradient=None, *, params=None, show_saved=False, show_attrs=False,
                   max_nodes=2000):
    """Run a real backward from ``root`` and record every Node the engine runs, in order.

    ``root``: the tensor you would call ``.backward()`` on (or a tuple of them).
    ``gradient``: the starting gradient, needed when ``root`` is not a scalar
    (same as ``root.backward(gradient)``). ``params`` names leaves (``{name: tensor}``
    or ``model.named_parameters()``); ``show_saved``/``show_attrs``/``max_nodes``
    are passed to the diagram, as in ``draw``.

    What it touches: the backward is real, so everything a backward runs, runs.
    Leaves' ``.grad`` are set to None for it and the original objects are put
    back afterwards (also a retained ``.grad`` of ``root``); the graph is kept
    for another backward. But hooks *you* registered run as in any backward:
    ``tensor.register_hook`` functions are called, ``register_post_accumulate_grad_hook``
    functions too (one that steps an optimizer would step it), and an
    intermediate tensor on which you called ``retain_grad()`` gets this
    backward's gradient in its ``.grad``.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> trace = trace_backward(w * 3 + 1)
    >>> [s.name for s in trace]
    ['AddBackward0', 'MulBackward0', 'AccumulateGrad']
    """
    roots, grads = _check_roots(root, gradient)
    with _gc_paused():
        try:
            graph = walk(root, params, show_saved=show_saved, show_attrs=show_attrs, max_nodes=max_nodes)
        except GraphError as err:
            raise TraceError(str(err)) from None
        seeds = [torch.ones_like(r) if g is None else g.detach() for r, g in zip(roots, grads)]
        steps = _record(graph, roots, seeds)
    return BackwardTrace(graph, steps, [s.clone() for s in seeds])


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


def _record(graph, roots, seeds):
    """Run one real backward with a pre-hook and a hook on every Node; return the Steps."""
    received = []  # (autograd Node, copies of its grad_outputs), in the order the engine ran them
    sent = {}  # autograd Node -> copies of its grad_inputs
    # A gradient one Node sends is usually the very tensor the next one receives: copy it
    # once (unless changed in place since). Keeping the original alive meanwhile keeps its
    # id() from being reused.
    copies = {}  # id(tensor) -> (tensor, its version, its copy)

    def copy(t):
        if t is None:
            return None
        seen = copies.get(id(t))
        if seen is None or seen[1] != t._version:
            seen = copies[id(t)] = (t, t._version, t.detach().clone())
        return seen[2]

    def prehook(fn):  # before the Node runs: what it received
        return lambda grad_outputs: received.append((fn, tuple(map(copy, grad_outputs))))

    def posthook(fn, leaf):  # after: what it sent along each next_functions edge
        def hook(grad_inputs, grad_outputs):  # (for an AccumulateGrad: the leaf's .grad now)
            sent[fn] = [copy(g) for g in grad_inputs] if leaf is None else copy(leaf.grad)
        return hook

    # Tensors whose .grad this backward writes: the leaves, and roots that retain_grad().
    kept = graph.leaves + [r for r in roots if r.retains_grad]
    saved_grads = [t.grad for t in kept]
    handles = []
    try:
        for fn in graph.fns:
            leaf_edge = graph.leaf_edge(fn)
            handles.append(fn.register_prehook(prehook(fn)))
            handles.append(fn.register_hook(posthook(fn, leaf_edge and leaf_edge.tail.obj)))
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
        for t, g in zip(kept, saved_grads):
            if t.grad is not g:
                t.grad = g
    return _steps(graph, received, sent)


def _steps(graph, received, sent):
    """The recorded gradients as Steps, with the diagram's ids for each Node and edge."""
    steps = []
    for index, (fn, grad_outputs) in enumerate(received, 1):
        node = graph.node_of(fn)
        edge = graph.leaf_edge(fn)
        if edge is not None:  # AccumulateGrad: no next_functions, a leaf instead
            steps.append(Step(index, fn, node.id, node.name, grad_outputs, [], [], [],
                              edge.tail.obj, edge.tail.id, edge.id, sent.get(fn)))
            continue
        grads = sent.get(fn, [])
        edges = [graph.grad_edge(fn, i) for i in range(len(grads))]  # None: no drawn input there
        steps.append(Step(
            index, fn, node.id, node.name, grad_outputs,
            [g if e is not None else None for g, e in zip(grads, edges)],
            [e.id if e is not None else None for e in edges],
            [e.tail.id if e is not None else None for e in edges],
        ))
    return steps


__all__ = ["trace_backward", "BackwardTrace", "Step", "TraceError"]
