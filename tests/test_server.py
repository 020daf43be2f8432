"The Jupyter server extension over HTTP: every route's answer, bad input, unknown ids, and authentication."

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[1] / "scripts"))
sys.path.insert(0, str(Path(__file__).parent / "ui"))
from fixture_project import make_project  # noqa: E402
from panel_data import add_panel_data  # noqa: E402

from aiworkbench.lab.api import openapi_spec  # noqa: E402
from aiworkbench.lab.extension import routes  # noqa: E402

pytest_plugins = ["pytest_jupyter.jupyter_server"]
OPENAPI = Path(__file__).parents[1] / "extensions" / "aiworkbench-lab" / "openapi.yaml"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("srv") / "root", runs=3, models=1)


@pytest.fixture
def jp_root_dir(project):
    return project


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {"aiworkbench.lab.extension": True}, "allow_unauthenticated_access": False}
    }


@pytest.fixture(autouse=True)
def no_aiwb_root(monkeypatch):
    monkeypatch.delenv("AIWB_ROOT", raising=False)


@pytest.fixture
def api(jp_fetch):
    "Call a route: `await api('GET', 'models')` -> (status, json or text)."

    async def call(method, *parts, body=None, params=None, headers=None):
        kw = {"method": method, "raise_error": False, "headers": headers, "params": params}
        if method == "POST":
            kw["body"] = body if isinstance(body, str | bytes) else json.dumps(body or {})
        r = await jp_fetch("aiworkbench", "api", *parts, **kw)
        text = r.body.decode()
        try:
            return r.code, json.loads(text)
        except json.JSONDecodeError:
            return r.code, text

    return call


async def test_reads_answer_the_project(api, project):
    code, runs = await api("GET", "runs")
    trained = [r for r in runs["runs"] if "val_loss" in r["metrics"]]
    assert code == 200 and len(trained) == 3, runs  # the training runs (a later test records an `aiwb ci` run)
    assert {"val_acc", "val_loss"} <= set(trained[0]["metrics"])
    code, one = await api("GET", "runs", runs["runs"][0]["run_id"])
    assert code == 200 and one["run_id"] == runs["runs"][0]["run_id"]
    assert (await api("GET", "runs", params={"limit": "1"}))[1]["runs"].__len__() == 1
    code, models = await api("GET", "models")
    assert code == 200 and models["models"] == [
        {"name": "model-00", "versions": 2, "latest": 2, "aliases": {"champion": 1}}
    ]
    code, model = await api("GET", "models", "model-00")
    assert code == 200 and [v["version"] for v in model["versions"]] == [1, 2]
    assert model["history"][0]["kind"] == "promote"
    code, params = await api("GET", "notebooks", "parameters", params={"path": "nbs/train.ipynb"})
    assert (code, params["parameters"]) == (200, {"epochs": 2, "lr": 0.1, "label": "demo"})
    assert params["types"] == {"epochs": "int", "lr": "float", "label": "str"}
    assert (await api("GET", "jobs")) == (200, {"jobs": []})


async def test_phase_and_kpis_answer_what_the_library_says(api, project):
    from aiworkbench.config import load_settings
    from aiworkbench.monitoring.kpis import kpi_report
    from aiworkbench.monitoring.phases import phase_report

    settings = load_settings(project)
    code, phase = await api("GET", "phase")
    want = phase_report(settings=settings)
    assert code == 200, phase
    assert (phase["phase"], phase["name"], phase["next_step"]) == (want["phase"], want["name"], want["next_step"])
    assert [(i["key"], i["ok"]) for i in phase["items"]] == [(i["key"], i["ok"]) for i in want["items"]]
    assert [i["ok"] for i in phase["items"] if i["key"] == "registry"] == [True], phase  # model-00 has 2 versions
    code, kpis = await api("GET", "kpis")
    assert code == 200, kpis
    assert [k["key"] for k in kpis["kpis"]] == ["p95_latency", "deployment_cycle", "reproducibility", "cost_per_1m"]
    assert [(k["key"], k["status"], k["shown"], k["trend_shown"]) for k in kpis["kpis"]] == [
        (k["key"], k["status"], k["shown"], k["trend_shown"]) for k in kpi_report(settings=settings)["kpis"]
    ]  # formatted once, by the library
    assert [p["phase"] for p in phase["phases"]] == [1, 2, 3, 4] and phase["phases"] == want["phases"]


