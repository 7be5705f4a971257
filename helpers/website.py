"""``make site``: the course as a static web site, steppers included, that works offline.

    python -m helpers.website            # build site/ (runs every chapter once)
    python -m helpers.website --out DIR  # somewhere else

Each chapter in ``solutions/`` is run top to bottom (a real run: every diagram is
drawn by the cell that draws it), then turned into a page with Sphinx and myst-nb
(Jupyter Book 1's engine). The page keeps the prose, the code and its outputs,
but no solution: every answer cell and check cell of the exercises is left out,
and each exercise ends with links that open the learner's notebook on Binder or
Colab.

Why Sphinx + myst-nb and not a hand-written generator or Jupyter Book 2: they
install from PyPI and build with no network (Jupyter Book 2's ``myst`` command
downloads its HTML theme at build time), they render notebook outputs as they
are, and sphinx-book-theme gives navigation, search and launch buttons. Math is
typeset by a MathJax copy shipped in ``sphinx-mathjax-offline``, so the pages
load nothing from another host.

What this module adds, because no builder does it:

- the exercise cut (answer and check cells out, "open the notebook" links in);
- diagrams inline: an ``image/svg+xml`` output becomes inline ``<svg>`` so that
  the node ids the steppers highlight are in the page;
- steppers that step with no kernel: each stepper output carries a
  ``text/html`` form with its data embedded (see ``helpers/stepper.py``); the
  page loads ``stepper.js`` -- the same front end JupyterLab runs -- and a small
  bootstrap that mounts it on that data.
"""
import argparse
import concurrent.futures
import copy
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
STATIC = Path(__file__).parent / "static"
REPOSITORY = "autograd-lab/autograd-lab"  # where Binder and Colab open the notebooks
BRANCH = "main"
STATIC_FILES = ("stepper.js", "stepper.css", "static_stepper.js")
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class SiteError(Exception):
    """A build problem, in one sentence that says what to do."""


# ------------------------------------------------------------------- links

def binder_url(notebook):
    return (f"https://mybinder.org/v2/gh/{REPOSITORY}/HEAD"
            f"?urlpath=lab/tree/notebooks/{notebook}")


def colab_url(notebook):
    return f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/notebooks/{notebook}"


# ------------------------------------------------------------ running

def execute(path, timeout=300):
    """``path`` run top to bottom in a scratch folder, errors kept as outputs."""
    import nbclient  # a build tool: installed with the test and site dependencies

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as scratch:
        for extra in Path(path).parent.iterdir():  # data files next to the notebook
            if extra.is_file() and extra.suffix != ".ipynb":
                shutil.copy(extra, scratch)
        nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": scratch}}).execute()
    return nb


def _execute_all(paths, jobs):
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs) as pool:
        return dict(zip(paths, pool.map(execute, paths)))


# ------------------------------------------------------------ pages

def _is_exercise_code(cell):
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "code" and (meta.get("solution") or meta.get("grade"))


def _is_exercise_heading(cell):
    return cell.cell_type == "markdown" and re.match(r"#{2,4}\s*Exercise\b", cell.source.strip())


def _inline_svg(output):
    """An image/svg+xml output as a text/html one holding the <svg> itself."""
    data = output.get("data", {})
    svg = data.get("image/svg+xml")
    if svg is None or "text/html" in data:
        return output
    svg = svg if isinstance(svg, str) else "".join(svg)
    svg = svg[svg.find("<svg"):] if "<svg" in svg else svg
    out = copy.deepcopy(output)
    out.data = {"text/html": f'<div class="autograd-lab-diagram">{svg}</div>'}
    return out


def page(nb, notebook_name):
    """The site's copy of an executed chapter: no solution, links to the notebook."""
    nb = copy.deepcopy(nb)
    links = (f"\n\n```{{admonition}} Work this exercise in the notebook\n"
             f"Open [`{notebook_name}` on Binder]({binder_url(notebook_name)}) or "
             f"[in Colab]({colab_url(notebook_name)}): the check cell under the exercise tells "
             f"you what is off, never the answer.\n```\n")
    cells = []
    for cell in nb.cells:
        if _is_exercise_code(cell) or "colab-setup" in cell.metadata.get("tags", []):
            continue
        if _is_exercise_heading(cell):
            cell.source = cell.source.rstrip() + links
        if cell.cell_type == "markdown":  # badges are remote images; the page has launch buttons
            cell.source = re.sub(r"\[!\[[^\]]*\]\(https?://[^)]*\)\]\([^)]*\)\n?", "", cell.source)
        if cell.cell_type == "code":
            cell.outputs = [_inline_svg(o) for o in cell.get("outputs", [])]
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("widgets", None)
    return nb


def _leaks(nb):
    """Solution markers that must never reach a page."""
    from .release import MARKERS
    return sorted({m for c in nb.cells for m in MARKERS if m in c.source})


# ------------------------------------------------------------ sphinx

