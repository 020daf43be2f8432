"Notebook jobs on a real local Dask cluster (`dask scheduler` + 2 `dask worker` on loopback): RELIABILITY row 22."

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest

from aiworkbench.config import load_settings
from aiworkbench.jobs.store import create_job, get_run, list_runs, submit_run
from aiworkbench.project import init_project

AIWB = str(Path(sys.executable).parent / "aiwb")


def aiwb(*args, cwd, timeout=180):
    return subprocess.run([AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def start(*args, cwd):
    "An `aiwb` process in the background, in its own process group."
    return subprocess.Popen(
        [AIWB, *map(str, args)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def notebook(root: Path, name: str, params: str, *body: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(b) for b in body)]
    nbformat.write(nb, root / "nbs" / name)
    return f"nbs/{name}"


def wait_for(predicate, timeout=60, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def last_json(text: str) -> dict:
    return json.loads(text[text.index("{") :])


def cluster(root) -> dict:
    return json.loads((root / ".aiwb" / "cluster.json").read_text())


def started(settings, nb: str) -> dict | None:
    "The running run of `nb` once its kernel wrote its pid (the next cell is the long one) and its worker is known."
    for r in list_runs(status="running", settings=settings):
        if r["notebook"] == nb and r["worker"] and (settings.root / f"pid-{r['id']}").exists():
            return r
    return None


PID_CELL = (  # the kernel's pid, written atomically to pid-<run>
    "import os\nrun = os.environ['AIWB_JOB_RUN']\nopen(f'.pid-{run}', 'w').write(str(os.getpid()))\n"
    "os.replace(f'.pid-{run}', f'pid-{run}')"
)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "A project whose runs execute on a local Dask cluster of two single-threaded workers, started by `aiwb cluster up`."
    root = init_project(tmp_path_factory.mktemp("dask") / "p")
    r = aiwb("cluster", "up", "--workers", "2", "--threads", "1", cwd=root)
    try:
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        i = lines.index("[jobs]")
        assert lines[i + 1] == "executor = dask" and lines[i + 2].startswith("dask_scheduler = tcp://127.0.0.1:")
        extra = "\n".join(lines[i + 1 : i + 3])
        text = (root / "settings.ini").read_text()
        fast = "heartbeat_s = 0.5\npoll_interval_s = 0.2\nprestart_kernels = 0\n"
        (root / "settings.ini").write_text(text.replace("[jobs]\n", f"[jobs]\n{extra}\n{fast}", 1))
        yield load_settings(root)
    finally:
        aiwb("cluster", "down", cwd=root)
        for p in (
            [cluster(root)["scheduler"], *cluster(root)["workers"]] if (root / ".aiwb/cluster.json").exists() else []
        ):
            try:
                os.killpg(p["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_cluster_status_and_a_run_on_a_worker(project):
    root = project.root
    r = aiwb("cluster", "status", "--json", cwd=root)
    status = json.loads(r.stdout)
    assert r.returncode == 0 and status["up"] and len(status["workers"]) == 2
    addresses = {w["address"] for w in status["workers"]}
    nb = notebook(root, "ok.ipynb", "x = 1", "import os\nprint(x * 2, os.environ['MLFLOW_RUN_ID'] != '')")
    r = aiwb("jobs", "run", nb, "-p", "x", "21", "--json", cwd=root)
    record = last_json(r.stdout)
    assert r.returncode == 0 and record["status"] == "succeeded", (r.stdout, r.stderr)
    run = get_run(record["id"], settings=project)
    assert run["executor"] == "dask" and run["worker"] in addresses, run
    out = nbformat.read(record["output_notebook"], 4)  # the output notebook came back into the project
    assert Path(record["output_notebook"]).is_relative_to(project.state_dir)
    assert out.cells[-1].outputs[0]["text"] == "42 True\n"
    from aiworkbench.tracking import client

    mr = client(settings=project).get_run(record["mlflow_run_id"])
    assert (mr.info.status, mr.data.tags["aiwb.job.worker"]) == ("FINISHED", run["worker"])
    assert [f.path for f in client(settings=project).list_artifacts(mr.info.run_id, "notebook")]


def test_worker_sigkill_mid_run_gets_a_new_attempt_on_another_worker(project):
    root = project.root
    nb = notebook(
        root,
        "killed.ipynb",
        "x = 1",
        PID_CELL,
        "import os, time\nif not os.path.exists('killed.flag'):\n    open('killed.flag', 'w')\n    time.sleep(120)",
        "print('done')",
    )
    proc = start("jobs", "run", nb, "--json", cwd=root)
    try:
        first = wait_for(lambda: started(project, nb), what="the run to reach its sleeping cell")
        victim = first["worker"]
        pid = next(w["pid"] for w in cluster(root)["workers"] if w["address"] == victim)
        kernel = int((root / f"pid-{first['id']}").read_text())
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    last = last_json(out)
    assert proc.returncode == 0 and last["status"] == "succeeded" and last["attempts"] == 2, (out, err)
    runs = sorted((r for r in list_runs(settings=project) if r["notebook"] == nb), key=lambda r: r["attempt"])
    assert [(r["attempt"], r["status"]) for r in runs] == [(1, "failed"), (2, "succeeded")]
    assert runs[0]["error_name"] == "WorkerLost" and victim in runs[0]["error_message"]
    assert runs[0]["worker"] == victim and runs[1]["worker"] != victim and runs[1]["executor"] == "dask"
    wait_for(lambda: not psutil.pid_exists(kernel), timeout=15, what="the lost worker's kernel to go")
    r = aiwb("cluster", "up", "--workers", "2", "--json", cwd=root)  # a second `up` restarts the dead worker
    assert r.returncode == 0 and len(json.loads(r.stdout)["done"]["workers"]) == 1, r.stdout


def test_a_hang_stops_at_its_timeout_and_a_cancel_stops_a_running_run(project):
    root = project.root
    hang = notebook(root, "hang.ipynb", "x = 1", PID_CELL, "while True:\n    pass")
    sleep = notebook(root, "sleep.ipynb", "x = 1", PID_CELL, "import time\ntime.sleep(120)")
    hanging = start("jobs", "run", hang, "--timeout", "6", "--json", cwd=root)
    sleeping = start("jobs", "run", sleep, "--json", cwd=root)
    try:
        run = wait_for(lambda: started(project, sleep), what="the sleeping run to start its cell")
        wait_for(lambda: started(project, hang), what="the hanging run to start its cell")
        r = aiwb("jobs", "cancel", run["id"], cwd=root)
        assert r.returncode == 0, r.stderr
        out, err = sleeping.communicate(timeout=30)  # the run ends within seconds, not at its sleep's end
        cancelled = get_run(run["id"], settings=project)
        assert (cancelled["status"], cancelled["error_name"]) == ("cancelled", "Cancelled"), cancelled
        out, err = hanging.communicate(timeout=90)
    finally:
        for p in (hanging, sleeping):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    timed_out = last_json(out)
    assert (timed_out["status"], timed_out["error"]["name"]) == ("timed_out", "Timeout"), (out, err)
    assert "Dask worker `tcp://127.0.0.1:" in timed_out["error"]["message"]
    for r in (cancelled, get_run(timed_out["id"], settings=project)):
        assert r["executor"] == "dask" and r["worker"].startswith("tcp://127.0.0.1:")
        kernel = int((root / f"pid-{r['id']}").read_text())
        wait_for(lambda: not psutil.pid_exists(kernel), timeout=10, what="the stopped run's kernel to go")  # noqa: B023
        assert Path(r["output_path"]).exists()


def test_100_submissions_over_two_workers_each_executed_once(project):
    root = project.root
    nb = notebook(root, "once.ipynb", "i = 0", "import os\nwith open('once.log', 'a') as f:\n    f.write(f'{i}\\n')")
    job = create_job({"name": "once", "notebook": nb, "max_concurrent": 4}, settings=project)
    ids = [submit_run(job, parameters={"i": i}, settings=project)["id"] for i in range(100)]
    scheduler = start("scheduler", "--workers", "4", cwd=root)
    try:
        wait_for(
            lambda: all(r["finished"] for r in list_runs("once", limit=200, settings=project)),
            timeout=300,
            what="100 runs to finish",
        )
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=60)
    runs = list_runs("once", limit=200, settings=project)
    assert sorted(r["id"] for r in runs) == sorted(ids)
    assert {r["status"] for r in runs} == {"succeeded"}, {r["error_message"] for r in runs}
    assert sorted(int(x) for x in (root / "once.log").read_text().split()) == list(range(100))  # each exactly once
    assert len({r["worker"] for r in runs}) == 2 and {r["executor"] for r in runs} == {"dask"}


def test_scheduler_killed_then_restarted_the_run_is_retried(project):
    root = project.root
    nb = notebook(root, "retried.ipynb", "x = 1", PID_CELL, "import time\ntime.sleep(3)", "print('done')")
    job = create_job({"name": "retried", "notebook": nb, "retries": 4, "backoff_s": 1}, settings=project)
    first = submit_run(job, settings=project)
    scheduler = start("scheduler", "--workers", "1", cwd=root)
    try:
        wait_for(lambda: started(project, nb), what="the run to start its sleep")
        address = "tcp://127.0.0.1:" + str(cluster(root)["port"])
        os.killpg(cluster(root)["scheduler"]["pid"], signal.SIGKILL)
        failed = wait_for(lambda: (r := get_run(first["id"], settings=project))["finished"] and r, what="failure")
        assert (failed["status"], failed["error_name"]) == ("failed", "DaskSchedulerLost"), failed
        assert address in failed["error_message"]
        r = aiwb("cluster", "up", "--workers", "2", "--json", cwd=root)  # the same address again
        assert r.returncode == 0 and json.loads(r.stdout)["address"] == address, r.stdout
        wait_for(
            lambda: any(r["status"] == "succeeded" for r in list_runs("retried", settings=project)),
            timeout=90,
            what="a retry to succeed on the restarted cluster",
        )
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait(timeout=60)
    runs = sorted(list_runs("retried", settings=project), key=lambda r: r["attempt"])
    assert [r["status"] for r in runs].count("succeeded") == 1 and runs[-1]["status"] == "succeeded"
    assert all(r["error_name"] in ("DaskSchedulerLost", "DaskSchedulerUnreachable") for r in runs[:-1]), runs


def test_sweep_on_the_cluster(project, tmp_path):
    root = project.root
    nb = notebook(
        root,
        "trial.ipynb",
        "x = 0.5\nk = 1",
        "import os\nif not os.path.exists('trial.flag'):\n    open('trial.flag', 'w')\n"
        "    raise ValueError('the first trial raises')",
        "import mlflow\nwith mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):\n"
        "    mlflow.log_metric('loss', (x - 0.3) ** 2 + k)\n    mlflow.log_text('flavors: {}\\n', 'model/MLmodel')",
    )
    args = ["sweep", nb, "--param", "x=float(0,1)", "--param", "k=choice(0,1)", "--metric", "loss", "--name", "s1"]
    r = aiwb(*args, "--trials", "4", "--parallel", "2", "--register", "m1", "--json", cwd=root)
    assert r.returncode == 0, (r.stdout, r.stderr)
    report = json.loads(r.stdout)
    assert report["counts"] == {"complete": 3, "fail": 1, "running": 0}
    values = [t["value"] for t in report["trials"] if t["value"] is not None]
    assert values == sorted(values) and report["best"]["value"] == values[0]
    assert report["trials"][-1]["state"] == "fail" and "first trial raises" in report["trials"][-1]["error"]
    assert report["registered"]["alias"] == "challenger" and report["registered"]["version"] == 1
    runs = [get_run(t["job_run"], settings=project) for t in report["trials"]]
    assert {r["executor"] for r in runs} == {"dask"}
    from aiworkbench.tracking import client

    c = client(settings=project)
    child = c.get_run(report["best"]["mlflow_run_id"])
    assert child.data.tags["mlflow.parentRunId"] == report["mlflow_run_id"] and "x" in child.data.params
    assert c.get_model_version_by_alias("m1", "challenger").run_id == report["best"]["mlflow_run_id"]
    r = aiwb(*args, "--trials", "5", "--json", cwd=root)  # the same name resumes: one trial more
    assert r.returncode == 0 and len(json.loads(r.stdout)["trials"]) == 5, r.stderr
    html = tmp_path / "s1.html"
    r = aiwb("sweep", "show", "s1", "--html", html, cwd=root)
    assert r.returncode == 0 and "sweep s1" in r.stdout
    assert html.read_text().count("<img") == 2
    r = aiwb("sweep", nb, "--param", "x=float(0,1)", "--metric", "nope", "--trials", "1", cwd=root)
    assert r.returncode == 1 and "no trial logged metric `nope`" in r.stderr, r.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_scheduler_is_refused_naming_it(tmp_path):
    root = init_project(tmp_path / "q")
    address = f"tcp://127.0.0.1:{free_port()}"
    text = (root / "settings.ini").read_text()
    (root / "settings.ini").write_text(
        text.replace("[jobs]\n", f"[jobs]\nexecutor = dask\ndask_scheduler = {address}\n")
    )
    nb = notebook(root, "n.ipynb", "x = 1")
    r = aiwb("jobs", "run", nb, cwd=root)
    assert r.returncode == 2 and f"`{address}`" in r.stderr and "does not answer" in r.stderr, r.stderr
    r = aiwb("sweep", nb, "--param", "x=int(1,3)", "--metric", "m", cwd=root)
    assert r.returncode == 2 and f"`{address}`" in r.stderr, r.stderr
    assert list_runs(settings=load_settings(root)) == []


def test_a_failed_run_keeps_the_workers_log_and_jobs_runs_shows_where_it_ran(project):
    from aiworkbench.jobs.executor import log_path

    root = project.root
    nb = notebook(root, "fails.ipynb", "x = 1", "raise RuntimeError(f'boom on the worker: x = {x}')")
    r = aiwb("jobs", "run", nb, "-p", "x", "7", "--json", cwd=root)
    record = last_json(r.stdout)
    assert r.returncode == 1 and record["status"] == "failed", (r.stdout, r.stderr)
    run = get_run(record["id"], settings=project)
    log = log_path(run, settings=project)  # beside the output notebook, named in the error
    assert log.is_file() and f"worker log: {log}" in run["error_message"], run["error_message"]
    text = log.read_text()
    assert "RuntimeError: boom on the worker: x = 7" in text and "raise RuntimeError" in text, text[-3000:]
    shown = subprocess.run([AIWB, "jobs", "runs", record["job"]], capture_output=True, text=True, cwd=root,
                           env={**os.environ, "COLUMNS": "200"}, timeout=120)  # fmt: skip
    line = next(x for x in shown.stdout.splitlines() if run["id"] in x)
    assert shown.returncode == 0 and " dask " in line and run["worker"] in line, shown.stdout


def scheduler_tasks(address: str) -> dict[str, str]:
    "The state of each `aiwb-run-*` task the Dask scheduler at `address` holds."
    from distributed import Client

    def states(dask_scheduler):
        return {k: ts.state for k, ts in dask_scheduler.tasks.items() if str(k).startswith("aiwb-run-")}

    with Client(address, timeout=10, set_as_default=False) as c:
        return c.run_on_scheduler(states)


def test_a_notebook_asking_for_a_gpu_waits_for_a_gpu_worker_and_runs_only_there(project, tmp_path):
    root = project.root
    nb = notebook(root, "gpu.ipynb", "x = 1", "import os\nprint(os.environ['AIWB_JOB_RUN'])")
    meta = nbformat.read(root / nb, 4)
    meta.metadata["aiwb"] = {"resources": {"GPU": 1}}  # a fake resource: no GPU needed, only a worker that has one
    nbformat.write(meta, root / nb)
    address = f"tcp://127.0.0.1:{cluster(root)['port']}"
    others = {w["address"] for w in cluster(root)["workers"]}
    proc = start("jobs", "run", nb, "--json", cwd=root)
    gpu = None
    try:
        run = wait_for(lambda: next((r for r in list_runs(status="running", settings=project) if r["notebook"] == nb),
                                    None), what="the GPU run to be claimed")  # fmt: skip
        key = f"aiwb-run-{run['id']}"
        wait_for(lambda: scheduler_tasks(address).get(key) == "no-worker", what="the task to wait for a GPU worker")
        waiting = get_run(run["id"], settings=project)["worker"]  # the claiming process's host:pid, no Dask worker
        assert not str(waiting).startswith("tcp://"), waiting
        gpu = subprocess.Popen(
            [str(Path(sys.executable).with_name("dask")), "worker", address, "--nthreads", "1", "--no-nanny",
             "--host", "127.0.0.1", "--no-dashboard", "--resources", "GPU=1", "--name", "gpu-worker",
             "--local-directory", str(tmp_path / "gpu-worker")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        out, err = proc.communicate(timeout=180)
    finally:
        for p in (proc, gpu):
            if p is not None and p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    record = last_json(out)
    assert proc.returncode == 0 and record["status"] == "succeeded", (out, err)
    done = get_run(record["id"], settings=project)
    assert done["executor"] == "dask" and done["worker"].startswith("tcp://127.0.0.1:") and done["worker"] not in others
    assert nbformat.read(record["output_notebook"], 4).cells[-1].outputs[0]["text"] == f"{record['id']}\n"
