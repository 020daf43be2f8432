"""Production serving, real `bentoml serve`: ONNX export and runtime, canary, shadow, following the alias, feedback,
the live gate and `aiwb monitor` on live traffic, OpenTelemetry traces."""

import gzip
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

CLINICS = ["north", "south", "west"]
DROPPED = "worst symmetry"  # version 3 is trained without it: its inputs are not the served contract's


def _train(df, contract, settings, seed):
    from aiworkbench.training import train_tabular

    fit = train_tabular(
        df, contract, max_epochs=1, seed=seed, settings=settings, register="bc", enable_progress_bar=False
    )
    return int(fit.registered["version"])


def _unservable(df, contract, settings):
    "A version whose model takes one input less than its contract encodes: it cannot be served."
    import mlflow
    import torch

    from aiworkbench.encoding import feature_names
    from aiworkbench.registry import register_model
    from aiworkbench.tracking import start_run

    features = feature_names(contract)
    module = torch.nn.Sequential(torch.nn.Linear(len(features) - 1, 2), torch.nn.Softmax(-1))
    meta = {"aiwb.contract": json.dumps(contract.model_dump(mode="json")), "aiwb.features": json.dumps(features[:-1])}
    with start_run(settings=settings, run_name="unservable"):
        info = mlflow.pytorch.log_model(
            module,
            name="model",
            pip_requirements=["torch"],
            input_example=np.zeros((2, len(features) - 1), dtype="float32"),
            serialization_format="pt2",
            metadata=meta | {"aiwb.task": "classification", "aiwb.classes": "[0, 1]"},
        )
    return int(register_model(info.model_uri, "bc", settings=settings)["version"])


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "`bc` (breast cancer plus a `clinic` category): v1 champion, v2 challenger, v3 other inputs, v4 unservable."
    from sklearn.datasets import load_breast_cancer

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import infer_contract
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote

    root = init_project(tmp_path_factory.mktemp("traffic") / "proj")
    settings = load_settings(root, environ={"AIWB_SERVING_FOLLOW_POLL_S": "0.2"})
    df = load_breast_cancer(as_frame=True).frame
    df.insert(0, "clinic", [CLINICS[i % 3] for i in range(len(df))])
    contract = infer_contract(df, "breast_cancer", target="target")
    contract.columns["clinic"].allowed = CLINICS
    for col in contract.features:
        if col != "clinic":
            contract.columns[col].min = contract.columns[col].max = None
    versions = [_train(df, contract, settings, seed) for seed in (0, 1)]
    narrow = df.drop(columns=DROPPED)
    narrow_contract = infer_contract(narrow, "breast_cancer", target="target")
    narrow_contract.columns["clinic"].allowed = CLINICS
    versions.append(_train(narrow, narrow_contract, settings, 2))
    versions.append(_unservable(df, contract, settings))
    assert versions == [1, 2, 3, 4]
    promote("bc", 1, settings=settings)
    promote("bc", 2, alias="challenger", settings=settings)
    return {"root": root, "settings": settings, "df": df, "contract": contract}


def rows_of(df, n=1, start=0):
    return json.loads(df.drop(columns="target").iloc[start : start + n].to_json(orient="records"))


def predict(url, rows, key=None):
    headers = {"content-type": "application/json"} | ({"x-request-key": key} if key else {})
    return httpx.post(f"{url}/predict", content=json.dumps({"rows": rows}), headers=headers, timeout=30)


def aiwb(*args, cwd, timeout=300):
    exe = str(Path(sys.executable).parent / "aiwb")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def torch_outputs(project, rows):
    "The logged (pt2) champion's outputs on `rows`, encoded as training encodes them."
    import pandas as pd
    import torch

    from aiworkbench.encoding import encode_features
    from aiworkbench.registry import resolve_version
    from aiworkbench.tracking import load_pytorch

    settings = project["settings"]
    model = load_pytorch(resolve_version("bc", 1, settings=settings).source, settings=settings)
    x = encode_features(pd.DataFrame(rows), project["contract"])
    with torch.inference_mode():
        return x, model(torch.from_numpy(x)).numpy()