async def test_promote_rollback_and_a_refused_gate(api):
    code, moved = await api("POST", "models", "model-00", "promote", body={"version": 2, "reason": "better"})
    assert code == 200 and (moved["from"], moved["to"]) == (1, 2)
    assert (await api("GET", "models"))[1]["models"][0]["aliases"] == {"champion": 2}
    code, back = await api("POST", "models", "model-00", "rollback", body={})
    assert code == 200 and (back["from"], back["to"]) == (2, 1)
    assert (await api("GET", "models"))[1]["models"][0]["aliases"] == {"champion": 1}
    gate = {"min_metrics": {"val_acc": 0.95}}
    code, refused = await api("POST", "models", "model-00", "promote", body={"version": 2, "gate": gate})
    assert code == 409 and refused["error"] == "GateRefused"
    assert [c for c in refused["checks"] if not c["passed"]][0]["name"] == "val_acc >= 0.95"
    assert (await api("GET", "models"))[1]["models"][0]["aliases"] == {"champion": 1}


SWEEP = {"notebook": "nbs/train.ipynb", "params": {"lr": "log(1e-3,1)"}, "metric": "loss"}  # a valid sweep


@pytest.mark.parametrize(
    "method,parts,body,params,status,field",
    [
        ("POST", ("models", "model-00", "promote"), "{not json", None, 400, "body"),
        ("POST", ("models", "model-00", "promote"), "[1, 2]", None, 400, "body"),
        ("POST", ("models", "model-00", "promote"), {"version": "two"}, None, 400, "version"),
        ("POST", ("models", "model-00", "promote"), {"version": 1, "alais": "x"}, None, 400, "alais"),
        (
            "POST",
            ("models", "model-00", "promote"),
            {"version": 1, "gate": {"min_metrics": {"nope": 1}}},
            None,
            400,
            "gate",
        ),
        ("POST", ("models", "model-00", "promote"), {"version": 9}, None, 404, "version"),
        ("POST", ("models", "ghost", "promote"), {"version": 1}, None, 404, "name"),
        ("POST", ("models", "ghost", "rollback"), {}, None, 404, "name"),
        ("POST", ("models", "model-00", "rollback"), {"alias": "challenger"}, None, 404, "alias"),
        ("GET", ("models", "ghost"), None, None, 404, "name"),
        ("GET", ("runs", "0123456789abcdef"), None, None, 404, "run_id"),
        ("GET", ("runs",), None, {"limit": "many"}, 400, "limit"),
        ("GET", ("ci", "runs"), None, {"limit": "0"}, 400, "limit"),
        ("GET", ("runs",), None, {"experiment": "ghost"}, 404, "experiment"),
        ("GET", ("jobs", "ghost"), None, None, 404, "job"),
        ("GET", ("jobs", "ghost", "runs"), None, None, 404, "job"),
        ("POST", ("jobs", "ghost", "run"), {}, None, 404, "job"),
        ("POST", ("jobs", "ghost", "cancel"), {}, None, 404, "job"),
        ("GET", ("job-runs", "ghost"), None, None, 404, "run"),
        ("GET", ("job-runs", "ghost", "output"), None, None, 404, "run"),
        ("POST", ("job-runs", "ghost", "cancel"), {}, None, 404, "run"),
        ("POST", ("jobs",), {"name": "j", "notebook": "nbs/train.ipynb", "cron": "61 * * * *"}, None, 400, "cron"),
        ("POST", ("jobs",), {"name": "j", "notebook": "nbs/train.ipynb", "cron": "often"}, None, 400, "cron"),
        (
            "POST",
            ("jobs",),
            {"name": "j", "notebook": "nbs/train.ipynb", "parameters": {"epochs": "2"}},
            None,
            400,
            "parameters.epochs",
        ),
        (
            "POST",
            ("jobs",),
            {"name": "j", "notebook": "nbs/train.ipynb", "parameters": {"ghost": 1}},
            None,
            400,
            "parameters.ghost",
        ),
        ("POST", ("jobs",), {"name": "j", "notebook": "nbs/ghost.ipynb"}, None, 404, "notebook"),
        ("POST", ("jobs",), {"name": "j"}, None, 400, "notebook"),
        ("POST", ("jobs",), {"name": "bad name!", "notebook": "nbs/train.ipynb"}, None, 400, "name"),
        ("POST", ("jobs",), {"name": "j", "notebook": "nbs/train.ipynb", "timeout_s": "soon"}, None, 400, "timeout_s"),
        ("POST", ("sweeps",), {**SWEEP, "params": {"lr": "between(0,1)"}}, None, 400, "params.lr"),
        ("POST", ("sweeps",), {**SWEEP, "params": {"lr": "log(0,1)"}}, None, 400, "params.lr"),
        ("POST", ("sweeps",), {**SWEEP, "params": {"ghost": "int(1,2)"}}, None, 400, "params.ghost"),
        ("POST", ("sweeps",), {**SWEEP, "params": {}}, None, 400, "params"),
        ("POST", ("sweeps",), {**SWEEP, "parallel": 0}, None, 400, "parallel"),
        ("POST", ("sweeps",), {**SWEEP, "trials": "many"}, None, 400, "trials"),
        ("POST", ("sweeps",), {**SWEEP, "direction": "up"}, None, 400, "direction"),
        ("POST", ("sweeps",), {**SWEEP, "trails": 3}, None, 400, "trails"),
        ("POST", ("sweeps",), {k: v for k, v in SWEEP.items() if k != "metric"}, None, 400, "metric"),
        ("POST", ("sweeps",), {**SWEEP, "notebook": "nbs/ghost.ipynb"}, None, 404, "notebook"),
        ("POST", ("sweeps",), {**SWEEP, "notebook": "../x.ipynb"}, None, 400, "notebook"),
        ("GET", ("sweeps", "ghost"), None, None, 404, "name"),
    ],
)
async def test_bad_input_names_the_field(api, method, parts, body, params, status, field):
    code, err = await api(method, *parts, body=body, params=params)
    assert (code, err["status"], err["field"]) == (status, status, field), err
    assert err["message"]


