"""The Workbench panel in plain `jupyter lab` as installed in the venv (by `make lab-ext`), in headless Debian
Chromium: phase, KPIs, data, services, CI, promote/rollback, Run as job, and no Jupyter news prompt."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
from fixture_project import make_project  # noqa: E402
from lab import NEWS_PROMPT, api, drive, installed_labextension, jupyter_lab, lab_setting_default, missing  # noqa: E402
from panel_data import add_panel_data  # noqa: E402

SHOTS = Path(__file__).parent / "screenshots"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


def write_sweep_notebook(root: Path) -> None:
    "nbs/sweep.ipynb: one parameter `x`, its run logs `loss` = (x - 0.3)^2."
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        nbformat.v4.new_code_cell("x = 0.5", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, mlflow\nwith mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):\n"
            "    mlflow.log_metric('loss', (x - 0.3) ** 2)"
        ),
    ]
    nbformat.write(nb, root / "nbs" / "sweep.ipynb")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = missing()
    if why:
        pytest.fail(why)  # the project's setup installs these; a missing piece is a failure, not a skip
    root = make_project(tmp_path_factory.mktemp("ui") / "project", runs=3, models=1)
    add_panel_data(root, tables=2, ci_runs=2)
    write_sweep_notebook(root)
    with jupyter_lab(root, log=tmp_path_factory.mktemp("log") / "lab.log") as (base, token):
        yield base, token


def test_panel_phase_kpis_promote_rollback_and_run_as_job(lab):
    base, token = lab
    shown = [k["shown"] for k in api(base, token, "kpis")["kpis"]]  # before the promotions move deployment_cycle
    got = drive(base, token, SHOTS)
    phase, kpis = api(base, token, "phase"), api(base, token, "kpis")  # a 404 here is a failure
    assert got["phase_kpi_gaps"] == [], got["phase_kpi_gaps"]
    assert got["phase_number"] == [str(phase["phase"])]
    assert f"Phase {phase['phase']}: {phase['name']}" in got["phase_text"]
    for p, name in [(x["phase"], x["name"]) for x in phase["phases"]]:  # each group: its name and count from the API
        items = [item for item in phase["items"] if item["phase"] == p]
        assert f"{p}. {name} ({sum(i['ok'] for i in items)}/{len(items)})" in got["phase_text"], got["phase_text"]
        if p == phase["phase"] + 1:
            assert all(item["title"] in got["phase_text"] for item in items), got["phase_text"]
    assert kpis["kpis"] and got["kpi_keys"] == [k["key"] for k in kpis["kpis"]]
    assert all(k["title"] in got["kpis_text"] for k in kpis["kpis"])
    assert all(f"\n{s} · target" in got["kpis_text"] for s in shown), (shown, got["kpis_text"])  # the library's words
    assert "[object Object]" not in got["kpis_text"]
    assert (got["alias_before"], got["alias_after_promote"], got["alias_after_rollback"]) == (
        "champion@v1",
        "champion@v2",
        "champion@v1",
    )
    assert api(base, token, "models")["models"][0]["aliases"] == {"champion": 1}
    assert got["form_defaults"] == {"epochs": "2", "label": "demo"}
    job = api(base, token, "jobs/train-ui")
    assert job["parameters"] == {"epochs": 4, "lr": 0.1, "label": "demo"}
    runs = api(base, token, "jobs/train-ui/runs")["runs"]
    assert [r["status"] for r in runs] == ["succeeded"] and "succeeded" in got["job_run_text"]
    # data, services and CI: one row per table, view, build and CI run the API answers, in the library's words
    tables, views = api(base, token, "lake/tables")["tables"], api(base, token, "features")["views"]
    services, ci = api(base, token, "services")["services"], api(base, token, "ci/runs")["runs"]
    assert got["section_gaps"] == [], got["section_gaps"]
    assert got["tables"] == [t["table"] for t in tables] == ["tx", "tx-01"]
    assert all(f"{t['rows']} rows" in got["data_text"] and t["contract"] in got["data_text"] for t in tables)
    assert got["views"] == [v["name"] for v in views] == ["spend"]
    assert f"materialized v{views[0]['materialized_version']}" in got["data_text"], got["data_text"]
    assert got["services"] == [f"{s['name']}@v{s['version']}" for s in services] == ["model-00@v2"]
    assert services[0]["live"]["shown"] in got["services_text"] and "shadow v1" in got["services_text"]
    assert got["ci_runs"] == [r["run_id"] for r in ci[:5]] and len(ci) == 2
    assert "passed" in got["ci_text"] and "failed" in got["ci_text"] and ci[0]["commit"][:12] in got["ci_text"]
    assert "[object Object]" not in got["data_text"] + got["services_text"] + got["ci_text"]
    # the form's sweep: started over REST, its trials followed in a dialog until it ended, best first
    sweep = api(base, token, "sweeps/ui-sweep")
    assert (sweep["counts"], sweep["running"], sweep["metric"]) == (
        {"complete": 2, "fail": 0, "running": 0},
        False,
        "loss",
    )
    assert got["sweep_trials"] == [str(t["number"]) for t in sweep["trials"]] and len(got["sweep_trials"]) == 2
    assert f"Best: trial {sweep['best']['number']}, loss = " in got["sweep_text"], got["sweep_text"]
    assert "2 complete, 0 failed, 0 running" in got["sweep_text"], got["sweep_text"]
    runs = [api(base, token, f"job-runs/{t['job_run']}") for t in sweep["trials"]]  # each trial a job run
    assert [(r["status"], r["executor"]) for r in runs] == [("succeeded", "local")] * 2, runs
    assert got["news_prompts"] == 0, f"JupyterLab asked `{NEWS_PROMPT}?`"
    assert got["page_errors"] == []
    shots = ("panel.png", "panel-data-services-ci.png", "promoted.png", "run-as-job-form.png", "job-run.png")
    for shot in (*shots, "sweep-form.png", "sweep.png"):
        assert (SHOTS / shot).stat().st_size > 10_000, shot


def test_lab_serves_the_installed_extension_and_the_project_settings(lab):
    base, token = lab
    # the extension the page loads is the venv's (no private labextensions folder in this Lab)
    page = api_page_config(base, token)
    ours = [e for e in page["federated_extensions"] if e["name"] == "aiworkbench-lab"]
    assert len(ours) == 1, page["federated_extensions"]
    assert (installed_labextension() / ours[0]["load"]).is_file(), ours[0]
    # the project's default (overrides.d in the venv), so the news question is never asked
    assert lab_setting_default(base, token, NOTIFICATION, "fetchNews") == "false"


def api_page_config(base, token):
    "The page config JupyterLab writes into /lab for the browser."
    import json
    import re
    import urllib.request

    with urllib.request.urlopen(f"{base}lab?token={token}", timeout=30) as r:
        html = r.read().decode()
    found = re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', html, re.S)
    assert found, "no jupyter-config-data in /lab"
    return json.loads(found.group(1))