def test_onnx_export_runs_in_plain_onnxruntime(project, tmp_path):
    "`aiwb export` of a model with a categorical input: checked, logged, tagged, and runnable with no aiworkbench."
    from aiworkbench.tracking import client

    out = tmp_path / "bc.onnx"
    proc = aiwb("export", "bc@champion", "--format", "onnx", "-o", out, "--json", cwd=project["root"])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["version"] == 1 and result["max_diff"] <= 1e-5 and Path(result["file"]) == out
    assert [f"clinic={c}" for c in CLINICS] == result["inputs"][:3]  # the category, one-hot before the model
    tags = client(settings=project["settings"]).get_model_version("bc", "1").tags
    assert tags["aiwb.onnx"] == result["model_uri"]  # Phase 4's evidence

    rows = rows_of(project["df"], 9)
    x, want = torch_outputs(project, rows)
    np.save(tmp_path / "x.npy", x)
    code = (
        "import sys, json; sys.modules['aiworkbench'] = sys.modules['torch'] = None\n"
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(out)!r}, providers=['CPUExecutionProvider'])\n"
        "meta = s.get_modelmeta().custom_metadata_map\n"
        f"y = s.run(None, {{s.get_inputs()[0].name: np.load({str(tmp_path / 'x.npy')!r})}})[0]\n"
        "print(json.dumps({'y': y.tolist(), 'features': json.loads(meta['aiwb.features'])}))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert ran.returncode == 0, ran.stderr
    answer = json.loads(ran.stdout)
    np.testing.assert_allclose(np.array(answer["y"]), want, atol=1e-5)
    assert answer["features"] == result["inputs"]

    bad = aiwb("export", "bc@champion", "--format", "tflite", cwd=project["root"])
    assert bad.returncode == 2 and "format `tflite`" in bad.stderr, bad.stderr
    old = aiwb("export", "bc@champion", "--opset", "7", cwd=project["root"])
    assert old.returncode == 2 and "opset `7`" in old.stderr and "use 14 to " in old.stderr, old.stderr


def test_canary_share_out_of_range_is_exit_2(project):
    proc = aiwb("package", "bc@champion", "--canary", "challenger=1.5", cwd=project["root"])
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "--canary `challenger=1.5`" in proc.stderr and "below 1" in proc.stderr


@pytest.fixture(scope="module")
def canary(project, tmp_path_factory):
    "`aiwb serve` as a user runs it: the champion behind onnxruntime, the challenger answering half the requests."
    from aiworkbench.serving.artifacts import default_build_dir

    command = ["serve", "bc@champion", "--runtime", "onnx", "--canary", "challenger=0.5", "--port", "0"]
    errors = tmp_path_factory.mktemp("canary") / "serve.err"
    with open(errors, "w") as err:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "aiwb"), *command], cwd=project["root"],
                                stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)  # fmt: skip
    try:
        url = proc.stdout.readline().strip()  # printed once /readyz answers; empty if `aiwb serve` exited
        assert url.startswith("http://127.0.0.1:"), (url, errors.read_text())
        yield SimpleNamespace(url=url, build_dir=default_build_dir("bc", 1, settings=project["settings"]))
    finally:
        proc.send_signal(signal.SIGTERM)  # `aiwb serve` stops its `bentoml serve`, then exits
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_onnx_runtime_and_sticky_canary(project, canary):
    rows = rows_of(project["df"], 5)
    versions = {}
    for i in range(24):
        key = f"user-{i}"
        first, again = predict(canary.url, rows, key), predict(canary.url, rows, key)
        assert first.status_code == again.status_code == 200, first.text
        versions[key] = first.json()["version"]
        assert again.json()["version"] == versions[key] == int(first.headers["x-model-version"])  # sticky
    assert set(versions.values()) == {1, 2}
    champion = next(predict(canary.url, rows, k) for k, v in versions.items() if v == 1)
    _, want = torch_outputs(project, rows)
    got = np.array([p["probabilities"] for p in champion.json()["predictions"]])
    np.testing.assert_allclose(got, want, atol=1e-5)  # ONNX answers as the logged model does
    metrics = httpx.get(f"{canary.url}/metrics", timeout=10).text
    assert 'aiwb_model_version{model="bc",variant="canary"} 2' in metrics
    assert 'aiwb_canary_share{model="bc"} 0.5' in metrics
    built = json.loads((canary.build_dir / "build.json").read_text())
    assert built["runtime"] == "onnx" and built["challenger"]["mode"] == "canary"


