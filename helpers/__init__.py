"""Autograd Lab helpers: draw, trace and step through PyTorch's real autograd graph.

One module per idea:

- ``walk``        -- the autograd graph as plain data: nodes, edges and stable ids.
- ``describe``    -- a tensor in a few words (values if small, shape and norm if large).
- ``render``      -- ``draw()``: the graph as a Graphviz diagram (``Diagram``).
- ``trace``       -- ``trace_backward()``: record a real backward pass, node by node.
- ``formulas``    -- the local derivative rule of each backward Node, as text and as numbers.
- ``stepper``     -- ``step_backward()`` / ``step_forward()``: widgets that replay it.
- ``checks``      -- the functions exercise check cells call.
- ``exercises``   -- one module per chapter: the verifier of each exercise.
- ``grading``     -- what nbgrader's hidden tests run: the checks, from fresh copies.
- ``notebook``    -- how errors look in a notebook: one line, or a short traceback.
- ``release``     -- builds the learner copies in ``notebooks/`` from ``solutions/``.
- ``setup_check`` -- ``check_setup()``: is this machine ready for the course?
"""
from . import checks
from .render import Diagram, draw
from .setup_check import check_setup
from .stepper import BackwardStepper, ForwardStepper, step_backward, step_forward
from .trace import BackwardTrace, Step, TraceError, trace_backward

__all__ = [
    "draw", "Diagram",
    "trace_backward", "BackwardTrace", "Step", "TraceError",
    "step_backward", "step_forward", "BackwardStepper", "ForwardStepper",
    "checks", "check_setup",
]
