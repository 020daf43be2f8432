"A registered model served by a real `bentoml serve` on 127.0.0.1: contract-checked input, faults, request log, CLI."

import http.client
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.slow

CLINICS = ["north", "south", "west"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "A project with the breast-cancer MLP (plus a `clinic` category) registered as `bc`, version 1 the champion."
    from sklearn.datasets import load_breast_cancer

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import infer_contract
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote
    from aiworkbench.training import train_tabular

    root = init_project(tmp_path_factory.mktemp("serving") / "proj")
    settings = load_settings(root, environ={})
    df = load_breast_cancer(as_frame=True).frame
    df.insert(0, "clinic", [CLINICS[i % 3] for i in range(len(df))])
    contract = infer_contract(df, "breast_cancer", target="target")
    contract.columns["clinic"].allowed = CLINICS
    for col in contract.features[2:]:  # bounds relaxed, as a user may: only `mean radius` keeps its observed range
        contract.columns[col].min = contract.columns[col].max = None
    fit = train_tabular(df, contract, max_epochs=1, settings=settings, register="bc", enable_progress_bar=False)
    promote("bc", fit.registered["version"], settings=settings)
    return {"root": root, "settings": settings, "df": df, "contract": contract, "model_uri": fit.model_uri}


@pytest.fixture(scope="module")
def served(project):
    from aiworkbench.serving.package import package
    from aiworkbench.serving.server import serve

    packaged = package("bc@champion", settings=project["settings"])
    with serve("bc@champion", settings=project["settings"]) as server:
        yield {**project, "server": server, "url": server.url, "packaged": packaged}


def rows_of(df, n=3, start=0):
    return json.loads(df.drop(columns="target").iloc[start : start + n].to_json(orient="records"))


def post(url, body, content_type="application/json", **kw):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return httpx.post(f"{url}/predict", content=data, headers={"content-type": content_type}, timeout=30, **kw)


def test_predictions_match_training_encoding(served):
    "Served probabilities are the logged model's outputs on `encode_features` of the same rows."
    import bentoml
    import torch

    from aiworkbench.encoding import encode_features
    from aiworkbench.tracking import load_pytorch

    df, contract = served["df"], served["contract"]
    with bentoml.SyncHTTPClient(served["url"]) as client:
        result = client.predict(rows=rows_of(df, 20))
    assert result["model"] == "bc" and result["version"] == 1 and result["classes"] == [0, 1]
    got = np.array([p["probabilities"] for p in result["predictions"]])
    model = load_pytorch(served["model_uri"], settings=served["settings"])
    want = model(torch.from_numpy(encode_features(df.iloc[:20], contract))).detach().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [p["label"] for p in result["predictions"]] == list(want.argmax(1))


def test_health_and_metrics(served):
    for path in ("/readyz", "/livez", "/metrics"):
        assert httpx.get(served["url"] + path, timeout=5).status_code == 200, path


def _bad_requests(df):
    good = rows_of(df, 1)[0]
    huge = {
        k: (3e38 if i % 2 else -3e38) if k not in ("clinic", "mean radius") else v
        for i, (k, v) in enumerate(good.items())
    }
    return {
        "missing field": (
            {"rows": [{k: v for k, v in good.items() if k != "mean radius"}]},
            422,
            "rows[0].mean radius",
        ),
        "wrong type": ({"rows": [good, {**good, "mean texture": "high"}]}, 422, "rows[1].mean texture"),
        "extra field": ({"rows": [{**good, "target": 1}]}, 422, "rows[0].target"),
        "NaN": (
            json.dumps({"rows": [good]}).replace('"mean area": ', '"mean area": NaN, "x": '),
            422,
            "rows[0].mean area",
        ),
        "infinity": (
            '{"rows": [' + json.dumps(good).replace('"worst area": ', '"worst area": Infinity, "y": ') + "]}",
            422,
            "rows[0].worst area",
        ),
        "out of range": ({"rows": [{**good, "mean radius": -5.0}]}, 422, "rows[0].mean radius"),
        "beyond float32": ({"rows": [{**good, "worst area": 1e308}]}, 422, "rows[0].worst area"),
        "non-finite output": ({"rows": [good, huge]}, 422, "rows[1]"),  # each value in float32, the output NaN
        "unknown category": ({"rows": [{**good, "clinic": "east"}]}, 422, "rows[0].clinic"),
        "empty batch": ({"rows": []}, 422, "rows"),
        "no rows key": ({"data": [good]}, 422, "rows"),
        "not JSON": ("{rows: [", 400, "body"),
        "wrong content type": ("mean radius=1", 415, "content-type"),
    }


BAD_CASES = [
    "missing field",
    "wrong type",
    "extra field",
    "NaN",
    "infinity",
    "out of range",
    "beyond float32",
    "non-finite output",
    "unknown category",
    "empty batch",
    "no rows key",
    "not JSON",
    "wrong content type",
]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_is_4xx_naming_the_field(served, case):
    body, status, field = _bad_requests(served["df"])[case]
    content_type = "text/plain" if case == "wrong content type" else "application/json"
    r = post(served["url"], body, content_type)
    assert r.status_code == status, (case, r.status_code, r.text)
    answer = r.json()
    assert answer["field"] == field, answer
    if status == 422:
        assert field in answer["error"], answer


def test_build_folder_is_short_and_runs_without_aiworkbench(served):
    "`service.py` is about 130 lines and one per column; beside it the modules it imports; no aiworkbench nor torch."
    import aiworkbench.monitoring.feedback as feedback
    import aiworkbench.monitoring.request_log as request_log
    import aiworkbench.serving.loading as loading
    import aiworkbench.serving.runtime as runtime
    import aiworkbench.serving.traffic as traffic
    from aiworkbench.serving.artifacts import bentoml_env

    build = Path(served["packaged"]["build_dir"])
    lines = (build / "service.py").read_text().splitlines()
    assert len(lines) < 130 + len(served["contract"].features), len(lines)
    for module in (runtime, traffic, loading, request_log, feedback):  # copies of the package's modules
        assert (build / Path(module.__file__).name).read_text() == Path(module.__file__).read_text(), module
    code = (
        "import sys; sys.modules['aiworkbench'] = sys.modules['torch'] = None\n"  # importing either fails
        "import service; print(service.MODEL_TAG, service.Bc.name, sorted(service.Bc.apis))"
    )
    env = bentoml_env(settings=served["settings"])
    proc = subprocess.run([sys.executable, "-c", code], cwd=build, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["bc:v1", "bc", "['predict']"], proc.stdout


def test_body_over_the_limit_is_413(served):
    good = rows_of(served["df"], 1)[0]
    big = json.dumps({"rows": [good] * 14_000}).encode()
    assert len(big) > 10 * 2**20
    r = post(served["url"], big)
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks():  # no content-length: the limit holds on the bytes read
        for i in range(0, len(big), 2**20):
            yield big[i : i + 2**20]

    r = httpx.post(f"{served['url']}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


class Canary:
    "Unpickling this creates a file: the proof that a pickle was deserialised."

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_pickle_is_never_deserialised(served, tmp_path):
    canary = tmp_path / "canary"
    payload = pickle.dumps(Canary(str(canary)))
    for media in ("application/vnd.bentoml+pickle", "application/python-pickle", "application/octet-stream"):
        r = post(served["url"], payload, media)
        assert r.status_code == 415, (media, r.status_code, r.text)
    assert not canary.exists()  # each request was answered above: had it been unpickled, the file would be there


def test_mixed_load_has_no_5xx(served):
    "8 threads x 40 requests, about 20 % bad: no 5xx; every good one 200, every bad one the 4xx naming its field."
    df = served["df"]
    bad = list(_bad_requests(df).values())
    outcomes = []

    def worker(seed):
        rng = random.Random(seed)
        with httpx.Client(timeout=30) as http:
            for _ in range(40):
                if rng.random() < 0.2:
                    body, _, field = rng.choice(bad)
                    media = "text/plain" if field == "content-type" else "application/json"
                else:
                    body, field, media = (
                        {"rows": rows_of(df, rng.randint(1, 8), rng.randint(0, 500))},
                        None,
                        "application/json",
                    )
                data = body if isinstance(body, str) else json.dumps(body)
                r = http.post(f"{served['url']}/predict", content=data, headers={"content-type": media})
                outcomes.append((field, r.status_code, r.json().get("field") if r.status_code >= 400 else None))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(8)))
    assert len(outcomes) == 320
    assert not [o for o in outcomes if o[1] >= 500]
    good = [o for o in outcomes if o[0] is None]
    wrong = [o for o in outcomes if o[0] is not None and not (400 <= o[1] < 500 and o[2] == o[0])]
    assert good and len(good) < 320 and all(o[1] == 200 for o in good) and not wrong, wrong[:5]


def test_request_log_is_written_and_read_back(served):
    from aiworkbench.monitoring.inference_table import read_request_log

    since = time.time()
    post(served["url"], {"rows": rows_of(served["df"], 4)})
    post(served["url"], {"rows": [{"mean radius": "x"}]})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        requests, rows = read_request_log("bc", settings=served["settings"], since=since)
        if len(requests) >= 2:
            break
        time.sleep(0.1)
    assert sorted(requests.status.tolist()) == [200, 422]
    ok = requests[requests.status == 200].iloc[0]
    assert ok.n == 4 and ok.version == 1 and ok.latency_ms > 0 and ok.cpu_ms >= 0 and ok.rss_mb > 10
    assert len(rows) == 4 and {"clinic", "mean radius", "worst area"} <= set(rows.columns)
    assert rows["mean radius"].tolist() == served["df"]["mean radius"].iloc[:4].tolist()
    assert {"request_id", "model", "variant"} <= set(requests.columns)  # each record names what answered
    assert set(requests.variant) == {"champion"} and set(requests.model) == {"bc"}


def test_signature_mismatch_is_refused_at_package(served):
    "A version whose recorded features disagree with its contract is refused, naming the difference."
    import mlflow
    import torch

    from aiworkbench.encoding import feature_names
    from aiworkbench.registry import register_model
    from aiworkbench.serving.artifacts import PackagingRefused
    from aiworkbench.serving.package import package
    from aiworkbench.tracking import start_run

    settings, contract = served["settings"], served["contract"]
    features = feature_names(contract)
    module = torch.nn.Sequential(torch.nn.Linear(len(features) - 1, 2), torch.nn.Softmax(-1))
    with start_run(settings=settings, run_name="mismatch"):
        info = mlflow.pytorch.log_model(
            module,
            name="model",
            pip_requirements=["torch"],
            input_example=np.zeros((2, len(features) - 1), dtype="float32"),
            serialization_format="pt2",
            metadata={
                "aiwb.contract": json.dumps(contract.model_dump(mode="json")),
                "aiwb.features": json.dumps(features[:-1]),
                "aiwb.task": "classification",
                "aiwb.classes": "[0, 1]",
            },
        )
    version = register_model(info.model_uri, "bc", settings=settings)["version"]
    with pytest.raises(PackagingRefused, match=r"model lacks \['worst fractal dimension'\]"):
        package(f"bc/{version}", settings=settings)


def test_bentoml_build_from_the_generated_directory(served):
    "`bentoml build` succeeds offline (no package locking), and pip never installs `uv`."
    from aiworkbench.serving.artifacts import bentoml_env

    build = Path(served["packaged"]["build_dir"])
    bentofile = (build / "bentofile.yaml").read_text()
    assert "lock_packages: false" in bentofile and "torch==" in bentofile and "- runtime.py" in bentofile
    exe = Path(sys.executable).with_name("bentoml")
    proc = subprocess.run(
        [str(exe), "build", "--output", "tag"],
        cwd=build,
        env=bentoml_env(settings=served["settings"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "bc:" in proc.stdout
    assert not Path(sys.executable).with_name("uv").exists()  # BentoML would pip-install it without the stub
    assert "PATH=" in served["packaged"]["build_command"]


def test_cli_package_and_serve(served, aiwb):
    root = served["root"]
    r = aiwb("package", "bc@champion", "--json", cwd=root, timeout=300)
    assert r.code == 0, r.err
    assert r.json()["version"] == 1 and Path(r.json()["build_dir"], "service.py").exists()
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists()  # only .aiwb/ holds a store
    for command in ("package", "serve"):
        r = aiwb(command, "bc@nope", cwd=root)
        assert r.code == 2 and "model `bc` has no alias `nope`; it has: champion" in r.err, (command, r.err)
        r = aiwb(command, "nope@champion", cwd=root)
        assert r.code == 2 and "no registered model `nope`; models: bc" in r.err, (command, r.err)
        r = aiwb(command, "bc/99", cwd=root)
        assert r.code == 2 and "model `bc` has no version `99`" in r.err, (command, r.err)
    from aiworkbench.serving.server import free_port

    port = free_port()
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("aiwb")), "serve", "bc@champion", "--port", str(port)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = proc.stdout.readline().strip()
        assert url == f"http://127.0.0.1:{port}", proc.stderr.read() if proc.poll() is not None else url
        assert post(url, {"rows": rows_of(served["df"], 2)}).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)


def _in_progress(url: str) -> float:
    "BentoML's gauge of /predict requests being handled now (its metrics middleware wraps the guard)."
    try:  # a loaded CI machine: a slow answer is "not yet", the caller's deadline decides
        text = httpx.get(f"{url}/metrics", timeout=10).text
    except httpx.TimeoutException:
        return 0.0
    for line in text.splitlines():
        if line.startswith("bentoml_service_request_in_progress{") and 'endpoint="/predict"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_sigterm_finishes_accepted_requests(served, tmp_path):
    "Requests the server is handling when it gets SIGTERM are answered 200 in full, and it then exits 0."
    from aiworkbench.serving.artifacts import bentoml_env
    from aiworkbench.serving.server import Server, free_port

    server = Server(
        Path(served["packaged"]["build_dir"]), "127.0.0.1", free_port(), bentoml_env(settings=served["settings"])
    )
    server.log_path = tmp_path / "serve.log"
    body = json.dumps({"rows": rows_of(served["df"], 4)}).encode()
    rest = threading.Event()
    results = {}

    def slow_request(i):
        "The body's first bytes now, the rest once the server is shutting down: in flight across the SIGTERM."

        def chunks():
            yield body[:100]
            rest.wait(60)
            yield body[100:]

        headers = {"content-type": "application/json", "content-length": str(len(body))}
        with httpx.Client(timeout=60) as client:
            try:
                r = client.post(f"{server.url}/predict", content=chunks(), headers=headers)
                results[i] = (r.status_code, len(r.json().get("predictions", [])))
            except httpx.HTTPError as e:
                results[i] = repr(e)

    with server.start():
        threads = [threading.Thread(target=slow_request, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while _in_progress(server.url) < 4:  # all four accepted: the server is reading their bodies
            assert time.monotonic() < deadline, _in_progress(server.url)
            time.sleep(0.05)
        idle = http.client.HTTPConnection(server.host, server.port, timeout=30)
        idle.request("GET", "/livez")
        answer = idle.getresponse()
        assert answer.status == 200 and answer.read() is not None  # read in full: the connection is idle now
        os.killpg(server.process.pid, signal.SIGTERM)
        try:  # a graceful shutdown closes idle keep-alive connections first: then it has begun
            closed = idle.sock.recv(1) == b""
        except ConnectionResetError:
            closed = True
        rest.set()
        for t in threads:
            t.join(60)
        code = server.process.wait(30)
    assert closed, "the idle connection stayed open after SIGTERM"
    assert results == {i: (200, 4) for i in range(4)}, results
    assert code == 0, server.log_tail()
