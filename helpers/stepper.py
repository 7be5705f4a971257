"""``step_backward()`` / ``step_forward()``: widgets that replay a graph step by step.

The idea: the graph is laid out once by Graphviz (``Diagram.svg``) and sent to
the browser once, together with every recorded step. The browser never changes
that picture: what a step shows (the running Node, the edges its gradient
travels along, finished Nodes, filled leaves) is drawn on small layers on top
of it, so a step costs the same on 10 nodes as on 5,000, needs no kernel and
never re-lays out the graph. Playing runs in the browser alone; ``step`` is
synced back to Python when you stop.

- ``step_backward`` replays ``trace_backward``: the Node the engine runs
  lights up, the edges its gradient travels along are coloured (arrowheads
  the way the gradient flows), Nodes that have received gradient wait,
  finished Nodes turn green and leaves fill up; the panel shows what each Node
  received and sent and the rule it applied (``Step.formula``). Step 0 is
  "before backward" (the seed gradient leaves the output); step k is the k-th
  Node the engine ran; ``n_steps`` is how many Nodes it ran.
  ``predict=True`` asks the learner for each gradient before showing it;
  ``stop_at="nonfinite"`` opens where the first NaN or infinity was sent.
- ``step_forward`` runs a function once and reveals its graph in the order
  the Nodes were created (``node._sequence_nr()``), naming the torch function
  that created each one. Step 0 is "before fn runs"; step k adds the k-th Node
  fn created; ``n_steps`` is how many Nodes fn created.

Both use one front end (``static/stepper.js``, an anywidget ES module) fed with
a different payload. Written by hand because no widget library animates a
Graphviz SVG; anywidget does the Jupyter plumbing, Graphviz the layout.

Without a kernel: a stepper's output also carries a ``text/html`` form (the
picture, the steps as JSON, a note), which ``static/static_stepper.js`` mounts
on a plain web page with the same front end; where scripts do not run it shows
the picture and "run the cell". A notebook saved in the course's JupyterLab
keeps its steppers working when reopened, from the widget state JupyterLab
saves (``saveState`` in ``binder/overrides.json``).
"""
import json
import math
import random
import re
import weakref
from html import escape
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


STATIC_LIMIT = 256 * 1024  # characters of SVG + steps up to which an output carries its static form


def _lean(svg):
    """Graphviz's SVG without what the stepper does not use: the XML header, comments,
    ``<title>`` (our raw ids) and whitespace between tags -- fewer nodes for the browser."""
    svg = svg[max(0, svg.find("<svg")):]
    svg = re.sub(r"<!--.*?-->", "", svg, flags=re.S)
    svg = re.sub(r"<title>[^<]*</title>", "", svg)
    return re.sub(r">\s+<", "><", svg)


def _compact(path):
    """A static file without its comments and indentation: what each widget sends to the browser.

    JupyterLab saves every widget's front end into the notebook with its state,
    so this keeps saved notebooks smaller. Only whole-line ``//`` comments,
    ``/* */`` comments in CSS and leading spaces go; a file with a template
    literal spanning lines is sent as it is.
    """
    text = path.read_text()
    if path.suffix == ".css":
        text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    elif any(line.count("`") % 2 for line in text.splitlines()):
        return text
    lines = (line.strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line and not line.startswith("//")) + "\n"


