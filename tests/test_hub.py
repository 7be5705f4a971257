"""A class on a real JupyterHub: two students open the handout's nbgitpuller link and run chapter 00.

JupyterHub (from PyPI) and configurable-http-proxy (from npm, `make hub-deps`) run on
127.0.0.1 with DummyAuthenticator and SimpleLocalProcessSpawner; each student's home is a
folder under this test's private temporary folder. JupyterHub's own test suite drives a
hub inside the test process with mocked spawners; this test is a black box instead: real
processes, and the HTTP requests a browser makes.

- The handout is a repository on local disk; the link is an ordinary nbgitpuller link
  (`/hub/user-redirect/git-pull?repo=file://...`). Following it as a logged-in student
  starts their server, loads nbgitpuller's page, then calls the `git-pull/api` endpoint the
  page's script calls, and opens the page it redirects to.
- Each student's server runs a Python that has the requirements but NOT `helpers` (see
  tests/test_classroom.py), with no Graphviz `dot` on PATH -- a pip-only hub such as The
  Littlest JupyterHub -- and one shared TMPDIR, like /tmp. Both students run chapter 00 at
  the same time through the Jupyter server's REST API and kernel websocket.
- Then the instructor collects both notebooks into an nbgrader course directory, grades
  them and exports the grades; a third student on the roster never handed anything in.
"""
import asyncio
import contextlib
import io
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import requests

from helpers import classroom, release
from test_classroom import (CHAPTER, ROOT, VENV_BIN, answered, clean_env, leaks, make_isolated_python,
                            nbgrader, points)

pytestmark = pytest.mark.timeout(900)

STUDENTS = ("alice", "bob")
ROSTER = "id,first_name\nalice,Alice\nbob,Bob\ncarol,Carol\n"
TARGET = "autograd-lab"  # the folder the link clones into, in each home
WRONG_ANSWER = "dw = 33.0\ndb = 11.0  # the sign of 2y forgotten"
CELL_TIMEOUT = 300


def chp_command():
    local = VENV_BIN.parent / "node" / "node_modules" / ".bin" / "configurable-http-proxy"
    found = str(local) if local.exists() else shutil.which("configurable-http-proxy")
    if not found:
        why = "configurable-http-proxy is not installed: run `make hub-deps` (needs npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def private_bin(folder):
    """PATH for the students' servers: git (for nbgitpuller), a shell, graphviz-pure; no `dot`."""
    folder.mkdir()
    for name in ("git", "sh", "bash", "env"):
        os.symlink(shutil.which(name), folder / name)
    os.symlink(VENV_BIN / "graphviz-pure", folder / "graphviz-pure")
    return folder


HUB_CONFIG = """\
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {public}
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.command = [{chp!r}]
c.ConfigurableHTTPProxy.pid_file = {base!r} + "/proxy.pid"
c.JupyterHub.pid_file = {base!r} + "/hub.pid"
c.JupyterHub.db_url = "sqlite:///" + {base!r} + "/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = {base!r} + "/cookie_secret"
c.JupyterHub.cleanup_servers = True
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allowed_users = {students!r}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = {homes!r} + "/{{username}}"
c.Spawner.cmd = [{python!r}, "-m", "jupyterhub.singleuser"]
c.Spawner.args = {args!r}
c.Spawner.environment = {environment!r}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
"""


@contextlib.contextmanager
def running_hub(base, python):
    public, hub_port, api = free_ports(3)
    homes = base / "homes"
    homes.mkdir()
    shared_tmp = base / "shared-tmp"  # what /tmp is on a server: everyone may write
    shared_tmp.mkdir()
    shared_tmp.chmod(0o1777)
    server_config = base / "server-config"
    server_config.mkdir()
    (server_config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"nbgitpuller": True, "jupyterlab": True}}}))
    environment = {
        "PATH": os.pathsep.join([str(Path(python).parent), str(private_bin(base / "bin"))]),
        "TMPDIR": str(shared_tmp),
        "JUPYTER_PATH": str(VENV_BIN.parent / "share" / "jupyter"),  # JupyterLab's files, kernel spec
        "JUPYTER_CONFIG_PATH": str(server_config),
        "PYTHONNOUSERSITE": "1",
    }
    args = ["--ServerApp.allow_root=True"] if os.getuid() == 0 else []
    config = base / "jupyterhub_config.py"
    config.write_text(HUB_CONFIG.format(
        public=public, hub=hub_port, api=api, chp=chp_command(), base=str(base), homes=str(homes),
        students=set(STUDENTS), python=str(python), args=args, environment=environment))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "JUPYTER"))}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "/usr/bin:/bin")])
    log = open(base / "jupyterhub.log", "wb")
    hub = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(config)], cwd=base, env=env,
                           stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{public}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert hub.poll() is None, f"JupyterHub exited:\n{(base / 'jupyterhub.log').read_text()[-3000:]}"
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/hub/api/", timeout=5).ok:
                    break
            assert time.monotonic() < deadline, "JupyterHub did not answer within 120 s"
            time.sleep(0.5)
        yield {"url": url, "homes": homes, "shared_tmp": shared_tmp, "log": base / "jupyterhub.log"}
    finally:
        hub.send_signal(signal.SIGTERM)  # stops the students' servers and the proxy it started
        try:
            hub.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(hub.pid, signal.SIGKILL)
            hub.wait()
        log.close()
        end_leftovers(base)


