"""The set-up files agree with each other: pins, Binder, CI and the README's commands."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = {"torch", "numpy", "torchviz", "graphviz", "graphviz-pure", "jupyterlab", "ipywidgets", "anywidget"}


def pins(path):
    """{package: version} for every requirement line; fails on an unpinned one."""
    found = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)==([0-9][^\s;+]*)(\+[a-z0-9.]+)?", line)
        assert m, f"{path.name}: '{line}' is not pinned with == to an exact version."
        found[m.group(1).lower()] = m.group(2)
    return found


def test_runtime_requirements_are_pinned_and_complete():
    req = pins(ROOT / "requirements.txt")
    assert RUNTIME <= set(req), f"missing: {RUNTIME - set(req)}"
    assert req["torch"] == "2.13.0"


def test_binder_pins_agree_with_requirements():
    assert pins(ROOT / "binder" / "requirements.txt") == pins(ROOT / "requirements.txt")
    binder = (ROOT / "binder" / "requirements.txt").read_text()
    assert "torch==2.13.0+cpu" in binder and "whl/cpu" in binder  # CPU-only wheels


def test_binder_system_packages_python_and_helpers():
    assert "graphviz" in (ROOT / "binder" / "apt.txt").read_text().split()
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"
    post = ROOT / "binder" / "postBuild"
    assert "pip install --no-deps -e ." in post.read_text() and post.stat().st_mode & 0o111


def test_dev_requirements_build_on_runtime_and_are_pinned():
    dev = ROOT / "requirements-dev.txt"
    assert "-r requirements.txt" in dev.read_text()
    assert {"pytest", "nbclient", "nbgrader", "playwright"} <= set(pins(dev))
    assert not set(pins(dev)) & set(pins(ROOT / "requirements.txt"))


def test_readme_commands_are_what_make_and_ci_run():
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    for target in ("lab", "test"):
        assert f"make {target}" in readme and re.search(rf"^{target}:", makefile, re.M)
    assert ci.strip().splitlines()[-1] == "make test"
    assert "notebooks/00_start_here.ipynb" in makefile
    assert "urlpath=lab/tree/notebooks/00_start_here.ipynb" in readme  # the Binder badge