def _outside_paths(project: Path) -> list[str]:
    sibling = project.parent / (project.name + "2")
    (sibling / "nbs").mkdir(parents=True, exist_ok=True)
    (sibling / "nbs" / "x.ipynb").write_text((project / "nbs" / "train.ipynb").read_text())
    link = project / "nbs" / "escape.ipynb"
    if not link.exists():
        link.symlink_to(sibling / "nbs" / "x.ipynb")
    return [
        "../" + sibling.name + "/nbs/x.ipynb",  # a sibling folder whose name starts with the root's
        "nbs/../../" + sibling.name + "/nbs/x.ipynb",
        urllib.parse.unquote("%2e%2e/") + sibling.name + "/nbs/x.ipynb",
        str(sibling / "nbs" / "x.ipynb"),  # absolute
        "nbs/escape.ipynb",  # a symlink out of the root
        "/etc/passwd",
    ]


async def test_paths_outside_the_root_are_refused(api, project):
    for path in _outside_paths(project):
        code, err = await api("GET", "notebooks", "parameters", params={"path": path})
        field = "path" if Path(path).is_absolute() else "notebook"  # absolute: refused before it is resolved
        assert (code, err["field"]) == (400, field), (path, err)
        code, err = await api("POST", "jobs", body={"name": "escape", "notebook": path})
        assert (code, err["field"]) == (400, "notebook"), (path, err)
    # an encoded `..` in the URL path itself never reaches a handler outside /aiworkbench/api
    code, err = await api("GET", "models", "%2e%2e%2f%2e%2e%2fetc")
    assert (code, err["field"]) == (404, "name") and "`%2e%2e%2f%2e%2e%2fetc`" in err["message"], err
    assert (await api("GET", "jobs"))[1] == {"jobs": []}


