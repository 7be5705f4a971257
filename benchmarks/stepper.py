"""Figures for the backward stepper (not a test): ``python benchmarks/stepper.py``
(``--trace-only``: the trace figures, without the browser).

1. ``trace_backward`` against a plain ``backward()`` on the same graph, at about
   100 and 1,000 nodes (a residual tanh MLP on 32 x 32 tensors, one torch
   thread; the trace includes walking the graph for ids). Best of several runs
   taken in turns; the ratio is in CPU time, which a busy machine disturbs
   less than wall-clock time (printed too).
   The same on a chain of 200 ops on 1,000,000-element tensors (the case where
   keeping every gradient once cost 1.5-2.3 GB): extra memory at the peak and
   time, ``trace_backward`` against ``backward()``. Memory is the peak resident
   set size (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) above the
   size before the call, each measured in a fresh process after ``malloc_trim``.
   Why RSS: ``tracemalloc`` sees only Python's own allocations, not torch's;
   torch has allocator statistics for CUDA only; and ``torch.profiler``'s
   ``profile_memory=True`` does not report the autograd engine's CPU
   allocations here (it saw the frees only). RSS is what the machine gives the
   process, torch's buffers included.
2. In JupyterLab, in headless Chromium (software rendering), on a wide MLP of
   about 1,000 and 5,000 nodes (and 100, for comparison) (many small layers side by side: a picture tens
   of thousands of pixels wide): how long after the cell ends the widget is on
   screen (kernel clock at the end of the cell to two frames after the picture
   is in the page); from a real click on Next to the next painted frame (the
   browser's Event Timing API; median of 25 clicks) and to the end of the main
   thread's work on that frame (the picture's), and on the next (the panel's,
   written a frame later); the same clicks on a plain button that changes its
   own number, next to Next in the stepper's toolbar and fixed over the page
   (the floor of this browser, in the notebook and outside it); playing at 30
   steps/s: steps per second and how many steps got a frame of their own;
   websocket frames the page sends to the kernel while playing (none) and on
   pause (one).
3. Each chapter run top to bottom with nbclient and saved with its outputs and
   its widget state, as JupyterLab saves it with the course's settings
   (``saveState``): the file's size, and how much of it the steppers take.

``--trace-only``: only 1; ``--browser-only``: only 2 and 3. Needs
/usr/bin/chromium for 2 (skipped with a note otherwise).
"""
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_browser import CHROMIUM, JupyterLab, chromium_page  # noqa: E402

from helpers.trace import trace_backward  # noqa: E402
from helpers.walk import count_nodes  # noqa: E402

BUILD = '''\
import torch
from helpers.stepper import step_backward

def residual_mlp(blocks, width=32, batch=32):
    torch.manual_seed(0)
    x = torch.randn(batch, width)
    for _ in range(blocks):
        x = x + 0.1 * torch.tanh(torch.nn.Linear(width, width)(x))
    return (x ** 2).mean()
'''
namespace = {}
exec(BUILD.replace("from helpers.stepper import step_backward\n", ""), namespace)
residual_mlp = namespace["residual_mlp"]  # the same graph in the benchmark and in the notebook
BLOCKS = {100: 11, 1000: 111}  # blocks -> about that many nodes (9 per block)

rows = []  # (what, measured, target, ok)


def best_times(fns, runs):
    """Best CPU and wall time of each function, run in turns so they share the machine's load."""
    cpu, wall = [[] for _ in fns], [[] for _ in fns]
    for _ in range(runs):
        for i, fn in enumerate(fns):
            c, w = time.process_time(), time.perf_counter()
            fn()
            cpu[i].append(time.process_time() - c)
            wall[i].append(time.perf_counter() - w)
    return [min(c) for c in cpu], [min(w) for w in wall]


def bench_trace():
    torch.set_num_threads(1)
    for approx, blocks in BLOCKS.items():
        loss = residual_mlp(blocks)
        nodes = count_nodes([loss])
        plain, traced = lambda: loss.backward(retain_graph=True), lambda: trace_backward(loss)
        (p, t), (pw, tw) = best_times([plain, traced], 40 if approx == 100 else 15)
        rows.append((f"trace_backward / backward, {nodes} nodes, CPU time",
                     f"{t * 1e3:.1f} ms / {p * 1e3:.1f} ms = {t / p:.1f}x", "<= 5x", t / p <= 5))
        rows.append(("  same, wall-clock time", f"{tw * 1e3:.1f} ms / {pw * 1e3:.1f} ms = {tw / pw:.1f}x",
                     "", None))


BIG_OPS, BIG_SIZE = 200, 1_000_000