def test_gate_and_monitor_read_the_canary_on_live_traffic(project, canary):
    "Labels for both sides of the canary: `aiwb monitor` shows champion vs challenger; the gate reads the same numbers."
    from aiworkbench.monitoring.feedback import live_report

    root, df, sent = project["root"], project["df"], {1: 0, 2: 0}
    for i in range(40):
        r = predict(canary.url, rows_of(df, 1, start=i), key=f"gate-{i}")
        assert r.status_code == 200, r.text
        version, predicted = r.json()["version"], r.json()["predictions"][0]["label"]
        label = predicted if version == 1 else 1 - predicted  # the champion always right, the canary always wrong
        stored = httpx.post(f"{canary.url}/feedback", json={"request_id": r.headers["x-request-id"], "label": label})
        assert stored.status_code == 200, stored.text
        sent[version] += 1
    assert sent[1] and sent[2], sent
    landed = lambda: live_report("bc", champion=1, challenger=2, settings=project["settings"])["variants"]  # noqa: E731
    _until(lambda: landed().get("canary", {}).get("requests", 0) >= sent[2])  # the request log is written behind

    monitored = aiwb("monitor", "bc", "--no-retrain", "--json", cwd=root)
    result = json.loads(monitored.stdout)
    assert monitored.returncode == (1 if result["verdict"] == "drift" or result["concept_drift"] else 0), result
    live = result["live"]
    champion, challenger = live["variants"]["champion"], live["challenger"]
    assert (champion["versions"], champion["accuracy"], champion["labels"]) == ([1], 1.0, sent[1]), champion
    assert [challenger[k] for k in ("mode", "versions", "accuracy", "labels")] == ["canary", [2], 0.0, sent[2]]
    assert live["shown"][1].startswith("challenger v2 (canary): ") and "live accuracy 0.0%" in live["shown"][1]

    gate = ["models", "promote", "bc", "2", "--alias", "approved", "--beat", "live_accuracy"]
    refused = aiwb(*gate, "--min-agreement", "0.9", "--json", cwd=root)
    assert refused.returncode == 1, refused.stderr
    checks = {c["name"]: c for c in json.loads(refused.stdout)["checks"]}
    assert checks["live traffic compares champion v1 with v2"]["passed"], checks
    beat = checks["beats champion on live_accuracy by >= 0"]
    assert not beat["passed"] and f"live = 0 on {sent[2]} label(s) vs champion 1 on {sent[1]}" in beat["detail"]
    agree = checks["agrees with the champion on >= 0.9 of live rows"]
    assert not agree["passed"] and "no shadow traffic" in agree["detail"], agree
    passed = aiwb(*gate, "--delta", "-1", "--json", cwd=root)  # losing by at most 1: allowed
    assert passed.returncode == 0 and json.loads(passed.stdout)["to"] == 2, passed.stderr
    for bad, named in ((["--min-agreement", "1.5"], "gate.min_agreement"), (["--beat", "live_mae"], "`live_mae`")):
        unusable = aiwb("models", "promote", "bc", "2", "--alias", "approved", *bad, cwd=root)
        assert unusable.returncode == 2 and named in unusable.stderr, (bad, unusable.stderr)


RAISING = """
import torch


class Broken(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool((x != 0).any()):  # the warm-up (zeros) passes; every real request fails
            raise RuntimeError("challenger broken")
        return torch.zeros(x.shape[0], 2)


torch.jit.script(Broken()).save(__import__("sys").argv[1])
"""


