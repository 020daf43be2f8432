"""The job store on PostgreSQL shared by several schedulers (RELIABILITY rows 1, 3 and 21, issue 12 scope 4).

One real PostgreSQL cluster for the module (team.postgres helpers, as `aiwb team up` starts it), a fresh database per
test. Two "machines" are two project folders on this one, each with its own `AIWB_HOSTNAME`, pointing at one store.
"""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import psutil
import pytest

AIWB = str(Path(sys.executable).parent / "aiwb")


@pytest.fixture(scope="module")
def pg():
    from aiworkbench.team.postgres import (
        cluster_user,
        ensure_databases,
        free_port,
        init_cluster,
        make_folders,
        postgres_bin,
        start_postgres,
        stop_postgres,
    )

    base = Path(tempfile.mkdtemp(prefix="aiwb-jobs-team-"))
    base.chmod(0o755)  # as root the cluster runs as `postgres`, which must reach its folder
    folder, user, bin = base / "team", cluster_user(), postgres_bin()
    make_folders(folder, user)
    init_cluster(folder, bin, user)
    port = free_port()
    server = start_postgres(folder, bin, user, port)
    before = os.environ.get("PGPASSFILE")
    try:
        ensure_databases(folder, port)
        os.environ["PGPASSFILE"] = str(folder / "pgpass")  # this process reads the stores too
        yield {"folder": folder, "port": port, "base": base, "pgpass": str(folder / "pgpass")}
    finally:
        os.environ.pop("PGPASSFILE", None) if before is None else os.environ.update(PGPASSFILE=before)
        try:
            stop_postgres(folder, bin, user)
        finally:
            if psutil.pid_exists(server["pid"]):
                os.kill(server["pid"], signal.SIGKILL)
            shutil.rmtree(base, ignore_errors=True)


def new_store(pg, name: str) -> str:
    "A fresh database on the cluster, owned by the `aiwb` role; its URI (the password comes from PGPASSFILE)."
    import psycopg

    with psycopg.connect(host=str(pg["folder"] / "run"), port=pg["port"], user="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" OWNER aiwb')
    return f"postgresql+psycopg://aiwb@127.0.0.1:{pg['port']}/{name}"


def machine(pg, base: Path, host: str, store: str, timeout_s: float = 30.0, tracking: str = "") -> dict:
    "A project folder standing for one machine of the team: its settings name the shared store."
    from aiworkbench.project import init_project

    root = init_project(base / host)
    text = (root / "settings.ini").read_text()
    extra = f"store = {store}\nheartbeat_s = 0.5\npoll_interval_s = 0.2\nscheduler_timeout_s = {timeout_s}\n"
    text = text.replace("[jobs]\n", "[jobs]\n" + extra)
    if tracking:
        text = text.replace("[tracking]\n", f"[tracking]\nuri = {tracking}\n")
    (root / "settings.ini").write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIWB_", "MLFLOW_"))}
    env.update(PGPASSFILE=pg["pgpass"], AIWB_HOSTNAME=host)
    return {"root": root, "env": env, "host": host}


def settings_of(m: dict):
    from aiworkbench.config import load_settings

    return load_settings(m["root"], environ=m["env"])


def notebook(m: dict, name: str, *body: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("n = 0")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, *(nbformat.v4.new_code_cell(b) for b in body)]
    nbformat.write(nb, m["root"] / "nbs" / name)
    return f"nbs/{name}"


def aiwb(m: dict, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIWB, *map(str, args)], cwd=m["root"], env=m["env"], capture_output=True, text=True, timeout=timeout
    )


