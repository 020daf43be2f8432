"""A real `jupyter lab` on 127.0.0.1 with the aiworkbench server and Lab extensions as installed, for UI tests and
benchmarks.

The Lab runs the way a user starts it: the labextensions, server-extension config and Lab setting defaults come from
the Python environment's own prefix (`<prefix>/share/jupyter`, `<prefix>/etc/jupyter`), where
`scripts/setup_lab.sh` (for `make lab`) or `pip install` of the wheel put them. Only the per-user folders (config,
data, settings, workspaces) are fresh, so nothing in the tester's home can supply or hide an extension or a setting.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).parents[2]
EXTENSION = REPO / "extensions" / "aiworkbench-lab"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Variables that would point Jupyter away from the environment's own paths.
JUPYTER_PATH_VARS = (
    "JUPYTER_PATH",
    "JUPYTERLAB_DIR",
    "JUPYTER_CONFIG_PATH",
    "JUPYTER_PREFER_ENV_PATH",
    "JUPYTER_CONFIG_DIR",
    "JUPYTER_DATA_DIR",
    "JUPYTERLAB_SETTINGS_DIR",
    "JUPYTERLAB_WORKSPACES_DIR",
    "AIWB_ROOT",
    "JUPYTER_TOKEN",
)
NEWS_PROMPT = "official Jupyter news"


def installed_labextension(prefix: str | Path = sys.prefix) -> Path:
    "Where `jupyter lab` of the environment at `prefix` finds the aiworkbench Lab extension."
    return Path(prefix) / "share" / "jupyter" / "labextensions" / "aiworkbench-lab"


def user_env(tmp: Path) -> dict[str, str]:
    "The environment of a user with empty per-user Jupyter folders under `tmp`; the prefix's paths untouched."
    env = {k: v for k, v in os.environ.items() if k not in JUPYTER_PATH_VARS}
    env.update(
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
    )
    return env


def strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(prefix: str | Path = sys.prefix) -> str | None:
    "Why the browser tests cannot run here, or None."
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium"
    if not shutil.which("node"):
        return "no node on PATH"
    if not (EXTENSION / "node_modules" / "playwright-core").exists():
        return "playwright-core is not installed: bash scripts/setup_lab.sh .venv (make lab-ext)"
    if not (installed_labextension(prefix) / "package.json").exists():
        return (
            f"the Lab extension is not installed at `{installed_labextension(prefix)}`: "
            "bash scripts/setup_lab.sh .venv (make lab-ext)"
        )
    return None


@contextmanager
def jupyter_lab(root: Path, log: Path | None = None, python: str | Path = sys.executable):
    "Plain `jupyter lab` of the environment of `python` on `root` (token auth); yields (base_url, token)."
    token = secrets.token_hex(16)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aiwb-lab-") as tmp:
        tmp = Path(tmp)
        env = user_env(tmp)
        (tmp / "config").mkdir()
        # The one user setting: REST routes refuse requests without a token (RELIABILITY row 9).
        (tmp / "config" / "jupyter_server_config.json").write_text(
            json.dumps({"ServerApp": {"allow_unauthenticated_access": False}})
        )
        out = open(log or tmp / "lab.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
            ],
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    with urllib.request.urlopen(f"{base}api/status?token={token}", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    out.flush()
                    raise RuntimeError("jupyter lab did not start:\n" + Path(out.name).read_text()[-3000:])
                time.sleep(0.1)
            yield base, token
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            out.close()


def drive(base: str, token: str, shots: Path, mode: str = "full", timeout: float = 300) -> dict:
    "Run tests/ui/panel.mjs in headless Chromium against the Lab at `base`; its results."
    shots.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIWB_NODE_MODULES": str(EXTENSION / "node_modules"), "CHROMIUM": CHROMIUM}
    proc = subprocess.run(
        ["node", str(Path(__file__).parent / "panel.mjs"), base, token, str(shots), mode],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise AssertionError(f"browser steps failed:\n{proc.stderr[-4000:]}\n{proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def get(base: str, token: str, path: str) -> dict:
    "GET `path` of the server at `base` (JSON)."
    with urllib.request.urlopen(f"{base}{path}?token={token}", timeout=30) as r:
        return json.loads(r.read())


def api(base: str, token: str, route: str) -> dict:
    return get(base, token, f"aiworkbench/api/{route}")


def lab_setting_default(base: str, token: str, plugin: str, key: str):
    "The default of a Lab setting as the server hands it to the page (the schema's, after overrides.d)."
    return get(base, token, f"lab/api/settings/{plugin}")["schema"]["properties"][key]["default"]
