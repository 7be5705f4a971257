"""``step_backward()`` / ``step_forward()``: widgets that replay a graph step by step.

The idea: the graph is laid out once by Graphviz (``Diagram.svg``) and sent to
the browser once, together with every recorded step. A step is then only a
change of CSS classes on ids that are already in the picture (and a new text
in a leaf's "grad" line), so moving through the steps is instant, needs no
kernel and never re-lays out the graph. Playing runs in the browser alone;
``step`` is synced back to Python when you stop.

- ``step_backward`` replays ``trace_backward``: the Node the engine runs
  lights up, the edges its gradient travels along are coloured, Nodes that have
  received gradient wait, finished Nodes turn green and leaves fill up.
  Step 0 is "before backward" (the seed gradient leaves the output); step k is
  the k-th Node the engine ran; ``n_steps`` is how many Nodes it ran.
- ``step_forward`` runs a function once and reveals its graph in the order
  the Nodes were created (``node._sequence_nr()``), naming the torch function
  that created each one. Step 0 is "before fn runs"; step k adds the k-th Node
  fn created; ``n_steps`` is how many Nodes fn created.

Both use one front end (``static/stepper.js``, an anywidget ES module) fed with
a different payload. Written by hand because no widget library animates a
Graphviz SVG; anywidget does the Jupyter plumbing, Graphviz the layout.
"""
from pathlib import Path

import anywidget
import torch
import traitlets
from torch.overrides import TorchFunctionMode, resolve_name

from .describe import describe
from .trace import TraceError, trace_backward
from .walk import GraphError, walk
from .render import Diagram, to_dot

STATIC = Path(__file__).parent / "static"


class Stepper(anywidget.AnyWidget):
    """A diagram plus recorded steps; set ``step`` (0..``n_steps``) to move."""

    _esm = STATIC / "stepper.js"
    _css = STATIC / "stepper.css"
    _svg = traitlets.Unicode("").tag(sync=True)
    _payload = traitlets.Dict().tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    n_steps = traitlets.Int(0, read_only=True).tag(sync=True)
    speed = traitlets.Float(2.0).tag(sync=True)  # steps per second while playing

    def __init__(self, diagram, payload, n_steps, speed=2.0, step=0):
        self.diagram = diagram
        self.set_trait("n_steps", n_steps)  # before __init__ opens the comm: one message, all state
        super().__init__(_svg=diagram.svg, _payload=payload, speed=speed, step=step)  # laid out here, once

    @traitlets.validate("step")
    def _clamp_step(self, proposal):
        return min(max(int(proposal["value"]), 0), self.n_steps)

    @traitlets.validate("speed")
    def _check_speed(self, proposal):
        if not proposal["value"] > 0:
            raise traitlets.TraitError("speed is in steps per second and must be positive, e.g. speed=2.")
        return proposal["value"]


# --- backward ---------------------------------------------------------------

class BackwardStepper(Stepper):
    """Replays a ``BackwardTrace``: ``.trace``, ``.step``, ``.n_steps``, ``.current``."""

    def __init__(self, trace, speed=2.0, step=0):
        self.trace = trace
        super().__init__(trace.diagram, _backward_payload(trace), len(trace), speed, step)

    @property
    def current(self):
        """The ``Step`` shown now (None at step 0, before backward)."""
        return self.trace.steps[self.step - 1] if self.step else None


def _short(t):
    """A gradient in words short enough to sit on an edge."""
    return describe(t, shape=False)