async def test_create_run_cancel_and_output_of_a_job(api, jp_fetch):
    job = {"name": "train-nightly", "notebook": "nbs/train.ipynb", "parameters": {"epochs": 3}, "cron": "0 3 * * *"}
    code, made = await api("POST", "jobs", body=job)
    assert code == 200 and (made["name"], made["cron"], made["parameters"]) == (
        "train-nightly",
        "0 3 * * *",
        {"epochs": 3},
    )
    assert (await api("POST", "jobs", body=job))[0] == 409  # the name is taken
    code, started = await api("POST", "jobs", "train-nightly", "run", body={"parameters": {"label": "now"}})
    assert code == 200 and started["executor"] == "server", started
    run_id = started["run"]["id"]
    deadline = time.monotonic() + 120
    while True:
        code, run = await api("GET", "job-runs", run_id)
        if run["status"] in ("succeeded", "failed", "timed_out", "cancelled") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert (run["status"], run["finished"]) == ("succeeded", True), run
    code, runs = await api("GET", "jobs", "train-nightly", "runs")
    assert [r["id"] for r in runs["runs"]] == [run_id]
    assert (await api("GET", "jobs"))[1]["jobs"][0]["last_run"]["status"] == "succeeded"
    code, out = await api("GET", "job-runs", run_id, "output")
    assert code == 200 and out["path"].startswith(".aiwb/")
    assert "trained now for 3 epochs" in json.dumps(out["notebook"]["cells"][-1]["outputs"])
    code, html = await api("GET", "job-runs", run_id, "output", params={"format": "html"})
    assert code == 200 and "trained now for 3 epochs" in html
    page = await jp_fetch("aiworkbench", "api", "job-runs", run_id, "output", params={"format": "html"})
    assert page.headers["Content-Type"].startswith("text/html"), page.headers  # a page, sandboxed
    assert page.headers["Content-Security-Policy"] == "sandbox allow-scripts"
    assert (await api("GET", "job-runs", run_id, "output", params={"format": "pdf"}))[0] == 400
    assert (await api("POST", "job-runs", run_id, "cancel"))[0] == 409  # finished already
    assert (await api("POST", "jobs", "train-nightly", "cancel")) == (200, {"cancelled": []})
    code, err = await api("POST", "jobs", "train-nightly", "run", body={"parameters": {"epochs": "x"}})
    assert (code, err["field"]) == (400, "parameters.epochs")


async def test_a_sweep_starts_in_the_background_and_its_trials_show_best_first(api, project):
    "POST sweeps answers at once with the study's name; GET sweeps/NAME follows the trials until the sweep ends."
    import nbformat

    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3"}})
    nb.cells = [
        nbformat.v4.new_code_cell("x = 0.5", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import os, mlflow\nif x > 0.9:\n    raise ValueError('x above 0.9')\n"
            "with mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):\n    mlflow.log_metric('loss', (x - 0.3) ** 2)"
        ),
    ]
    nbformat.write(nb, project / "nbs" / "sweep.ipynb")
    body = {"notebook": "nbs/sweep.ipynb", "params": {"x": "choice(0.2, 0.95, 0.5)"}, "trials": 3, "parallel": 2}
    body |= {"metric": "loss", "name": "rest-sweep"}
    code, started = await api("POST", "sweeps", body=body)
    assert (code, started) == (200, {**{k: body[k] for k in ("trials", "parallel", "metric", "name", "notebook")},
                                     "direction": "minimize"}), started  # fmt: skip
    code, shown = await api("GET", "sweeps", "rest-sweep")  # the study is there as soon as the POST answered
    assert code == 200 and (shown["name"], shown["metric"], shown["notebook"]) == (
        "rest-sweep",
        "loss",
        "nbs/sweep.ipynb",
    )
    deadline = time.monotonic() + 240
    while shown["running"] or shown["counts"]["running"] or len(shown["trials"]) < 3:
        assert time.monotonic() < deadline, shown
        await asyncio.sleep(0.5)
        shown = (await api("GET", "sweeps", "rest-sweep"))[1]
    assert shown["error"] is None, shown["error"]
    trials = shown["trials"]
    done = [t for t in trials if t["state"] == "complete"]
    assert [t["value"] for t in done] == sorted(t["value"] for t in done) and shown["best"] == trials[0]
    for t in trials:  # each trial a job run of the server's project, its outcome as the notebook decided
        code, run = await api("GET", "job-runs", t["job_run"])
        failing = t["params"]["x"] > 0.9
        assert (code, run["status"], t["state"]) == (
            200,
            *(("failed", "fail") if failing else ("succeeded", "complete")),
        )
        assert not failing or "x above 0.9" in t["error"], t
    code, err = await api("POST", "sweeps", body={**body, "params": {"x": "float(0,1)"}})
    assert (code, err["field"]) == (400, "params") and "another search space" in err["message"], err
    code, err = await api("POST", "sweeps", body={**SWEEP, "params": {"lr": "between(1,2)"}})
    assert "`lr`: SPEC `between(1,2)` is not int(a,b)" in err["message"], err