def big_chain():
    """200 ops on 1M-element tensors: mul and add alternate (they save no large tensor)."""
    torch.manual_seed(0)
    x = torch.randn(BIG_SIZE, requires_grad=True)
    y = x
    for i in range(BIG_OPS):
        y = y * 1.001 if i % 2 == 0 else y + 0.5
    return x, y.sum()


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure_big(what):
    """In a fresh process: extra peak RSS (bytes) and CPU seconds of one backward or trace."""
    torch.set_num_threads(1)
    x, loss = big_chain()
    w = torch.ones(3, requires_grad=True)  # warm up both code paths on a small graph first
    (w * 2).sum().backward()
    trace_backward((w * 2).sum())
    if what == "backward":
        def run():
            loss.backward(retain_graph=True)
    else:
        def run():
            return trace_backward(loss)
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    before = _status("VmRSS:")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak RSS (VmHWM) to the current RSS
    c = time.process_time()
    kept = run()
    seconds = time.process_time() - c
    peak = _status("VmHWM:") - before
    del kept
    return {"peak": peak, "seconds": seconds}


def bench_memory(runs=3):
    if not Path("/proc/self/clear_refs").exists():
        rows.append(("trace memory", "skipped: needs Linux /proc", "", None))
        return
    results = {"backward": [], "trace": []}
    for _ in range(runs):
        for what in results:
            out = subprocess.run([sys.executable, __file__, "--measure-big", what], capture_output=True,
                                 text=True, check=True)
            results[what].append(json.loads(out.stdout.strip().splitlines()[-1]))
    peak = {k: statistics.median(r["peak"] for r in v) / 2 ** 20 for k, v in results.items()}
    secs = {k: min(r["seconds"] for r in v) for k, v in results.items()}
    ratio = peak["trace"] / peak["backward"]
    rows.append((f"trace / backward extra peak memory, {BIG_OPS} ops on {BIG_SIZE:,} elements",
                 f"{peak['trace']:.0f} MB / {peak['backward']:.0f} MB = {ratio:.1f}x", "<= 3x", ratio <= 3))
    ratio = secs["trace"] / secs["backward"]
    rows.append(("  same, CPU time", f"{secs['trace'] * 1e3:.0f} ms / {secs['backward'] * 1e3:.0f} ms = {ratio:.1f}x",
                 "<= 5x", ratio <= 5))


# --- the widget in the browser -------------------------------------------------------

WIDE = """\
import time
import torch
from helpers.stepper import step_backward

def wide_mlp(branches, width=4):
    # Many small layers side by side, summed: about 7 nodes per branch, a very wide picture.
    torch.manual_seed(0)
    x = torch.randn(2, width)
    layers = [torch.nn.Linear(width, width) for _ in range(branches)]
    return torch.stack([torch.tanh(layer(x)) for layer in layers]).sum()

def _cell_end(result=None):  # when the cell that shows the stepper has finished, on the kernel's clock
    global CELL_END
    CELL_END = time.time()
    get_ipython().events.unregister("post_run_cell", _cell_end)
"""
SHOW = """\
get_ipython().events.register("post_run_cell", _cell_end)
stepper = step_backward(wide_mlp({branches}), max_nodes=20000)
stepper"""

# Before Run All: when the stepper's picture is first on screen (two frames after it is in the page).
WATCH_SHOWN = """() => {
  window.agShownAt = null;
  const seen = () => {
    if (window.agShownAt !== null || !document.querySelector('.ag-stepper svg.ag-base')) return false;
    requestAnimationFrame(() => requestAnimationFrame(() => { window.agShownAt = Date.now(); }));
    return true;
  };
  const watch = new MutationObserver(() => { if (seen()) watch.disconnect(); });
  watch.observe(document.body, {childList: true, subtree: true});
}"""

# From a real click on Next: (1) the browser's Event Timing API, to the frame presented on
# screen (reported only from 16 ms, in steps of 8 ms); (2) to the end of the main thread's
# work for the next frame (style, layout, paint: a task queued from requestAnimationFrame).
WATCH_CLICKS = """() => {
  window.agEvent = []; window.agMain = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.name === 'click' && e.target?.closest?.('.ag-next')) window.agEvent.push(e.duration);
    }
  }).observe({type: 'event', buffered: false, durationThreshold: 16});
  window.agPanel = [];
  const afterFrame = (t0, into) => requestAnimationFrame(() => {
    const mc = new MessageChannel();
    mc.port1.onmessage = () => into.push(performance.now() - t0);
    mc.port2.postMessage(0);
  });
  document.addEventListener('click', (e) => {
    if (!e.target.closest('.ag-next')) return;
    const t0 = e.timeStamp;
    afterFrame(t0, window.agMain);
    // The panel is written a frame after the picture: when it is, to the end of that frame's work.
    const panel = e.target.closest('.ag-stepper').querySelector('.ag-panel');
    const watch = new MutationObserver(() => { watch.disconnect(); afterFrame(t0, window.agPanel); });
    watch.observe(panel, {attributes: true, attributeFilter: ['data-step']});
  }, true);
}"""

