"""The stepper in a real browser, driven by headless Chromium (marker ``browser``).

Two settings:

- JupyterLab: each test writes small notebooks into a temporary directory,
  starts JupyterLab on a free localhost port (temporary HOME, runtime and
  settings directories, a token), runs all cells and uses the widget as a
  learner would. The expected order comes from ``trace_backward`` run here, in
  the test process, compared by the stable id suffix ``n<i>`` (the prefix
  differs per process).
- A plain page served from 127.0.0.1 with a stepper's HTML form and
  ``static_stepper.js``: the same front end with no kernel (what a static site
  shows), and a quick place to check the picture itself.

Timings are measured in ``benchmarks/stepper.py``, not here. On failure a
screenshot is saved in ``test-artifacts/``. Without /usr/bin/chromium the tests
are skipped, except when CI=true, where a missing browser is a failure.
"""
import functools
import http.server
import io
import json
import math
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import nbformat
import pytest
from PIL import Image

pytestmark = [pytest.mark.browser, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[1]
STATIC = ROOT / "helpers" / "static"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / "test-artifacts"
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
PREDICT = 'step_backward(loss, {"w": w, "x": x, "b": b}, predict=True)'
NAN = """\
z = torch.tensor([0.0, 4.0], requires_grad=True)
step_backward((z.sqrt() * 2).sum(), {"z": z}, stop_at="nonfinite")"""


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
    """A throwaway JupyterLab on localhost serving ``notebooks`` ({name: [cell sources]}).

    ``data_dir``: Jupyter's data directory, where it keeps the signatures of
    trusted notebooks (give two servers the same one to reopen a notebook as
    the same learner would). ``root``: serve a copy of this folder instead.
    """

    def __init__(self, notebooks=None, theme="JupyterLab Light", *, data_dir=None, root=None):
        self.tmp = tempfile.TemporaryDirectory(prefix="ag-lab-")
        base = Path(self.tmp.name)
        self.root = base / "notebooks"
        if root is not None:
            shutil.copytree(root, self.root)
        else:
            self.root.mkdir()
        for name, cells in (notebooks or {}).items():
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
                    "JUPYTER_DATA_DIR": str(data_dir or base / "data"), "PYTHONUNBUFFERED": "1"}
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
    """A page in a Chromium of its own (for scripts; the tests share one browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            with new_page(browser, width, height) as page:
                yield page
        finally:
            browser.close()


@contextmanager
def new_page(browser, width=1300, height=1000):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.set_default_timeout(TIMEOUT_MS)
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser():
    """One Chromium for this module's tests (Playwright's sync API allows one at a time)."""
    need_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_notebook(page, lab, notebook):
    page.goto(lab.url(notebook))
    page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for()


def run_all(page):
    page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()


def open_and_run_all(page, lab, notebook):
    """Open ``notebook``, wait for an idle kernel, run all cells, wait for the widgets."""
    open_notebook(page, lab, notebook)
    run_all(page)
    page.locator(".ag-stepper svg").first.wait_for()


@contextmanager
def screenshot_on_failure(page, name):
    try:
        yield
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
        raise


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextmanager
def static_page(browser, html, width=1300, height=1000):
    """``html`` (body content) on a page served from 127.0.0.1 with the stepper's static files:
    ``(page, requests, problems)``, the URLs the page asked for and its console errors."""
    with tempfile.TemporaryDirectory(prefix="ag-static-") as tmp:
        for name in ("stepper.js", "stepper.css", "static_stepper.js"):
            shutil.copy(STATIC / name, tmp)
        Path(tmp, "index.html").write_text(
            '<!doctype html><html><head><meta charset="utf-8"><title>stepper</title>'
            '<link rel="icon" href="data:,"><script type="module" src="static_stepper.js"></script>'
            f'</head><body style="margin: 16px">{html}</body></html>')
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=tmp))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        requests, problems = [], []
        try:
            with new_page(browser, width, height) as page:
                page.on("request", lambda r: requests.append(r.url))
                page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: problems.append(str(e)))
                page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
                page.locator(".ag-stepper").first.wait_for()
                yield page, requests, problems
        finally:
            server.shutdown()


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


def go_to(page, widget, k):
    """Step ``k``, by clicking as a learner would."""
    widget.locator(".ag-first").evaluate("b => b.click()")  # (disabled, and so a no-op, at step 0)
    for _ in range(k):
        widget.locator(".ag-next").click()
    at_step(page, widget, k)


def at_step(page, widget, k):
    """Wait until step k is on screen: the picture, then the panel (written a frame later)."""
    page.wait_for_function("([el, k]) => el.dataset.step === String(k)"
                           " && el.querySelector('.ag-panel').dataset.step === String(k)",
                           arg=[widget.element_handle(), k])


# What a step shows is drawn on layers over the unchanged Graphviz picture: the running
# Node is a copy ("ghost") on the "now" layer that carries the original's id as data-id.
# The next step's picture is drawn ahead there too, hidden (transparent) by .ag-hidden.
SHOWN = ":not(.ag-hidden, .ag-hidden *)"
RUNNING = f".ag-now-layer g.node.ag-run{SHOWN}"


# --- in JupyterLab ------------------------------------------------------------------

@pytest.fixture(scope="module")
def notebook(browser):
    """JupyterLab showing the demo notebook after Run All: ``(page, frames sent to the kernel)``."""
    cells = [SETUP, STEPPER, FORWARD, FROM_PYTHON, PREDICT, NAN]
    with JupyterLab({"stepper.ipynb": cells}) as lab, new_page(browser) as page:
        frames = []
        page.on("websocket", lambda ws: "/api/kernels/" in ws.url and ws.on(
            "framesent", lambda f: frames.append(f if isinstance(f, str) else f.decode(errors="replace"))))
        with screenshot_on_failure(page, "browser-open"):
            open_and_run_all(page, lab, "stepper.ipynb")
            page.locator(".ag-stepper").nth(3).wait_for()
        yield page, frames


def test_next_follows_the_engine_and_playing_sends_nothing(notebook):
    page, frames = notebook
    order = expected_order()
    with screenshot_on_failure(page, "browser-next"):
        widget = page.locator(".ag-stepper[data-mode=backward]").first
        at_step(page, widget, 2)  # set from Python
        widget.locator(".ag-first").click()
        at_step(page, widget, 0)
        assert widget.get_attribute("data-n-steps") == str(len(order))
        assert widget.locator(".ag-counter").inner_text() == f"step 0 of {len(order)}"

        for k, (node, name) in enumerate(order, 1):
            widget.locator(".ag-next").click()
            at_step(page, widget, k)
            running = widget.locator(RUNNING)
            assert running.count() == 1
            assert suffix(running.get_attribute("data-id")) == node, f"step {k}"
            assert widget.get_attribute("data-running") == running.get_attribute("data-id")
            assert widget.locator(".ag-panel-title").inner_text() == name
            assert widget.locator(".ag-counter").inner_text() == f"step {k} of {len(order)}"
        assert widget.locator(".ag-next").is_disabled() and widget.locator(".ag-prev").is_enabled()
        # At the end both leaves show their gradient: w.grad = x = 3, b.grad = 1 (on the filled copies).
        leaf_texts = widget.locator(".ag-history g.node.ag-leaf.ag-filled text").all_text_contents()
        assert "grad 3" in leaf_texts and "grad 1" in leaf_texts
        # The picture underneath never changes: it shows the leaves before backward.
        assert "grad None" in widget.locator("svg.ag-base g.node.ag-leaf text").all_text_contents()

        # Arrow keys move only while the widget has focus.
        widget.locator(".ag-box").click()
        page.keyboard.press("ArrowLeft")
        page.wait_for_function("el => el.dataset.step === String(el.dataset.nSteps - 1)",
                               arg=widget.element_handle())
        page.keyboard.press("Home")
        at_step(page, widget, 0)
        page.locator(".jp-Cell .jp-InputPrompt").first.click()  # focus back on the notebook
        page.keyboard.press("ArrowRight")
        page.keyboard.press("End")
        assert widget.get_attribute("data-step") == "0"  # the keys were not ours

        # Playing: no kernel message until it stops, then exactly one (the final step).
        page.wait_for_timeout(1300)  # let the last key's sync go out (the widget waits for a pause)
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
        visible = "el => el.querySelectorAll('.ag-history g.node').length"
        assert widget.evaluate(visible) == 0
        widget.locator(".ag-next").click()
        at_step(page, widget, 1)
        assert widget.locator(".ag-panel-title").inner_text() == "MulBackward0"
        assert widget.evaluate(visible) == 3  # MulBackward0 + w's AccumulateGrad + w
        widget.locator(".ag-last").click()
        at_step(page, widget, 3)
        assert widget.evaluate(visible) == 8  # + AddBackward0, b, its AccumulateGrad, ExpBackward0, output
        assert "Tensor.exp" in widget.locator(".ag-panel").inner_text()
        width = "el => parseFloat(el.querySelector('.ag-svg svg').getAttribute('width'))"
        before = widget.evaluate(width)
        widget.locator(".ag-zoom-in").click()
        assert widget.evaluate(width) == pytest.approx(before * 1.25)


def test_predict_mode_accepts_a_right_guess_and_rejects_a_wrong_one(notebook):
    page, frames = notebook
    with screenshot_on_failure(page, "browser-predict"):
        widget = page.locator(".ag-stepper[data-predict]")
        widget.scroll_into_view_if_needed()
        widget.locator(".ag-next").click()  # AddBackward0 sends 1 to each input
        at_step(page, widget, 1)
        guesses = widget.locator("input.ag-guess")
        assert guesses.count() == 2
        assert widget.locator(".ag-formula").count() == 0  # hidden until the learner answers
        assert "?" in widget.locator(f".ag-label{SHOWN}").all_text_contents()  # and so are the values on the edges
        # Nothing of a later step is drawn ahead (find-in-page would see its values).
        assert widget.locator(".ag-label").all_text_contents() == widget.locator(f".ag-label{SHOWN}").all_text_contents()
        guesses.nth(0).fill("1")
        guesses.nth(1).fill("-1")
        frames.clear()
        widget.locator(".ag-check").click()
        verdicts = widget.locator(".ag-verdict").all_inner_texts()
        assert verdicts == ["✓ you said 1: right", "✗ you said -1: right size, wrong sign"]
        assert widget.get_attribute("data-score") == "1/2"
        assert widget.locator(".ag-formula").inner_text() == "grad_self = grad = 1\ngrad_b = grad = 1"

        widget.locator(".ag-next").click()  # AccumulateGrad(b): nothing to predict
        widget.locator(".ag-next").click()  # MulBackward0: grad_w = grad · x
        at_step(page, widget, 3)
        widget.locator("input.ag-guess").fill("2")
        widget.locator("input.ag-guess").press("Enter")
        assert widget.locator(".ag-verdict").inner_text() == "✗ you said 2: too low"
        assert widget.evaluate("el => el.contains(document.activeElement)")  # the arrow keys still step
        assert widget.locator(".ag-formula").inner_text() == "grad_w = grad · x = 1 · 3 = 3"
        assert widget.locator(".ag-rows").inner_text().split("\n")[-2:] == ["3", "✗ you said 2: too low"]
        widget.locator(".ag-prev").click()
        widget.locator(".ag-next").click()  # back at a step already answered: still revealed
        at_step(page, widget, 3)
        assert widget.locator("input.ag-guess").count() == 0 and widget.get_attribute("data-score") == "1/3"
        page.wait_for_timeout(300)
        assert not [f for f in frames if "ag-guess" in f or "score" in f]  # nothing about it goes to the kernel


def test_nonfinite_stepper_opens_at_the_node_that_sent_it(notebook):
    page, _ = notebook
    with screenshot_on_failure(page, "browser-nonfinite"):
        widget = page.locator(".ag-stepper").nth(3)
        widget.scroll_into_view_if_needed()
        assert widget.locator(".ag-panel-title").inner_text() == "SqrtBackward0"
        assert widget.locator(f"{RUNNING}.ag-bad").count() == 1
        assert widget.locator(".ag-alert").inner_text().startswith("First NaN or infinity: SqrtBackward0 sent inf")


CONTRAST = """(root) => {
  // Contrast (WCAG 2) of every piece of text in the stepper against what is behind it.
  const rgba = (c) => { const m = c.match(/[\\d.]+/g).map(Number); return [m[0], m[1], m[2], m.length > 3 ? m[3] : 1]; };
  const over = (top, under) => top.slice(0, 3).map((v, i) => v * top[3] + under[i] * (1 - top[3])).concat([1]);
  const lum = (c) => { const [r, g, b] = c.slice(0, 3).map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (el) => {  // HTML: the first opaque background up the tree, blended
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) { layers.push(c); if (c[3] >= 1) break; }
    }
    let bg = [255, 255, 255, 1];
    for (const c of layers.reverse()) bg = over(c, bg);
    return bg;
  };
  const out = [];
  const visible = (el) => el.getClientRects().length > 0 && getComputedStyle(el).visibility !== "hidden";
  for (const el of root.querySelectorAll("*")) {
    if (el.closest("svg")) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const field = el.matches("input.ag-guess, select");
    if ((!own && !field) || !visible(el) || el.closest("button:disabled") || el.matches("option")) continue;
    const bg = background(el);
    const fg = over(rgba(getComputedStyle(el).color), bg);
    out.push([el.className || el.tagName, (el.value || el.textContent).trim().slice(0, 30), ratio(fg, bg)]);
    if (el.matches("input.ag-guess") && el.placeholder) {
      const ph = over(rgba(getComputedStyle(el, "::placeholder").color), bg);
      out.push(["placeholder", el.placeholder, ratio(ph, bg)]);
    }
  }
  for (const t of root.querySelectorAll("svg text")) {  // the graph: text on its box, or on the white card
    const style = getComputedStyle(t);
    if (!t.textContent.trim() || style.visibility === "hidden" || !visible(t) || t.closest(".ag-hidden")) continue;
    const box = t.closest("g.node")?.querySelector(":scope > polygon, :scope > path");
    let bg = [255, 255, 255, 1];
    if (box && getComputedStyle(box).fill !== "none") bg = over(rgba(getComputedStyle(box).fill), bg);
    if (t.classList.contains("ag-label")) bg = rgba(style.stroke);  // a label sits on its own white halo
    out.push(["svg " + (t.closest("g")?.getAttribute("class") || ""), t.textContent.trim().slice(0, 30),
              ratio(over(rgba(style.fill), bg), bg)]);
  }
  return out;
}"""


def contrast_failures(page):
    found = []
    for widget in page.locator(".ag-stepper").all():
        found += widget.evaluate(CONTRAST)
    assert len(found) > 40, found  # the check did look at the text
    return [f for f in found if f[2] < 4.5]


def test_all_stepper_text_has_aa_contrast_in_light_and_dark_themes(notebook):
    page, _ = notebook
    with screenshot_on_failure(page, "browser-contrast"):
        # Every state on screen: done, waiting, running, filled, labels, verdicts, an alert.
        go_to(page, page.locator(".ag-stepper").nth(0), 3)
        go_to(page, page.locator(".ag-stepper").nth(1), 1)
        assert page.evaluate("document.body.dataset.jpThemeLight") == "true"
        assert contrast_failures(page) == []
        page.locator(".lm-MenuBar-itemLabel", has_text="Settings").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Theme").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="JupyterLab Dark").first.click()
        page.wait_for_function("document.body.dataset.jpThemeLight === 'false'")
        page.wait_for_timeout(500)  # the theme's CSS
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".ag-stepper").nth(2).screenshot(path=str(ARTIFACTS / "stepper-dark.png"))
        assert contrast_failures(page) == []


def test_a_saved_notebook_reopens_with_its_steppers(browser):
    """Saved in JupyterLab and opened again later (a new server and kernel): the stepper shows and
    steps from the widget state JupyterLab saved in the notebook -- the course's JupyterLab settings
    (binder/overrides.json) turn saveState on. Opened where it is not trusted, the notebook shows the
    stepper's static picture and a note. Never "Error displaying widget: model not found"."""
    cells = [SETUP, STEPPER, "step_backward(loss)"]
    with tempfile.TemporaryDirectory(prefix="ag-reopen-") as tmp:
        trusted, saved = Path(tmp) / "data", Path(tmp) / "saved"
        with JupyterLab({"saved.ipynb": cells}, data_dir=trusted) as lab, new_page(browser) as page:
            with screenshot_on_failure(page, "browser-save"):
                open_and_run_all(page, lab, "saved.ipynb")
                page.locator(".ag-stepper").nth(1).wait_for()
                run_all(page)  # run again: the first run's widgets are closed, not saved
                page.wait_for_timeout(1000)
                page.locator(".ag-stepper").nth(1).wait_for()
                page.keyboard.press("Control+s")
                page.wait_for_function("() => !document.querySelector('.jp-mod-dirty')")
                page.wait_for_timeout(500)
            shutil.copytree(lab.root, saved)
        nb = json.loads((saved / "saved.ipynb").read_text())
        state = nb["metadata"]["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
        assert [m["model_name"] for m in state.values()].count("AnyModel") == 2

        for data_dir, name in ((trusted, "reopen-trusted"), (Path(tmp) / "elsewhere", "reopen-untrusted")):
            with JupyterLab(root=saved, data_dir=data_dir) as lab, new_page(browser) as page:
                with screenshot_on_failure(page, f"browser-{name}"):
                    open_notebook(page, lab, "saved.ipynb")
                    outputs = page.locator(".jp-OutputArea-output")
                    outputs.nth(1).wait_for()
                    page.wait_for_timeout(2000)  # the widget manager has looked for the models
                    assert "model not found" not in page.locator(".jp-Notebook").inner_text()
                    if name == "reopen-trusted":
                        widget = page.locator(".ag-stepper").first
                        widget.locator(".ag-next").click()  # steps with no kernel behind it
                        at_step(page, widget, 1)
                        assert widget.locator(RUNNING).count() == 1
                    else:
                        assert page.locator(".ag-stepper").count() == 0
                        static = page.locator(".ag-static-stepper").first
                        assert static.locator("img").evaluate("img => img.naturalWidth") > 0
                        assert "run the cell" in static.inner_text()
                        assert static.locator("script").count() == 0  # stripped: nothing runs


# --- on a plain page: the static form, and the picture itself ----------------------------

def static_html(*steppers):
    return "<hr>".join(s.static_html() for s in steppers)


def test_static_page_steps_with_no_kernel_and_no_network(browser):
    from helpers.stepper import step_backward, step_forward
    import torch

    w = torch.tensor(2.0, requires_grad=True)
    b = torch.tensor(1.0, requires_grad=True)
    x = torch.tensor(3.0)
    html = static_html(step_backward(w * x + b, {"w": w, "b": b}),
                       step_forward(lambda x: (w * x + b).exp(), x, params={"w": w, "b": b}))
    with static_page(browser, html) as (page, requests, problems):
        with screenshot_on_failure(page, "static-page"):
            widget = page.locator(".ag-stepper").first
            order = expected_order()
            for k, (node, _) in enumerate(order, 1):
                widget.locator(".ag-next").click()
                at_step(page, widget, k)
                assert suffix(widget.locator(RUNNING).get_attribute("data-id")) == node
            forward = page.locator(".ag-stepper[data-mode=forward]")
            forward.locator(".ag-box").click()
            page.keyboard.press("End")
            at_step(page, forward, 3)
            forward.locator(".ag-play").click()  # plays from the start, in the page alone
            page.wait_for_function("el => !el.classList.contains('ag-playing')", arg=forward.element_handle(),
                                   timeout=10_000)
            assert forward.get_attribute("data-step") == "3"
    assert not problems, problems
    origin = requests[0].rsplit("/", 1)[0]
    assert all(u.startswith(origin) or u.startswith("data:") for u in requests), requests


def wide_model(branches=40):
    import torch

    torch.manual_seed(0)
    x = torch.randn(2, 4)
    layers = [torch.nn.Linear(4, 4) for _ in range(branches)]
    return torch.stack([torch.tanh(layer(x)) for layer in layers]).sum()


def test_fit_shows_the_whole_graph_and_the_running_node_stays_in_view(browser):
    from helpers.stepper import step_backward

    stepper = step_backward(wide_model())
    with static_page(browser, static_html(stepper), width=1000, height=800) as (page, _, problems):
        with screenshot_on_failure(page, "static-fit"):
            widget = page.locator(".ag-stepper")
            box = widget.locator(".ag-box")
            assert widget.evaluate("el => el.querySelector('.ag-base').getBoundingClientRect().width") > 4000
            # So wide a picture is cut into tiles, each node in one (long edges in several).
            page.wait_for_function("el => el.querySelectorAll('.ag-tiles svg.ag-tile').length > 1",
                                   arg=widget.element_handle())
            in_tiles = widget.evaluate("el => el.querySelectorAll('.ag-tiles g.node[id]').length")
            assert in_tiles == len(stepper.diagram.graph.nodes)
            assert widget.evaluate("el => el.querySelectorAll('svg.ag-base g.node, svg.ag-base g.edge').length") == 0
            for _ in range(3):  # a running Node away from the middle of the picture
                widget.locator(".ag-next").click()
            at_step(page, widget, 3)
            widget.locator(".ag-zoom-fit").click()
            inside = """el => { const b = el.querySelector('.ag-box').getBoundingClientRect();
                const s = el.querySelector('.ag-base').getBoundingClientRect();
                return s.left >= b.left - 1 && s.right <= b.right + 1 && s.top >= b.top - 1 && s.bottom <= b.bottom + 1; }"""
            assert widget.evaluate(inside), "fit left part of the graph outside the box"
            # The ring keeps its width on screen (a non-scaling stroke): at "fit" it is still seen.
            px = Image.open(io.BytesIO(box.screenshot())).convert("RGB").tobytes()
            accent = sum(1 for i in range(0, len(px), 3) if px[i] > 200 and 50 < px[i + 1] < 130 and px[i + 2] < 60)
            assert accent >= 6, f"the running node's ring is not visible at fit ({accent} pixels)"
            shown = """el => { const b = el.querySelector('.ag-box').getBoundingClientRect();
                const r = el.querySelector('.ag-now-layer g.ag-run:not(.ag-hidden *)').getBoundingClientRect();
                return r.left >= b.left && r.right <= b.right && r.top >= b.top && r.bottom <= b.bottom; }"""
            for _ in range(4):
                widget.locator(".ag-zoom-in").click()  # well above "fit": most of the graph is out of view
            assert widget.evaluate(shown), "zooming in left the running node out of view"
            widget.locator(".ag-first").click()
            at_step(page, widget, 0)
            moved = set()
            for k in range(1, 30):
                widget.locator(".ag-next").click()
                at_step(page, widget, k)
                page.wait_for_timeout(50)  # it scrolls in the next frame
                assert widget.evaluate(shown), f"step {k}: the running node is out of view"
                moved.add(box.evaluate("b => b.scrollLeft"))
            assert len(moved) >= 2  # it did have to scroll
    assert not problems, problems


# What one step shows: (id, state) over all the layers, for every state.
SHOWN_DONE = """el => [...new Set([...el.querySelectorAll('.ag-layer [data-id]:not(.ag-hidden, .ag-hidden *)')].flatMap((g) =>
  ['ag-done', 'ag-carried', 'ag-filled', 'ag-wait', 'ag-run', 'ag-flow'].filter((c) => g.classList.contains(c))
    .map((c) => g.dataset.id + ' ' + c)))].sort()"""


def test_one_step_is_whole_in_its_first_frame(browser):
    """Next changes the picture in one go; the panel, the counter and the history layers follow a
    frame later. What the step adds to the history is on the "now" layer meanwhile: nothing that
    is done flickers back to not done."""
    from helpers.stepper import step_backward

    stepper = step_backward(wide_model(3))
    with static_page(browser, static_html(stepper)) as (page, _, problems):
        widget = page.locator(".ag-stepper")
        at_step(page, widget, 0)
        for k in range(1, int(widget.get_attribute("data-n-steps")) + 1):
            first, panel = widget.evaluate(f"""el => {{ el.querySelector('.ag-next').click();
                return [({SHOWN_DONE})(el), el.querySelector('.ag-panel').dataset.step]; }}""")
            assert panel == str(k - 1)  # (still the frame of the click: the panel is not written yet)
            at_step(page, widget, k)
            assert first == widget.evaluate(SHOWN_DONE), f"step {k}"
        assert any(s.endswith("ag-filled") for s in first)
    assert not problems, problems


def test_next_only_changes_colours_in_its_frame(browser):
    """The next step's picture is drawn ahead, hidden: Next adds, removes and moves nothing in the
    picture (which makes Chromium re-layer the whole page), it only shows it and hides the one
    before. Any other move draws its picture at once."""
    from helpers.stepper import step_backward

    stepper = step_backward(wide_model(3))
    with static_page(browser, static_html(stepper)) as (page, _, problems):
        widget = page.locator(".ag-stepper")
        at_step(page, widget, 0)
        n = int(widget.get_attribute("data-n-steps"))
        waited = False
        for k in range(1, n + 1):
            ahead = widget.evaluate("el => el.querySelector('.ag-now-layer > g.ag-hidden g.node.ag-run')?.dataset.id")
            changes = widget.evaluate("""el => {
                const seen = new MutationObserver(() => {});
                seen.observe(el.querySelector('.ag-stack'), {subtree: true, childList: true, attributes: true});
                el.querySelector('.ag-next').click();
                const changes = seen.takeRecords().map((r) => r.type === 'childList' ? 'added or removed'
                    : r.attributeName === 'class' ? 'class' : 'attribute ' + r.attributeName);
                seen.disconnect();
                return [...new Set(changes)]; }""")
            assert changes == ["class"], f"step {k}: {changes}"
            assert ahead == widget.locator(RUNNING).get_attribute("data-id"), f"step {k}"
            waited = waited or widget.locator(f".ag-layer g.node.ag-wait{SHOWN}").count() > 0
            at_step(page, widget, k)
            outlines = widget.locator(f".ag-layer g.node.ag-wait{SHOWN}").evaluate_all("gs => gs.map((g) => g.dataset.id)")
            assert len(outlines) == len(set(outlines)), f"step {k}: a Node that waits is outlined twice"
        assert waited  # (the graph has Nodes that wait)
        widget.locator(".ag-prev").click()  # any other move: drawn at once
        assert widget.locator(RUNNING).get_attribute("data-id") == widget.get_attribute("data-running")
    assert not problems, problems


def test_a_collapsed_module_runs_waits_and_is_done_like_any_node(browser):
    import torch
    from helpers.stepper import step_backward

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1))
    stepper = step_backward(model(torch.randn(2, 3)).sum(), modules=model, collapse=["2"])
    with static_page(browser, static_html(stepper)) as (page, _, problems):
        widget = page.locator(".ag-stepper")
        box = widget.locator("svg.ag-base g.node.ag-module")  # a rounded box: Graphviz draws a path
        assert box.count() == 1 and box.locator(":scope > path").count() == 1
        module = box.get_attribute("id")
        where = "p => { const r = p.getBoundingClientRect(); return [r.x, r.y, r.width, r.height].map(Math.round); }"
        at = box.locator(":scope > path").evaluate(where)
        states, running = set(), []
        for k in range(1, int(widget.get_attribute("data-n-steps")) + 1):
            widget.locator(".ag-next").click()
            at_step(page, widget, k)
            if module in widget.get_attribute("data-running").split():
                running.append(k)
            for cls, prop in (("ag-run", "stroke-width"), ("ag-wait", "stroke-dasharray"), ("ag-done", "fill")):
                shape = widget.locator(f".ag-layer g.node.{cls}[data-id='{module}']{SHOWN} > path")
                if shape.count():
                    states.add((cls, shape.first.evaluate(f"p => getComputedStyle(p)['{prop}']")))
                    assert shape.first.evaluate(where) == at, f"step {k}: {cls} is not drawn on the box"
                    if cls == "ag-done":  # done once it has run for the last of its Nodes
                        assert k > running[-1] and len(running) > 1, (k, running)
        assert states >= {("ag-run", "4px"), ("ag-wait", "5px, 3px"), ("ag-done", "rgb(215, 236, 208)")}, states
    assert not problems, problems