def _backward_payload(trace):
    graph = trace.graph
    outputs = [n for n in graph.nodes if n.kind == "output"]
    out_edges = [e for e in graph.edges if e.head in outputs and e.kind == "grad"]
    incoming = {}  # node id -> number of edges its gradient arrives along
    for e in graph.edges:
        if e.kind == "grad" and e.head.kind in ("fn", "output"):
            incoming[e.tail.id] = incoming.get(e.tail.id, 0) + 1

    start = {
        "run": [n.id for n in outputs],
        "flow": [[e.id, _short(s)] for e, s in zip(out_edges, trace.seeds)],
        "to": [e.tail.id for e in out_edges],
        "title": "before backward",
        "note": "backward() starts with the seed gradient, d output / d output, "
                "and hands it to the output's grad_fn.",
        "rows": [[f"seed → {trace.name_of(e.tail.id)}", describe(s)] for e, s in zip(out_edges, trace.seeds)],
    }
    steps = [start]
    for s in trace.steps:
        received = [[f"received{f' (output {i})' if len(s.grad_outputs) > 1 else ''}", describe(g)]
                    for i, g in enumerate(s.grad_outputs)]
        sent = [[f"sent → {trace.name_of(t)}", describe(g)]
                for g, t in zip(s.grad_inputs, s.target_ids) if t is not None]
        flow = [[e, _short(g)] for g, e in zip(s.grad_inputs, s.edge_ids) if e is not None]
        note = ""
        if incoming.get(s.node_id, 0) > 1:
            note = (f"The engine summed the gradients from its {incoming[s.node_id]} incoming edges "
                    "before running it. ")
        step = {"run": [s.node_id], "flow": flow, "to": [t for t in s.target_ids if t is not None],
                "title": trace.name_of(s.node_id), "rows": received + sent}
        if s.leaf is not None:
            leaf = graph.node_of(s.leaf).name or "leaf"
            grad = describe(s.leaf_grad)
            step.update(leaf=s.leaf_id, grad=grad, flow=[[s.leaf_edge_id, _short(s.leaf_grad)]])
            step["rows"] = received + [[f"{leaf}.grad", grad]]
            note += f"AccumulateGrad adds what it received into {leaf}.grad."
        step["note"] = note
        steps.append(step)
    return {"mode": "backward", "steps": steps, "empty": "None"}


def step_backward(root, params=None, gradient=None, *, show_saved=False, speed=2.0,
                  max_nodes=2000):
    """A widget that replays the backward pass of ``root`` one Node at a time.

    Runs ``trace_backward(root, gradient)`` (a real backward that leaves
    ``.grad`` and the graph as they were) and draws the graph once. Press ▶,
    use the slider, the buttons or the arrow keys (click the widget first), or
    set ``stepper.step`` from a cell; ``stepper.current`` is the ``Step`` shown.
    ``params`` names leaves; ``speed`` is in steps per second.
    """
    trace = trace_backward(root, gradient, params=params, show_saved=show_saved, max_nodes=max_nodes)
    return BackwardStepper(trace, speed=speed)


# --- forward ----------------------------------------------------------------

# The operator that calls each method, so "w * x" reads "Tensor.mul (*)".
_OPERATORS = {
    "add": "+", "radd": "+", "iadd": "+=", "sub": "-", "rsub": "-", "isub": "-=",
    "mul": "*", "rmul": "*", "imul": "*=", "div": "/", "truediv": "/", "rtruediv": "/",
    "itruediv": "/=", "matmul": "@", "rmatmul": "@", "pow": "**", "rpow": "**", "neg": "unary -",
    "getitem": "x[...]", "setitem": "x[...] = ...",
}


def _op_name(func):
    """``torch.mul``, ``F.relu``, or ``Tensor.mul (*)`` for a method an operator calls."""
    name = resolve_name(func) or getattr(func, "__name__", repr(func))
    name = name.replace("torch.Tensor.", "Tensor.").replace("torch.nn.functional.", "F.")
    method = name.rsplit(".", 1)[-1]
    op = _OPERATORS.get(method.strip("_")) if name.startswith("Tensor.") else None
    if method.startswith("__") and method.endswith("__"):  # x ** 2 calls Tensor.__pow__: show "Tensor.pow"
        name = name[: -len(method)] + method.strip("_")
    elif op and method.endswith("_") and not op.endswith("="):
        op += "="  # in-place: x.add_(y) is x += y
    return f"{name} ({op})" if op else name


class _OpNames(TorchFunctionMode):
    """Remembers which torch function produced each new ``grad_fn`` (and the value it gave)."""

    def __init__(self):
        super().__init__()
        self.ops = {}  # autograd Node -> (op name, value text)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            fn = t.grad_fn if isinstance(t, torch.Tensor) else None
            if fn is not None and fn not in self.ops:
                self.ops[fn] = (_op_name(func), describe(t))
        return out


def _sequence_mark():
    """The creation number of a throwaway Node: Nodes made after it have larger ones (per thread)."""
    with torch.enable_grad():
        return (torch.zeros((), requires_grad=True) * 1).grad_fn._sequence_nr()


