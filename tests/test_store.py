"One store: the lifecycle as a user runs it, each `aiwb` step its own process, and nothing outside `.aiwb/`."

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sklearn.datasets import load_wine

AIWB = str(Path(sys.executable).parent / "aiwb")
MIGRATION_LINE = "Creating initial MLflow database tables"


def clean_env(**extra: str) -> dict[str, str]:
    "The environment without MLflow's global URIs, so no step can pass because an earlier one left them set."
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AIWB_"))}
    return {**env, **extra}


def stray_stores(*folders: Path) -> list[Path]:
    "Every `mlflow.db` or `mlruns/` under `folders`, except inside a project's `.aiwb/`."
    found = []
    for folder in folders:
        for pattern in ("mlflow.db", "mlruns"):
            found += [p for p in folder.rglob(pattern) if ".aiwb" not in p.relative_to(folder).parts]
    return found


def python(code: str, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, env=clean_env(), text=True, stdout=subprocess.PIPE, **kw
    )


def register_copy(root: Path, name: str, versions: int = 1) -> None:
    "Register wine v1's model as `versions` versions of `name` (setup, in a process of its own)."
    code = (
        "from aiworkbench.registry import register_model, resolve_version\n"
        "source = resolve_version('wine', 1).source\n"
        f"for _ in range({versions}):\n    register_model(source, {name!r})\n"
    )
    proc = python(code, root, stderr=subprocess.PIPE)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "A fresh `aiwb init` project with the wine data, its contract, and model `wine` v1 and v2 (no champion yet)."
    base = tmp_path_factory.mktemp("store")
    run = lambda *args, cwd: subprocess.run(  # noqa: E731
        [AIWB, *map(str, args)], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=300
    )
    r = run("init", "p", cwd=base)
    assert r.returncode == 0, r.stderr
    root = base / "p"
    load_wine(as_frame=True).frame.to_csv(root / "data" / "wine.csv", index=False)
    r = run("data", "infer", "data/wine.csv", "-o", "contracts/wine.yaml", "--target", "target", cwd=root)
    assert r.returncode == 0, r.stderr
    for version, epochs in ((1, 1), (2, 2)):
        r = run(
            "train", "data/wine.csv", "--contract", "contracts/wine.yaml", "--epochs", epochs,
            "--register", "wine", "--json", cwd=root,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-3000:]
        assert json.loads(r.stdout)["registered"]["version"] == version
        assert MIGRATION_LINE not in r.stderr + r.stdout  # MLflow's migration lines go to the log file
    assert MIGRATION_LINE in (root / ".aiwb" / "logs" / "mlflow.log").read_text()
    return root


def run_in(project: Path, aiwb, *args, cwd: Path | None = None, **kw):
    "`aiwb ARGS` from the project (or from `cwd` with AIWB_ROOT naming the project)."
    env = clean_env() if cwd is None else clean_env(AIWB_ROOT=str(project))
    return aiwb(*args, cwd=cwd or project, env=env, **kw)


def test_lifecycle_each_step_its_own_process_one_store(project, aiwb, tmp_path):
    elsewhere = tmp_path / "elsewhere"  # a user's shell somewhere else, the project named by AIWB_ROOT
    elsewhere.mkdir()
    r = run_in(project, aiwb, "models", "rollback", "wine")
    assert r.code == 2 and "model `wine` has no `champion` to roll back" in r.err, r.err

    r = run_in(project, aiwb, "models", "promote", "wine", "1", cwd=elsewhere)
    assert r.code == 0, r.err  # it exited 1 before: "Logged model ... not found" through MLflow's global URI
    assert r.out.strip() == "wine: champion (none) -> v1"
    r = run_in(project, aiwb, "models", "rollback", "wine")
    assert r.code == 2 and "no earlier version held it: nothing to roll back to" in r.err, r.err
    r = run_in(project, aiwb, "models", "promote", "wine", "2", "--min", "val_acc=0", "--reason", "better")
    assert r.code == 0 and r.out.strip() == "wine: champion v1 -> v2", r.err

    r = run_in(project, aiwb, "models", "show", "wine", "--json", cwd=elsewhere)
    assert r.code == 0, r.err
    shown = r.json()
    assert shown["aliases"] == {"champion": 2}
    assert [(v["version"], v["aliases"]) for v in shown["versions"]] == [(1, []), (2, ["champion"])]
    assert all(v["source"].startswith((project / ".aiwb").as_uri()) for v in shown["versions"])

    r = run_in(project, aiwb, "runs", "list", "--json")
    assert r.code == 0, r.err
    runs = r.json()
    assert [x["status"] for x in runs] == ["FINISHED", "FINISHED"]
    assert {x["run_id"] for x in runs} == {v["run_id"] for v in shown["versions"]}
    assert all(x["params"]["accelerator"] == "cpu" and x["params"]["devices"] == "1" for x in runs)

    r = run_in(project, aiwb, "models", "rollback", "wine", "--reason", "regression", cwd=elsewhere)
    assert r.code == 0 and r.out.strip() == "wine: champion v2 -> v1", r.err
    r = run_in(project, aiwb, "models", "rollback", "wine")
    assert r.code == 2 and "nothing to roll back to" in r.err, r.err
    r = run_in(project, aiwb, "models", "history", "wine", "--json")
    assert r.code == 0, r.err
    moves = [(e["seq"], e["kind"], e["alias"], e["from"], e["to"], e["why"]) for e in r.json()]
    assert moves == [
        (1, "promote", "champion", None, 1, ""),
        (2, "promote", "champion", 1, 2, "better"),
        (3, "rollback", "champion", 2, 1, "regression"),
    ]
    assert stray_stores(project, elsewhere) == []
    assert sorted(p.name for p in (project / ".aiwb").glob("mlflow.db*")) == ["mlflow.db"]


