"""`make site`: one page per chapter with real outputs, no solution, nothing loaded from another
host, and steppers that step on the page with no kernel (driven in headless Chromium)."""
import functools
import http.server
import json
import re
import threading
from pathlib import Path

import pytest

from helpers import release, website
from nbexec import SOLUTIONS, executed, notebooks
from test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS, need_browser
from test_learner_copies import STUBS, split_lines

CHAPTERS = notebooks(SOLUTIONS)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # The chapters run once per test session (nbexec), shared with the notebook tests.
    return website.build(tmp_path_factory.mktemp("site") / "site", executed=executed)


def page_notebook(site, path):
    """The notebook a chapter's page was made from (Sphinx keeps it under _sources/)."""
    found = list((site / "_sources" / "notebooks").glob(f"{path.stem}.ipynb*"))
    assert found, f"no page source for {path.name}"
    return json.loads(found[0].read_text())


def test_an_index_and_one_page_per_chapter(site):
    index = (site / "index.html").read_text()
    for path in CHAPTERS:
        assert (site / "notebooks" / f"{path.stem}.html").exists(), path.name
        assert f'href="notebooks/{path.stem}.html"' in index, path.name


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.name)
def test_pages_show_no_solution_and_link_each_exercise_to_the_notebook(site, path):
    nb = page_notebook(site, path)
    graded = [c.get("id") for c in nb["cells"]
              if {"solution", "grade"} & {k for k, v in c.get("metadata", {}).get("nbgrader", {}).items() if v}]
    assert not graded, f"{path.name}: answer or check cells on the page: {graded}"
    inside, outside = split_lines(release.read(path))
    secret = inside - outside - STUBS
    shown = {line.strip() for c in nb["cells"] for line in "".join(c["source"]).splitlines()}
    assert not secret & shown, f"{path.name}: solution lines on the page: {sorted(secret & shown)[:3]}"
    html = (site / "notebooks" / f"{path.stem}.html").read_text()
    assert not [m for m in release.MARKERS if m in html]
    headings = [c for c in nb["cells"] if c["cell_type"] == "markdown"
                and re.match(r"#{2,4}\s*Exercise\b", "".join(c["source"]).strip())]
    assert all(website.colab_url(path.name) in "".join(c["source"]) and
               website.binder_url(path.name) in "".join(c["source"]) for c in headings)
    if not path.name.startswith("00"):  # 00 has a warm-up, not numbered exercises
        assert headings, f"{path.name}: no exercise heading on the page"


def test_diagrams_are_inline_svg_and_steppers_carry_their_data(site):
    html = (site / "notebooks" / f"{CHAPTERS[0].stem}.html").read_text()
    assert re.search(r'<div class="autograd-lab-diagram"><svg', html)
    assert "ag-static-stepper" in html and "ag-stepper-state" in html
    assert "Error displaying widget" not in html


def test_nothing_is_loaded_from_another_host(site):
    for page in [site / "index.html", *(site / "notebooks").glob("*.html")]:
        html = page.read_text()
        loads = re.findall(r'<(?:script|link|img|iframe|source)\b[^>]*?(?:src|href)="([^"]+)"', html)
        remote = [u for u in loads if re.match(r"(https?:)?//", u)]
        assert not remote, f"{page.name} loads {remote[:3]}"
        assert not re.search(r"url\((['\"]?)(https?:)?//", html), page.name


@pytest.mark.browser
@pytest.mark.timeout(180)
def test_a_stepper_steps_on_the_page_with_no_kernel_and_no_network(site):
    need_browser()
    from playwright.sync_api import sync_playwright

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin = f"http://127.0.0.1:{server.server_port}"
    requests, problems = [], []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{origin}/notebooks/{CHAPTERS[0].stem}.html")
            stepper = page.locator(".ag-stepper").first
            stepper.wait_for(timeout=20_000)
            stepper.scroll_into_view_if_needed()
            counter = stepper.locator(".ag-counter")
            running = "(els) => els.map((e) => e.dataset.id).sort().join(' ')"
            before = (counter.inner_text(), stepper.locator(".ag-now-layer [data-id]:not(.ag-hidden, .ag-hidden *)").evaluate_all(running))
            stepper.locator(".ag-next").click()
            stepper.locator(".ag-next").click()
            page.wait_for_timeout(300)
            after = (counter.inner_text(), stepper.locator(".ag-now-layer [data-id]:not(.ag-hidden, .ag-hidden *)").evaluate_all(running))
            ARTIFACTS.mkdir(exist_ok=True)
            stepper.screenshot(path=str(ARTIFACTS / "site-stepper.png"))
            page.keyboard.press("ArrowRight")  # keys work once the stepper has focus
            page.wait_for_timeout(200)
            keyed = counter.inner_text()
            browser.close()
    finally:
        server.shutdown()
    assert before[0] != after[0] and after[1] and before[1] != after[1], (before, after)
    assert keyed != after[0]
    assert not problems, problems
    assert all(u.startswith(origin) or u.startswith("data:") for u in requests), \
        [u for u in requests if not u.startswith(origin)][:5]
