"""The stepper in a real JupyterLab, driven by headless Chromium (marker ``browser``).

Each test writes a small notebook into a temporary directory, starts
JupyterLab on a free localhost port (temporary HOME, runtime and settings
directories, a token), runs all cells and uses the widget as a learner would.
The expected order comes from ``trace_backward`` run here, in the test
process, compared by the stable id suffix ``n<i>`` (the prefix differs per
process). On failure a screenshot is saved in ``test-artifacts/``.

Without /usr/bin/chromium the tests are skipped, except when CI=true, where a
missing browser is a failure.
"""
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 60_000

SETUP = """\
import torch
from helpers.stepper import step_backward, step_forward
w = torch.tensor(2.0, requires_grad=True)
x = torch.tensor(3.0)
b = torch.tensor(1.0, requires_grad=True)
loss = w * x + b"""
STEPPER = 'stepper = step_backward(loss, {"w": w, "b": b}, speed=4)\nstepper'
FORWARD = 'step_forward(lambda x: (w * x + b).exp(), x, params={"w": w, "b": b})'
FROM_PYTHON = "stepper.step = 2  # the view follows"


def need_browser():
    """Skip (fail on CI) when Chromium or Playwright is missing."""
    why = None
    if not Path(CHROMIUM).exists():
        why = f"{CHROMIUM} is missing (install Debian's chromium package)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            why = "the playwright package is missing (pip install -r requirements-dev.txt)"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {why}.")
        pytest.skip(why)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """A throwaway JupyterLab on localhost serving ``notebooks`` ({name: [cell sources]})."""

    def __init__(self, notebooks, theme="JupyterLab Light"):
        self.tmp = tempfile.TemporaryDirectory(prefix="ag-lab-")
        base = Path(self.tmp.name)
        self.root = base / "notebooks"
        self.root.mkdir()
        for name, cells in notebooks.items():
            nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
            nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
            nbformat.write(nb, self.root / name)
        settings = base / "settings" / "@jupyterlab" / "apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        (settings / "themes.jupyterlab-settings").write_text(json.dumps({"theme": theme}))
        self.port, self.token = free_port(), secrets.token_hex(16)
        bindir = str(Path(sys.executable).parent)
        self.env = {**os.environ, "HOME": str(base / "home"), "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
                    "JUPYTER_CONFIG_DIR": str(base / "config"), "PATH": bindir + os.pathsep + os.environ["PATH"],
                    "PYTHONUNBUFFERED": "1"}
        self.cmd = [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}", "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
            f"--LabApp.user_settings_dir={base / 'settings'}", f"--LabApp.workspaces_dir={base / 'workspaces'}",
            "--KernelManager.shutdown_wait_time=1",
        ]
        self.log = open(base / "server.log", "wb")
        self.proc = None

    def url(self, notebook):
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?token={self.token}&reset"

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        status = f"http://127.0.0.1:{self.port}/api/status?token={self.token}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(status, timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        self.__exit__(None, None, None)
        raise RuntimeError(f"JupyterLab did not start; see {self.log.name}")

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the server shuts its kernels down on SIGTERM
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        self.tmp.cleanup()


@contextmanager
def chromium_page(width=1300, height=1000):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def open_and_run_all(page, lab, notebook):
    """Open ``notebook``, wait for an idle kernel, run all cells, wait for the widgets."""
    page.goto(lab.url(notebook))
    page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for()
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    page.locator(".ag-stepper svg").first.wait_for()


@contextmanager
def screenshot_on_failure(page, name):
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        raise


def suffix(node_id):
    """``n3`` from ``g1a2bx7n3``: the part of an id that is stable across processes."""
    return node_id[node_id.rindex("n"):]


def expected_order():
    """Node id suffixes and names of the ``w * x + b`` trace, computed here by the real engine."""
    import torch
    from helpers.trace import trace_backward

    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    trace = trace_backward(w * torch.tensor(3.0) + b, params={"w": w, "b": b})
    return [(suffix(s.node_id), trace.name_of(s.node_id)) for s in trace]