def test_highlighted_edges_point_the_way_the_gradient_flows_and_labels_wrap(browser):
    import torch
    from helpers.stepper import step_backward

    torch.manual_seed(0)
    layer = torch.nn.Linear(2, 1)
    name = "encoder.layers.0.self_attention.out_proj.weight"
    stepper = step_backward(layer(torch.ones(1, 2)).sum(), {name: layer.weight, "bias": layer.bias})
    with static_page(browser, static_html(stepper), width=900) as (page, _, problems):
        widget = page.locator(".ag-stepper")
        for _ in range(3):
            widget.locator(".ag-next").click()
        flows = widget.locator(f".ag-now-layer g.edge.ag-flow{SHOWN}")
        assert flows.count() >= 1
        for i in range(flows.count()):
            path, head = flows.nth(i).locator("path"), flows.nth(i).locator("polygon:not(.ag-arrow)")
            # An arrowhead at the input end (where the path starts), pointing out of the edge.
            tip, start, inside = flows.nth(i).evaluate("""g => {
                const tip = g.querySelector('polygon.ag-arrow').points.getItem(0), path = g.querySelector('path');
                return [[tip.x, tip.y], ...[0, 10].map((l) => path.getPointAtLength(l)).map((p) => [p.x, p.y])]; }""")
            assert math.dist(tip, start) < 2 and math.dist(tip, inside) > math.dist(start, inside)
            assert head.evaluate("p => getComputedStyle(p).fill") == "rgb(255, 255, 255)"  # forward one hidden
            arrow = flows.nth(i).locator("polygon.ag-arrow").evaluate("p => getComputedStyle(p).fill")
            assert arrow == widget.evaluate("el => getComputedStyle(el.querySelector('.ag-key-flow')).borderTopColor")
        widget.locator(".ag-last").click()
        at_step(page, widget, int(widget.get_attribute("data-n-steps")))
        label = widget.locator(".ag-row-label", has_text="weight.grad")
        value = label.locator("xpath=following-sibling::div[1]")
        panel = widget.locator(".ag-panel").bounding_box()
        assert value.bounding_box()["width"] >= 0.4 * panel["width"]  # the value column is not crushed
        assert label.bounding_box()["height"] > value.bounding_box()["height"]  # the label wraps instead
    assert not problems, problems