async def test_data_services_and_ci_sections_answer_what_the_project_holds(api, project):
    "Empty answers first; then a lake table, an applied and materialized view, a build with labels, two CI runs."
    routes = {"tables": ("lake", "tables"), "views": ("features",), "services": ("services",), "runs": ("ci", "runs")}
    for key, parts in routes.items():
        code, empty = await api("GET", *parts)
        assert (code, empty[key]) == (200, []), (parts, empty)
    added = add_panel_data(project, requests=120, labels=60, ci_runs=2)
    from aiworkbench.workbench import Workbench

    wb = Workbench(project)
    code, tables = await api("GET", "lake", "tables")
    assert code == 200 and [t["table"] for t in tables["tables"]] == ["tx"], tables
    tx = tables["tables"][0]
    assert (tx["version"], tx["rows"], tx["contract"], tx["contract_version"]) == (0, 4, "tx@v1", 1), tx
    assert tx["time"] == wb.lake.versions("tx")[0]["time"]
    code, views = await api("GET", "features")
    assert code == 200 and len(views["views"]) == 1, views
    spend = views["views"][0]
    assert (spend["name"], spend["source"], spend["entities"], spend["features"], spend["ttl"]) == (
        "spend", "tx", ["user"], ["spend"], "30d",
    )  # fmt: skip
    assert (spend["applied"], spend["materialized"], spend["materialized_version"]) == (True, True, 0), spend
    assert spend["materialized_at"] >= spend["applied_at"] > 0

    code, services = await api("GET", "services")
    assert code == 200 and services["window_days"] == wb.settings.kpi.window_days, services
    (svc,) = services["services"]
    assert (svc["name"], svc["version"], svc["runtime"], svc["follow"]) == ("model-00", 2, "onnx", True)
    assert (svc["challenger"]["mode"], svc["challenger"]["version"]) == ("shadow", 1)
    live, full = svc["live"], wb.serving.live("model-00")  # the cheap answer agrees with the full report
    assert (live["labels"], live["requests"], live["coverage"]) == (60, 120, full["coverage"]) == (60, 120, 0.5)
    assert (live["metric"], live["value"]) == ("accuracy", full["live_accuracy"]) == ("accuracy", 0.75)
    assert live["concept_drift"] is full["concept_drift"]["drifted"] is True
    assert live["agreement"] == full["shadow"]["agreement"] == 0.5
    assert live["shown"].startswith("live accuracy 75.0% on 60 labels (50% of 120 requests); concept drift;")
    assert live["p95_ms"] is not None

    code, ci = await api("GET", "ci", "runs")
    assert code == 200 and [r["run_id"] for r in ci["runs"]] == added["ci_runs"], ci
    last = ci["runs"][0]
    assert (last["outcome"], last["promoted"], last["branch"], last["commit"][:4]) == ("passed", 2, "main", "01ab")
    assert last["stages"] == {"validate": 0.5, "train": 4.0} and last["seconds"] == 4.5
    assert (await api("GET", "ci", "runs", params={"limit": "1"}))[1]["runs"] == [last]
    # a label file with a bad line: the services route names the file and line (400), never a 500
    bad = wb.settings.state_dir / "requests" / "model-00" / "feedback-1.jsonl"
    bad.write_text('{"ts": 1}\nnot json\n')
    try:
        code, err = await api("GET", "services")
        assert code == 400 and "feedback-1.jsonl line 2" in err["message"], err
    finally:
        bad.unlink()


