"The ipywidgets twins against a real project, headless: what they render and the state a front end receives."

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from fixture_project import make_project  # noqa: E402

from aiworkbench.config import load_settings  # noqa: E402
from aiworkbench.lab.widgets import KpiPanel, PhasePanel  # noqa: E402


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(make_project(tmp_path_factory.mktemp("w") / "p", runs=2, models=1))


def test_panels_render_the_project(settings):
    from aiworkbench.monitoring.kpis import kpi_report
    from aiworkbench.monitoring.phases import phase_report

    phase, kpis = PhasePanel(settings), KpiPanel(settings)
    assert (phase.error, kpis.error) == (None, None), (phase.error, kpis.error)
    want = phase_report(settings=settings)
    html = phase.body.get_state()["value"]
    assert f"Phase <b>{want['phase']}</b>: {want['name']}" in html, html
    assert html.count("<li ") == len(want["items"]) and "✔ 1. Models are versioned in the registry" in html, html
    html = kpis.body.get_state()["value"]
    assert [k["key"] for k in kpi_report(settings=settings)["kpis"]] == [
        "p95_latency",
        "deployment_cycle",
        "reproducibility",
        "cost_per_1m",
    ]
    for k in kpi_report(settings=settings)["kpis"]:
        assert f'<tr data-kpi="{k["key"]}"><td>{k["title"]}</td>' in html, (k, html)


def test_a_panel_shows_the_error_of_a_broken_project(tmp_path):
    (tmp_path / "settings.ini").write_text("[aiworkbench]\nname = x\n[kpi]\nwindow_days = -1\n")
    w = KpiPanel()
    w.settings = None
    w.report = lambda s: load_settings(tmp_path) and {}
    w.refresh()
    assert w.error["status"] == 400 and "window_days" in w.body.value