class _Traces(http.server.BaseHTTPRequestHandler):
    "An OTLP/HTTP receiver: keeps each POST /v1/traces body."

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.posts.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def otlp():
    "A local OTLP/HTTP trace receiver on 127.0.0.1."
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Traces)
    server.posts = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def shadowed(project, otlp, tmp_path_factory):
    """A plain `bentoml serve` of a build following `bc@champion`, with `aiwb follow` beside it (polling every 0.2 s),
    a shadow challenger that raises on every request, and traces of /predict sent to `otlp`."""
    from aiworkbench.config import load_settings
    from aiworkbench.serving.artifacts import bentoml_env, bentoml_home
    from aiworkbench.serving.package import package
    from aiworkbench.serving.server import Server, free_port

    settings = project["settings"]
    endpoint = f"http://127.0.0.1:{otlp.server_address[1]}/v1/traces"
    traced = load_settings(project["root"], environ={"AIWB_SERVING_OTLP_ENDPOINT": endpoint})
    packaged = package("bc@champion", shadow="challenger", follow=True, runtime="torchscript", settings=traced)
    stored = bentoml_home(settings=settings) / "models" / "bc" / "v1" / "challenger.ts"
    work = tmp_path_factory.mktemp("broken")
    script = work / "broken.py"  # TorchScript reads the module's source file
    script.write_text(RAISING)
    subprocess.run([sys.executable, str(script), str(stored)], check=True, timeout=120)
    build = Path(packaged["build_dir"])
    server = Server(build, "127.0.0.1", free_port(), bentoml_env(settings=settings))  # `bentoml serve .` in `build`
    with server.start():
        with open(work / "follow.out", "w") as out:
            command = [str(Path(sys.executable).parent / "aiwb"), "follow", str(build), "--poll", "0.2"]
            follower = subprocess.Popen(command, cwd=project["root"], stdout=out, stderr=subprocess.STDOUT)
        try:  # it says so once it is ready to prepare a new version at once
            _until(lambda: "following bc@champion (serving v1)" in (work / "follow.out").read_text(), timeout=180)
            yield {"server": server, "url": server.url, "build": build, "packaged": packaged, "follow": work}
        finally:
            follower.terminate()  # SIGTERM: it stops between two looks
            follower.wait(30)


def _load(url, rows, stop, answers):
    with httpx.Client(timeout=30) as client:
        while not stop.is_set():
            sent = time.monotonic()
            r = client.post(f"{url}/predict", json={"rows": rows})
            version = r.json().get("version") if r.status_code == 200 else r.text
            answers.append((r.status_code, version, sent, time.monotonic()))


def _alerts(settings, kind="follow"):
    path = settings.state_dir / "alerts.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [a for a in map(json.loads, lines) if a["kind"] == kind]


