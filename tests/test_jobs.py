"Notebook jobs with real kernels, SQLite and processes: the RELIABILITY rows 1-8 and 17."

import ast
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from aiworkbench.config import load_settings
from aiworkbench.jobs.procs import is_alive
from aiworkbench.jobs.runner import run_notebook, scheduler_info
from aiworkbench.jobs.runs import cancel_run
from aiworkbench.jobs.store import create_job, get_run, list_jobs, list_runs, submit_run
from aiworkbench.project import init_project

AIWB = str(Path(sys.executable).parent / "aiwb")


def notebook(path: Path, params: str, *body: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(b) for b in body)]
    nbformat.write(nb, path)
    return str(path.relative_to(path.parent.parent))


@pytest.fixture
def project(tmp_path):
    root = init_project(tmp_path / "p")
    (root / "settings.ini").write_text(
        (root / "settings.ini").read_text().replace("[jobs]\n", "[jobs]\nheartbeat_s = 0.5\npoll_interval_s = 0.2\n")
    )
    return load_settings(root)


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_200_submissions_from_20_threads(project):
    nb = notebook(project.root / "nbs" / "x.ipynb", "x = 1")
    job = create_job({"name": "x", "notebook": nb}, settings=project)
    ids, errors, jobs = [], [], []

    def submit(i):
        try:
            for k in range(10):
                ids.append(submit_run(job, settings=project, parameters={"x": i * 10 + k})["id"])
            jobs.append(
                create_job({"name": f"k{i}", "notebook": nb, "idempotency_key": "one-key"}, settings=project)["id"]
            )
            ids.append(
                submit_run(job, settings=project, idempotency_key="drift-event-1")["id"]
            )  # row 17: one retraining
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert errors == []
    assert len(ids) == 220 and len(set(ids)) == 201  # 200 runs + one run for 20 deliveries of one event
    assert len(set(jobs)) == 1
    assert len(list_runs("x", settings=project, limit=1000)) == 201


@pytest.mark.parametrize(
    "body, error_name, cell",
    [
        ("raise ValueError('bad input')", "ValueError", 3),
        ("import sys\nsys.exit(1)", "SystemExit", 3),
        ("import sys\nsys.exit(0)", "SystemExit", 3),  # documented: sys.exit(0) fails the run
        ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "KernelDied", 3),
    ],
    ids=["raises", "exit-1", "exit-0", "sigkill"],
)
def test_failures_are_failed_with_summary_and_output(project, body, error_name, cell):
    nb = notebook(project.root / "nbs" / "f.ipynb", "x = 1", "y = x + 1", body, "print('never')")
    r = run_notebook(nb, {"x": 2}, settings=project, timeout_s=60)
    assert (r["status"], r["error_name"], r["error_cell"]) == ("failed", error_name, cell), r
    if error_name == "KernelDied":
        assert "kernel died" in r["error_message"]
    out = nbformat.read(r["output_path"], 4)  # valid and kept
    assert "never" not in json.dumps(out.cells[-1].get("outputs", []))
    assert r["kernel_pid"] and not is_alive(r["kernel_pid"], None)


def test_endless_cell_times_out_and_leaves_no_kernel(project):
    nb = notebook(project.root / "nbs" / "loop.ipynb", "x = 1", "print('started', flush=True)", "while True:\n    pass")
    r = run_notebook(nb, {}, settings=project, timeout_s=10)  # how long it took is measured in bench/jobs.py
    assert (r["status"], r["error_name"]) == ("timed_out", "Timeout"), r
    assert r["kernel_pid"] and not is_alive(r["kernel_pid"], None)
    assert "started" in json.dumps(nbformat.read(r["output_path"], 4).cells[1].outputs)


HOSTILE = ["'", '"', "\\", "\n", '"; import os #', "'; open('CANARY','w') #", '"""', "'''", "\\x00", "\r\n\t"]


