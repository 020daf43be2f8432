"""Tracking and registry over HTTP against the real servers of `aiwb team up`, their faults, atomic alias moves from
many processes, and `aiwb store migrate` (killed midway, run again; the job store, schedules included, into PostgreSQL).

One `aiwb team up` for the module (the fixture stops what is left of it by pid). Every CLI step is its own process;
the helpers that seed stores and race promotions run in their own processes too (tests/team_stores_tools.py).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from team_servers import stop_team

AIWB = str(Path(sys.executable).parent / "aiwb")
TOOLS = str(Path(__file__).with_name("team_stores_tools.py"))
BASE_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AIWB_", "MLFLOW_"))}


def aiwb(*args, cwd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env or BASE_ENV, timeout=timeout
    )


def tool(*args, timeout=300, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, TOOLS, args[0], json.dumps(list(args[1:]))]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env or BASE_ENV, timeout=timeout)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def wait_for(predicate, what: str, timeout: float = 120.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def make_project(base: Path, name: str, uri: str | None = None) -> Path:
    "A fresh project; its `[tracking] uri` set to `uri` (None: the project's own SQLite store)."
    root = base / name
    assert aiwb("init", root, cwd=base).returncode == 0
    if uri:
        ini = root / "settings.ini"
        ini.write_text(ini.read_text().replace("[tracking]\n", f"[tracking]\nuri = {uri}\n", 1))
    return root


@pytest.fixture(scope="module")
def team():
    base = Path(tempfile.mkdtemp(prefix="aiwb-stores-"))
    base.chmod(0o755)  # as root the cluster runs as `postgres`, which must reach its folder
    folder = base / "team"
    r = aiwb("team", "up", "--dir", folder, "--json", cwd=base)
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        up = json.loads(r.stdout)
        yield {"base": base, "dir": folder, "url": up["settings"]["tracking.uri"], "up": up}
    finally:
        stop_team(folder / "team.json")
        shutil.rmtree(base, ignore_errors=True)


def server_client(team):
    from mlflow import MlflowClient

    return MlflowClient(team["url"], registry_uri=team["url"])


# ---------------------------------------------------------------------------------------------------------------
def test_bad_store_settings_are_named_and_write_nothing(team):
    port = team["up"]["postgres"]["port"]
    root = make_project(team["base"], "bad")
    with_pass = {**BASE_ENV, "PGPASSFILE": str(team["dir"] / "pgpass")}
    cases = [
        ("postgressql://aiwb@127.0.0.1/mlflow", BASE_ENV, "did you mean `postgresql`"),
        ("http://no-such-host.invalid:5000", BASE_ENV, "does not answer"),
        (f"postgresql+psycopg://aiwb:wrong-password@127.0.0.1:{port}/mlflow", BASE_ENV, "cannot connect"),
        (f"postgresql+psycopg://aiwb@127.0.0.1:{port}/aiwb_jobs", with_pass, "holds no MLflow tables"),
    ]
    for uri, env, why in cases:
        r = aiwb("models", "list", cwd=root, env={**env, "AIWB_TRACKING_URI": uri})
        shown = uri.replace("wrong-password", "***")
        assert r.returncode == 2 and "[tracking] uri" in r.stderr and shown in r.stderr and why in r.stderr, (
            uri, r.returncode, r.stderr[-2000:],
        )  # fmt: skip
        assert "wrong-password" not in r.stderr and "Traceback" not in r.stderr
    assert not (root / ".aiwb" / "mlflow.db").exists()
    with_pass["AIWB_TRACKING_URI"] = f"postgresql+psycopg://aiwb@127.0.0.1:{port}/aiwb_jobs"
    import psycopg

    dsn = f"host=127.0.0.1 port={port} user=aiwb dbname=aiwb_jobs"
    with psycopg.connect(dsn, passfile=with_pass["PGPASSFILE"]) as c:
        tables = [r[0] for r in c.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    assert "experiments" not in tables and "alembic_version" not in tables, tables  # MLflow made none there


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("flask_wtf") is None, reason="mlflow[auth] (Flask-WTF) is not installed"
)
def test_basic_auth_server_wrong_password(team, tmp_path):
    from aiworkbench.team.postgres import free_port

    port = free_port()
    log = open(tmp_path / "auth.log", "wb")
    # MLflow 3.x refuses to start basic-auth without a CSRF secret, and with the admin password it once shipped
    env = {**BASE_ENV, "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "t"}
    (tmp_path / "auth.ini").write_text(
        f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{tmp_path / 'auth.db'}\n"
        "admin_username = admin\nadmin_password = Team-secret-42\nauthorization_function = "
        "mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    proc = subprocess.Popen(
        [str(Path(AIWB).with_name("mlflow")), "server", "--app-name", "basic-auth", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", f"sqlite:///{tmp_path / 'm.db'}", "--workers", "1"],
        cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        from aiworkbench.team.servers import healthy

        wait_for(lambda: healthy(f"http://127.0.0.1:{port}"), "the basic-auth server", timeout=120)
        root = make_project(tmp_path, "auth", f"http://127.0.0.1:{port}")
        creds = {"MLFLOW_TRACKING_USERNAME": "admin"}
        r = aiwb("models", "list", cwd=root, env={**BASE_ENV, **creds, "MLFLOW_TRACKING_PASSWORD": "wrong"})
        assert r.returncode == 2 and "refused the credentials" in r.stderr and "admin" in r.stderr, r.stderr
        creds["MLFLOW_TRACKING_PASSWORD"] = "Team-secret-42"
        r = aiwb("models", "list", "--json", cwd=root, env={**BASE_ENV, **creds})
        assert r.returncode == 0, r.stderr[-2000:]
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)


def test_train_promote_package_through_the_server(team):
    root = make_project(team["base"], "http")
    sys.path.insert(0, str(Path(__file__).parent))
    from lifecycle_data import DATASETS

    ds = DATASETS["wine"]()
    ds.frame.to_csv(root / "data" / "train.csv", index=False)
    r = aiwb("data", "infer", "data/train.csv", "-o", "contracts/train.yaml", "--target", ds.target, cwd=root)
    assert r.returncode == 0, r.stderr
    ini = root / "settings.ini"
    ini.write_text(ini.read_text().replace("[tracking]\n", f"[tracking]\nuri = {team['url']}\n", 1))
    r = aiwb("train", "data/train.csv", "--contract", "contracts/train.yaml", "--epochs", 1, "--register", "wine",
             "--json", cwd=root)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    trained = json.loads(r.stdout)
    runs = json.loads(aiwb("runs", "list", "--json", cwd=root).stdout)
    assert runs[0]["artifact_uri"].startswith("mlflow-artifacts:/"), runs[0]  # proxied: no client-side folder
    exp_folder = team["dir"] / "artifacts" / trained["experiment_id"]
    assert any(p.name == "MLmodel" for p in exp_folder.rglob("*")), list(exp_folder.rglob("*"))[:20]
    moved = json.loads(aiwb("models", "promote", "wine", "1", "--json", cwd=root).stdout)
    assert moved["to"] == 1 and all(c["passed"] for c in moved["checks"]), moved
    r = aiwb("package", "wine@champion", "--json", cwd=root)  # the model downloaded through the server
    assert r.returncode == 0 and Path(json.loads(r.stdout)["build_dir"]).is_dir(), r.stderr[-3000:]
    for cmd in (("kpi", "--json"), ("phase", "--json"), ("models", "history", "wine", "--json")):
        r = aiwb(*cmd, cwd=root)
        assert r.returncode == 0, (cmd, r.stderr[-2000:])
    listed = json.loads(aiwb("models", "list", "--json", cwd=root).stdout)
    assert [m["name"] for m in listed] == ["wine"]  # the registry lock never shows
    assert not (root / ".aiwb" / "mlflow.db").exists() and not (root / ".aiwb" / "artifacts").exists()


def test_twenty_concurrent_promotions_are_atomic(team):
    root = make_project(team["base"], "race", team["url"])
    versions = tool("seed", str(root), "race", [0.9, 0.2, 0.8, 0.7], 5)  # version 2 fails the gate (acc >= 0.5)
    assert versions == [1, 2, 3, 4]
    c, seen, stop = server_client(team), [], threading.Event()

    def watch():  # what a server reading the alias meanwhile gets
        while not stop.is_set():
            aliases = c.get_registered_model("race").aliases
            if "champion" in aliases:
                seen.append(int(aliases["champion"]))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        results = tool("promote_many", str(root), "race", versions, 20, timeout=600)
    finally:
        stop.set()
        watcher.join(10)
    ok = [r for r in results if r["ok"]]
    refused = [r for r in results if not r["ok"]]
    assert {r["version"] for r in refused} == {2} and {r["error"] for r in refused} == {"GateRefused"}, refused
    assert len(ok) == 15
    r = aiwb("models", "history", "race", "--json", cwd=root)
    history = json.loads(r.stdout)
    history = history["history"] if isinstance(history, dict) else history
    moves = [e for e in history if e["kind"] == "promote"]
    assert [e["seq"] for e in moves] == list(range(1, 16))  # exactly the moves made, numbered without gaps
    assert Counter(e["why"] for e in moves) == Counter(f"worker {r['i']}" for r in ok)
    for before, after in zip(moves, moves[1:], strict=False):
        assert after["from"] == before["to"], (before, after)  # each move starts where the previous one ended
    assert moves[0]["from"] is None and all(e["to"] != 2 for e in moves)
    final = json.loads(aiwb("models", "show", "race", "--json", cwd=root).stdout)["aliases"]["champion"]
    assert final == moves[-1]["to"] and seen and set(seen) <= {1, 3, 4}, (final, set(seen))


def test_a_promotion_makes_eight_requests(team):
    """The README's cost of a promotion on a server: the lease, the version, its run, the model, the model's folder
    listed (its MLmodel recorded at registration), the history entry, the alias, the lease released."""
    root = make_project(team["base"], "count", team["url"])
    assert tool("seed", str(root), "count", [0.9], 5) == [1]
    made = tool("promote_counted", str(root), "count", 1)
    assert sorted(made) == sorted([
        "POST mlflow/registered-models/create", "GET mlflow/model-versions/get", "GET mlflow/runs/get",
        "GET mlflow/registered-models/get", "GET mlflow-artifacts/artifacts",
        "POST mlflow/registered-models/set-tag", "POST mlflow/registered-models/alias",
        "DELETE mlflow/registered-models/delete",
    ]), made  # fmt: skip
    shown = json.loads(aiwb("models", "show", "count", "--json", cwd=root).stdout)
    assert shown["aliases"] == {"champion": 1}, shown


def test_mlflow_server_killed_during_log_batch(team):
    root = make_project(team["base"], "kill", team["url"])
    c = server_client(team)
    run = c.create_run(c.create_experiment("kill-during-log-batch"))
    logger = subprocess.Popen(
        [sys.executable, TOOLS, "log_batches", json.dumps([str(root), run.info.run_id, 10])],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASE_ENV,
    )  # fmt: skip
    assert json.loads(logger.stdout.readline())["acked"] == 0  # logging has begun
    state = json.loads((team["dir"] / "team.json").read_text())
    assert logger.poll() is None, "the logger finished before the server was killed: nothing would be tested"
    killed_at = time.time()
    os.killpg(state["mlflow"]["pid"], signal.SIGKILL)
    r = aiwb("team", "up", "--dir", team["dir"], "--json", cwd=team["base"])
    assert r.returncode == 0 and json.loads(r.stdout)["done"]["mlflow"] == "restarted", r.stderr[-2000:]
    out, err = logger.communicate(timeout=300)
    acks = [{"acked": 0, "at": 0.0}] + [json.loads(line) for line in out.splitlines()]
    steps = Counter(m.step for m in c.get_metric_history(run.info.run_id, "loss"))
    assert not [s for s, n in steps.items() if n > 1], "a metric step was written twice"
    if logger.returncode == 0:
        assert sorted(steps) == list(range(10_000)), len(steps)  # every step, once
        assert any(a["at"] > killed_at for a in acks), "no batch was logged after the kill: the kill missed the logging"
    else:  # it gave up: the message names the server, and every acknowledged batch is there
        assert team["url"] in err, err[-2000:]
        assert all(s in steps for a in acks for s in range(a["acked"] * 1000, (a["acked"] + 1) * 1000))


def test_postgres_restarted_during_training(team):
    root = make_project(team["base"], "pgrestart")
    sys.path.insert(0, str(Path(__file__).parent))
    from lifecycle_data import DATASETS

    ds = DATASETS["wine"]()
    ds.frame.to_csv(root / "data" / "train.csv", index=False)
    r = aiwb("data", "infer", "data/train.csv", "-o", "contracts/c.yaml", "--target", ds.target, cwd=root)
    assert r.returncode == 0, r.stderr
    ini = root / "settings.ini"
    ini.write_text(ini.read_text().replace("[tracking]\n", f"[tracking]\nuri = {team['url']}\n", 1))
    c = server_client(team)
    epochs = 25
    train = subprocess.Popen(
        [AIWB, "train", "data/train.csv", "--contract", "contracts/c.yaml", "--epochs", str(epochs), "--batch-size",
         "16", "--experiment", "pg-restart", "--json"],
        cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASE_ENV,
    )  # fmt: skip

    def logging_metrics():
        exp = c.get_experiment_by_name("pg-restart")
        runs = c.search_runs([exp.experiment_id]) if exp else []
        return runs and runs[0].data.metrics and runs[0]

    run = wait_for(logging_metrics, "the training run's first metrics", timeout=240)
    from aiworkbench.team.postgres import as_user, cluster_user, postgres_bin

    pgdata = team["dir"] / "pgdata"
    log = team["dir"] / "logs" / "postgres.log"  # the server's output goes there, not into a pipe held open
    cmd = [postgres_bin() / "pg_ctl", "-D", pgdata, "-l", log, "-m", "fast", "-w", "-t", "60", "restart"]
    status = c.get_run(run.info.run_id).info.status
    assert status == "RUNNING" and train.poll() is None, f"training ended ({status}) before the restart: too fast"
    restart_at = time.time()
    r = subprocess.run(as_user(cmd, cluster_user()), capture_output=True, text=True, cwd=team["dir"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out, err = train.communicate(timeout=600)
    final = c.get_run(run.info.run_id)
    history = {key: c.get_metric_history(run.info.run_id, key) for key in final.data.metrics}
    for key, points in history.items():
        twice = [s for s, n in Counter((m.step, m.timestamp) for m in points).items() if n > 1]
        assert not twice, f"metric `{key}` has points twice: {twice[:5]}"
    if train.returncode != 0:  # it gave up: the message names the store
        assert team["url"] in err or "PostgreSQL" in err or "[tracking] uri" in err, err[-3000:]
        return
    assert json.loads(out)["run_id"] == run.info.run_id
    assert final.info.status == "FINISHED" and final.info.end_time > restart_at * 1000, final.info  # it spanned it
    per_epoch = min(m.step for m in history["val_loss"]) + 1  # global steps of one epoch
    steps = sorted(m.step for m in history["train_loss_step"])
    assert steps == list(range(epochs * per_epoch)), f"steps lost or doubled: {len(steps)} of {epochs * per_epoch}"
    for key in ("val_loss", "val_acc", "train_loss_epoch", "train_acc_epoch"):
        assert sorted(m.step for m in history[key]) == [per_epoch * (e + 1) - 1 for e in range(epochs)], key


# ---------------------------------------------------------------------------------------------------------------
def _target_runs(c, name: str) -> list:
    exp = c.get_experiment_by_name(name)
    return c.search_runs([exp.experiment_id], max_results=1000) if exp else []


def test_store_migrate_killed_then_rerun(team):
    root = make_project(team["base"], "moving")
    versions = tool("seed", str(root), "moving", [0.9, 0.6, 0.8, 0.7, 0.95, 0.85], 400)
    assert versions == [1, 2, 3, 4, 5, 6]
    for args in (("promote", "moving", "1"), ("promote", "moving", "3"), ("delete", "moving", "2")):
        r = aiwb("models", *args, cwd=root)
        assert r.returncode == 0, r.stderr[-2000:]
    db = root / ".aiwb" / "mlflow.db"
    before = (db.stat().st_size, __import__("hashlib").sha256(db.read_bytes()).hexdigest())
    c = server_client(team)
    cmd = [AIWB, "store", "migrate", "--to", team["url"], "--json"]
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=BASE_ENV)
    try:
        wait_for(lambda: len(_target_runs(c, "moving")) >= 2 or proc.poll() is not None, "two runs copied", 240, 0.05)
    finally:
        proc.kill()  # SIGKILL, midway
        proc.wait(30)
    assert len(_target_runs(c, "moving")) < 6 or proc.returncode == 0  # stopped with runs still to copy
    r = aiwb("store", "migrate", "--to", team["url"], "--json", cwd=root, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    second = json.loads(r.stdout)
    assert second["ok"] and second["copied"]["model_versions"] == 5 and second["copied"]["aliases"] == 1, second
    checks = {ch["what"]: ch for ch in second["checks"]}
    assert checks["runs"]["target"] == 6 and checks["runs copied twice"]["target"] == 0
    assert checks["metric points"]["source"] == 6 * 401 and checks["artifact files"]["source"] == 6 * 3, checks
    froms = Counter(run.data.tags["aiwb.migrated.from"] for run in _target_runs(c, "moving"))
    assert len(froms) == 6 and set(froms.values()) == {1}  # nothing duplicated by the kill
    model = c.get_registered_model("moving")
    assert dict(model.aliases) == {"champion": "3"}
    assert model.tags.keys() >= {"aiwb.history.000001", "aiwb.history.000002"}
    assert sorted(int(v.version) for v in c.search_model_versions("name='moving'")) == [1, 3, 4, 5, 6]
    assert (db.stat().st_size, __import__("hashlib").sha256(db.read_bytes()).hexdigest()) == before  # source intact
    third = aiwb("store", "migrate", "--to", team["url"], cwd=root, timeout=600)
    assert third.returncode == 0 and "copied: 0 experiments, 0 runs, 0 logged models" in third.stdout, third.stdout
    assert "skipped (already there):" in third.stdout and "6 runs" in third.stdout, third.stdout
    # an artifact lost on the server: the verification says so, exit 1
    exp = c.get_experiment_by_name("moving").experiment_id  # this project's: others on the server log notes.txt too
    lost = next(p for p in (team["dir"] / "artifacts" / exp).rglob("notes.txt"))
    lost.unlink()
    r = aiwb("store", "migrate", "--to", team["url"], cwd=root, timeout=600)
    assert r.returncode == 1 and "MISMATCH  artifact files: source 18, target 17" in r.stdout, r.stdout[-3000:]
    r = aiwb("store", "migrate", "--to", f"sqlite:///{db}", cwd=root)
    assert r.returncode == 2 and "--to" in r.stderr, r.stderr[-2000:]


def new_database(team, name: str) -> str:
    "A fresh database on the team's PostgreSQL, owned by the `aiwb` role; its URI (the password from PGPASSFILE)."
    import psycopg

    port = team["up"]["postgres"]["port"]
    with psycopg.connect(host=str(team["dir"] / "run"), port=port, user="postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}" OWNER aiwb')
    return f"postgresql+psycopg://aiwb@127.0.0.1:{port}/{name}"


def test_store_migrate_copies_jobs_and_their_schedules(team):
    root = make_project(team["base"], "jobsmove")
    cells = [
        {"cell_type": "code", "execution_count": None, "id": "x", "metadata": {}, "outputs": [], "source": "x = 1"}
    ]
    notebook = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
                "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    (root / "nbs" / "t.ipynb").write_text(json.dumps(notebook))
    r = aiwb("jobs", "add", "nightly", "nbs/t.ipynb", "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
             "--catchup", "latest", "--json", cwd=root)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    since = json.loads(r.stdout)["created_at"]  # the schedule's ticks count from here
    r = aiwb("jobs", "run", "nbs/t.ipynb", "--json", cwd=root)
    assert r.returncode == 0 and json.loads(r.stdout)["status"] == "succeeded", r.stderr[-2000:]
    store = new_database(team, "jobs_moved")
    env = {**BASE_ENV, "PGPASSFILE": str(team["dir"] / "pgpass")}
    r = aiwb("store", "migrate", "--to", team["url"], "--jobs-to", store, "--json", cwd=root, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    first = json.loads(r.stdout)
    copied = {name: rows["copied"] for name, rows in first["jobs"].items()}
    assert copied == {"jobs": 2, "schedules": 1, "runs": 1, "reproductions": 0}, first["jobs"]
    assert first["ok"] and {c["what"] for c in first["checks"]} >= {"job store: schedules", "job store: runs"}
    again = aiwb("store", "migrate", "--to", team["url"], "--jobs-to", store, cwd=root, env=env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    for line in ("job store jobs: copied 0, skipped 2", "job store schedules: copied 0, skipped 1",
                 "job store runs: copied 0, skipped 1", "copied: 0 experiments, 0 runs"):  # fmt: skip
        assert line in again.stdout, again.stdout
    # a machine of the team on the new store: the job, its run, and its schedule, which fires there
    there = make_project(team["base"], "jobsmove-there", team["url"])
    ini = there / "settings.ini"
    ini.write_text(ini.read_text().replace("[jobs]\n", f"[jobs]\nstore = {store}\n", 1))
    listed = aiwb("jobs", "list", "--json", cwd=there, env=env)
    assert listed.returncode == 0, listed.stderr[-2000:]
    jobs = {j["name"]: j for j in json.loads(listed.stdout)}
    assert jobs["nightly"]["cron"] == "0 3 * * *" and jobs["nb:nbs/t.ipynb"]["last_run"]["status"] == "succeeded"
    fired = tool("fire_ticks", str(there), since + 2 * 86400 + 60, env=env)  # two days on: catch-up `latest` fires one
    assert [f["job"] for f in fired] == ["nightly"], fired
    from datetime import datetime
    from zoneinfo import ZoneInfo

    tick = datetime.fromisoformat(fired[0]["tick"]).astimezone(ZoneInfo("Europe/Paris"))
    assert (tick.hour, tick.minute) == (3, 0) and since < tick.timestamp() <= since + 2 * 86400 + 60, tick
