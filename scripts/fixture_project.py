"""A small aiworkbench project for the server, UI tests, `make lab` demos and `bench/panel.py`.

`make_project(root, runs=, models=, jobs=, job_runs=)` writes settings.ini, a notebook with a `parameters` cell,
MLflow runs with metrics, registered models with two versions each (the champion at v1), and jobs with finished
runs, straight through MlflowClient and the job store so that large fixtures build in seconds.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

NOTEBOOK = {
    "cells": [
        {"cell_type": "markdown", "id": "title", "metadata": {}, "source": "# train\nA job notebook."},
        {
            "cell_type": "code",
            "id": "params",
            "metadata": {"tags": ["parameters"]},
            "execution_count": None,
            "outputs": [],
            "source": 'epochs = 2\nlr = 0.1\nlabel = "demo"',
        },
        {
            "cell_type": "code",
            "id": "work",
            "metadata": {},
            "execution_count": None,
            "outputs": [],
            "source": 'print(f"trained {label} for {epochs} epochs at lr {lr}")',
        },
    ],
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    "nbformat": 4,
    "nbformat_minor": 5,
}


def make_project(
    root: Path,
    runs: int = 3,  # MLflow runs (each with metrics val_acc and val_loss)
    models: int = 1,  # registered models `model-00` ..., two versions each, champion at v1
    jobs: int = 0,  # jobs `job-00` ... over nbs/train.ipynb
    job_runs: int = 0,  # finished runs spread over the jobs
) -> Path:
    "Write the fixture project at `root`; returns the root."
    import mlflow

    from aiworkbench.config import load_settings
    from aiworkbench.jobs.store import create_job, submit_run, tables, write
    from aiworkbench.registry import promote
    from aiworkbench.tracking import client, experiment_id

    root = Path(root)
    (root / "nbs").mkdir(parents=True, exist_ok=True)
    (root / "settings.ini").write_text("[aiworkbench]\nname = fixture\n")
    (root / "nbs" / "train.ipynb").write_text(json.dumps(NOTEBOOK, indent=1))
    settings = load_settings(root)
    c = client(settings=settings)
    eid = experiment_id("fixture", settings=settings)
    run_ids = []
    for i in range(max(runs, 2 * models)):
        r = c.create_run(eid, run_name=f"run-{i:04d}", tags={"aiwb.notebook": "nbs/train.ipynb"})
        acc = 0.7 + 0.2 * (i % 2)
        c.log_batch(
            r.info.run_id,
            metrics=[
                mlflow.entities.Metric("val_acc", acc, int(time.time() * 1000), 0),
                mlflow.entities.Metric("val_loss", 1 - acc, int(time.time() * 1000), 0),
            ],
            params=[mlflow.entities.Param("epochs", str(1 + i % 3))],
        )
        c.set_terminated(r.info.run_id)
        run_ids.append(r.info.run_id)
    for m in range(models):
        name = f"model-{m:02d}"
        c.create_registered_model(name)
        for v in (1, 2):
            rid = run_ids[2 * m + v - 1]
            folder = settings.artifacts_dir / "fixture-models" / name / f"v{v}"
            folder.mkdir(parents=True, exist_ok=True)
            mlflow.models.Model(run_id=rid).add_flavor("python_function", loader_module="fixture").save(
                folder / "MLmodel"
            )
            c.create_model_version(name, str(folder), run_id=rid)
        promote(name, 1, settings=settings, reason="fixture")
    made = [create_job({"name": f"job-{j:02d}", "notebook": "nbs/train.ipynb"}, settings=settings) for j in range(jobs)]
    if made and job_runs:
        runs_t = tables().tables["runs"]
        with write(settings=settings) as conn:
            for k in range(job_runs):
                run = submit_run(made[k % len(made)], settings=settings, conn=conn)
                status = "succeeded" if k % 5 else "failed"
                conn.execute(
                    runs_t.update()
                    .where(runs_t.c.id == run["id"])
                    .values(status=status, started_at=time.time(), finished_at=time.time())
                )
    return root


if __name__ == "__main__":
    make_project(Path(sys.argv[1]))
    print(sys.argv[1])
