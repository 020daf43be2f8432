"""Helpers of tests/test_team_stores.py, run in their own processes: seed a store with runs and model versions fast
(no training), log metric batches, promote from many processes at once, fire a store's due cron ticks."""

import json
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: aiwb_test_model\n"


def seed(root: str, name: str, accs: list[float], points: int = 50) -> list[int]:
    "One run per entry of `accs` (params, an `acc` metric, a `loss` history, a model folder), each registered."
    from mlflow.entities import Metric, Param

    from aiworkbench.config import load_settings
    from aiworkbench.registry import register_model
    from aiworkbench.tracking import client, experiment_id

    settings = load_settings(root)
    c = client(settings=settings)
    exp = experiment_id(settings.project.name, settings=settings)
    versions = []
    for i, acc in enumerate(accs):
        run = c.create_run(exp, run_name=f"{name}-{i}", tags={"aiwb.seeded": name})
        rid = run.info.run_id
        loss = [Metric("loss", 1.0 / (s + 1), 1_700_000_000_000 + s, s) for s in range(points)]
        c.log_batch(rid, metrics=[Metric("acc", acc, 1_700_000_000_000, 0), *loss],
                    params=[Param("lr", str(0.1 * (i + 1))), Param("i", str(i))])  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "model").mkdir()
            (Path(tmp) / "model" / "MLmodel").write_text(MLMODEL)
            (Path(tmp) / "model" / "weights.bin").write_bytes(bytes(range(256)) * (i + 1))
            (Path(tmp) / "notes.txt").write_text(f"run {i}\n")
            c.log_artifacts(rid, tmp)
        c.set_terminated(rid)
        versions.append(register_model(f"runs:/{rid}/model", name, settings=settings)["version"])
    return versions


def _promote(args) -> dict:
    root, name, version, i = args
    from aiworkbench.config import load_settings
    from aiworkbench.errors import WorkbenchError
    from aiworkbench.gates import Gate
    from aiworkbench.registry import promote

    try:
        moved = promote(name, version, Gate(min_metrics={"acc": 0.5}), reason=f"worker {i}",
                        wait=120, settings=load_settings(root))  # fmt: skip
        return {"i": i, "version": version, "ok": True, "from": moved["from"], "to": moved["to"]}
    except WorkbenchError as e:
        return {"i": i, "version": version, "ok": False, "error": type(e).__name__, "message": e.message[:300]}


def promote_many(root: str, name: str, versions: list[int], n: int) -> list[dict]:
    "`n` promotions of `name` at once, each in its own (forked) process, round-robin over `versions`."
    import aiworkbench.registry  # noqa: F401 - imported once, before the fork: each child opens its own connections

    with multiprocessing.get_context("fork").Pool(n) as pool:
        return pool.map(_promote, [(root, name, versions[i % len(versions)], i) for i in range(n)])


def promote_counted(root: str, name: str, version: int) -> list[str]:
    "Promote `version` of `name` through a gate once; the HTTP requests it made, each `METHOD path` (no query)."
    import requests

    from aiworkbench.config import load_settings
    from aiworkbench.gates import Gate
    from aiworkbench.registry import promote
    from aiworkbench.tracking import ensure_store

    settings = load_settings(root)
    server = ensure_store(settings=settings)  # the process's one check that the server answers, made first
    made, send = [], requests.Session.request

    def counted(self, method, url, *args, **kwargs):
        if url.startswith(server):  # the server's requests only (not MLflow's telemetry)
            made.append(f"{method} {url.split('/api/2.0/', 1)[-1].split('?')[0]}")
        return send(self, method, url, *args, **kwargs)

    requests.Session.request = counted
    try:
        promote(name, version, Gate(min_metrics={"acc": 0.5}), settings=settings)
    finally:
        requests.Session.request = send
    return made


def log_batches(root: str, run_id: str, batches: int, size: int = 1000) -> None:
    "Log `batches` batches of `size` points of `loss` (step = index) to `run_id`; print each acknowledged batch, when."
    from mlflow.entities import Metric

    from aiworkbench.config import load_settings
    from aiworkbench.tracking import client

    c = client(settings=load_settings(root))
    for b in range(batches):
        points = [Metric("loss", float(s), 1_700_000_000_000 + s, s) for s in range(b * size, (b + 1) * size)]
        c.log_batch(run_id, metrics=points)
        print(json.dumps({"acked": b, "at": time.time()}), flush=True)


def fire_ticks(root: str, now: float) -> list[dict]:
    "What a scheduler of project `root` fires at epoch time `now`: the runs its schedules queue (job, tick)."
    from aiworkbench.config import load_settings
    from aiworkbench.jobs.scheduler import fire_due_ticks

    return [
        {"job": r["job_name"], "tick": r["scheduled_for"]}
        for r in fire_due_ticks(now=now, settings=load_settings(root))
    ]


if __name__ == "__main__":
    fn, args = sys.argv[1], json.loads(sys.argv[2])
    tools = {
        "seed": seed,
        "promote_many": promote_many,
        "log_batches": log_batches,
        "fire_ticks": fire_ticks,
        "promote_counted": promote_counted,
    }
    out = tools[fn](*args)
    if out is not None:
        print(json.dumps(out))