class Stepper(anywidget.AnyWidget):
    """A diagram plus recorded steps; set ``step`` (0..``n_steps``) to move."""

    _esm = _compact(STATIC / "stepper.js")
    _css = _compact(STATIC / "stepper.css")
    _svg = traitlets.Unicode("").tag(sync=True)
    _payload = traitlets.Dict().tag(sync=True)
    step = traitlets.Int(0).tag(sync=True)
    n_steps = traitlets.Int(0, read_only=True).tag(sync=True)
    speed = traitlets.Float(2.0).tag(sync=True)  # steps per second while playing

    def __init__(self, diagram, payload, n_steps, speed=2.0, step=0):
        self.diagram = diagram
        self.set_trait("n_steps", n_steps)  # before __init__ opens the comm: one message, all state
        super().__init__(_svg=_lean(diagram.svg), _payload=payload, speed=speed, step=step)  # laid out here, once

    # The traits the front end reads besides the picture: embedded in the HTML copy.
    _STATIC_TRAITS = ("_payload", "n_steps", "step", "speed")

    def static_state(self):
        """The state the front end needs besides the SVG, as a JSON-ready dict."""
        return {k: getattr(self, k) for k in self._STATIC_TRAITS}

    def static_html(self, note=None):
        """The stepper as HTML that needs no kernel: the diagram, the steps as JSON, a note.

        Where scripts do not run (a notebook opened elsewhere, untrusted; GitHub)
        it shows the picture and the note; a page that loads
        ``static/static_stepper.js`` turns it into the same stepper, stepping in
        the browser alone. The diagram is an ``<img>`` of the SVG (a data URL),
        not inline SVG: sanitizers keep an image but strip ``<svg>`` and would
        print its text; the bootstrap reads the SVG back from the URL.
        """
        state = json.dumps(self.static_state(), separators=(",", ":"), ensure_ascii=False)
        # Inside <script> nothing may look like a tag: escape <, > and & as JSON allows.
        state = state.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
        svg = self._svg
        # A data URL with as little escaping as URLs need (% and #; newlines would be dropped).
        url = "data:image/svg+xml;charset=utf-8," + (
            svg.replace("%", "%25").replace("#", "%23").replace("\n", "%0A"))
        if note is None:
            note = (f"Static picture of a {self._payload.get('mode', '')} stepper ({self.n_steps} steps): "
                    "run the cell to step through it.")
        alt = f"the graph this {self._payload.get('mode', '')} stepper steps through"
        return (f'<div class="ag-static-stepper">'
                f'<script type="application/json" class="ag-stepper-state">{state}</script>'
                f'<div class="ag-static-diagram"><img src="{escape(url)}" alt="{escape(alt)}"></div>'
                f'<p class="ag-static-note">{escape(note)}</p></div>')

    def close(self):
        super().close()
        self.__dict__.pop("_repr_mimebundle_", None)  # ipywidgets blanks it; showing it again reopens

    def _repr_mimebundle_(self, **kwargs):
        if self.comm is None:  # closed when the cell that showed it ran again: show it anew
            self.open()
        _cells.shown(self)
        data, metadata = super()._repr_mimebundle_(**kwargs)
        mode = self._payload.get("mode", "")
        data["text/plain"] = (f"{type(self).__name__}: {mode} stepper, {self.n_steps} steps "
                              "(a widget: run the cell in Jupyter to show it)")
        # The static form doubles what the notebook carries: only for graphs of ordinary size.
        size = len(self._svg) + len(json.dumps(self._payload))
        data["text/html"] = self.static_html() if size <= STATIC_LIMIT else (
            f'<p class="ag-static-note">A {escape(mode)} stepper over a large graph ({self.n_steps} steps, '
            f"too large to keep a static copy in the notebook): run the cell to show it.</p>")
        return data, metadata

    @traitlets.validate("step")
    def _clamp_step(self, proposal):
        return min(max(int(proposal["value"]), 0), self.n_steps)

    @traitlets.validate("speed")
    def _check_speed(self, proposal):
        if not proposal["value"] > 0:
            raise traitlets.TraitError("speed is in steps per second and must be positive, e.g. speed=2.")
        return proposal["value"]


class _CellOutputs:
    """Closes the steppers a notebook cell showed when that cell runs again.

    Running a cell again clears its output, but the widget behind it lives on
    in the kernel (with its trace) and in the page, and JupyterLab saves the
    state of every live widget into the notebook when it saves widget state
    (``saveState``, which lets a reopened notebook show its steppers). So a
    stepper shown only by the cell that is running again is closed: that frees
    its memory and keeps saved notebooks small. Showing it again reopens it.
    Outside IPython this does nothing.
    """

    def __init__(self):
        self.by_cell = {}  # cell id -> {id(stepper): weak reference}
        self.hooked = False

    @staticmethod
    def _ipython():
        try:
            from IPython import get_ipython
        except ImportError:
            return None
        return get_ipython()

    def _current_cell(self, ip):
        kernel = getattr(ip, "kernel", None)
        try:
            parent = kernel.get_parent() if kernel is not None else {}
        except Exception:  # no request being handled
            return None
        return (parent or {}).get("metadata", {}).get("cellId")

    def shown(self, stepper):
        ip = self._ipython()
        if ip is None:
            return
        if not self.hooked:
            ip.events.register("pre_run_cell", self._cell_runs)
            self.hooked = True
        cell = self._current_cell(ip)
        if cell:
            self.by_cell.setdefault(cell, {})[id(stepper)] = weakref.ref(stepper)

    def _cell_runs(self, info=None):
        cell = getattr(info, "cell_id", None)
        if not cell or cell not in self.by_cell:
            return
        gone = self.by_cell.pop(cell)
        elsewhere = {k for other in self.by_cell.values() for k in other}
        for key, ref in gone.items():
            stepper = ref()
            if stepper is not None and key not in elsewhere and stepper.comm is not None:
                stepper.close()


