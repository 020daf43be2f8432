"""The Workbench panel in plain `jupyter lab` as installed in the venv (by `make lab-ext`), in headless Debian
Chromium: phase, KPIs, promote/rollback, Run as job, and no Jupyter news prompt."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
from fixture_project import make_project  # noqa: E402
from lab import NEWS_PROMPT, api, drive, installed_labextension, jupyter_lab, lab_setting_default, missing  # noqa: E402

SHOTS = Path(__file__).parent / "screenshots"
NOTIFICATION = "@jupyterlab/apputils-extension:notification"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    why = missing()
    if why:
        pytest.fail(why)  # the project's setup installs these; a missing piece is a failure, not a skip
    root = make_project(tmp_path_factory.mktemp("ui") / "project", runs=3, models=1)
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
    assert got["news_prompts"] == 0, f"JupyterLab asked `{NEWS_PROMPT}?`"
    assert got["page_errors"] == []
    for shot in ("panel.png", "promoted.png", "run-as-job-form.png", "job-run.png"):
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
