"""The lifecycle test a second time, unchanged, as a team that outgrew the laptop runs it: against the servers of
`aiwb team up` and on a Dask cluster (issue 12's and issue 13's "done when").

A module fixture starts, in a temporary folder, PostgreSQL and the MLflow server (`aiwb team up`) and a Dask cluster
(`aiwb cluster up --workers 2`, its workers started without any `AIWB_*` setting, as on other machines), and points
every `aiwb` of the lifecycle at them through the environment its processes inherit: `AIWB_TRACKING_URI` (the MLflow
server), `AIWB_JOBS_EXECUTOR=dask` and `AIWB_JOBS_DASK_SCHEDULER` (the two lines of the issue), and `AIWB_JOBS_STORE`:
each project's job store is a database of its own on the team's PostgreSQL (`PGPASSFILE` as `aiwb team up` prints it).
Its data sets' projects (TEAM_DATASETS below) share the one MLflow server, as a team's projects do. After the class,
a sweep runs in one project, and every job run in each project's store must have run on a worker of the cluster.
Everything is stopped by pid. `AIWB_TEAM_TRACKING_URI=http://...` uses a team server already running (the job stores
stay the projects' SQLite files); `AIWB_SKIP_TEAM_LIFECYCLE=1` skips the module.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

if os.environ.get("AIWB_SKIP_TEAM_LIFECYCLE"):
    pytest.skip("AIWB_SKIP_TEAM_LIFECYCLE is set", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
from lifecycle_data import DATASETS  # noqa: E402
from team_servers import stop_team  # noqa: E402
from test_lifecycle import TestLifecycle, life_state  # noqa: E402, F401 - collected here again, unchanged

# The data sets taken through the lifecycle against the team's servers. One by default (wine, a classifier): the
# lifecycle steps are the SQLite module's, unchanged, and both data sets run there; `make test` stays under 25 minutes.
# `AIWB_TEAM_LIFECYCLE_DATASETS=wine,diabetes` runs both against the one server, as a team's projects share it.
TEAM_DATASETS = [k.strip() for k in os.environ.get("AIWB_TEAM_LIFECYCLE_DATASETS", "wine").split(",") if k.strip()]
unknown = sorted(set(TEAM_DATASETS) - set(DATASETS))
assert not unknown, f"AIWB_TEAM_LIFECYCLE_DATASETS names {unknown}; data sets: {', '.join(DATASETS)}"
life = pytest.fixture(scope="class", params=TEAM_DATASETS, name="life")(life_state)

AIWB = str(Path(sys.executable).parent / "aiwb")
SETTINGS = ("AIWB_TRACKING_URI", "AIWB_JOBS_EXECUTOR", "AIWB_JOBS_DASK_SCHEDULER", "AIWB_JOBS_STORE", "PGPASSFILE")
PROJECTS: dict[str, Path] = {}  # data set -> its lifecycle project, as the class made it


def aiwb_json(*args, cwd, env=None, timeout=300) -> dict:
    r = subprocess.run([AIWB, *map(str, args), "--json"], capture_output=True, text=True, cwd=cwd, env=env,
                       timeout=timeout)  # fmt: skip
    assert r.returncode == 0, f"aiwb {' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return json.loads(r.stdout)


def job_databases(team: dict) -> dict[str, str]:
    "A jobs database per lifecycle project on the team's PostgreSQL (as `aiwb team up` makes its own), by data set."
    import psycopg
    from psycopg import sql

    store, socket_dir = team["settings"]["jobs.store"], Path(team["dir"]) / "run"
    with psycopg.connect(host=str(socket_dir), port=team["postgres"]["port"], user="postgres", dbname="postgres",
                         autocommit=True, connect_timeout=10) as c:  # fmt: skip
        owner = store.split("://", 1)[1].split("@", 1)[0]
        for key in TEAM_DATASETS:
            c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(f"aiwb_jobs_{key}"),
                                                                     sql.Identifier(owner)))  # fmt: skip
    return {key: f"{store.rsplit('/', 1)[0]}/aiwb_jobs_{key}" for key in TEAM_DATASETS}


def stop_cluster(project: Path) -> None:
    subprocess.run([AIWB, "cluster", "down"], capture_output=True, cwd=project, timeout=120)
    record = project / ".aiwb" / "cluster.json"
    if record.exists():  # `down` failed: stop what it recorded by pid
        state = json.loads(record.read_text())
        for p in [state.get("scheduler") or {}, *state.get("workers", [])]:
            if p.get("pid") and psutil.pid_exists(p["pid"]):
                os.killpg(p["pid"], signal.SIGKILL)


@pytest.fixture(scope="module", autouse=True)
def team():
    "The team's servers and Dask cluster, and the settings that point the lifecycle at them (put back after)."
    before = {k: os.environ.get(k) for k in SETTINGS}
    base = Path(tempfile.mkdtemp(prefix="aiwb-team-life-"))
    base.chmod(0o755)  # as root the cluster runs as `postgres`, which must reach its folder
    folder, cluster = base / "team", base / "cluster"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIWB_")}  # workers on "other machines"
    try:
        given = os.environ.get("AIWB_TEAM_TRACKING_URI")
        stores: dict[str, str] = {}
        if given:
            url = given
        else:
            up = aiwb_json("team", "up", "--dir", folder, cwd=base)
            url, stores = up["settings"]["tracking.uri"], job_databases(up)
            os.environ["PGPASSFILE"] = up["pgpass"]
        subprocess.run([AIWB, "init", cluster], check=True, capture_output=True, env=clean, timeout=120)
        dask = aiwb_json("cluster", "up", "--workers", "2", "--threads", "1", cwd=cluster, env=clean)
        assert dask["up"] and len(dask["workers"]) == 2, dask
        os.environ.update(AIWB_TRACKING_URI=url, AIWB_JOBS_EXECUTOR="dask", AIWB_JOBS_DASK_SCHEDULER=dask["address"])
        yield {"tracking_uri": url, "stores": stores, "workers": {w["address"] for w in dask["workers"]}}
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        stop_cluster(cluster)
        stop_team(folder / "team.json")
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def project_job_store(request, team):
    "A lifecycle step's `aiwb` processes use its project's own jobs database (the class's tests only)."
    if request.node.cls is not TestLifecycle:
        yield
        return
    state = request.getfixturevalue("life")
    PROJECTS[state["ds"].key] = state["root"]
    key = state["ds"].key
    if team["stores"]:
        os.environ["AIWB_JOBS_STORE"] = team["stores"][key]
    try:
        yield
    finally:
        os.environ.pop("AIWB_JOBS_STORE", None)


def runs_of(key: str, stores: dict[str, str]) -> list[dict]:
    "Every job run in the store of data set `key`'s project."
    from aiworkbench.config import load_settings
    from aiworkbench.jobs.store import list_runs

    environ = {**os.environ, **({"AIWB_JOBS_STORE": stores[key]} if stores else {})}
    return list_runs(limit=10_000, settings=load_settings(PROJECTS[key], environ=environ))


def test_every_job_schedule_retraining_and_sweep_ran_on_the_dask_cluster(team):
    "After the class: a sweep in one project; then every run of each project's job store ran on a cluster worker."
    assert sorted(PROJECTS) == sorted(TEAM_DATASETS), "the lifecycle class did not run for every data set"
    key = TEAM_DATASETS[0]
    root, env = PROJECTS[key], {**os.environ, **({"AIWB_JOBS_STORE": team["stores"][key]} if team["stores"] else {})}
    report = aiwb_json("sweep", "nbs/retrain.ipynb", "-p", "epochs=choice(1,2)", "--trials", "2", "--parallel", "2",
                       "--metric", "val_loss", "--name", "team-sweep", cwd=root, env=env, timeout=900)  # fmt: skip
    assert report["counts"] == {"complete": 2, "fail": 0, "running": 0}, report["trials"]
    sweep_runs = {t["job_run"] for t in report["trials"]}
    for k in TEAM_DATASETS:
        runs = runs_of(k, team["stores"])
        kinds = {
            "jobs run": [r for r in runs if r["job_name"] == "nb:nbs/02_validate_data.ipynb"],
            "cron schedule": [r for r in runs if r["job_name"] == "check-train" and r["scheduled_for"]],
            "retraining": [r for r in runs if r["job_name"] == "nb:nbs/retrain.ipynb" and not r["reproduce_of"]],
            "reproduction": [r for r in runs if r["reproduce_of"]],
            "REST": [r for r in runs if r["job_name"] == "rest-check"],
        }
        if k == key:
            kinds["sweep"] = [r for r in runs if r["id"] in sweep_runs]
        assert all(kinds.values()), {kind: len(found) for kind, found in kinds.items()}
        # a cron tick the stopped `aiwb scheduler --stop-after` had queued waits for the next scheduler: never ran
        waiting = [r for r in runs if r["status"] == "queued"]
        assert all(r["scheduled_for"] and r["job_name"] == "check-train" for r in waiting), waiting
        ran = [r for r in runs if r["status"] != "queued"]
        elsewhere = [(r["job_name"], r["status"], r["executor"], r["worker"]) for r in ran
                     if r["executor"] != "dask" or r["worker"] not in team["workers"]]  # fmt: skip
        assert not elsewhere, f"{k}: runs not on a worker of the cluster {sorted(team['workers'])}: {elsewhere}"
    assert not (root / ".aiwb" / "mlflow.db").exists()  # the trials logged to the team's server, not a local store
