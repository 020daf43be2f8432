"Several models in one service, real `bentoml serve`: each at its route, its own request log, one /metrics, the panel."

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow
pytest_plugins = ["pytest_jupyter.jupyter_server"]

CLINICS = ["north", "south", "west"]
AIWB = str(Path(sys.executable).parent / "aiwb")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "`bc` (breast cancer plus a `clinic` category, a classification) and `dia` (diabetes, a regression): 1 epoch each."
    from sklearn.datasets import load_breast_cancer, load_diabetes

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import infer_contract
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote
    from aiworkbench.training import train_tabular

    root = init_project(tmp_path_factory.mktemp("multi") / "proj")
    settings = load_settings(root, environ={})
    bc = load_breast_cancer(as_frame=True).frame
    bc.insert(0, "clinic", [CLINICS[i % 3] for i in range(len(bc))])
    dia = load_diabetes(as_frame=True).frame
    frames, uris = {"bc": bc, "dia": dia}, {}
    contracts = {name: infer_contract(df, name, target="target") for name, df in frames.items()}
    contracts["bc"].columns["clinic"].allowed = CLINICS
    for name, df in frames.items():
        for col in contracts[name].features:  # bounds relaxed, as a user may
            contracts[name].columns[col].min = contracts[name].columns[col].max = None
        fit = train_tabular(
            df, contracts[name], max_epochs=1, settings=settings, register=name, enable_progress_bar=False
        )
        promote(name, fit.registered["version"], settings=settings)
        uris[name] = fit.model_uri
    return {"root": root, "settings": settings, "frames": frames, "contracts": contracts, "uris": uris}