class ForwardStepper(Stepper):
    """Reveals the graph of ``output`` in the order its Nodes were created."""

    def __init__(self, diagram, payload, output, speed=2.0):
        self.output = output
        super().__init__(diagram, payload, len(payload["steps"]) - 1, speed)


def _forward_payload(graph, mark, ops):
    """Which nodes and edges appear at each step: one new Node per step, in creation order."""
    fns = [n for n in graph.nodes if n.kind == "fn" and not hasattr(n.obj, "variable")]
    new = sorted((n for n in fns if n.obj._sequence_nr() > mark), key=lambda n: n.obj._sequence_nr())
    at = {n.id: 0 for n in fns}  # node id -> the step that reveals it (0: existed before fn ran)
    at.update({n.id: k for k, n in enumerate(new, 1)})
    grad_edges = [e for e in graph.edges if e.kind == "grad"]
    for e in grad_edges:  # an AccumulateGrad appears with the first Node that uses its leaf
        if e.head.kind == "fn" and hasattr(e.tail.obj, "variable"):
            at[e.tail.id] = min(at.get(e.tail.id, len(new)), at[e.head.id])
    for e in grad_edges:  # a leaf with its AccumulateGrad, an output with its grad_fn
        if e.tail.kind == "leaf":
            at[e.tail.id] = at[e.head.id]
        elif e.head.kind == "output":
            at[e.head.id] = at[e.tail.id]
    for e in graph.edges:  # a saved tensor with the Node that saved it, a view's base with the view
        if e.kind in ("saved", "view"):
            at[e.tail.id] = at[e.head.id]
    edge_at = {e.id: max(at[e.tail.id], at[e.head.id]) for e in graph.edges}
    nodes_at, edges_at, leaves_at = {}, {}, {}  # step -> what appears then
    for i, k in at.items():
        nodes_at.setdefault(k, []).append(i)
    for i, k in edge_at.items():
        edges_at.setdefault(k, []).append(i)
    for n in graph.nodes:
        if n.kind == "leaf":
            leaves_at.setdefault(at[n.id], []).append(n.name or "a leaf")

    steps = [{"reveal": nodes_at.get(0, []) + edges_at.get(0, []), "run": [], "flow": [],
              "title": "before fn runs", "rows": [],
              "note": "These Nodes existed before fn ran." if 0 in nodes_at else
                      "No graph yet: each operation on a tensor that requires grad will record a Node."}]
    for k, node in enumerate(new, 1):
        nodes, edges = nodes_at.get(k, []), edges_at.get(k, [])
        op, value = ops.get(node.obj, (None, None))
        rows = [["created by", op], ["result", value]] if op else []
        note = f"{op} recorded {node.name} for its result." if op else f"{node.name} was recorded."
        leaves = leaves_at.get(k)
        if leaves:
            note += (f" First use of {', '.join(leaves)}: "
                     + ("its AccumulateGrad, which backward will use to fill its .grad, appears."
                        if len(leaves) == 1 else "their AccumulateGrad Nodes appear."))
        steps.append({"reveal": nodes + edges, "run": nodes, "flow": [[i, ""] for i in edges],
                      "title": node.name, "rows": rows, "note": note})
    return {"mode": "forward", "steps": steps, "all": list(at) + list(edge_at)}


def step_forward(fn, *inputs, params=None, show_saved=False, speed=2.0, max_nodes=2000):
    """A widget that shows the graph of ``fn(*inputs)`` growing one operation at a time.

    Runs ``fn(*inputs)`` once (its result is ``stepper.output``), draws the
    final graph once and reveals its Nodes in the order they were created.
    ``params`` names leaves, e.g. ``dict(model.named_parameters())``.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> step_forward(lambda x: w * x + 1, torch.tensor(3.0), params={"w": w})  # doctest: +SKIP
    """
    if not callable(fn):
        raise TypeError(f"step_forward needs a function first, e.g. step_forward(lambda x: w * x, x); "
                        f"got {type(fn).__name__}.")
    mark = _sequence_mark()
    with _OpNames() as recorder:
        output = fn(*inputs)
    graph = walk(output, params, show_saved=show_saved, max_nodes=max_nodes)
    diagram = Diagram(graph, to_dot(graph))
    return ForwardStepper(diagram, _forward_payload(graph, mark, recorder.ops), output, speed)


__all__ = ["step_backward", "step_forward", "BackwardStepper", "ForwardStepper", "Stepper",
           "TraceError", "GraphError"]
