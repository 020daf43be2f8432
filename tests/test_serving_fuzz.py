"""The served API keeps the promises of its own OpenAPI document (`/docs.json`): fuzzed by schemathesis, run as a user
runs it, against a real `bentoml serve` of a packaged model on 127.0.0.1."""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import jsonschema
import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CLINICS = ["north", "south", "west"]
STATUSES = {"200", "400", "413", "415", "422", "429", "504"}  # what /predict answers; never a 500
CHECKS = [  # every check that applies to a stateless, schema-driven run
    "not_a_server_error",  # no 5xx, whatever the input
    "status_code_conformance",  # each status answered is documented
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",  # each body matches the schema of its status (a NaN probability would not)
    "negative_data_rejection",  # input the schema forbids gets a 4xx
]
# Left out: `positive_data_acceptance`. A row inside the schema (each number within float32's range) can still make
# the model's output overflow; that is answered 422 naming the row, never a 200 with a wrong answer.


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    "The breast-cancer MLP (with a `clinic` category) packaged by `aiwb package` and served; numbers unbounded."
    from sklearn.datasets import load_breast_cancer

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import infer_contract
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote
    from aiworkbench.serving.artifacts import bentoml_env
    from aiworkbench.serving.server import Server, free_port
    from aiworkbench.training import train_tabular

    root = init_project(tmp_path_factory.mktemp("fuzz") / "proj")
    settings = load_settings(root, environ={})
    df = load_breast_cancer(as_frame=True).frame
    df.insert(0, "clinic", [CLINICS[i % 3] for i in range(len(df))])
    contract = infer_contract(df, "breast_cancer", target="target")
    contract.columns["clinic"].allowed = CLINICS
    for col in contract.features[1:]:  # relaxed: the fuzzer reaches float32's limits, where the model overflows
        contract.columns[col].min = contract.columns[col].max = None
    fit = train_tabular(df, contract, max_epochs=1, settings=settings, register="bc", enable_progress_bar=False)
    promote("bc", fit.registered["version"], settings=settings)
    packaged = subprocess.run(
        [str(BIN / "aiwb"), "package", "bc@champion", "--json"], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert packaged.returncode == 0, packaged.stderr[-3000:]
    build = Path(json.loads(packaged.stdout)["build_dir"])
    with Server(build, "127.0.0.1", free_port(), bentoml_env(settings=settings)).start() as server:
        yield {"url": server.url, "df": df, "root": root}


def test_docs_document_every_status_with_its_error_body(served):
    spec = httpx.get(f"{served['url']}/docs.json", timeout=10).json()
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert set(responses) == STATUSES, sorted(responses)
    for status in STATUSES - {"200"}:
        schema = responses[status]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/PredictError"}, (status, schema)
    assert spec["components"]["schemas"]["PredictError"]["required"] == ["error"]


def test_each_error_body_is_the_documented_one(served):
    "400, 413, 415 and 422 as answered validate against the documented `PredictError`, and name where."
    spec = httpx.get(f"{served['url']}/docs.json", timeout=10).json()
    schema = spec["components"]["schemas"]["PredictError"]
    good = json.loads(served["df"].drop(columns="target").iloc[:1].to_json(orient="records"))[0]
    cases = {
        400: (b"{rows: [", "application/json", "body"),
        413: (json.dumps({"rows": [good] * 14_000}).encode(), "application/json", "body"),
        415: (b"rows=1", "text/plain", "content-type"),
        422: (json.dumps({"rows": {}}).encode(), "application/json", "rows"),
    }
    for status, (body, media, field) in cases.items():
        r = httpx.post(f"{served['url']}/predict", content=body, headers={"content-type": media}, timeout=30)
        assert r.status_code == status, (status, r.text[:300])
        assert r.headers["content-type"] == "application/json"
        jsonschema.validate(r.json(), schema)
        assert r.json()["field"] == field, r.json()


def test_schemathesis_finds_no_defect(served, tmp_path):
    "`schemathesis run` on /docs.json, bounded and seeded: no 5xx, every status and body as documented."
    junit = tmp_path / "junit.xml"
    proc = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{served['url']}/docs.json",
            "--checks",
            ",".join(CHECKS),
            "--max-examples",
            "40",
            "--seed",
            "20240611",
            "--workers",
            "1",
            "--request-timeout",
            "60",
            "--continue-on-failure",
            "--report",
            "junit",
            "--report-junit-path",
            str(junit),
        ],
        cwd=tmp_path,  # its .hypothesis/ and report folders stay in the test's folder
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    cases = {case.get("name"): case for case in ET.parse(junit).getroot().iter("testcase")}
    assert "POST /predict" in cases, sorted(cases)
    assert not [name for name, case in cases.items() if len(case)], proc.stdout[-6000:]  # no failure, no error
    generated = re.search(r"(\d+) generated", proc.stdout)
    assert generated and int(generated[1]) >= 100, proc.stdout[-3000:]  # the run did send real cases