def test_1000_hostile_values_arrive_as_literals(project):
    values = []
    for i in range(1000):
        base = HOSTILE[i % len(HOSTILE)]
        values.append([base * (i % 3 + 1), {"k": base, "n": [i, base]}, i, i / 7][i % 4])
    nb = notebook(
        project.root / "nbs" / "echo.ipynb",
        "values = []\nname = 'x'",
        "import json\nopen('echo.json', 'w').write(json.dumps([values, name]))",
    )
    name = "__import__('os').system('touch CANARY')"
    r = run_notebook(nb, {"values": values, "name": name}, settings=project, timeout_s=120)
    assert r["status"] == "succeeded", r
    assert json.loads((project.root / "echo.json").read_text()) == [values, name]
    assert not list(project.root.rglob("CANARY"))
    injected = [
        c for c in nbformat.read(r["output_path"], 4).cells if "injected-parameters" in c.metadata.get("tags", [])
    ]
    ast.parse(injected[0].source)


def aiwb(*args, cwd, timeout=120):
    return subprocess.run([AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_cli_bad_names_and_paths(project, tmp_path):
    notebook(project.root / "nbs" / "n.ipynb", "n = 1")
    (tmp_path / "p2").mkdir()
    (tmp_path / "p2" / "o.ipynb").write_text("{}")
    for path in ["../p2/o.ipynb", str(tmp_path / "p2" / "o.ipynb"), "nbs/../../p2/o.ipynb"]:
        r = aiwb("jobs", "run", path, cwd=project.root)
        assert r.returncode == 2 and "outside the project root" in r.stderr, r.stderr
    for name in ["a b", "class", "x;import os", "1x"]:
        r = aiwb("jobs", "run", "nbs/n.ipynb", "-p", name, "1", cwd=project.root)
        assert r.returncode == 2 and "is not a Python identifier" in r.stderr, r.stderr
    r = aiwb("jobs", "run", "nbs/n.ipynb", "-p", "n", "'three'", "--json", cwd=project.root)
    assert r.returncode == 2 and "parameter `n`" in json.loads(r.stdout)["message"]
    r = aiwb("jobs", "run", "nbs/n.ipynb", "-p", "n", "3", "--json", cwd=project.root)
    record = json.loads(r.stdout[r.stdout.index("{") :])
    assert r.returncode == 0 and record["status"] == "succeeded" and record["parameters"] == {"n": 3}
    assert Path(record["output_notebook"]).exists() and record["mlflow_run_id"]
    assert "without encryption" not in r.stderr  # the kernel listens on IPC, not TCP
    assert_mlflow_record(project, record)


def assert_mlflow_record(settings, record):
    "The MLflow run of a job run, read back with MLflow: finished, tagged, with its output notebook."
    from aiworkbench.tracking import client

    mr = client(settings=settings).get_run(record["mlflow_run_id"])
    assert (mr.info.status, mr.data.tags["aiwb.job.run"], mr.data.tags["aiwb.job.status"]) == (
        "FINISHED",
        record["id"],
        "succeeded",
    )
    assert mr.info.end_time >= mr.info.start_time
    name = Path(record["output_notebook"]).name
    assert [f.path for f in client(settings=settings).list_artifacts(mr.info.run_id, "notebook")] == [
        f"notebook/{name}"
    ]


def test_cli_parameter_for_a_notebook_without_a_parameters_cell(project):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("print(x)")]
    nbformat.write(nb, project.root / "nbs" / "plain.ipynb")
    r = aiwb("jobs", "run", "nbs/plain.ipynb", "-p", "x", "1", cwd=project.root)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "plain.ipynb` has no cell tagged `parameters`" in r.stderr and "run it without `-p`" in r.stderr
    assert "Traceback" not in r.stderr
    assert list_jobs(settings=project) == [] and list_runs(settings=project) == []  # nothing created in the job store
    r = aiwb("jobs", "run", "nbs/plain.ipynb", "--json", cwd=project.root)  # without -p it runs
    assert r.returncode == 0 and json.loads(r.stdout[r.stdout.index("{") :])["status"] == "succeeded"


def start_scheduler(root):
    return subprocess.Popen(
        [AIWB, "scheduler", "--workers", "1"], cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def test_scheduler_killed_mid_run_recovers_and_a_second_refuses(project):
    nb = notebook(project.root / "nbs" / "slow.ipynb", "x = 1", "import time\ntime.sleep(120)")
    job = create_job({"name": "slow", "notebook": nb, "retries": 0}, settings=project)
    first = start_scheduler(project.root)
    try:
        run = submit_run(job, settings=project)
        wait_for(
            lambda: get_run(run["id"], settings=project)["kernel_pid"] and get_run(run["id"], settings=project)["cell"],
            what="running",
        )
        second = aiwb("scheduler", cwd=project.root)
        assert second.returncode == 2 and "another scheduler is running" in second.stderr
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        again = start_scheduler(project.root)
        done = wait_for(
            lambda: (r := get_run(run["id"], settings=project))["status"] != "running" and r, what="recovery"
        )
        assert (done["status"], done["error_name"]) == ("failed", "Orphaned")
        assert done["kernel_pid"] and not is_alive(done["kernel_pid"], None)
        assert list_runs(status="running", settings=project) == []
    finally:
        for p in (first, locals().get("again")):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.wait(60)


def test_every_tick_runs_once_through_a_restart(project):
    nb = notebook(project.root / "nbs" / "tick.ipynb", "x = 1", "print(x)")
    create_job({"name": "tick", "notebook": nb, "cron": "* * * * * */2"}, settings=project)  # every 2 seconds
    sched = start_scheduler(project.root)
    wait_for(lambda: len(list_runs("tick", settings=project)) >= 3, what="ticks")
    sched.send_signal(signal.SIGTERM)
    sched.wait(60)
    n_before = len(list_runs("tick", settings=project))
    time.sleep(3)  # the scheduler is down across at least one tick
    sched = start_scheduler(project.root)
    try:
        wait_for(lambda: len(list_runs("tick", settings=project)) >= n_before + 3, what="ticks after restart")
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.wait(60)
    runs = [r for r in list_runs("tick", settings=project, limit=1000) if r["attempt"] == 1]
    ticks = sorted(r["scheduled_for"] for r in runs)
    assert len(ticks) == len(set(ticks))  # no tick twice
    from datetime import datetime

    stamps = [datetime.fromisoformat(t).timestamp() for t in ticks]
    assert all(b - a == 2 for a, b in zip(stamps, stamps[1:], strict=False)), ticks  # and none missed


def test_cancel_a_running_run(project):
    nb = notebook(project.root / "nbs" / "wait.ipynb", "x = 1", "import time\ntime.sleep(120)")
    job = create_job({"name": "wait", "notebook": nb}, settings=project)
    run = submit_run(job, settings=project)
    from aiworkbench.jobs.runner import execute_run
    from aiworkbench.jobs.runs import claim_next_run

    claimed = claim_next_run(settings=project, run_id=run["id"])
    t = threading.Thread(target=execute_run, args=(claimed,), kwargs={"settings": project})
    t.start()
    wait_for(lambda: get_run(run["id"], settings=project)["cell"], what="running")
    cancel_run(run["id"], settings=project)
    t.join(60)
    r = get_run(run["id"], settings=project)
    assert r["status"] == "cancelled" and r["kernel_pid"] and not is_alive(r["kernel_pid"], None)


def test_reproduce_while_a_scheduler_runs(project):
    "The reproduction runs here, on the original's snapshot, even when a scheduler's worker is polling for work."
    nb = notebook(
        project.root / "nbs" / "seeded.ipynb",
        "seed = 1",
        "import random\nimport mlflow\nfrom aiworkbench.tracking import start_run\n"
        "with start_run():\n    mlflow.log_metric('score', random.Random(seed).random())",
    )
    sched = start_scheduler(project.root)
    try:
        wait_for(lambda: scheduler_info(settings=project), what="the scheduler")
        first = aiwb("jobs", "run", nb, "-p", "seed", "7", "--json", cwd=project.root)
        original = json.loads(first.stdout[first.stdout.index("{") :])
        assert first.returncode == 0 and original["status"] == "succeeded", first.stderr
        workers = {p.pid for p in psutil.Process(sched.pid).children(recursive=True)}
        r = aiwb("reproduce", original["id"], "--json", cwd=project.root)
        assert r.returncode == 0, (r.stdout, r.stderr)
        result = json.loads(r.stdout[r.stdout.index("{") :])
        assert result["verdict"] == "reproduced" and result["metrics"]["score"]["ok"]
        new = get_run(result["new"], settings=project)
        assert (new["status"], new["reproduce_of"], new["parameters"]) == ("succeeded", original["id"], {"seed": 7})
        assert new["worker_pid"] not in workers  # executed by `aiwb reproduce`, not taken by a worker
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.wait(60)