_cells = _CellOutputs()


# --- backward ---------------------------------------------------------------

class BackwardStepper(Stepper):
    """Replays a ``BackwardTrace``: ``.trace``, ``.step``, ``.n_steps``, ``.current``."""

    def __init__(self, trace, speed=2.0, step=0, *, predict=False, stop_at=None):
        self.trace = trace
        payload = _backward_payload(trace, predict=predict)
        step = _stop_step(trace, payload, stop_at, step)
        super().__init__(trace.diagram, payload, len(trace), speed, step)

    @property
    def current(self):
        """The ``Step`` shown now (None at step 0, before backward)."""
        return self.trace.steps[self.step - 1] if self.step else None


def _short(t):
    """A gradient in words short enough to sit on an edge."""
    return describe(t, shape=False)


def _formula(step):
    """The step's rule as the panel shows it (its title already names the Node)."""
    text = getattr(step, "formula", None)  # Step.formula: the rule with the values in
    if not text:
        return None
    head = f"{step.name}: "
    return text[len(head):] if text.startswith(head) else text


def _number(t):
    """A one-element gradient as a float a learner can type; None for anything else."""
    if not isinstance(t, torch.Tensor) or t.numel() != 1 or t.is_complex():
        return None
    v = float(t.detach().reshape(()).item())
    return v if math.isfinite(v) else None  # JSON has no NaN: those are picked from choices


def _choices(sent, received, others, index):
    """The right text and up to three wrong ones, each wrong one with the one line that says why."""
    right = describe(sent)
    wrong = []
    if isinstance(received, torch.Tensor) and received.shape == sent.shape:
        wrong.append((describe(received), "that is what it received: apply the local derivative"))
    if isinstance(sent, torch.Tensor) and sent.dtype.is_floating_point:
        wrong.append((describe(-sent), "right size, wrong sign"))
    for other in others:
        if isinstance(other, torch.Tensor):
            wrong.append((describe(other), "that is what it sends to its other input"))
    if isinstance(sent, torch.Tensor) and sent.dtype.is_floating_point:
        wrong.append((describe(2 * sent), "twice too large"))
        wrong.append((describe(torch.zeros_like(sent)), "it does send a gradient here"))
    seen, options = {right}, [(right, None)]
    for text, why in wrong:
        if text not in seen and len(options) < 4:
            seen.add(text)
            options.append((text, why))
    if len(options) < 2:
        return None  # nothing to choose between: show the value instead of asking
    rng = random.Random(index)  # the same order every time the cell runs
    rng.shuffle(options)
    return [[text, why] for text, why in options]


def _guesses(s, rows_before):
    """What a learner predicts at this step: one entry per gradient the Node sends."""
    received = s.grad_outputs[0] if len(s.grad_outputs) == 1 else None
    sent = [(g, t) for g, t in zip(s.grad_inputs, s.target_ids) if t is not None]
    out = []
    for i, (g, _) in enumerate(sent):
        if g is None:
            continue
        guess = {"row": rows_before + i, "text": describe(g)}
        value = _number(g)
        if value is not None:
            guess["value"] = value
            r = _number(received)
            if r is not None:
                guess["received"] = r
        else:
            others = [o for j, (o, _) in enumerate(sent) if j != i]
            choices = _choices(g, received, others, s.index * 31 + i)
            if choices is None:
                continue
            guess["choices"] = choices
        out.append(guess)
    return out


def _title(trace, s, by_id):
    """The Node's name; inside a module drawn as one box (``collapse=``), also the module's."""
    box = by_id[s.node_id]
    if box.kind != "module":
        return trace.name_of(s.node_id)
    inner = type(s.node).__name__
    if s.leaf_id is not None and by_id[s.leaf_id].name:
        inner += f"({by_id[s.leaf_id].name})"
    return f"{inner} in {box.name or 'the model'}"


