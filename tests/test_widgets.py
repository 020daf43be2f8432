"The ipywidgets twins against a real project, headless: what they render and the state a front end receives."

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
from fixture_project import make_project  # noqa: E402

from aiworkbench.config import load_settings  # noqa: E402
from aiworkbench.widgets import KpiPanel, PhasePanel  # noqa: E402


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return load_settings(make_project(tmp_path_factory.mktemp("w") / "p", runs=2, models=1))


@pytest.mark.parametrize("panel,module", [(PhasePanel, "phases"), (KpiPanel, "kpis")])
def test_panels_render_the_project_or_say_the_part_is_missing(settings, panel, module):
    w = panel(settings)
    state = w.body.get_state()
    try:
        __import__(f"aiworkbench.{module}")
    except ModuleNotFoundError:
        assert w.error["status"] == 404 and "not available yet" in state["value"]
        return
    assert w.error is None, w.error
    assert ("Phase <b>" in state["value"]) if module == "phases" else ("<table>" in state["value"])


def test_a_panel_shows_the_error_of_a_broken_project(tmp_path):
    (tmp_path / "settings.ini").write_text("[aiworkbench]\nname = x\n[kpi]\nwindow_days = -1\n")
    w = KpiPanel()
    w.settings = None
    w.report = lambda s: load_settings(tmp_path) and {}
    w.refresh()
    assert w.error["status"] == 400 and "window_days" in w.body.value
