"A model trained from a feature view, served by a real `bentoml serve` that joins the view's online features by key."

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

TX = """name: tx
columns:
  user: {dtype: int}
  ts: {dtype: datetime}
  spend: {dtype: float}
  visits: {dtype: int}
"""
FRESH, STALE = range(1, 21), range(21, 31)  # users whose latest row is an hour old / ten days old (the TTL is 3d)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "`churn` v1 trained from view `spend` (TTL 3d) over table `tx`, materialized; view `other` applied, never trained."
    from aiworkbench.config import load_settings
    from aiworkbench.contracts import parse_contract
    from aiworkbench.features import apply, materialize
    from aiworkbench.lake import write
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote
    from aiworkbench.workbench import Workbench

    root = init_project(tmp_path_factory.mktemp("features") / "proj")
    settings = load_settings(root, environ={})
    now = pd.Timestamp.now(tz="UTC").floor("s")
    ages = {u: [pd.Timedelta(days=20), pd.Timedelta(days=10), pd.Timedelta(hours=1)] for u in FRESH}
    ages |= {u: [pd.Timedelta(days=20), pd.Timedelta(days=10)] for u in STALE}
    rows = [(u, now - age, u * 1.5 + i, u % 7 + i) for u, steps in ages.items() for i, age in enumerate(steps)]
    tx = pd.DataFrame(rows, columns=["user", "ts", "spend", "visits"])
    write("tx", tx, parse_contract(TX), settings=settings)
    views = root / "features"
    views.mkdir(exist_ok=True)
    (views / "spend.yaml").write_text(
        "source: tx\nentities: [user]\ntimestamp: ts\nttl: 3d\nfeatures: [spend, visits]\n"
    )
    (views / "other.yaml").write_text("source: tx\nentities: [user]\ntimestamp: ts\nfeatures: [visits]\n")
    apply(settings=settings)
    users = [*FRESH, *STALE]
    ents = pd.DataFrame(
        {
            "user": users * 2,
            "event_timestamp": [now - pd.Timedelta(days=9)] * len(users) + [now] * len(users),
            "churned": [u % 2 for u in users] * 2,
        }
    )
    wb = Workbench(root)
    fit = wb.features.train(ents, "spend:spend,spend:visits", "churned", epochs=1, register="churn")
    promote("churn", int(fit.registered["version"]), settings=settings)
    materialize("spend", settings=settings)
    return {"root": root, "settings": settings, "tx": tx}


@pytest.fixture(scope="module")
def served(project, tmp_path_factory):
    "The service joining the view (the default), and the same model packaged with `--features none` beside it."
    from aiworkbench.serving.artifacts import bentoml_env
    from aiworkbench.serving.package import package
    from aiworkbench.serving.server import Server, free_port, serve

    settings = project["settings"]
    direct = package("churn@champion", out=tmp_path_factory.mktemp("direct"), features="none", settings=settings)
    with serve("churn@champion", settings=settings) as server:
        plain = Server(Path(direct["build_dir"]), "127.0.0.1", free_port(), bentoml_env(settings=settings))
        plain.start(60)
        try:
            yield {**project, "url": server.url, "direct_url": plain.url, "direct": direct}
        finally:
            plain.stop()


def post(url, rows):
    body = json.dumps({"rows": rows})
    return httpx.post(f"{url}/predict", content=body, headers={"content-type": "application/json"}, timeout=30)


def latest(tx, user):
    row = tx[tx.user == user].sort_values("ts").iloc[-1]
    return {"spend": float(row.spend), "visits": float(row.visits)}


def test_predictions_through_the_view_equal_features_sent(served):
    "Fresh users: the online values; stale users: missing, as the training set has a value past its TTL; both named."
    users = [1, 7, 20, 25, 30]
    via_view = post(served["url"], [{"user": u} for u in users])
    assert via_view.status_code == 200, via_view.text
    sent = [latest(served["tx"], u) if u in FRESH else {"spend": None, "visits": None} for u in users]
    direct = post(served["direct_url"], sent)
    assert direct.status_code == 200, direct.text
    got, want = via_view.json()["predictions"], direct.json()["predictions"]
    np.testing.assert_allclose([p["probabilities"] for p in got], [p["probabilities"] for p in want], rtol=0, atol=0)
    assert [p["label"] for p in got] == [p["label"] for p in want]
    assert [p["stale"] for p in got] == [[], [], [], ["spend:spend", "spend:visits"], ["spend:spend", "spend:visits"]]
    assert "stale" not in want[0]  # a service on features sent has no view to be stale

    # the request log (the inference table) keeps the joined inputs and the stale features of each row
    from aiworkbench.monitoring.inference_table import read_inference

    deadline, mine = time.monotonic() + 20, None
    while time.monotonic() < deadline:
        table = read_inference("churn", settings=served["settings"]).to_pandas()
        mine = table[table.get("request_id", pd.Series(dtype=str)) == via_view.headers["x-request-id"]]
        if len(mine) == len(users):
            break
        time.sleep(0.2)
    assert len(mine) == len(users), "the request was not logged"
    mine = mine.sort_values("row")
    assert mine["in.spend"].iloc[0] == latest(served["tx"], 1)["spend"] and pd.isna(mine["in.spend"].iloc[3])
    stale = [json.loads(s) if isinstance(s, str) else list(s) for s in mine["out.stale"]]  # the table keeps JSON text
    assert stale == [[], [], [], ["spend:spend", "spend:visits"], ["spend:spend", "spend:visits"]], stale


def test_unknown_entity_is_404_naming_the_key_and_a_malformed_key_422(served):
    r = post(served["url"], [{"user": 1}, {"user": 999}])
    assert r.status_code == 404, r.text
    assert r.json()["field"] == "rows[1].user" and "user=999" in r.json()["error"], r.json()
    for row, field in (
        ({"user": "seven"}, "rows[0].user"),
        ({}, "rows[0].user"),
        ({"user": 1, "spend": 2.0}, "rows[0].spend"),
    ):
        r = post(served["url"], [row])
        assert r.status_code == 422 and r.json()["field"] == field, (row, r.text)


def test_docs_show_the_request_shape(served):
    "The OpenAPI document: a row holds the entity key only; a prediction names its stale features; 404 documented."
    spec = httpx.get(f"{served['url']}/docs.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    row = next(s for name, s in schemas.items() if name.startswith("EntityRow") or s.get("title") == "EntityRow")
    assert list(row["properties"]) == ["user"], row
    assert "stale" in json.dumps(schemas), list(schemas)
    responses = spec["paths"]["/predict"]["post"]["responses"]
    assert "404" in responses and "500" not in responses, list(responses)


def test_package_refuses_a_view_the_model_was_not_trained_from(served, aiwb):
    root = served["root"]
    r = aiwb("package", "churn@champion", "--features", "other", "--out", root / "bentos" / "x", cwd=root, timeout=300)
    assert r.code == 2 and "not trained from view `other`" in r.err, r.err
    r = aiwb("package", "churn@champion", "--features", "nosuch", cwd=root, timeout=300)
    assert r.code == 2 and "`nosuch`" in r.err, r.err
    out = root / "bentos" / "churn-spend"
    r = aiwb("package", "churn@champion", "--features", "spend", "--out", out, "--json", cwd=root, timeout=300)
    assert r.code == 0, r.err
    features = r.json()["features"]
    assert (features["entity_keys"], features["request_columns"]) == (["user"], [])
    assert features["views"][0]["columns"] == {"spend": "spend", "visits": "visits"}
    assert (Path(r.json()["build_dir"]) / "online.py").is_file()
