"""The JupyterLab extension as users get it: `make lab-ext` (scripts/setup_lab.sh) into the venv, and the wheel
installed non-editable. `jupyter labextension list` must list `aiworkbench-lab` enabled and OK, the server extension
must be enabled, and Lab must not ask the Jupyter news question; the wheel must carry the prebuilt extension so
`pip install` needs no Node.js. The panel itself in Chromium: tests/ui/test_lab_ui.py and the last test here."""

import importlib.util
import json
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO / "tests" / "ui"))
sys.path.insert(0, str(REPO / "scripts"))
from lab import (  # noqa: E402
    EXTENSION,
    drive,
    installed_labextension,
    jupyter_lab,
    lab_setting_default,
    missing,
    strip_ansi,
    user_env,
)

BUILD = EXTENSION / "labextension"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"
LISTED = re.compile(r"^\s+aiworkbench-lab v\S+ enabled OK(?P<python> \(python, aiworkbench\))?\s*$", re.M)


def run(cmd, tmp_path, *, cwd=None, timeout=300, check=True) -> str:
    "Run `cmd` as its own process with fresh per-user Jupyter folders; its stdout and stderr."
    proc = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        cwd=cwd or tmp_path,  # never the repo: `python -m` would import ./aiworkbench from the cwd
        env=user_env(tmp_path / "user"),
        timeout=timeout,
    )
    out = strip_ansi(proc.stdout + proc.stderr)
    if check:
        assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{out[-3000:]}"
    return out


def section(listing: str, folder: Path) -> str:
    "The lines `jupyter labextension list` prints under `folder`."
    found = re.search(rf"^{re.escape(str(folder))}\n((?:[ \t]+.*\n?)*)", listing, re.M)
    assert found, f"`{folder}` is not in the listing:\n{listing}"
    return found.group(1)


