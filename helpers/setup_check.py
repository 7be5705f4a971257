"""``check_setup()``: one call that says whether this machine is ready for the course.

It checks what the notebooks need -- torch, Graphviz (system or pip-only) and
the widget stack -- by *using* each one, and for anything missing prints the
exact command that fixes it.
"""
import importlib
import platform

COURSE_TORCH = "2.13.0"


def _torch():
    import torch

    version = torch.__version__.split("+")[0]
    x = torch.ones(2, requires_grad=True)
    (x * x).sum().backward()
    assert x.grad.tolist() == [2.0, 2.0]
    note = "" if version == COURSE_TORCH else f" (the course is tested with {COURSE_TORCH})"
    return True, f"torch {torch.__version__}, autograd works{note}"


def _graphviz():
    from .render import layout_command, run_layout

    cmd, what = layout_command()
    if cmd is None:
        return False, what
    svg = run_layout('digraph { a -> b }').decode()
    if "<svg" not in svg:
        return False, f"{what} ran but produced no SVG; reinstall it."
    hint = "" if "system" in what else " -- pip-only fallback; 'apt-get install graphviz' gives the reference layout"
    return True, f"layout by {what}{hint}"


def _widgets():
    missing = []
    for name in ("ipywidgets", "anywidget"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        return False, f"missing {', '.join(missing)}: run 'pip install -r requirements.txt'"
    import anywidget
    import ipywidgets

    return True, f"ipywidgets {ipywidgets.__version__}, anywidget {anywidget.__version__}"


CHECKS = [("PyTorch", _torch), ("Graphviz", _graphviz), ("Widgets", _widgets)]


def status():
    """``[(component, ok, text)]`` for each check, without printing."""
    results = []
    for name, check in CHECKS:
        try:
            ok, text = check()
        except Exception as err:  # report, don't crash the first notebook
            ok, text = False, f"{type(err).__name__}: {err}"
        results.append((name, ok, text))
    return results


def check_setup():
    """Print one line per component: ✅ ready, or ❌ and what to fix."""
    results = status()
    for name, ok, text in results:
        print(f"{'✅' if ok else '❌'} {name:<9} {text}")
    if all(ok for _, ok, _ in results):
        print(f"   Python {platform.python_version()} -- ready for the course.")
    else:
        print("   Fix the ❌ lines, then restart the kernel (Kernel > Restart Kernel).")
