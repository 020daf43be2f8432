"""A real `jupyter lab` on 127.0.0.1 with the aiworkbench server and Lab extensions, for UI tests and benchmarks."""

from __future__ import annotations

import json
import os
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing() -> str | None:
    "Why the browser tests cannot run here, or None."
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium"
    if not shutil.which("node"):
        return "no node on PATH"
    if not (EXTENSION / "labextension" / "package.json").exists():
        return "the Lab extension is not built: cd extensions/aiworkbench-lab && npm ci && npm run build"
    if not (EXTENSION / "node_modules" / "playwright-core").exists():
        return "playwright-core is not installed: cd extensions/aiworkbench-lab && npm ci"
    return None


@contextmanager
def jupyter_lab(root: Path, log: Path | None = None):
    "A running JupyterLab on `root` (token auth, the extensions enabled); yields (base_url, token); stopped on exit."
    token = secrets.token_hex(16)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aiwb-lab-") as tmp:
        tmp = Path(tmp)
        (tmp / "config").mkdir()
        (tmp / "share" / "labextensions").mkdir(parents=True)
        (tmp / "share" / "labextensions" / "aiworkbench-lab").symlink_to(EXTENSION / "labextension")
        (tmp / "config" / "jupyter_server_config.json").write_text(
            json.dumps(
                {
                    "ServerApp": {
                        "jpserver_extensions": {"aiworkbench.server": True},
                        "allow_unauthenticated_access": False,
                    }
                }
            )
        )
        news = tmp / "settings" / "@jupyterlab" / "apputils-extension"
        news.mkdir(parents=True)
        (news / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
        env = {k: v for k, v in os.environ.items() if k not in ("AIWB_ROOT", "JUPYTER_TOKEN")}
        env.update(
            JUPYTER_CONFIG_DIR=str(tmp / "config"),
            JUPYTER_PATH=str(tmp / "share"),
            JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"),
            JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
        )
        out = open(log or tmp / "lab.log", "w")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyterlab",
                "--allow-root",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                f"--IdentityProvider.token={token}",
                f"--ServerApp.root_dir={root}",
                "--LabApp.news_url=None",
                "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
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


def api(base: str, token: str, route: str) -> dict:
    with urllib.request.urlopen(f"{base}aiworkbench/api/{route}?token={token}", timeout=30) as r:
        return json.loads(r.read())
