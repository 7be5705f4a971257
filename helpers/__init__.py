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
- ``classroom``   -- ``python -m helpers.classroom``: handout, nbgrader course, grades.
- ``website``     -- ``make site``: the course as a static web site.
- ``colab``       -- each chapter's first cell and its Colab badge.

The names below load on first use (``from helpers import draw`` imports torch
then), so ``python -m helpers.classroom`` and the other command-line tools start
without importing torch.
"""
_WHERE = {  # public name -> the module that defines it
    "draw": "render", "Diagram": "render", "record_modules": "walk",
    "trace_backward": "trace", "BackwardTrace": "trace", "Step": "trace", "TraceError": "trace",
    "step_backward": "stepper", "step_forward": "stepper",
    "BackwardStepper": "stepper", "ForwardStepper": "stepper",
    "check_setup": "setup_check",
}
__all__ = [*_WHERE, "checks"]


def __getattr__(name):
    # Through this module's own __import__ (not importlib's): the grader's fresh copies of
    # the helpers (helpers/grading.py) give each module an __import__ that serves them.
    if name == "checks":
        return __import__("checks", globals(), None, ("check_value",), 1)
    if name in _WHERE:
        value = getattr(__import__(_WHERE[name], globals(), None, (name,), 1), name)
        globals()[name] = value  # once
        return value
    raise AttributeError(f"module 'helpers' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *__all__])