CONF = '''\
project = "Autograd Lab"
author = "Autograd Lab"
extensions = ["myst_nb", "sphinx-mathjax-offline"]
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
nb_execution_mode = "off"          # run once by helpers.website, not again here
# A live widget needs a kernel; the stepper's text/html form does not.
nb_mime_priority_overrides = [("html", "{widget}", None)]
html_theme = "sphinx_book_theme"
html_title = "Autograd Lab"
html_favicon = "_static/favicon.svg"
html_context = {{"default_mode": "light"}}  # the theme's toggle still offers dark and auto
html_static_path = ["_static"]
html_css_files = ["stepper.css", "site.css"]
html_js_files = [("static_stepper.js", {{"type": "module"}})]
html_theme_options = {{
    "repository_url": "https://github.com/{repo}",
    "repository_branch": "{branch}",
    "path_to_docs": "",
    "launch_buttons": {{"binderhub_url": "https://mybinder.org",
                        "colab_url": "https://colab.research.google.com",
                        "notebook_interface": "jupyterlab"}},
    "use_repository_button": True,
}}
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type", "misc.highlighting_failure"]
'''

SITE_CSS = """\
.autograd-lab-diagram svg { max-width: 100%; height: auto; }
"""
FAVICON = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16">'
           '<circle cx="8" cy="8" r="7" fill="#4a7bd0"/><text x="8" y="12" font-size="10" '
           'text-anchor="middle" fill="white" font-family="sans-serif">&#8711;</text></svg>')


def _index(chapters):
    rows = "\n".join(f"| [{_title(nb)}](notebooks/{name[:-6]}) | "
                     f"[Binder]({binder_url(name)}) · [Colab]({colab_url(name)}) |"
                     for name, nb in chapters)
    toc = "\n".join(f"notebooks/{name[:-6]}" for name, _ in chapters)
    return (f"# Autograd Lab\n\n"
            f"Learn PyTorch autograd by watching the real engine work. Every diagram on these "
            f"pages was drawn from a live autograd graph when the page was built, and every "
            f"stepper replays a real backward pass Node by Node -- press **Next** (or the arrow "
            f"keys) right here, no installation needed. To run the code and do the exercises, "
            f"open a chapter as a notebook.\n\n"
            f"| Chapter | Run it |\n|---|---|\n{rows}\n\n"
            f"```{{toctree}}\n:hidden:\n:maxdepth: 1\n\n{toc}\n```\n")


def _title(nb):
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.startswith("# "):
            return cell.source.splitlines()[0][2:].strip()
    return "chapter"


def build(out=ROOT / "site", *, executed=None, chapters=None, jobs=2, quiet=True):
    """Build the site into ``out`` and return it. ``executed(path)`` gives a chapter's run
    notebook (default: run each chapter here); ``chapters`` picks some by number ("00", ...)."""
    out = Path(out).resolve()
    paths = sorted(p for p in (ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")
                   if chapters is None or p.name[:2] in chapters)
    if not paths:
        raise SiteError(f"No chapters in {ROOT / 'solutions'}: run this from a checkout of the course.")
    if out == ROOT or ROOT.resolve() in [out, *out.parents] and out.name in ("solutions", "notebooks", "helpers"):
        raise SiteError(f"Refusing to write the site into {out}: choose an empty folder such as site/.")
    runs = {p: executed(p) for p in paths} if executed else _execute_all(paths, jobs)

    with tempfile.TemporaryDirectory(prefix="autograd-lab-site-") as src:
        src = Path(src)
        (src / "notebooks").mkdir()
        (src / "_static").mkdir()
        chapters = []
        for path in paths:
            nb = page(runs[path], path.name)
            leaked = _leaks(nb)
            if leaked:
                raise SiteError(f"{path.name}: {leaked[0]} would reach the page; check its nbgrader markup.")
            nbformat.write(nb, src / "notebooks" / path.name)
            chapters.append((path.name, nb))
        for name in STATIC_FILES:
            if (STATIC / name).exists():
                shutil.copy(STATIC / name, src / "_static" / name)
        (src / "_static" / "site.css").write_text(SITE_CSS)
        (src / "_static" / "favicon.svg").write_text(FAVICON)
        (src / "conf.py").write_text(CONF.format(widget=WIDGET_VIEW, repo=REPOSITORY, branch=BRANCH))
        (src / "index.md").write_text(_index(chapters))
        if out.exists():
            shutil.rmtree(out)
        cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-j", str(jobs), str(src), str(out)]
        done = subprocess.run(cmd + (["-q"] if quiet else []), capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
            raise SiteError(f"Sphinx could not build the site: {last}")
    shutil.rmtree(out / ".doctrees", ignore_errors=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m helpers.website", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "site"), help="output folder (default: site/)")
    parser.add_argument("--jobs", type=int, default=2, help="chapters run at once (default: 2)")
    args = parser.parse_args(argv)
    try:
        out = build(args.out, jobs=args.jobs)
    except SiteError as error:
        print(f"make site: {error}", file=sys.stderr)
        return 2
    print(f"Site written to {out}: open {out / 'index.html'}, or serve it with "
          f"`python -m http.server -d {out}`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
