"""`aiwb team up / status / down` in their own processes, against the real PostgreSQL and MLflow server they start.

One up/down cycle for the whole module: the fixture starts the servers with `aiwb team up` in a temporary project and,
whatever the tests did, stops what is left of them by pid. The tests run in file order; `test_down` comes last.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from team_servers import running, stop_team

AIWB = str(Path(sys.executable).parent / "aiwb")


def aiwb(*args, cwd, env=None, timeout=240) -> subprocess.CompletedProcess:
    return subprocess.run([AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=timeout)


@pytest.fixture(scope="module")
def team():
    # A folder others may enter: as root the cluster runs as `postgres`, which must reach its data folder.
    base = Path(tempfile.mkdtemp(prefix="aiwb-team-"))
    base.chmod(0o755)
    project = base / "proj"
    assert aiwb("init", project, cwd=base).returncode == 0
    t0 = time.perf_counter()
    r = aiwb("team", "up", "--json", cwd=project)
    up_s = time.perf_counter() - t0
    folder = project / ".aiwb" / "team"
    try:
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"project": project, "dir": folder, "up": json.loads(r.stdout), "up_s": up_s}
    finally:
        stop_team(folder / "team.json")
        shutil.rmtree(base, ignore_errors=True)


def test_up_prints_the_settings(team):
    up = team["up"]
    assert up["up"] and up["done"] == {"postgres": "created and started", "mlflow": "started"}
    assert up["dir"] == str(team["dir"]) and up["postgres"]["data_dir"] == str(team["dir"] / "pgdata")
    assert up["settings"]["tracking.uri"] == f"http://127.0.0.1:{up['mlflow']['port']}"
    assert up["settings"]["jobs.store"] == f"postgresql+psycopg://aiwb@127.0.0.1:{up['postgres']['port']}/aiwb_jobs"
    assert running(up["postgres"]["pid"]) and running(up["mlflow"]["pid"])
    print(f"\naiwb team up (cold): {team['up_s']:.1f} s")


def test_a_run_logged_over_http_lands_in_postgres_and_the_artifact_folder(team, tmp_path):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=team["up"]["settings"]["tracking.uri"])
    run = client.create_run(client.create_experiment("team-smoke"))
    client.log_param(run.info.run_id, "lr", "0.1")
    for step in range(3):
        client.log_metric(run.info.run_id, "loss", 1.0 / (step + 1), step=step)
    (tmp_path / "note.txt").write_text("hello team")
    client.log_artifact(run.info.run_id, str(tmp_path / "note.txt"))
    client.set_terminated(run.info.run_id)
    got = client.get_run(run.info.run_id)
    assert got.data.params == {"lr": "0.1"} and got.data.metrics == {"loss": pytest.approx(1 / 3)}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [0, 1, 2]
    assert got.info.artifact_uri.startswith("mlflow-artifacts:")
    stored = list((team["dir"] / "artifacts").rglob("note.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "hello team" and run.info.run_id in str(stored[0])


def test_status_says_both_run(team):
    t0 = time.perf_counter()
    r = aiwb("team", "status", cwd=team["project"])
    print(f"\naiwb team status: {time.perf_counter() - t0:.2f} s")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("PostgreSQL  up") and f"MLflow      up    pid {team['up']['mlflow']['pid']}," in r.stdout
    status = json.loads(aiwb("team", "status", "--json", cwd=team["project"]).stdout)
    assert status["up"] and status["mlflow"]["health"] == "ok"


def test_a_second_up_is_a_no_op(team):
    r = aiwb("team", "up", cwd=team["project"])
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("PostgreSQL: already running, pid " + str(team["up"]["postgres"]["pid"]))
    assert lines[1].startswith("MLflow:     already running, pid " + str(team["up"]["mlflow"]["pid"]))
    assert f"uri = {team['up']['settings']['tracking.uri']}" in lines
    assert f"store = {team['up']['settings']['jobs.store']}" in lines
    assert urlsplit(team["up"]["settings"]["jobs.store"]).password is None  # the password stays in the pgpass file
    assert f"export PGPASSFILE={team['up']['pgpass']}" in r.stdout


def test_down(team):
    pids = [team["up"]["postgres"]["pid"], team["up"]["mlflow"]["pid"]]
    t0 = time.perf_counter()
    r = aiwb("team", "down", cwd=team["project"])
    print(f"\naiwb team down: {time.perf_counter() - t0:.2f} s")
    assert (r.returncode, r.stdout) == (0, "MLflow: stopped\nPostgreSQL: stopped\n"), r.stderr
    assert not any(running(p) for p in pids)
    assert aiwb("team", "status", cwd=team["project"]).returncode == 1
    r = aiwb("team", "down", cwd=team["project"])
    assert (r.returncode, r.stdout) == (0, "MLflow: not running\nPostgreSQL: not running\n")


# Bad input: exit 2, the message naming the option or setting, nothing started.


def test_a_dir_that_is_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    r = aiwb("team", "up", "--dir", tmp_path / "file", cwd=tmp_path)
    assert r.returncode == 2 and "--dir" in r.stderr and "is a file" in r.stderr, r.stderr


def test_ports_in_use_or_out_of_range(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for option in ("--port-db", "--port-mlflow"):
            r = aiwb("team", "up", "--dir", tmp_path / "t", option, port, cwd=tmp_path)
            assert r.returncode == 2 and f"{option} {port} is in use" in r.stderr, r.stderr
    r = aiwb("team", "up", "--dir", tmp_path / "t", "--port-db", 70000, cwd=tmp_path)
    assert r.returncode == 2 and "--port-db" in r.stderr
    r = aiwb("team", "up", "--dir", tmp_path / "t", "--port-db", 5999, "--port-mlflow", 5999, cwd=tmp_path)
    assert r.returncode == 2 and "both 5999" in r.stderr
    assert not (tmp_path / "t" / "pgdata").exists()


def test_no_postgresql_names_the_package(tmp_path):
    env = {**os.environ, "AIWB_PG_BIN": str(tmp_path)}
    r = aiwb("team", "up", "--dir", tmp_path / "t", "--json", cwd=tmp_path, env=env)
    assert r.returncode == 2 and "`postgresql`" in json.loads(r.stdout)["message"], r.stdout
    assert not (tmp_path / "t").exists()


def test_outside_a_project_without_dir(tmp_path):
    r = aiwb("team", "status", cwd=tmp_path)
    assert r.returncode == 2 and "aiwb init" in r.stderr, r.stderr