def run(*args, cwd, timeout=300):
    return subprocess.run([AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def served(project):
    "`aiwb package bc@champion dia@champion --name both`, then `aiwb serve` of the same in its own process."
    from aiworkbench.serving.server import free_port

    root = project["root"]
    packaged = run("package", "bc@champion", "dia@champion", "--name", "both", "--json", cwd=root)
    assert packaged.returncode == 0, packaged.stderr
    port = free_port()
    proc = subprocess.Popen(
        [AIWB, "serve", "bc@champion", "dia@champion", "--name", "both", "--port", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}", proc.stderr.read() if proc.poll() is not None else url
        yield {**project, "url": url, "packaged": json.loads(packaged.stdout), "proc": proc}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, proc.stderr.read()[-3000:]


def rows_of(df, n=3, start=0):
    return json.loads(df.drop(columns="target").iloc[start : start + n].to_json(orient="records"))


def post(url, path, body):
    data = body if isinstance(body, str) else json.dumps(body)
    return httpx.post(f"{url}{path}", content=data, headers={"content-type": "application/json"}, timeout=30)


def logged_outputs(project, name, rows):
    "The logged (pt2) model's outputs on `rows`, encoded as training encodes them."
    import pandas as pd
    import torch

    from aiworkbench.encoding import encode_features
    from aiworkbench.tracking import load_pytorch

    model = load_pytorch(project["uris"][name], settings=project["settings"])
    x = encode_features(pd.DataFrame(rows), project["contracts"][name])
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def until(check, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("not within the deadline")


def test_each_route_answers_its_models_prediction_and_version(served):
    url, frames = served["url"], served["frames"]
    bc_rows, dia_rows = rows_of(frames["bc"], 5), rows_of(frames["dia"], 4)
    bc, dia = post(url, "/bc/predict", {"rows": bc_rows}), post(url, "/dia/predict", {"rows": dia_rows})
    assert bc.status_code == dia.status_code == 200, (bc.text, dia.text)
    assert (bc.json()["model"], bc.json()["version"], bc.json()["classes"]) == ("bc", 1, [0, 1])
    assert (dia.json()["model"], dia.json()["version"], dia.headers["x-model-version"]) == ("dia", 1, "1")
    got = np.array([p["probabilities"] for p in bc.json()["predictions"]])
    np.testing.assert_allclose(got, logged_outputs(served, "bc", bc_rows), rtol=1e-5, atol=1e-6)
    values = np.array([p["value"] for p in dia.json()["predictions"]])
    np.testing.assert_allclose(values, logged_outputs(served, "dia", dia_rows).reshape(-1), rtol=1e-5, atol=1e-5)
    nowhere = post(url, "/predict", {"rows": bc_rows})
    assert nowhere.status_code == 404 and "/bc/predict, /dia/predict" in nowhere.json()["error"], nowhere.text

    built = served["packaged"]
    assert [(r["route"], r["model"], r["version"]) for r in built["routes"]] == [
        ("/bc/predict", "bc", 1), ("/dia/predict", "dia", 1),
    ]  # fmt: skip
    build = Path(built["build_dir"])
    assert build == served["root"] / "bentos" / "both" and (build / "model_dia.py").exists()
    bentofile = (build / "bentofile.yaml").read_text()
    assert f"pyarrow=={__import__('pyarrow').__version__}" in bentofile and "- model_bc.py" in bentofile


def test_a_bad_row_is_the_422_of_its_own_models_contract(served):
    url, frames = served["url"], served["frames"]
    good = rows_of(frames["dia"], 1)[0]
    bad = post(url, "/dia/predict", {"rows": [good, {**good, "bmi": "heavy"}]})
    assert bad.status_code == 422 and bad.json()["field"] == "rows[1].bmi", bad.text
    assert "rows[1].bmi" in bad.json()["error"]
    crossed = post(url, "/dia/predict", {"rows": rows_of(frames["bc"], 1)})  # bc's row sent to dia: dia's fields
    fields = {e["field"] for e in crossed.json()["errors"]}
    assert crossed.status_code == 422 and {"rows[0].bmi", "rows[0].clinic"} <= fields, crossed.text
    clinic = post(url, "/bc/predict", {"rows": [{**rows_of(frames["bc"], 1)[0], "clinic": "east"}]})
    assert clinic.status_code == 422 and clinic.json()["field"] == "rows[0].clinic", clinic.text
    assert post(url, "/bc/predict", "{rows: [").status_code == 400


def test_feedback_is_per_route(served):
    url, frames = served["url"], served["frames"]
    answer = post(url, "/bc/predict", {"rows": rows_of(frames["bc"], 1)})
    rid = answer.headers["x-request-id"]
    assert post(url, "/bc/feedback", {"request_id": rid, "label": 1}).status_code == 200
    other = post(url, "/dia/feedback", {"request_id": rid, "label": 1.0})  # dia never answered it
    assert other.status_code == 404 and other.json()["field"] == "request_id", other.text
    outside = post(url, "/bc/feedback", {"request_id": rid, "label": 7})
    assert outside.status_code == 422 and outside.json()["field"] == "label"


def test_request_logs_kpis_and_one_metrics_endpoint(served):
    "Each model's requests land in its own request log; `aiwb kpi` counts both; /metrics has both models' gauges."
    from aiworkbench.monitoring.inference_table import read_request_log

    url, frames, settings = served["url"], served["frames"], served["settings"]
    since = time.time()
    for i in range(3):
        assert post(url, "/bc/predict", {"rows": rows_of(frames["bc"], 2, i)}).status_code == 200
    for i in range(4):
        assert post(url, "/dia/predict", {"rows": rows_of(frames["dia"], 1, i)}).status_code == 200
    assert post(url, "/dia/predict", {"rows": [{"bmi": 1.0}]}).status_code == 422

    def logs():
        bc, dia = (read_request_log(n, settings=settings, since=since)[0] for n in ("bc", "dia"))
        return (len(bc), len(dia)) == (3, 5) and (bc, dia)

    bc, dia = until(logs)
    assert set(bc.model) == {"bc"} and sorted(dia.status) == [200] * 4 + [422]
    assert list(bc.n) == [2, 2, 2] and set(dia.version) == {1}
    kpi = run("kpi", "--json", cwd=served["root"])
    assert kpi.returncode == 0, kpi.stderr
    latency = next(k for k in json.loads(kpi.stdout)["kpis"] if k["key"] == "p95_latency")
    assert latency["value"] is not None and "to bc, dia" in latency["evidence"], latency

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    for line in (
        'aiwb_model_version{model="bc",variant="champion"} 1',
        'aiwb_model_version{model="dia",variant="champion"} 1',
        'aiwb_feedback_coverage{model="dia"}',
        'aiwb_predicted_value_count{model="dia",version="1",variant="champion"}',
        'aiwb_predictions_total{model="bc",version="1",variant="champion",class=',
        'endpoint="/bc/predict"',
        'endpoint="/dia/predict"',
    ):
        assert line in metrics, line
    assert metrics.count("# TYPE aiwb_model_version gauge") == 1  # one block per metric, as Prometheus wants
    rules = (Path(served["packaged"]["build_dir"]) / "prometheus-rules.yml").read_text()
    assert 'model=~"bc|dia"' in rules and "sum by (le, endpoint)" in rules


def test_unusable_input_exits_2_naming_it(project):
    root = project["root"]
    cases = [
        (("bc@champion", "dia@champion"), "2 models make one service: name it with --name NAME"),
        (("bc@champion", "bc/1", "--name", "x"), "model `bc` is named twice (`bc@champion`, `bc/1`)"),
        (("bc@champion", "nope@champion", "--name", "x"), "`nope@champion`: no registered model `nope`"),
        (("bc@champion", "dia@champion", "--name", "x", "--canary", "b=0.1"), "--canary names a challenger of one"),
    ]  # fmt: skip
    for args, message in cases:
        proc = run("package", *args, cwd=root)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.returncode, proc.stderr)
    proc = run("serve", "bc@champion", "dia@champion", cwd=root)
    assert proc.returncode == 2 and "name it with --name NAME" in proc.stderr, proc.stderr
    assert not (root / "bentos" / "x").exists()  # refused before anything was written


@pytest.fixture
def jp_root_dir(project):
    return project["root"]


@pytest.fixture
def jp_server_config():
    return {
        "ServerApp": {"jpserver_extensions": {"aiworkbench.lab.extension": True}, "allow_unauthenticated_access": False}
    }


async def test_services_route_lists_each_route_with_its_live_quality(served, jp_fetch, monkeypatch):
    "GET services: the service of several lists each route's model and version, each with its model's live quality."
    from aiworkbench.monitoring.inference_table import read_request_log
    from aiworkbench.results import ListServicesResponse

    monkeypatch.delenv("AIWB_ROOT", raising=False)
    url, frames, settings = served["url"], served["frames"], served["settings"]
    answer = post(url, "/bc/predict", {"rows": rows_of(frames["bc"], 1)})
    assert post(url, "/bc/feedback", {"request_id": answer.headers["x-request-id"], "label": 0}).status_code == 200
    answer = post(url, "/dia/predict", {"rows": rows_of(frames["dia"], 1)})
    assert post(url, "/dia/feedback", {"request_id": answer.headers["x-request-id"], "label": 151.0}).status_code == 200
    until(lambda: all(len(read_request_log(n, settings=settings)[0]) for n in ("bc", "dia")))
    r = await jp_fetch("aiworkbench", "api", "services", method="GET")
    listed = json.loads(r.body)
    ListServicesResponse.model_validate(listed)  # what the panel's types are generated from
    (both,) = [s for s in listed["services"] if s["name"] == "both"]
    assert both["live"] is None and both["runtime"] == "onnx" and both["version"] is None
    routes = {r["route"]: r for r in both["routes"]}
    assert sorted(routes) == ["/bc/predict", "/dia/predict"]
    assert [(r["model"], r["version"]) for r in routes.values()] == [("bc", 1), ("dia", 1)]
    bc, dia = routes["/bc/predict"]["live"], routes["/dia/predict"]["live"]
    assert (bc["model"], bc["metric"], dia["model"], dia["metric"]) == ("bc", "accuracy", "dia", "mae")
    assert min(bc["labels"], bc["requests"], dia["labels"], dia["requests"]) >= 1, (bc, dia)