def _sample(path: str) -> str:
    return path.replace("{run_id}", "abc").replace("{name}", "model-00").replace("{job}", "j")


async def test_every_route_and_method_needs_a_token(jp_serverapp, http_server_client, jp_base_url):
    checked = 0
    for path, handler in routes():
        for method in ("GET", "POST"):
            if method.lower() not in vars(handler):
                continue
            url = f"{jp_base_url}aiworkbench/api{_sample(path)}"
            r = await http_server_client.fetch(
                url, method=method, body="{}" if method == "POST" else None, raise_error=False
            )
            assert r.code == 403, (method, path, r.code)
            bad = {"Authorization": "token not-the-token"}
            r = await http_server_client.fetch(
                url, method=method, body="{}" if method == "POST" else None, headers=bad, raise_error=False
            )
            assert r.code == 403, (method, path, r.code)
            checked += 1
    assert checked == len(routes()) + 1  # /jobs answers GET and POST


async def test_post_with_a_cookie_but_no_xsrf_token_is_refused(jp_serverapp, http_server_client, jp_base_url):
    token = jp_serverapp.identity_provider.token
    r = await http_server_client.fetch(f"{jp_base_url}aiworkbench/api/models?token={token}", raise_error=False)
    assert r.code == 200
    cookies = {}
    for header in r.headers.get_list("Set-Cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = rest.split(";")[0]
    assert any(n.startswith("username-") for n in cookies), cookies
    login = "; ".join(f"{k}={v}" for k, v in cookies.items() if k.startswith("username-"))
    url = f"{jp_base_url}aiworkbench/api/models/ghost/rollback"
    r = await http_server_client.fetch(url, method="POST", body="{}", headers={"Cookie": login}, raise_error=False)
    assert r.code == 403
    # the same cookie with the XSRF token passes authentication and reaches the handler: 404, no model `ghost`
    xsrf = "2|abcdef01|0123456789abcdef0123456789abcdef|1700000000"
    headers = {"Cookie": f"{login}; _xsrf={xsrf}", "X-XSRFToken": xsrf}
    r = await http_server_client.fetch(url, method="POST", body="{}", headers=headers, raise_error=False)
    assert (r.code, json.loads(r.body)["field"]) == (404, "name"), r.body


def test_openapi_file_describes_every_route():
    assert yaml.safe_load(OPENAPI.read_text()) == json.loads(json.dumps(openapi_spec())), (
        "extensions/aiworkbench-lab/openapi.yaml is stale: run `.venv/bin/python scripts/write_openapi.py`"
    )
    assert sorted(openapi_spec()["paths"]) == sorted(f"/aiworkbench/api{p}" for p, _ in routes())


def test_panel_types_are_generated_from_the_openapi_file():
    "The panel's TypeScript types (src/openapi.d.ts) are what openapi-typescript makes of openapi.yaml today."
    ext = OPENAPI.parent
    if not shutil.which("npm") or not (ext / "node_modules" / ".bin" / "openapi-typescript").exists():
        pytest.fail("openapi-typescript is not installed: bash scripts/setup_lab.sh .venv (make lab-ext)")
    r = subprocess.run(["npm", "run", "--silent", "check:types"], cwd=ext, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (
        "extensions/aiworkbench-lab/src/openapi.d.ts is stale: run `.venv/bin/python scripts/write_openapi.py`\n"
        + r.stdout[-2000:]
        + r.stderr[-2000:]
    )


def test_the_extension_imports_nothing_heavy():
    code = (
        "import sys, aiworkbench.lab.extension as s; s._jupyter_server_extension_points();"
        "print(sorted(m for m in ('mlflow','torch','pandas','pydantic','sqlalchemy','papermill','lightning')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ, check=True)
    assert out.stdout.strip() == "[]"


def test_jupyter_config_enables_the_extension():
    cfg = Path(__file__).parents[1] / "jupyter-config" / "jupyter_server_config.d" / "aiworkbench.json"
    assert json.loads(cfg.read_text()) == {"ServerApp": {"jpserver_extensions": {"aiworkbench.lab.extension": True}}}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _call(base: str, token: str, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{base}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


@pytest.fixture
def cli_project(tmp_path, aiwb):
    "A project made only by `aiwb` processes: init, infer, two trainings registered as `clf` v1 and v2."
    import pandas as pd

    root = tmp_path / "cli-project"
    assert aiwb("init", root).code == 0
    rows = 120
    pd.DataFrame(
        {
            "a": [(i * 37 % 101) / 10 for i in range(rows)],
            "b": [(i * 53 % 89) / 10 for i in range(rows)],
            "label": ["yes" if (i * 37 % 101) > 50 else "no" for i in range(rows)],
        }
    ).to_csv(root / "data" / "d.csv", index=False)
    r = aiwb("data", "infer", "data/d.csv", "-o", "contracts/d.yaml", "--target", "label", cwd=root)
    assert r.code == 0, r.err
    for seed in (0, 1):
        r = aiwb(
            "train", "data/d.csv", "--contract", "contracts/d.yaml", "--epochs", "2", "--seed", seed,
            "--register", "clf", "--json", cwd=root, timeout=300,
        )  # fmt: skip
        assert r.code == 0, r.err[-3000:]
    return root


def test_promote_and_rollback_over_rest_on_a_project_the_server_did_not_train(cli_project, tmp_path):
    "A real `jupyter server` process (its cwd elsewhere) moves aliases of models that `aiwb` processes trained."
    import secrets

    token, port = secrets.token_hex(16), _free_port()
    config, cwd = tmp_path / "jupyter-config", tmp_path / "server-cwd"
    config.mkdir()
    cwd.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"aiworkbench.lab.extension": True}}})
    )
    env = {k: v for k, v in os.environ.items() if k not in ("AIWB_ROOT", "JUPYTER_TOKEN", "MLFLOW_TRACKING_URI")}
    env["JUPYTER_CONFIG_DIR"] = str(config)
    log = open(tmp_path / "server.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter_server", "--allow-root", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={cli_project}",
        ],
        cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/aiworkbench/api"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                code, models = _call(base, token, "GET", "/models")
                break
            except OSError:
                assert time.monotonic() < deadline, "jupyter server did not answer within 120 s"
                time.sleep(0.2)
        assert (code, models["models"]) == (200, [{"name": "clf", "versions": 2, "latest": 2, "aliases": {}}])
        code, first = _call(base, token, "POST", "/models/clf/promote", {"version": 1, "reason": "first"})
        assert code == 200, first  # the gate's `model loadable` check reads v1 from the project's store
        assert (first["from"], first["to"]) == (None, 1)
        assert all(c["passed"] for c in first["checks"]), first
        code, second = _call(base, token, "POST", "/models/clf/promote", {"version": 2, "reason": "second"})
        assert (code, second["from"], second["to"]) == (200, 1, 2), second
        code, back = _call(base, token, "POST", "/models/clf/rollback", {"reason": "back"})
        assert (code, back["from"], back["to"]) == (200, 2, 1), back
        code, model = _call(base, token, "GET", "/models/clf")
        assert code == 200 and model["aliases"] == {"champion": 1}
        assert [(h["kind"], h["from"], h["to"]) for h in model["history"]] == [
            ("promote", None, 1),
            ("promote", 1, 2),
            ("rollback", 2, 1),
        ], model["history"]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    stray = [p for p in [*cli_project.rglob("mlflow.db"), *cli_project.rglob("mlruns")] if ".aiwb" not in p.parts]
    assert (stray, list(cwd.iterdir())) == ([], []), "an MLflow store was created outside the project's .aiwb/"
