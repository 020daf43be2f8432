"`aiwb sweep` on the local executor, and the input it refuses (exit 2 naming it); trials on Dask: test_dask.py."

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from aiworkbench.config import load_settings
from aiworkbench.jobs.store import list_runs
from aiworkbench.project import init_project

AIWB = str(Path(sys.executable).parent / "aiwb")


def aiwb(*args, cwd, timeout=300):
    return subprocess.run([AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = init_project(tmp_path_factory.mktemp("sweep") / "p")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 0.5\nk = 1")
    params.metadata["tags"] = ["parameters"]
    body = (
        "import os\nif k == 2:\n    raise ValueError('k = 2 raises')\n"
        "import mlflow\nwith mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):\n"
        "    mlflow.log_metric('score', -((x - 0.3) ** 2))"
    )
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, root / "nbs" / "t.ipynb")
    return load_settings(root)


@pytest.mark.parametrize(
    "args, message",
    [
        (["-p", "x=between(1,2)"], "SPEC `between(1,2)` is not int(a,b)"),
        (["-p", "x=float(1)"], "SPEC `float(1)`"),
        (["-p", "x=log(0,1)"], "SPEC `log(0,1)`"),
        (["-p", "x"], "--param `x` must be NAME=SPEC"),
        (["-p", "nope=int(1,2)"], "parameter `nope` is not in the `parameters` cell"),
        (["-p", "x=float(0,1)", "--parallel", "0"], "--parallel `0`"),
        (["-p", "x=float(0,1)", "--direction", "up"], "--direction `up`"),
    ],
    ids=["spec", "bounds", "log-zero", "no-spec", "unknown-param", "parallel-0", "direction"],
)
def test_bad_input_exits_2_naming_it(project, args, message):
    r = aiwb("sweep", "nbs/t.ipynb", *args, "--metric", "score", cwd=project.root)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert list_runs(settings=project) == []  # nothing ran


def test_a_local_sweep_maximizes_goes_on_past_a_failing_trial_and_shows(project, tmp_path):
    root = project.root
    args = ["sweep", "nbs/t.ipynb", "-p", "x=float(0,1)", "-p", "k=choice(1,2)", "--metric", "score"]
    r = aiwb(*args, "--direction", "maximize", "--trials", "4", "--parallel", "2", "--name", "loc", "--json", cwd=root)
    report = json.loads(r.stdout)
    ks = [t["params"]["k"] for t in report["trials"]]
    assert r.returncode == (0 if 1 in ks else 1), r.stderr
    assert report["counts"]["complete"] == ks.count(1) and report["counts"]["fail"] == ks.count(2)
    values = [t["value"] for t in report["trials"] if t["value"] is not None]
    assert values == sorted(values, reverse=True)  # best first, maximizing
    assert all("k = 2 raises" in t["error"] for t in report["trials"] if t["params"]["k"] == 2), report["trials"]
    assert {r["executor"] for r in list_runs(settings=project)} == {"local"}
    r = aiwb("sweep", "show", "loc", "--html", tmp_path / "r.html", cwd=root)
    assert r.returncode == (0 if 1 in ks else 1) and "sweep loc" in r.stdout
    assert "Optimization history" in (tmp_path / "r.html").read_text()
    r = aiwb(
        "sweep",
        "nbs/t.ipynb",
        "-p",
        "x=float(0,2)",
        "--metric",
        "score",
        "--direction",
        "maximize",
        "--name",
        "loc",
        cwd=root,
    )
    assert r.returncode == 2 and "another search space (x)" in r.stderr, r.stderr  # a resume keeps its space
    r = aiwb("sweep", "show", "nope", cwd=root)
    assert r.returncode == 2 and "no sweep `nope`; sweeps: loc" in r.stderr


def test_a_killed_sweep_resumed_by_name_fails_its_stranded_trial_and_completes(project):
    "SIGKILL a sweep mid-trial: its trial stays RUNNING in Optuna; `--name` again tells it FAIL with why, and finishes."
    import os
    import signal
    import time

    root = project.root
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell("x = 0.5")
    params.metadata["tags"] = ["parameters"]
    body = (
        "import os, time\nif not os.path.exists('slow.flag'):\n    open('slow.flag', 'w').close()\n"
        "    time.sleep(300)\n"
        "import mlflow\nwith mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):\n    mlflow.log_metric('loss', x)"
    )
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, root / "nbs" / "slow.ipynb")
    args = ["sweep", "nbs/slow.ipynb", "-p", "x=float(0,1)", "--metric", "loss", "--name", "killed", "--trials", "2"]
    proc = subprocess.Popen([AIWB, *args], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not ((root / "slow.flag").exists() and [r for r in list_runs(settings=project) if r["status"] == "running"
                                                       and r["notebook"] == "nbs/slow.ipynb"]):  # fmt: skip
            assert time.monotonic() < deadline and proc.poll() is None, "the first trial never started its sleep"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its kernel, mid-trial
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    stranded = json.loads(aiwb("sweep", "show", "killed", "--json", cwd=root).stdout)
    assert stranded["counts"] == {"complete": 0, "fail": 0, "running": 1}, stranded
    r = aiwb(*args, "--json", cwd=root)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["counts"] == {"complete": 1, "fail": 1, "running": 0}, report["trials"]  # the study's 2 trials
    (failed,) = [t for t in report["trials"] if t["state"] == "fail"]
    assert failed["number"] == 0 and f"job run `{failed['job_run']}` ended failed (Orphaned" in failed["error"], failed
    assert [r["status"] for r in list_runs(settings=project) if r["id"] == failed["job_run"]] == ["failed"]