def env_with_deps(path: Path) -> Path:
    "A fresh venv at `path` (no pip, no aiworkbench) that imports JupyterLab and the rest from the test's venv."
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [path / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    deps = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (site / "_aiwb_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")  # plain paths: no .pth hooks run
    return path / "bin" / "python"


def test_make_lab_ext_leaves_the_extension_listed_in_the_venv(tmp_path):
    # the state `make test` / `make lab` leave: run `jupyter labextension list` of the venv as a user does
    listing = run([Path(sys.executable).parent / "jupyter", "labextension", "list"], tmp_path)
    assert LISTED.search(section(listing, Path(sys.prefix) / "share" / "jupyter" / "labextensions")), listing
    servers = run([Path(sys.executable).parent / "jupyter", "server", "extension", "list"], tmp_path)
    assert re.search(r"aiworkbench\.lab\.extension enabled", servers) and re.search(
        r"aiworkbench\.lab\.extension\s+OK", servers
    ), servers
    installed = installed_labextension()
    assert installed.is_symlink() and installed.resolve() == BUILD.resolve(), f"{installed} is not a link to {BUILD}"
    load = json.loads((installed / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    assert (installed / load).is_file(), load
    overrides = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "aiworkbench.json"
    assert json.loads(overrides.read_text())[NOTIFICATION]["fetchNews"] == "false"


def test_setup_lab_repairs_the_editable_install_state_and_is_idempotent(tmp_path):
    python = env_with_deps(tmp_path / "venv")
    venv = tmp_path / "venv"
    labext = venv / "share" / "jupyter" / "labextensions" / "aiworkbench-lab"
    # what `pip install -e .` before the build left, plus the old script's link inside it: a directory, not the build
    labext.mkdir(parents=True)
    (labext / "install.json").write_text((EXTENSION / "install.json").read_text())
    (labext / "labextension").symlink_to(BUILD)
    listing = run([python, "-m", "jupyterlab.labextensions", "list"], tmp_path)
    assert not LISTED.search(listing), f"the broken state lists the extension, so this test proves nothing:\n{listing}"

    for attempt in (1, 2):  # over the broken state, then over its own result
        run(["bash", REPO / "scripts" / "setup_lab.sh", venv], tmp_path, cwd=REPO, timeout=900)
        assert labext.is_symlink() and labext.resolve() == BUILD.resolve(), f"attempt {attempt}: {labext}"
        assert not (BUILD / "labextension").exists(), "a link was put inside the build"
        listing = run([python, "-m", "jupyterlab.labextensions", "list"], tmp_path)
        assert LISTED.search(section(listing, labext.parent)), f"attempt {attempt}:\n{listing}"
        config = venv / "etc" / "jupyter" / "jupyter_server_config.d" / "aiworkbench.json"
        assert json.loads(config.read_text())["ServerApp"]["jpserver_extensions"] == {"aiworkbench.lab.extension": True}
        overrides = venv / "share" / "jupyter" / "lab" / "settings" / "overrides.d" / "aiworkbench.json"
        assert json.loads(overrides.read_text())[NOTIFICATION]["fetchNews"] == "false"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    "The wheel, built from this checkout the way a release is (the hook skips npm: the extension is prebuilt)."
    assert (BUILD / "package.json").exists(), "the extension is not built: bash scripts/setup_lab.sh .venv"
    out = tmp_path_factory.mktemp("dist")
    offline = all(importlib.util.find_spec(m) for m in ("hatchling", "hatch_jupyter_builder", "build"))
    # without the build backend in the venv, `build` makes an isolated env from the index (pinned by constraints.txt)
    env = {
        **os.environ,
        "PIP_CONSTRAINT": str(REPO / "constraints.txt"),
        "PIP_BUILD_CONSTRAINT": str(REPO / "constraints.txt"),
    }
    cmd = [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), *(["--no-isolation"] if offline else [])]
    proc = subprocess.run([*cmd, str(REPO)], capture_output=True, text=True, env=env, timeout=600, cwd=out)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    (found,) = out.glob("aiworkbench-*.whl")
    return found


@pytest.fixture(scope="module")
def wheel_env(wheel, tmp_path_factory) -> Path:
    "A fresh venv with the wheel installed non-editable (dependencies borrowed from the test's venv); its python."
    root = tmp_path_factory.mktemp("wheel-env")
    python = env_with_deps(root / "venv")
    cmd = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", wheel]
    run(cmd, root, timeout=300)
    return python


def test_wheel_carries_the_prebuilt_extension_and_the_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    data = next(n.split("/data/")[0] for n in names if "/data/" in n) + "/data/"
    share = data + "share/jupyter/labextensions/aiworkbench-lab/"
    load = json.loads((BUILD / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    expected = {
        share + "package.json",
        share + "install.json",
        share + load,
        share + "static/style.js",
        data + "etc/jupyter/jupyter_server_config.d/aiworkbench.json",
        data + "share/jupyter/lab/settings/overrides.d/aiworkbench.json",
    }
    assert expected <= names, sorted(expected - names)
    assert [n for n in names if n.startswith(share + "static/remoteEntry.")] == [share + load]
    assert not [n for n in names if "node_modules" in n or "/src/" in n]


def test_wheel_installed_non_editable_lists_the_extension(wheel_env, tmp_path):
    prefix = wheel_env.parents[1]
    labext = installed_labextension(prefix)
    assert not labext.is_symlink() and (labext / "package.json").is_file()
    load = json.loads((labext / "package.json").read_text())["jupyterlab"]["_build"]["load"]
    assert (labext / load).is_file() and not (labext / load).is_symlink()
    where = run([wheel_env, "-c", "import aiworkbench; print(aiworkbench.__file__)"], tmp_path)
    assert where.strip().startswith(str(prefix)), where  # the wheel's copy, not the checkout's
    listing = run([wheel_env, "-m", "jupyterlab.labextensions", "list"], tmp_path)
    found = LISTED.search(section(listing, labext.parent))
    assert found and found.group("python"), listing  # installed by the Python package `aiworkbench`
    servers = run([wheel_env, "-m", "jupyter_server.extension.serverextension", "list"], tmp_path)
    assert re.search(
        rf"Config dir: {re.escape(str(prefix))}/etc/jupyter\n\s+aiworkbench\.lab\.extension enabled", servers
    ), servers
    assert re.search(r"aiworkbench\.lab\.extension\s+OK", servers), servers


def test_wheel_install_shows_the_panel_in_plain_jupyter_lab(wheel_env, tmp_path):
    why = missing(wheel_env.parents[1])
    if why:
        pytest.fail(why)
    from fixture_project import make_project

    prefix = wheel_env.parents[1]
    # JupyterLab's own application files, as `pip install jupyterlab` puts them in the same prefix
    app = Path(sys.prefix) / "share" / "jupyter" / "lab"
    for part in ("static", "schemas", "themes"):
        (prefix / "share" / "jupyter" / "lab" / part).symlink_to(app / part)
    root = make_project(tmp_path / "project", runs=3, models=1)
    with jupyter_lab(root, log=tmp_path / "lab.log", python=wheel_env) as (base, token):
        assert lab_setting_default(base, token, NOTIFICATION, "fetchNews") == "false"  # the wheel's overrides.d
        got = drive(base, token, tmp_path / "shots", mode="load")
    assert "Phase" in got["phase_text"] and got["phase_kpi_gaps"] == [], got
    assert got["kpi_keys"] and got["page_errors"] == [], got
    assert got["news_prompts"] == 0