# The floor: a plain button that changes one number, clicked the same way -- fixed over the
# page ("page"), and in the stepper's toolbar next to Next ("toolbar": inside the notebook,
# where Next is; it changes nothing else).
BARE_BUTTON = """([where, toolbar]) => {
  const b = document.createElement('button');
  b.className = 'ag-btn ag-bare'; b.textContent = '0';
  if (where === 'page') b.style.cssText = 'position: fixed; right: 20px; bottom: 40px; z-index: 10000';
  b.onclick = () => { b.textContent = String(Number(b.textContent) + 1); };
  (where === 'page' ? document.body : toolbar).append(b);
  window.agBare = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.name === 'click' && e.target === b) window.agBare.push(e.duration);
  }).observe({type: 'event', buffered: false, durationThreshold: 16});
}"""

# While playing: [time, step on screen] at every frame.
WATCH_FRAMES = """(el) => {
  window.agFrames = [];
  const loop = (t) => { window.agFrames.push([t, Number(el.dataset.step)]); if (window.agFrames.length < 100000) window.agRaf = requestAnimationFrame(loop); };
  window.agRaf = requestAnimationFrame(loop);
}"""

CLICKS = 25
SIZES = {100: 14, 1000: 142, 5000: 714}  # nodes -> branches of wide_mlp
TARGET_PAINT = {100: None, 1000: 16, 5000: 50}  # ms, Next -> painted frame (100 nodes: for comparison)


def painted(reported):
    """(median, its text) of CLICKS clicks' Event Timing durations, of which only those from
    16 ms are reported: the others count as 16, so the median is an upper bound."""
    median = statistics.median(reported + [16] * (CLICKS - len(reported)))
    within = CLICKS - len(reported) + sum(d <= 16 for d in reported)
    return median, f"{'<= ' if median == 16 else ''}{median:.0f} ms ({within} of {CLICKS} in <= 16 ms)"


def bench_browser():
    if not Path(CHROMIUM).exists():
        rows.append(("browser figures", f"skipped: {CHROMIUM} missing", "", None))
        return
    for approx, branches in SIZES.items():
        cells = [WIDE, SHOW.format(branches=branches), "print('AG-CELL-END', repr(CELL_END))"]
        with JupyterLab({"bench.ipynb": cells}) as lab, chromium_page() as page:
            frames = []
            page.on("websocket", lambda ws: "/api/kernels/" in ws.url and ws.on("framesent", lambda f: frames.append(f)))
            page.goto(lab.url("bench.ipynb"))
            page.locator("#jp-main-statusbar").get_by_text("Idle").wait_for()
            page.evaluate(WATCH_SHOWN)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
            printed = page.locator(".jp-OutputArea-output", has_text="AG-CELL-END")
            printed.wait_for(timeout=600_000)
            page.wait_for_function("window.agShownAt !== null")
            widget = page.locator(".ag-stepper").first
            end = float(printed.inner_text().split()[-1])
            shown = max(0.0, page.evaluate("window.agShownAt") / 1000 - end)
            n = int(widget.get_attribute("data-n-steps"))
            nodes = widget.evaluate("el => el.querySelectorAll('svg.ag-base g.node[id], .ag-tiles g.node[id]').length")
            what = f"{nodes} nodes"
            target = "<= 1 s" if approx == 1000 else ""
            rows.append((f"{what}: widget on screen after the cell ends", f"{shown:.2f} s",
                         target, shown <= 1 if target else None))

            page.evaluate(WATCH_CLICKS)
            widget.locator(".ag-next").scroll_into_view_if_needed()
            for _ in range(CLICKS):  # real mouse clicks, one at a time
                before = widget.get_attribute("data-step")
                widget.locator(".ag-next").click()
                page.wait_for_function("([el, s]) => el.dataset.step !== s", arg=[widget.element_handle(), before])
                page.wait_for_timeout(100)
            page.wait_for_timeout(500)
            slow, main, panel = (page.evaluate(f"window.{k}") for k in ("agEvent", "agMain", "agPanel"))
            paint, text = painted(slow)
            limit = TARGET_PAINT[approx]
            rows.append((f"{what}: Next -> painted frame (Event Timing, median of {CLICKS})", text,
                         f"<= {limit} ms" if limit else "", paint <= limit if limit else None))
            rows.append((f"{what}: Next -> main thread done with the frame (median, max)",
                         f"{statistics.median(main):.1f} ms, {max(main):.0f} ms", "", None))
            rows.append((f"{what}: Next -> main thread done with the panel's frame (median)",
                         f"{statistics.median(panel):.1f} ms", "", None))
            if approx == 1000:  # the floor of this browser: the same clicks on a plain button
                for where in ("toolbar", "page"):
                    page.evaluate(BARE_BUTTON, [where, widget.locator(".ag-toolbar").element_handle()])
                    for _ in range(CLICKS):
                        page.locator(".ag-bare").click()
                        page.wait_for_timeout(100)
                    page.wait_for_timeout(500)
                    bare = page.evaluate("window.agBare")
                    page.evaluate("document.querySelector('.ag-bare').remove()")
                    place = "next to Next" if where == "toolbar" else "fixed over the page"
                    rows.append((f"baseline: a plain button {place} -> painted frame (median of {CLICKS})",
                                 painted(bare)[1], "", None))

            if approx != 1000:
                continue
            widget.locator(".ag-first").click()
            widget.locator(".ag-speed").select_option("30")
            page.wait_for_timeout(500)  # let the clicks' own syncs go out
            frames.clear()
            widget.evaluate(WATCH_FRAMES)
            widget.locator(".ag-play").click()
            page.wait_for_timeout(3000)
            while_playing = len(frames)
            widget.locator(".ag-play").click()  # pause: syncs `step` once
            page.evaluate("cancelAnimationFrame(window.agRaf)")
            # From the first frame that shows step 1 to the last frame before the pause, in the page.
            shown = [(t, k) for t, k in page.evaluate("window.agFrames") if k > 0]
            (t0, k0), (t1, k1) = shown[0], shown[-1]
            rate = (k1 - k0) / ((t1 - t0) / 1000)
            on_screen = len({k for _, k in shown})
            page.wait_for_timeout(500)
            rows.append((f"{what}: playing at 30 steps/s: steps per second, steps painted",
                         f"{rate:.1f} /s, {on_screen} of {k1 - k0 + 1} ({len(shown) / ((t1 - t0) / 1000):.0f} frames/s)",
                         ">= 28.5 /s", rate >= 28.5 and on_screen >= 0.9 * (k1 - k0 + 1)))
            rows.append((f"{what}: kernel messages while playing, on pause", f"{while_playing}, "
                         f"{len(frames) - while_playing}", "0, 1", (while_playing, len(frames) - while_playing) == (0, 1)))