def scheduler(m: dict, workers: int = 1) -> subprocess.Popen:
    log = open(m["root"] / f"scheduler-{time.monotonic_ns()}.log", "w")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [AIWB, "scheduler", "--workers", str(workers)], cwd=m["root"], env=m["env"], stdout=log, stderr=log
    )


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def wait_for(predicate, timeout=90, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_bad_store_settings_name_the_setting(pg, tmp_path):
    store = f"postgresql+psycopg://aiwb@127.0.0.1:{pg['port']}/aiwb_jobs"
    m = machine(pg, tmp_path, "h", store)
    cases = [
        (store.replace("aiwb@", "aiwb:wrong@"), "the password for role `aiwb` was refused", "aiwb:***@"),
        (store.replace("127.0.0.1", "no-such-host.invalid"), "unknown host `no-such-host.invalid`", "invalid"),
        (store.replace("postgresql+psycopg", "postgresq+psycopg"), "did you mean `postgresql", "postgresq+"),
        (store.replace("aiwb_jobs", "nope"), "there is no database `nope`", "/nope"),
    ]
    for uri, why, shown in cases:
        r = subprocess.run(
            [AIWB, "jobs", "list"], cwd=m["root"], env={**m["env"], "AIWB_JOBS_STORE": uri}, capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 2, (uri, r.stdout, r.stderr)
        assert "[jobs] store `" in r.stderr and why in r.stderr and shown in r.stderr, r.stderr
        assert "wrong" not in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(
        [AIWB, "jobs", "list", "--json"], cwd=m["root"], env={**m["env"], "PGPASSFILE": str(tmp_path / "none")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "was refused or is missing" in json.loads(r.stdout)["message"], r.stdout
    assert aiwb(m, "jobs", "list", "--json").returncode == 0  # the good store works, tables created


SUBMIT = """
import json, sys, time
from pathlib import Path
from aiworkbench.config import load_settings
from aiworkbench.jobs.store import create_job, submit_run
settings = load_settings()
keys = json.loads(sys.argv[1])
while not Path(sys.argv[2]).exists():
    time.sleep(0.01)
job = create_job({"name": "sub-" + sys.argv[3], "notebook": "nbs/s.ipynb", "idempotency_key": "one-job"},
                 settings=settings)
print(json.dumps({"job": job["id"], "runs": {k: submit_run(job, idempotency_key=k, settings=settings)["id"]
                                             for k in keys}}))
"""


def test_200_concurrent_submissions_with_keys_from_4_processes(pg, tmp_path):
    from aiworkbench.jobs.store import list_jobs, list_runs

    m = machine(pg, tmp_path, "h", new_store(pg, "subs"))
    notebook(m, "s.ipynb")
    assert aiwb(m, "jobs", "list").returncode == 0  # the tables exist before the race
    keys = [f"event-{i}" for i in range(50)]
    go = tmp_path / "go"
    procs = []
    for p in range(4):
        order = random.Random(p).sample(keys, len(keys))
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", SUBMIT, json.dumps(order), str(go), str(p)],
                cwd=m["root"],
                env=m["env"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    go.write_text("go")
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out))
    assert len({r["job"] for r in results}) == 1  # one idempotency key, one job
    assert all(r["runs"] == results[0]["runs"] for r in results)  # every process got the first run of each key
    s = settings_of(m)
    assert [j["id"] for j in list_jobs(settings=s)] == [results[0]["job"]]
    runs = list_runs(settings=s, limit=1000)
    assert len(runs) == 50 and {r["idempotency_key"] for r in runs} == set(keys)


CLAIMER = """
import json, sys
from aiworkbench.config import load_settings
from aiworkbench.jobs.runs import claim_next_run, finish_run
settings = load_settings()
took = []
while (run := claim_next_run(settings=settings)) is not None:
    took.append(run["id"])
    finish_run(run["id"], "succeeded", settings=settings)
print(json.dumps(took))
"""


def test_two_schedulers_race_over_queued_runs(pg, tmp_path):
    "200 runs claimed by two hosts' claim loops, then real schedulers on both hosts: each run executed exactly once."
    from aiworkbench.jobs.store import create_job, list_runs, submit_run

    store = new_store(pg, "race")
    a, b = machine(pg, tmp_path, "alpha", store), machine(pg, tmp_path, "beta", store)
    for m in (a, b):
        notebook(m, "t.ipynb", "import os\nwith open(os.environ['RACE_LOG'], 'a') as f:\n"
                 "    f.write(os.environ['AIWB_JOB_RUN'] + '\\n')")  # fmt: skip
    s = settings_of(a)
    job = create_job({"name": "t", "notebook": "nbs/t.ipynb", "max_concurrent": 200}, settings=s)
    queued = {submit_run(job, settings=s)["id"] for _ in range(200)}
    # the worker's claim and finish, from two hosts at once, over 200 queued runs
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER], cwd=m["root"], env=m["env"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for m in (a, b)
    ]  # fmt: skip
    took = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        took.append(json.loads(out))
    assert sorted(took[0] + took[1]) == sorted(queued)  # every run claimed, none twice
    runs = list_runs("t", settings=s, limit=1000)
    assert {r["status"] for r in runs} == {"succeeded"} and len(runs) == 200
    assert {r["host"] for r in runs} <= {"alpha", "beta"} and {r["executor"] for r in runs} == {"local"}
    print(f"\nclaims: alpha {len(took[0])}, beta {len(took[1])}")

    # real schedulers on both hosts over runs that execute a notebook, and a schedule every 3 s
    race_log = tmp_path / "race.log"
    for m in (a, b):
        m["env"]["RACE_LOG"] = str(race_log)
    real = {submit_run(job, settings=s)["id"] for _ in range(8)}
    create_job({"name": "tick", "notebook": "nbs/t.ipynb", "cron": "* * * * * */3"}, settings=s)
    scheds = [scheduler(a), scheduler(b)]
    try:
        done = lambda: [r for r in list_runs("t", settings=s, limit=1000) if r["id"] in real and r["finished"]]  # noqa: E731
        wait_for(lambda: len(done()) == len(real), timeout=180, what="8 runs executed by two schedulers")
        wait_for(lambda: len(list_runs("tick", settings=s, limit=100)) >= 3, what="three ticks")
        assert all(p.poll() is None for p in scheds), "a scheduler exited"
    finally:
        for p in scheds:
            stop(p)
    executed = race_log.read_text().split()
    assert sorted(r for r in executed if r in real) == sorted(real)  # each notebook executed exactly once
    finished = [r for r in list_runs("t", settings=s, limit=1000) if r["id"] in real]
    assert {r["status"] for r in finished} == {"succeeded"}, [(r["status"], r["error_message"]) for r in finished]
    assert all(r["worker"].endswith(f":{r['worker_pid']}") for r in finished)  # host:pid of the local worker
    print("executed by:", {h: sum(r["host"] == h for r in finished) for h in ("alpha", "beta")})
    from datetime import datetime

    ticks = sorted(r["scheduled_for"] for r in list_runs("tick", settings=s, limit=100) if r["attempt"] == 1)
    stamps = [datetime.fromisoformat(t).timestamp() for t in ticks]
    assert len(ticks) == len(set(ticks)) and all(b - a == 3 for a, b in zip(stamps, stamps[1:], strict=False)), ticks
    r = aiwb(a, "jobs", "runs", "t", "--limit", "3", "--json")
    assert (
        r.returncode == 0
        and [(x["executor"], x["worker"].split(":")[0] != "") for x in json.loads(r.stdout)] == [("local", True)] * 3
    ), r.stdout + r.stderr
    a["env"]["COLUMNS"] = "200"
    r = aiwb(a, "jobs", "runs", "t", "--limit", "3")
    assert r.returncode == 0 and "executor" in r.stdout and "worker" in r.stdout and "local" in r.stdout, r.stdout


SLOW = """import os, time
from pathlib import Path
flag = Path(os.environ['FLAG_DIR']) / 'started'
first = not flag.exists()
flag.write_text(os.environ['AIWB_JOB_RUN'])
if first:
    time.sleep(300)
print('done by', os.environ['AIWB_HOSTNAME'])"""


def test_a_host_killed_mid_run_is_recovered_by_another(pg, tmp_path):
    "Host alpha SIGKILLed mid-run: beta recovers it after the heartbeat timeout, a new attempt, one success."
    from aiworkbench.jobs.store import create_job, get_run, list_runs, submit_run

    store, tracking = new_store(pg, "kill"), f"sqlite:///{tmp_path / 'shared-mlflow.db'}"
    a = machine(pg, tmp_path, "alpha", store, timeout_s=4, tracking=tracking)
    b = machine(pg, tmp_path, "beta", store, timeout_s=4, tracking=tracking)
    for m in (a, b):
        notebook(m, "slow.ipynb", SLOW)
        m["env"]["FLAG_DIR"] = str(tmp_path)
    s = settings_of(a)
    job = create_job({"name": "slow", "notebook": "nbs/slow.ipynb", "retries": 0}, settings=s)
    first = scheduler(a)
    second = None
    try:
        run = submit_run(job, settings=s)
        wait_for(lambda: (tmp_path / "started").exists(), what="the run started on alpha")
        assert get_run(run["id"], settings=s)["host"] == "alpha"
        second = scheduler(b)
        wait_for(lambda: any(x["host"] == "beta" and x["alive"] for x in schedulers(s)), what="beta registered")
        family = [*psutil.Process(first.pid).children(recursive=True), psutil.Process(first.pid)]
        for p in family:  # the whole host dies: scheduler, workers, kernel
            p.kill()
        psutil.wait_procs(family, timeout=30)
        killed_at = time.time()
        chain = lambda: sorted(list_runs("slow", settings=s, limit=10), key=lambda r: r["attempt"])  # noqa: E731
        runs = wait_for(lambda: (c := chain()) and c[-1]["status"] == "succeeded" and c, what="the new attempt")
    finally:
        for p in (first, second):
            if p is not None:
                stop(p)
    orig, again = runs[0], runs[-1]
    assert [r["status"] for r in runs] == ["failed", "succeeded"]  # never two successful records for one run
    assert orig["id"] == run["id"] and orig["error_name"] == "Orphaned" and "host `alpha`" in orig["error_message"]
    assert "recovered by `beta`" in orig["error_message"] and orig["finished_at"] > killed_at
    assert (again["attempt"], again["retry_of"], again["host"], again["executor"]) == (2, orig["id"], "beta", "local")
    # a teammate on alpha opens the output notebook beta made: not on alpha's disk, downloaded from MLflow
    out = tmp_path / "out.ipynb"
    r = aiwb(a, "jobs", "output", again["id"], "-o", out)
    assert r.returncode == 0 and "from runs:/" in r.stdout, r.stdout + r.stderr
    assert "done by beta" in out.read_text()
    r = aiwb(b, "jobs", "output", again["id"], "--json")  # beta reads its own copy
    assert r.returncode == 0 and json.loads(r.stdout)["path"].startswith(".aiwb/jobs/"), r.stdout
    assert aiwb(a, "jobs", "output", "nope").returncode == 2


def schedulers(settings):
    from aiworkbench.jobs.schedulers import list_schedulers

    return list_schedulers(settings=settings)
