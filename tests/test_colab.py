"""The Colab set-up cell: every chapter starts with it, it installs on Colab only,
and everywhere else it is a fast no-op."""
import importlib.util
import subprocess
import sys
import time
import types

import pytest

from helpers import colab, release
from nbexec import NOTEBOOKS, SOLUTIONS, notebooks


def run_cell(monkeypatch, *, on_colab, helpers_installed):
    """Run the set-up cell's text; return the pip commands it would have run."""
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: calls.append(cmd))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google", types.ModuleType("google"))
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    if not helpers_installed:
        monkeypatch.delitem(sys.modules, "helpers")
        real = importlib.util.find_spec
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "helpers" else real(name, *a))
    exec(compile(colab.SETUP_CELL, "<colab-setup>", "exec"), {})
    return calls


def test_off_colab_it_does_nothing_and_is_fast(monkeypatch):
    start = time.perf_counter()
    assert run_cell(monkeypatch, on_colab=False, helpers_installed=False) == []
    assert time.perf_counter() - start < 0.05


def test_on_colab_it_installs_the_course_from_the_repository(monkeypatch):
    (cmd,) = run_cell(monkeypatch, on_colab=True, helpers_installed=False)
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"]
    assert any(arg.startswith("autograd-lab @ git+https://github.com/") for arg in cmd)
    assert {"torchviz==0.0.3", "graphviz", "graphviz-pure", "anywidget"} <= set(cmd)
    assert not any(arg.startswith("torch") and not arg.startswith("torchviz") for arg in cmd), \
        "Colab's own torch must not be replaced"


def test_on_colab_with_the_course_installed_it_installs_nothing(monkeypatch):
    assert run_cell(monkeypatch, on_colab=True, helpers_installed=True) == []


@pytest.mark.parametrize("path", notebooks(SOLUTIONS) + notebooks(NOTEBOOKS),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_chapter_starts_with_the_badge_and_the_cell(path):
    nb = release.read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and code[0].source == colab.SETUP_CELL, f"{path.name}: first code cell is not the Colab set-up"
    assert colab.TAG in code[0].metadata.get("tags", [])
    title = next(c for c in nb.cells if c.cell_type == "markdown")
    assert colab.badge(path.name) in title.source
