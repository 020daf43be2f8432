"The ipywidgets twins against a real project, headless: what they render and the state a front end receives."

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from fixture_project import make_project  # noqa: E402

from aiworkbench.lab.widgets import KpiPanel, PhasePanel  # noqa: E402
from aiworkbench.workbench import Workbench  # noqa: E402


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    return Workbench(make_project(tmp_path_factory.mktemp("w") / "p", runs=2, models=1))


def test_panels_render_the_project(wb):
    phase, kpis = PhasePanel(wb), KpiPanel(wb.root)
    assert (phase.error, kpis.error) == (None, None), (phase.error, kpis.error)
    want = wb.phase()
    html = phase.body.get_state()["value"]
    assert f"Phase <b>{want.phase}</b>: {want.name}" in html, html
    assert html.count("<li ") == len(want.items) and "✔ 1. Models are versioned in the registry" in html, html
    html = kpis.body.get_state()["value"]
    report = wb.kpis().kpis
    assert [k.key for k in report] == ["p95_latency", "deployment_cycle", "reproducibility", "cost_per_1m"]
    for k in report:  # the library's words, not the widget's own formatting
        assert f'<tr data-kpi="{k.key}"><td>{k.title}</td><td>{k.shown}</td>' in html, (k, html)


def test_a_panel_shows_the_error_of_a_broken_project(tmp_path):
    (tmp_path / "settings.ini").write_text("[aiworkbench]\nname = x\n[kpi]\nwindow_days = -1\n")
    w = KpiPanel(tmp_path)
    assert w.error["status"] == 400 and "window_days" in w.body.value
    (tmp_path / "settings.ini").write_text("[aiworkbench]\nname = x\n")
    w.refresh()  # a refresh reads the settings again
    assert w.error is None and 'data-kpi="p95_latency"' in w.body.value, w.body.value