def test_promoting_a_deleted_version_is_refused_and_changes_nothing(project, aiwb):
    register_copy(project, "deleted", versions=2)
    r = run_in(project, aiwb, "models", "delete", "deleted", "1")
    assert r.code == 0 and r.out.strip() == "deleted: deleted v1", r.err
    r = run_in(project, aiwb, "models", "promote", "deleted", "1")
    assert r.code == 2, r.err
    assert "model `deleted` has no version `1`: it was deleted by" in r.err and "it has: 2" in r.err, r.err
    show = run_in(project, aiwb, "models", "show", "deleted", "--json").json()
    assert (show["aliases"], [v["version"] for v in show["versions"]]) == ({}, [2])
    assert run_in(project, aiwb, "models", "history", "deleted", "--json").json() == []
    r = run_in(project, aiwb, "models", "promote", "deleted", "2")
    assert r.code == 0, r.err
    r = run_in(project, aiwb, "models", "delete", "deleted", "2")
    assert r.code == 2 and "holds alias(es) champion" in r.err, r.err
    assert stray_stores(project) == []


def test_training_on_a_single_class_is_refused_before_any_run(project, aiwb):
    wine = load_wine(as_frame=True).frame
    wine[wine.target == 0].to_csv(project / "data" / "one_class.csv", index=False)
    before = run_in(project, aiwb, "runs", "list", "--json").json()
    r = run_in(
        project, aiwb, "train", "data/one_class.csv", "--contract", "contracts/wine.yaml", "--register", "wine",
        timeout=300,
    )  # fmt: skip
    assert r.code == 2, r.err[-3000:]
    assert "data/one_class.csv: target `target` has the single class `0` in all 59 training rows" in r.err, r.err
    after = run_in(project, aiwb, "runs", "list", "--json").json()
    assert [x["run_id"] for x in after] == [x["run_id"] for x in before]  # no run, no version half-written
    versions = [v["version"] for v in run_in(project, aiwb, "models", "show", "wine", "--json").json()["versions"]]
    assert versions == [1, 2]


def test_promotion_while_another_registry_change_runs(project, aiwb):
    "The documented behaviour: wait up to --wait seconds for the other change, then exit 2 having changed nothing."
    register_copy(project, "locked")
    holder = python(
        "import sys\nfrom aiworkbench.config import load_settings\nfrom aiworkbench.registry import write_lock\n"
        "with write_lock(settings=load_settings()):\n    print('held', flush=True)\n    sys.stdin.readline()\n",
        project,
        stdin=subprocess.PIPE,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        r = run_in(project, aiwb, "models", "promote", "locked", "1", "--wait", "1")
        assert r.code == 2, r.err
        assert "another registry change in this project" in r.err and ".registry.lock" in r.err, r.err
        assert run_in(project, aiwb, "models", "history", "locked", "--json").json() == []
        waiting = subprocess.Popen(
            [AIWB, "models", "promote", "locked", "1", "--wait", "120"],
            cwd=project,
            env=clean_env(),
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        holder.stdin.write("done\n")
        holder.stdin.flush()
        assert holder.wait(timeout=60) == 0
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0 and out.strip() == "locked: champion (none) -> v1", err
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_a_sigkilled_training_run_is_shown_killed(project, aiwb):
    from mlflow import MlflowClient

    store = MlflowClient(f"sqlite:///{project / '.aiwb' / 'mlflow.db'}")
    args = ["train", "data/wine.csv", "--contract", "contracts/wine.yaml", "--epochs", "5000", "--json"]
    proc = subprocess.Popen(
        [AIWB, *args], cwd=project, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline, running = time.monotonic() + 240, []
        while not running and time.monotonic() < deadline and proc.poll() is None:
            experiments = [e.experiment_id for e in store.search_experiments()]
            running = [
                r for r in store.search_runs(experiments) if r.data.tags.get("aiwb.pid") == str(proc.pid)
            ]  # the run exists once its lineage is logged
            if not running:
                time.sleep(0.2)
        assert running, f"no run of pid {proc.pid} appeared (exit code {proc.poll()})"
        assert running[0].info.status == "RUNNING"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    run_id = running[0].info.run_id
    r = run_in(project, aiwb, "runs", "list", "--json")
    assert r.code == 0, r.err
    shown = {x["run_id"]: x for x in r.json()}
    assert shown[run_id]["status"] == "KILLED"
    assert f"process {proc.pid} on" in shown[run_id]["lineage"]["aiwb.ended"]
    assert store.get_run(run_id).info.status == "KILLED"  # recorded in the store, not only shown
    assert [x["status"] for x in shown.values()].count("RUNNING") == 0