def bench_notebook_size():
    """A chapter run top to bottom and saved with its outputs and widget state (as JupyterLab
    saves it with the course's settings): its size, and what the steppers take of it."""
    import nbclient
    import nbformat
    import tempfile

    solutions = Path(__file__).resolve().parents[1] / "solutions"
    for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        with tempfile.TemporaryDirectory() as tmp:
            nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                                    store_widget_state=True, resources={"metadata": {"path": tmp}}).execute()
            saved = Path(tmp) / "saved.ipynb"
            nbformat.write(nb, saved)
            total = saved.stat().st_size
        state = nb.metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        steppers = [m for m in state.get("state", {}).values() if m.get("model_name") == "AnyModel"]
        widget_kb = len(json.dumps(state)) / 1024
        html_kb = sum(len(o.get("data", {}).get("text/html", "")) for c in nb.cells if c.cell_type == "code"
                      for o in c.get("outputs", []) if "ag-static-stepper" in o.get("data", {}).get("text/html", "")) / 1024
        rows.append((f"{path.stem}: saved after Run All ({len(steppers)} steppers)",
                     f"{total / 1024:.0f} KB (widget state {widget_kb:.0f} KB, stepper HTML {html_kb:.0f} KB)",
                     "", None))


def main():
    if sys.argv[1:2] == ["--measure-big"]:  # a child process of bench_memory
        print(json.dumps(measure_big(sys.argv[2])))
        return 0
    if "--browser-only" not in sys.argv:
        bench_trace()
        bench_memory()
    if "--trace-only" not in sys.argv:
        bench_browser()
        bench_notebook_size()
    print("Autograd Lab stepper benchmark "
          f"(torch {torch.__version__}, browser: JupyterLab + headless Chromium, timed in the page)")
    width = max(len(r[0]) for r in rows)
    mwidth = max(len(r[1]) for r in rows)
    print(f"{'what':<{width}}  {'measured':<{mwidth}}  {'target':<8}  result")
    for what, measured, target, ok in rows:
        mark = "" if ok is None else ("PASS" if ok else "FAIL")
        print(f"{what:<{width}}  {measured:<{mwidth}}  {target:<8}  {mark}")
    return 0 if all(ok is not False for *_, ok in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