def _backward_payload(trace, predict=False):
    graph = trace.graph
    by_id = {n.id: n for n in (*graph.nodes, *getattr(graph, "hidden", ()))}  # hidden: folded into a box
    outputs = [n for n in graph.nodes if n.kind == "output"]
    out_edges = [e for e in graph.edges if e.head in outputs and e.kind == "grad"]
    # A shared leaf's AccumulateGrad is drawn once, and a dashed "ref" box stands for it next to
    # each distant use: gradient arrives at the refs, which run (and are done) with the Node.
    refs = {}  # node id -> ids of the ref boxes that stand for it
    for n in graph.nodes:
        if n.kind == "ref":
            refs.setdefault(n.ref.id, []).append(n.id)
    incoming = {}  # node id -> number of edges its gradient arrives along (refs' included)
    for e in graph.edges:
        if e.kind == "grad" and e.head.kind in ("fn", "output"):
            tail = e.tail.ref if e.tail.kind == "ref" else e.tail
            incoming[tail.id] = incoming.get(tail.id, 0) + 1

    start = {
        "run": [n.id for n in outputs],
        "flow": [[e.id, _short(s)] for e, s in zip(out_edges, trace.seeds)],
        "to": [e.tail.id for e in out_edges],
        "title": "before backward",
        "note": "backward() starts with the seed gradient, d output / d output, "
                "and hands it to the output's grad_fn.",
        "rows": [[f"seed → {trace.name_of(e.tail.id)}", describe(s)] for e, s in zip(out_edges, trace.seeds)],
    }
    if predict:
        start["note"] += (" Predict mode: at each step, type what the Node sends (or pick it) before "
                          "you see it; then the rule and the value appear.")
    steps = [start]
    for s in trace.steps:
        received = [[f"received{f' (output {i})' if len(s.grad_outputs) > 1 else ''}", describe(g)]
                    for i, g in enumerate(s.grad_outputs)]
        sent = [[f"sent → {trace.name_of(t)}", describe(g)]
                for g, t in zip(s.grad_inputs, s.target_ids) if t is not None]
        flow = [[e, _short(g)] for g, e in zip(s.grad_inputs, s.edge_ids) if e is not None]
        note = ""
        if len(s.grad_outputs) > 1:  # one gradient per output, each summed over its own edges
            note = (f"It has {len(s.grad_outputs)} outputs: the engine gathered a gradient for each "
                    f"(summed where an output feeds several Nodes; {incoming.get(s.node_id, 0)} incoming "
                    "edges in all) before running it. ")
        elif incoming.get(s.node_id, 0) > 1:
            note = (f"The engine summed the gradients from its {incoming[s.node_id]} incoming edges "
                    "before running it. ")
        step = {"run": [s.node_id, *refs.get(s.node_id, ())], "flow": flow,
                "to": [t for t in s.target_ids if t is not None],
                "title": _title(trace, s, by_id), "rows": received + sent}
        formula = _formula(s)
        if formula:
            step["formula"] = formula
        if s.leaf is not None:
            leaf = by_id[s.leaf_id].name or "leaf"
            grad = describe(s.leaf_grad)
            step.update(leaf=s.leaf_id, grad=grad, flow=[[s.leaf_edge_id, _short(s.leaf_grad)]])
            note += f"AccumulateGrad adds what it received into {leaf}.grad."
            before = getattr(by_id[s.leaf_id].obj, "grad", None)
            if before is None:
                step["rows"] = received + [[f"{leaf}.grad", grad]]
            else:  # the trace starts every .grad from None, and puts the learner's back
                step["rows"] = received + [[f"{leaf}.grad (this backward's)", grad],
                                           [f"{leaf}.grad before (yours, kept)", describe(before)]]
                note += (" Yours already held a gradient: a real backward() adds this one to it; "
                         "the stepper shows this backward's alone and leaves yours as it was.")
        elif predict:
            guesses = _guesses(s, len(received))
            if guesses:
                step["guess"] = guesses
        step["note"] = note
        steps.append(step)
    payload = {"mode": "backward", "steps": steps, "empty": "None"}
    if predict:
        payload["predict"] = True
    return payload


