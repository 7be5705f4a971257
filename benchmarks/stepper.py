"""Figures for the backward stepper (not a test): ``python benchmarks/stepper.py``.

1. ``trace_backward`` against a plain ``backward()`` on the same graph, at about
   100 and 1,000 nodes (a residual tanh MLP on 32 x 32 tensors, one torch
   thread; the trace includes walking the graph for ids). Best of several runs
   taken in turns; the ratio is in CPU time, which a busy machine disturbs
   less than wall-clock time (printed too).
2. In JupyterLab, in headless Chromium, on a 1,000-node stepper: the time from
   a Next click to the new highlight, as the time from click() to the classes
   being in the DOM (timed in the page) and as the time from a real mouse click
   to the next painted frame (the browser's Event Timing API).
3. In JupyterLab: websocket frames the page sends to the kernel while the
   stepper plays (counted with Playwright), and when it is paused.

Needs /usr/bin/chromium for 2 and 3 (skipped with a note otherwise).
"""
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_browser import CHROMIUM, JupyterLab, chromium_page, open_and_run_all  # noqa: E402

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


# In the page: click() on Next 25 times; the highlight must be in the DOM when click() returns.
CLICK_TO_DOM = """async (el) => {
  const next = el.querySelector('.ag-next');
  const times = [];
  for (let i = 0; i < 25; i++) {
    const before = el.dataset.running;
    const t0 = performance.now();
    next.click();
    const running = el.querySelector('g.node.ag-run');
    if (!running || running.id === before) throw new Error('no new highlight after Next');
    times.push(performance.now() - t0);
    await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
  }
  return times;
}"""

# The browser's Event Timing API: from a real click to the next frame painted after it.
# Only events of 16 ms or more are reported (the API's floor), in steps of 8 ms.
WATCH_CLICKS = """() => {
  window.agClicks = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      if (e.name === 'click' && e.target && e.target.closest && e.target.closest('.ag-next')) {
        window.agClicks.push(e.duration);
      }
    }
  }).observe({type: 'event', buffered: true, durationThreshold: 16});
}"""


def bench_browser():
    if not Path(CHROMIUM).exists():
        rows.append(("browser figures", f"skipped: {CHROMIUM} missing", "", None))
        return
    cells = [BUILD, "stepper = step_backward(residual_mlp(111))\nstepper",
             "print(stepper.n_steps, stepper.step)"]
    with JupyterLab({"bench.ipynb": cells}) as lab, chromium_page() as page:
        frames = []
        page.on("websocket", lambda ws: "/api/kernels/" in ws.url and ws.on("framesent", lambda f: frames.append(f)))
        t = time.perf_counter()
        open_and_run_all(page, lab, "bench.ipynb")
        widget = page.locator(".ag-stepper").first
        page.wait_for_function("el => el.dataset.step === '0'", arg=widget.element_handle())
        shown = time.perf_counter() - t
        n = int(widget.get_attribute("data-n-steps"))
        svg_nodes = widget.evaluate("el => el.querySelectorAll('g.node').length")
        rows.append(("JupyterLab: open, run all, widget shown", f"{shown:.1f} s ({svg_nodes} nodes, {n} steps)",
                     "", None))

        dom = statistics.median(widget.evaluate(CLICK_TO_DOM))
        rows.append((f"Next click -> highlight in the DOM, {svg_nodes} nodes (median of 25)", f"{dom:.1f} ms",
                     "< 50 ms", dom < 50))
        page.evaluate(WATCH_CLICKS)
        clicks = 25
        for _ in range(clicks):  # real mouse clicks, each waited for
            before = widget.get_attribute("data-step")
            widget.locator(".ag-next").click()
            page.wait_for_function("([el, s]) => el.dataset.step !== s", arg=[widget.element_handle(), before])
        page.wait_for_timeout(500)
        slow = page.evaluate("window.agClicks")  # clicks of 16 ms or more
        paint = statistics.median(slow + [16] * (clicks - len(slow)))  # the others count as 16 (an upper bound)
        rows.append((f"Next click -> next painted frame (Event Timing, median of {clicks})",
                     f"{'<= ' if paint == 16 else ''}{paint:.0f} ms ({clicks - len(slow)} under 16 ms)",
                     "< 50 ms", paint < 50))

        widget.locator(".ag-first").click()
        widget.locator(".ag-speed").select_option("30")
        page.wait_for_timeout(500)  # let the clicks' own syncs go out
        frames.clear()
        start = widget.evaluate("el => Number(el.dataset.step)")
        widget.locator(".ag-play").click()
        page.wait_for_timeout(3000)
        played_to = widget.evaluate("el => Number(el.dataset.step)")
        while_playing = len(frames)
        widget.locator(".ag-play").click()  # pause: syncs `step` once
        page.wait_for_timeout(500)
        rows.append((f"kernel messages while playing ({played_to - start} steps in 3 s)",
                     str(while_playing), "0", while_playing == 0))
        rows.append(("kernel messages on pause (the step sync)", str(len(frames) - while_playing), "1",
                     len(frames) - while_playing == 1))


def main():
    bench_trace()
    bench_browser()
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