@pytest.fixture(scope="module")
def notebook():
    """JupyterLab showing the demo notebook after Run All: ``(page, frames sent to the kernel)``."""
    need_browser()
    with JupyterLab({"stepper.ipynb": [SETUP, STEPPER, FORWARD, FROM_PYTHON]}) as lab, chromium_page() as page:
        frames = []
        page.on("websocket", lambda ws: "/api/kernels/" in ws.url and ws.on(
            "framesent", lambda f: frames.append(f if isinstance(f, str) else f.decode(errors="replace"))))
        with screenshot_on_failure(page, "browser-open"):
            open_and_run_all(page, lab, "stepper.ipynb")
        yield page, frames


def test_next_follows_the_engine_and_playing_sends_nothing(notebook):
    page, frames = notebook
    order = expected_order()
    with screenshot_on_failure(page, "browser-next"):
        widget = page.locator(".ag-stepper[data-mode=backward]")
        page.wait_for_function("el => el.dataset.step === '2'", arg=widget.element_handle())  # from Python
        widget.locator(".ag-first").click()
        page.wait_for_function("el => el.dataset.step === '0'", arg=widget.element_handle())
        assert widget.get_attribute("data-n-steps") == str(len(order))
        assert widget.locator(".ag-counter").inner_text() == f"step 0 of {len(order)}"

        for k, (node, name) in enumerate(order, 1):
            widget.locator(".ag-next").click()
            page.wait_for_function("([el, k]) => el.dataset.step === String(k)",
                                   arg=[widget.element_handle(), k])
            running = widget.locator("g.node.ag-run")
            assert running.count() == 1
            assert suffix(running.get_attribute("id")) == node, f"step {k}"
            assert widget.locator(".ag-panel-title").inner_text() == name
            assert widget.locator(".ag-counter").inner_text() == f"step {k} of {len(order)}"
        assert widget.locator(".ag-next").is_disabled() and widget.locator(".ag-prev").is_enabled()
        # At the end both leaves show their gradient: w.grad = x = 3, b.grad = 1.
        leaf_texts = widget.locator("g.node.ag-leaf text").all_text_contents()
        assert "grad 3" in leaf_texts and "grad 1" in leaf_texts

        # Arrow keys move only while the widget has focus.
        widget.locator(".ag-box").click()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("el => el.dataset.step === String(el.dataset.nSteps - 1)",
                               arg=widget.element_handle())
        page.keyboard.press("Home")
        page.wait_for_function("el => el.dataset.step === '0'", arg=widget.element_handle())
        page.locator(".jp-Cell .jp-InputPrompt").first.click()  # focus back on the notebook
        page.keyboard.press("ArrowRight")
        page.keyboard.press("End")
        assert widget.get_attribute("data-step") == "0"  # the keys were not ours

        # Playing: no kernel message until it stops, then exactly one (the final step).
        page.wait_for_timeout(300)  # let the clicks' own syncs go out
        frames.clear()
        widget.locator(".ag-play").click()
        page.wait_for_function("el => el.classList.contains('ag-playing')", arg=widget.element_handle())
        page.wait_for_function("el => !el.classList.contains('ag-playing')", arg=widget.element_handle())
        assert widget.get_attribute("data-step") == str(len(order))
        page.wait_for_timeout(300)  # let a stray frame, if any, arrive
        assert len(frames) == 1, frames
        assert f'"step": {len(order)}' in frames[0] or f'"step":{len(order)}' in frames[0]


def test_forward_stepper_reveals_one_node_per_step(notebook):
    page, _ = notebook
    with screenshot_on_failure(page, "browser-forward"):
        widget = page.locator(".ag-stepper[data-mode=forward]")
        widget.scroll_into_view_if_needed()
        assert widget.get_attribute("data-n-steps") == "3"  # mul, add, exp
        visible = "el => el.querySelectorAll('g.node:not(.ag-hidden)').length"
        assert widget.evaluate(visible) == 0
        widget.locator(".ag-next").click()
        assert widget.locator(".ag-panel-title").inner_text() == "MulBackward0"
        assert widget.evaluate(visible) == 3  # MulBackward0 + w's AccumulateGrad + w
        widget.locator(".ag-last").click()
        assert widget.evaluate(visible) == 8  # + AddBackward0, b, its AccumulateGrad, ExpBackward0, output
        assert "Tensor.exp" in widget.locator(".ag-panel").inner_text()
        width = "el => parseFloat(el.querySelector('.ag-svg svg').getAttribute('width'))"
        before = widget.evaluate(width)
        widget.locator(".ag-zoom-in").click()
        assert widget.evaluate(width) == pytest.approx(before * 1.25)