STOP_AT = ("nonfinite",)


def _stop_step(trace, payload, stop_at, step):
    """The step to open at; for ``stop_at="nonfinite"`` also say what happened there."""
    if stop_at is None:
        return step
    if isinstance(stop_at, int) and not isinstance(stop_at, bool):
        return stop_at  # a step number: clamped like any step
    if stop_at not in STOP_AT:
        raise ValueError(f"stop_at can be \"nonfinite\" (open at the first step that sends a NaN or an "
                         f"infinity) or a step number, not {stop_at!r}.")
    first = trace.first_nonfinite()
    if first is None:
        payload["steps"][0]["note"] += (" stop_at=\"nonfinite\": every gradient of this backward is finite, "
                                        "so the stepper opens before backward.")
        return 0
    where = payload["steps"][first.index]
    where["alert"] = (f"First NaN or infinity: {first.nonfinite}" if getattr(first, "nonfinite", None)
                      else "First NaN or infinity: this Node sent it.")
    return first.index


def step_backward(root, params=None, gradient=None, *, show_saved=False, speed=2.0,
                  predict=False, stop_at=None, max_nodes=2000, **group):
    """A widget that replays the backward pass of ``root`` one Node at a time.

    Runs ``trace_backward(root, gradient)`` (a real backward that leaves
    ``.grad`` and the graph as they were) and draws the graph once. Press ▶,
    use the slider, the buttons or the arrow keys (click the widget first), or
    set ``stepper.step`` from a cell; ``stepper.current`` is the ``Step`` shown.
    ``params`` names leaves; ``speed`` is in steps per second.

    ``predict=True``: before showing what a Node sends, ask the learner for it
    (a number, or a choice for a tensor), say in one line whether it is right
    or which way it is off, then show the rule and the value; a score counts.
    All in the browser: it is practice, not grading.

    ``stop_at="nonfinite"``: open at the first step that sends a NaN or an
    infinity, with that Node marked and one sentence on what made it
    (``trace.first_nonfinite()``); ``stop_at=k`` opens at step ``k``.

    ``modules=``/``collapse=``: group the picture by ``nn.Module``, as ``draw`` does.
    """
    group = _checked_group(group)
    trace = trace_backward(root, gradient, params=params, show_saved=show_saved, max_nodes=max_nodes, **group)
    return BackwardStepper(trace, speed=speed, predict=predict, stop_at=stop_at)


def _checked_group(group, caller="step_backward"):
    """``modules=``/``collapse=`` as ``draw`` takes them; a clear sentence for anything else."""
    unknown = sorted(set(group) - {"modules", "collapse"})
    if unknown:
        raise TypeError(f"{caller}() got an unexpected keyword argument {unknown[0]!r}.")
    return {k: v for k, v in group.items() if v is not None}


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


def step_forward(fn, *inputs, params=None, show_saved=False, speed=2.0, max_nodes=2000, **group):
    """A widget that shows the graph of ``fn(*inputs)`` growing one operation at a time.

    Runs ``fn(*inputs)`` once (its result is ``stepper.output``), draws the
    final graph once and reveals its Nodes in the order they were created.
    ``params`` names leaves, e.g. ``dict(model.named_parameters())``;
    ``modules=``/``collapse=`` group the picture by ``nn.Module``, as ``draw`` does.

    >>> w = torch.tensor(2.0, requires_grad=True)
    >>> step_forward(lambda x: w * x + 1, torch.tensor(3.0), params={"w": w})  # doctest: +SKIP
    """
    if not callable(fn):
        raise TypeError(f"step_forward needs a function first, e.g. step_forward(lambda x: w * x, x); "
                        f"got {type(fn).__name__}.")
    group = _checked_group(group, "step_forward")
    mark = _sequence_mark()
    with _OpNames() as recorder:
        output = fn(*inputs)
    graph = walk(output, params, show_saved=show_saved, max_nodes=max_nodes, **group)
    diagram = Diagram(graph, to_dot(graph))
    return ForwardStepper(diagram, _forward_payload(graph, mark, recorder.ops), output, speed)


__all__ = ["step_backward", "step_forward", "BackwardStepper", "ForwardStepper", "Stepper",
           "TraceError", "GraphError"]
