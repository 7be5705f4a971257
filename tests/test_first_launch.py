"""A clean first launch: JupyterLab from `make lab` (and on Binder) asks no "Jupyter news?" question.

The setting lives in the environment (`<prefix>/share/jupyter/lab/settings/overrides.json`, written
by the Makefile and by binder/postBuild), never in the learner's home folder.
"""
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = ROOT / "binder" / "overrides.json"
PLUGIN = "@jupyterlab/apputils-extension:notification"


def test_the_environment_carries_the_overrides():
    installed = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert installed.exists(), "run `make test` (its install step writes the overrides)"
    assert json.loads(installed.read_text()) == json.loads(OVERRIDES.read_text())
    assert json.loads(OVERRIDES.read_text())[PLUGIN] == {"fetchNews": "false", "checkForUpdates": False}
    assert "binder/overrides.json" in (ROOT / "binder" / "postBuild").read_text()
    assert "binder/overrides.json" in (ROOT / "Makefile").read_text()


@pytest.mark.timeout(120)
def test_jupyterlab_starts_with_news_off_and_a_fresh_home():
    from test_browser import free_port

    port, token = free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="ag-first-") as tmp:
        env = {**os.environ, "HOME": tmp, "JUPYTER_CONFIG_DIR": f"{tmp}/config",
               "JUPYTER_RUNTIME_DIR": f"{tmp}/runtime", "JUPYTERLAB_SETTINGS_DIR": f"{tmp}/settings"}
        lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                                f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={token}",
                                f"--ServerApp.root_dir={ROOT / 'notebooks'}"],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"http://127.0.0.1:{port}/lab/api/settings/{PLUGIN}?token={token}"
            deadline, settings = time.monotonic() + 90, None
            while settings is None and time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(url, timeout=5) as answer:
                        # Overrides become the schema's defaults; the user set nothing.
                        data = json.load(answer)
                        settings = {k: v.get("default") for k, v in data["schema"]["properties"].items()}
                        settings.update(data["settings"])
                except OSError:
                    time.sleep(0.5)
            assert settings is not None, "JupyterLab did not answer within 90 s"
            assert settings["fetchNews"] == "false" and settings["checkForUpdates"] is False
            assert not list(Path(tmp).rglob("*.jupyterlab-settings")), "nothing written to the home"
        finally:
            lab.terminate()
            lab.wait(timeout=30)