def _until(check, timeout=90.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("not within the deadline")


def test_shadow_feedback_swap_and_refusals(project, shadowed):
    "Shadow errors logged, feedback validated, a swap under c=8 with no failure, bad versions refused with alerts."
    from aiworkbench.facade_serving import Serving
    from aiworkbench.registry import promote
    from aiworkbench.workbench import Workbench

    settings, url, started = project["settings"], shadowed["url"], time.time()
    rows = rows_of(project["df"], 1)
    first = predict(url, rows)
    assert first.status_code == 200 and first.json()["version"] == 1  # the champion answers; the shadow fails
    rid = first.headers["x-request-id"]
    label = int(project["df"]["target"].iloc[0])

    def feedback(body):
        data = body if isinstance(body, str) else json.dumps(body)
        return httpx.post(f"{url}/feedback", content=data, headers={"content-type": "application/json"}, timeout=10)

    assert feedback({"request_id": rid, "label": label}).status_code == 200
    unknown = feedback({"request_id": "0" * 32, "label": 1})
    assert unknown.status_code == 404 and unknown.json()["field"] == "request_id"
    outside = feedback({"request_id": rid, "label": 7})
    assert outside.status_code == 422 and outside.json()["field"] == "label" and "[0, 1]" in outside.json()["error"]
    assert feedback("{not json").status_code == 400
    assert feedback({"label": 1}).json()["field"] == "request_id"

    stop, answers = threading.Event(), []
    workers = [threading.Thread(target=_load, args=(url, rows, stop, answers)) for _ in range(8)]
    for w in workers:
        w.start()
    try:
        _until(lambda: len(answers) > 50)
        promote("bc", 2, settings=settings)
        _until(lambda: any(a[1] == 2 for a in answers[-20:]))
        seen = len(answers)
        _until(lambda: len(answers) > seen + 50)
    finally:
        stop.set()
        for w in workers:
            w.join(30)
    failed = [a for a in answers if a[0] != 200]
    assert not failed, failed[:5]
    versions = [a[1] for a in answers]
    assert versions[0] == 1 and versions[-1] == 2 and 2 in versions
    # Requests in flight at the swap may finish on 1 after another thread's request saw 2; a request *sent* after
    # version 2 first answered must never get version 1.
    took_over = min(received for _, v, _, received in answers if v == 2)
    late = [a for a in answers if a[1] == 1 and a[2] > took_over]
    assert not late, late[:5]

    promote("bc", 3, settings=settings)  # trained without `worst symmetry`: the service refuses it
    refused = _until(lambda: [a for a in _alerts(settings) if a.get("version") == 3])
    assert "also takes" not in refused[0]["message"] and "lacks" in refused[0]["message"], refused
    assert "version 2 keeps serving" in refused[0]["message"]
    promote("bc", 4, settings=settings)  # its model takes one input less than its contract: it cannot be prepared
    failed_load = _until(lambda: [a for a in _alerts(settings) if a.get("version") == 4])
    assert "cannot be served" in failed_load[0]["message"] and "version 2 keeps serving" in failed_load[0]["message"]
    followed = (shadowed["follow"] / "follow.out").read_text()  # `aiwb follow`, beside the service, did each move
    for line in ("bc@champion: v2 written", "bc@champion: v3 written", "bc@champion: v4 refused"):
        assert line in followed, followed
    after = predict(url, rows)
    assert after.status_code == 200 and after.json()["version"] == 2

    metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'aiwb_model_version{model="bc",variant="champion"} 2' in metrics
    assert 'aiwb_swaps_total{model="bc"} 1' in metrics and 'aiwb_swaps_refused_total{model="bc"} 1' in metrics
    assert 'aiwb_feedback_total{model="bc"} 1' in metrics
    shadow_errors = float(metrics.split('aiwb_shadow_errors_total{model="bc"} ')[1].split()[0])
    assert shadow_errors >= len(answers) // 2
    rules = (shadowed["build"] / "prometheus-rules.yml").read_text()
    for name in ("bentoml_service_request_duration_seconds_bucket", "bentoml_service_request_total"):
        assert name in rules and name in metrics, name  # the rules use what /metrics has
    assert json.loads((shadowed["build"] / "grafana-dashboard.json").read_text())["panels"]

    requests = settings.state_dir / "requests" / "bc"
    _until(lambda: list(requests.glob("shadow-*.jsonl")) and list(requests.glob("feedback-*.jsonl")))
    serving = Serving(Workbench(project["root"]))
    live = _until(lambda: (r := serving.live("bc", since=started))["shadow"]["requests"] > 50 and r)
    assert live["labels"] == 1 and live["shadow"]["errors"] == live["shadow"]["requests"]
    shadow_line = f"({live['shadow']['requests']} requests, {live['shadow']['errors']} failed)"
    assert shadow_line in live["shown"][2], live["shown"]
    assert "challenger broken" in live["shadow"]["last_error"]
    from aiworkbench.monitoring.inference_table import read_request_log

    def logged():
        frame = read_request_log("bc", settings=settings)[0]
        return set(zip(frame["variant"], frame["version"].astype(int), frame["status"].astype(int), strict=True))

    wanted = {("champion", 1, 200), ("champion", 2, 200), ("shadow", 2, 500)}
    assert _until(lambda: wanted <= logged()), logged()  # each record names the version and variant that answered


def _span_names(posts):
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    names = []
    for path, body in posts:
        assert path == "/v1/traces", path
        request = ExportTraceServiceRequest.FromString(body)
        names += [s.name for r in request.resource_spans for scope in r.scope_spans for s in scope.spans]
    return names


def test_predict_is_traced_to_the_otlp_endpoint(project, shadowed, otlp):
    "`[serving] otlp_endpoint` set when packaging: BentoML exports the spans of POST /predict to that OTLP receiver."
    built = (shadowed["build"] / "service.py").read_text()
    assert f"'endpoint': 'http://127.0.0.1:{otlp.server_address[1]}/v1/traces'" in built
    assert predict(shadowed["url"], rows_of(project["df"], 1)).status_code == 200
    names = _until(lambda: [n for n in _span_names(list(otlp.posts)) if "/predict" in n], timeout=60)
    assert any(n.startswith("POST /predict") for n in names), names