def end_leftovers(base):
    """Processes this test started that outlived the hub (their command line names our folder)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if str(base).encode() in (proc / "cmdline").read_bytes():
                os.kill(int(proc.name), signal.SIGKILL)


# ------------------------------------------------------------ a student, over HTTP

def log_in(url, name):
    session = requests.Session()
    session.get(f"{url}/hub/login", timeout=30).raise_for_status()
    done = session.post(f"{url}/hub/login", data={"username": name, "password": "any",
                                                   "_xsrf": session.cookies.get("_xsrf")},
                        allow_redirects=False, timeout=30)
    assert done.status_code == 302, f"login of {name} failed: {done.status_code}"
    return session


def open_link(session, url, link, name):
    """Follow an nbgitpuller link as the browser does; returns (pull events, final page)."""
    deadline = time.monotonic() + 240
    while True:  # the Hub starts the server; its spawn-pending page waits, then goes on
        page = session.get(url + link, timeout=60)
        if urllib.parse.urlparse(page.url).path == f"/user/{name}/git-pull" and page.ok:
            break
        assert time.monotonic() < deadline, f"{name}'s server did not start: {page.status_code} {page.url}"
        time.sleep(1)
    data = {k: urllib.parse.unquote(v) for k, v in re.findall(r'data-([a-z-]+)="([^"]*)"', page.text)}
    params = {"_xsrf": data["xsrf"], "repo": data["repo"], "targetpath": data["targetpath"]}
    if "branch" in data:
        params["branch"] = data["branch"]
    events = []
    with session.get(f"{url}{data['base-url']}git-pull/api", params=params, stream=True,
                     timeout=240) as stream:
        for line in stream.iter_lines(decode_unicode=True):
            if line and line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1].get("phase") in ("finished", "error"):
                    break
    landing = session.get(f"{url}{data['base-url']}{data['path']}", timeout=60)
    return events, landing


def token_for(session, url, name):
    done = session.post(f"{url}/hub/api/users/{name}/tokens", json={"note": "test"},
                        headers={"X-XSRFToken": session.cookies.get("_xsrf", path="/hub/")}, timeout=30)
    done.raise_for_status()
    return done.json()["token"]


# ------------------------------------------------------------ a kernel, over its websocket

async def run_notebook(url, name, token, path, cells, probe):
    """Run ``cells`` (code cells) in a new session of ``path``; returns [(cell, outputs)] + probe."""
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest
    from tornado.websocket import websocket_connect

    auth = {"Authorization": f"token {token}"}
    base = f"{url}/user/{name}/api"
    created = await AsyncHTTPClient().fetch(f"{base}/sessions", method="POST", headers=auth, body=json.dumps(
        {"path": path, "type": "notebook", "name": Path(path).name, "kernel": {"name": "python3"}}))
    kernel = json.loads(created.body)["kernel"]["id"]
    session_id = uuid.uuid4().hex
    ws = await websocket_connect(HTTPRequest(
        f"{base.replace('http', 'ws', 1)}/kernels/{kernel}/channels?session_id={session_id}", headers=auth))
    results = []
    try:
        for source in [*(c.source for c in cells), probe]:
            msg_id = uuid.uuid4().hex
            await ws.write_message(json.dumps({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session_id,
                           "username": name, "version": "5.3", "date": ""},
                "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
                "content": {"code": source, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}}))
            outputs = []
            while True:
                raw = await asyncio.wait_for(ws.read_message(), CELL_TIMEOUT)
                assert raw is not None, f"{name}'s kernel websocket closed"
                if isinstance(raw, bytes):
                    continue  # widget messages with binary buffers
                msg = json.loads(raw)
                if msg.get("parent_header", {}).get("msg_id") != msg_id or msg["channel"] != "iopub":
                    continue
                kind = msg["msg_type"]
                if kind == "status" and msg["content"]["execution_state"] == "idle":
                    break
                if kind in ("stream", "error", "execute_result", "display_data"):
                    outputs.append({"type": kind, **msg["content"]})
            results.append(outputs)
    finally:
        ws.close()
        await AsyncHTTPClient().fetch(f"{base}/kernels/{kernel}", method="DELETE", headers=auth,
                                      raise_error=False)
    return results


def text_of(outputs):
    return "".join(o.get("text", "") for o in outputs if o["type"] == "stream")


def errors_in(outputs):
    return [f"{o['ename']}: {o['evalue']}" for o in outputs if o["type"] == "error"]


PROBE = """\
import json as _j, os as _o, tempfile as _t, helpers as _h
_d = _t.gettempdir()
_p = [p for p in _o.environ["PATH"].split(_o.pathsep) if p.startswith(_d + _o.sep)]
print("PROBE", _j.dumps({"helpers": _h.__file__, "tmp": _d, "in_tmp": {p: _o.stat(p).st_mode for p in _p}}))
"""


# ------------------------------------------------------------ the class

@pytest.fixture(scope="module")
def class_day(tmp_path_factory):
    base = tmp_path_factory.mktemp("hub")
    took = {}
    start = time.monotonic()
    repo = base / "repo"  # a snapshot: the handout and the course are made from the same files
    for folder in ("solutions", "binder", "helpers"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "requirements.txt", repo)
    handout = base / "handout" / "autograd-lab-handout"
    assert classroom.handout(handout, repo, out=lambda *_: None)
    python = make_isolated_python(base)
    link = ("/hub/user-redirect/git-pull?" + urllib.parse.urlencode({
        "repo": f"file://{handout}", "branch": "main",
        "urlpath": f"lab/tree/{TARGET}/notebooks/{CHAPTER}", "targetpath": TARGET}))
    solved = release.read(repo / "solutions" / CHAPTER)
    took["set-up"] = time.monotonic() - start

    # The instructor prepares the course while the class goes on (nbgrader, another process).
    course = base / "course"
    with contextlib.redirect_stdout(io.StringIO()):
        classroom.course(course, ["00"], repo)
        (base / "roster.csv").write_text(ROSTER)
        classroom.roster(course, base / "roster.csv")
    pool = ThreadPoolExecutor(2)
    generated = pool.submit(nbgrader, python, course, "generate_assignment", "ch00")

    with running_hub(base, python) as hub:
        url, homes = hub["url"], hub["homes"]
        took["hub start"] = time.monotonic() - start - sum(took.values())

        def arrive(name):  # a student logs in and clicks the link
            session = log_in(url, name)
            events, landing = open_link(session, url, link, name)
            return {"session": session, "events": events, "landing": landing,
                    "token": token_for(session, url, name), "leaks_after_pull": leaks(homes / name, repo)}

        students = dict(zip(STUDENTS, pool.map(arrive, STUDENTS)))
        took["log in and pull (both)"] = time.monotonic() - start - sum(took.values())

        path = f"{TARGET}/notebooks/{CHAPTER}"
        for name, info in students.items():
            auth = {"Authorization": f"token {info['token']}"}
            listing = requests.get(f"{url}/user/{name}/api/contents/{TARGET}/notebooks", headers=auth,
                                   timeout=60).json()
            info["listing"] = sorted(item["name"] for item in listing["content"])
            nb = nbformat.from_dict(requests.get(f"{url}/user/{name}/api/contents/{path}",
                                                 headers=auth, timeout=60).json()["content"])
            answer = None if name == "alice" else {
                c.metadata.nbgrader.grade_id: WRONG_ANSWER for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("solution")}
            nb = answered(nb, solved, answer)
            requests.put(f"{url}/user/{name}/api/contents/{path}", headers=auth, timeout=60, json={
                "type": "notebook", "format": "json", "content": nb}).raise_for_status()
            info["cells"] = [c for c in nb.cells if c.cell_type == "code"]

        async def both():  # the two students run chapter 00 at the same time
            return await asyncio.gather(*(
                run_notebook(url, name, info["token"], path, info["cells"], PROBE)
                for name, info in students.items()))

        for (name, info), outputs in zip(students.items(), asyncio.run(both())):
            info["outputs"], info["probe"] = outputs[:-1], outputs[-1]
        took["run chapter 00 (both)"] = time.monotonic() - start - sum(took.values())
        shared_tmp = sorted(hub["shared_tmp"].iterdir())
        hub_log = hub["log"].read_text(errors="replace")

    # The instructor collects from the homes, grades and exports.
    generated.result()
    pool.shutdown()
    with contextlib.redirect_stdout(io.StringIO()):
        collected = classroom.collect(course, "ch00", f"{homes}/{{student}}/{TARGET}/notebooks")
    nbgrader(python, course, "autograde", "ch00")
    header, rows = classroom.grade_table(course)
    took["collect, grade, export"] = time.monotonic() - start - sum(took.values())
    print("\nJupyterHub test, seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in took.items()))
    return {"students": students, "homes": homes, "repo": repo, "shared_tmp": shared_tmp,
            "hub_log": hub_log, "collected": collected, "solved": solved,
            "grades": {row[0]: dict(zip(header, row)) for row in rows}, "took": took}


def test_each_student_gets_the_notebooks_from_the_link(class_day):
    chapters = sorted(p.name for p in (class_day["repo"] / "solutions").glob("*.ipynb"))
    for name, info in class_day["students"].items():
        assert info["events"][-1]["phase"] == "finished", info["events"][-3:]
        assert info["landing"].ok and info["landing"].url.endswith(f"lab/tree/{TARGET}/notebooks/{CHAPTER}")
        assert [n for n in info["listing"] if n.endswith(".ipynb")] == chapters
        assert "helpers" in info["listing"]


def test_no_solution_reaches_a_students_home(class_day):
    for name, info in class_day["students"].items():
        assert info["leaks_after_pull"] == [], name
        assert not list((class_day["homes"] / name).rglob("solutions"))


def test_chapter_00_runs_and_imports_the_handouts_helpers(class_day):
    for name, info in class_day["students"].items():
        home = class_day["homes"] / name
        probe = json.loads(text_of(info["probe"]).split("PROBE ", 1)[1])
        assert probe["helpers"] == str(home / TARGET / "notebooks" / "helpers" / "__init__.py")
        for cell, outputs in zip(info["cells"], info["outputs"]):
            graded = cell.metadata.get("nbgrader", {}).get("grade")
            if "raises-exception" in cell.metadata.get("tags", []) or (graded and name == "bob"):
                continue
            assert not errors_in(outputs), f"{name}, cell {cell.source[:60]!r}: {errors_in(outputs)}"


def test_the_check_passes_for_the_right_answer_and_fails_in_one_line_for_a_wrong_one(class_day):
    students = class_day["students"]

    def check_outputs(name):
        info = students[name]
        return [out for cell, out in zip(info["cells"], info["outputs"])
                if cell.metadata.get("nbgrader", {}).get("grade")]

    assert all("✅" in text_of(out) and not errors_in(out) for out in check_outputs("alice"))
    for out in check_outputs("bob"):
        assert len(errors_in(out)) == 1 and "\n" not in errors_in(out)[0], errors_in(out)


def test_two_students_share_no_state_in_the_shared_temp_folder(class_day):
    """What `import helpers` puts on PATH from the shared TMPDIR (the `dot` alias of a pip-only
    server) is private to each kernel: mode 700, a name nobody predicts, not shared by two users."""
    seen = {}
    for name, info in class_day["students"].items():
        probe = json.loads(text_of(info["probe"]).split("PROBE ", 1)[1])
        assert Path(probe["tmp"]).name == "shared-tmp"  # the kernel sees the shared TMPDIR
        for folder, mode in probe["in_tmp"].items():
            assert not mode & (stat.S_IRWXG | stat.S_IRWXO), f"{name}: {folder} is open to other users"
        seen[name] = set(probe["in_tmp"])
    print(f"\nfolders of the shared TMPDIR on each student's PATH: {seen}")
    assert not seen["alice"] & seen["bob"], f"both students use {seen['alice'] & seen['bob']}"
    for entry in class_day["shared_tmp"]:  # what is left once both kernels have ended
        if "autograd" in entry.name.lower():
            assert not entry.lstat().st_mode & (stat.S_IRWXG | stat.S_IRWXO), f"{entry} is open to others"
    assert "FileExistsError" not in class_day["hub_log"]


def test_the_instructor_grades_the_homes_and_exports(class_day):
    full = points(class_day["solved"])
    grades = class_day["grades"]
    assert class_day["collected"] == {"alice": "collected", "bob": "collected", "carol": "missing"}
    assert float(grades["alice"]["ch00:total"]) == full and float(grades["alice"]["max_total"]) == full
    assert float(grades["bob"]["ch00:total"]) == 0
    assert grades["carol"]["ch00:total"] == classroom.MISSING and grades["carol"]["missing"] == "ch00"


def test_the_class_day_stays_short(class_day):
    print(class_day["took"])
    assert sum(class_day["took"].values()) < 600
