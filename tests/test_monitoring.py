"""`aiwb monitor` as users run it, each call its own process, with real notebook jobs: the data is built so each gate
outcome is known (a champion trained on shuffled labels is beaten; one trained on real labels is not), drift
triggers one retraining per event, and a failed or unusable retraining keeps the champion (RELIABILITY row 17)."""

import json
import os
import time

import pytest
from sklearn.datasets import load_breast_cancer

from aiworkbench.config import load_settings
from aiworkbench.contracts import infer_contract
from aiworkbench.project import init_project, notebook_source, retrain_cells
from aiworkbench.registry import promote, register_model, resolve_version
from aiworkbench.tracking import client
from aiworkbench.training import quiet, train_tabular

# A retraining notebook whose model carries no `aiwb.contract`: an MLmodel logged to the job's run by hand.
BARE_MODEL_CELLS = [
    ("code", "model_name = 'bc'\ntrigger = ''", ["parameters"]),
    (
        "code",
        "import os, tempfile\nfrom pathlib import Path\nimport mlflow\nfrom mlflow.models import Model\n"
        "folder = Path(tempfile.mkdtemp())\nModel().save(folder / 'MLmodel')\n"
        "mlflow.MlflowClient().log_artifacts(os.environ['MLFLOW_RUN_ID'], str(folder), 'model')",
        [],
    ),
]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "A project whose champion v1 learned shuffled labels (any real retraining beats it); `bc_new` has no champion."
    root = init_project(tmp_path_factory.mktemp("mon") / "p")
    settings = load_settings(root, environ={})
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(root / "data" / "bc.csv", index=False)
    shuffled = frame.assign(target=frame["target"].sample(frac=1, random_state=0).to_numpy())
    shuffled.to_csv(root / "data" / "bc_shuffled.csv", index=False)
    contract = infer_contract(frame, "bc", target="target")
    contract.save(root / "contracts" / "bc.yaml")
    write_retrain(root, "data/bc.csv")
    with quiet():
        fitted = train_tabular(
            shuffled, contract, max_epochs=2, settings=settings, register="bc", enable_progress_bar=False
        )
    promote("bc", 1, settings=settings)
    register_model(f"runs:/{fitted.run_id}/model", "bc_new", settings=settings)
    return root, frame


@pytest.fixture
def env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AIWB_")}


def write_retrain(root, data_path: str) -> None:
    (root / "nbs" / "retrain.ipynb").write_text(notebook_source(retrain_cells("bc", data_path, "contracts/bc.yaml")))


def serve(root, rows, shift: float) -> None:
    "Append request-log lines for `rows` (features scaled by 1 + shift), as the served model writes them."
    folder = load_settings(root, environ={}).state_dir / "requests" / "bc"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    feats = rows.drop(columns="target") * (1 + shift)
    with open(folder / "requests-1.jsonl", "a") as fh:
        for i, r in enumerate(feats.to_dict("records")):
            record = {"ts": now + i * 1e-3, "request_id": str(i), "model": "bc", "version": 1, "n": 1}
            record |= {"inputs": [r], "outputs": [], "latency_ms": 3.0, "cpu_ms": 1.0, "rss_mb": 400.0}
            fh.write(json.dumps(record | {"status": 200}) + "\n")


def alias(root, name: str) -> int:
    return int(resolve_version("bc", name, settings=load_settings(root, environ={})).version)


def versions(root) -> int:
    return len(client(settings=load_settings(root, environ={})).search_model_versions("name='bc'"))


def retrain_runs(root) -> list[dict]:
    from aiworkbench.errors import NotFound
    from aiworkbench.jobs.store import list_runs

    try:
        return list_runs("nb:nbs/retrain.ipynb", settings=load_settings(root, environ={}))
    except NotFound:  # no retraining job was ever submitted
        return []


def test_bad_input_exits_2_naming_what(project, aiwb, env):
    root, _ = project
    r = aiwb("monitor", "bc", cwd=root, env=env)
    assert r.code == 2, (r.code, r.out, r.err)
    assert "model `bc` has served no traffic yet" in r.err and str(root / ".aiwb" / "requests" / "bc") in r.err
    r = aiwb("monitor", "nope", "--json", cwd=root, env=env)
    assert r.code == 2 and r.json()["error"] == "NotFound" and "no registered model `nope`" in r.json()["message"]
    r = aiwb("monitor", "bc_new", cwd=root, env=env)
    assert r.code == 2 and "model `bc_new` has no alias `champion`" in r.err, (r.code, r.err)
    assert alias(root, "champion") == 1 and not retrain_runs(root)


def test_drift_retrains_once_and_the_better_challenger_is_promoted(project, aiwb, env):
    root, frame = project
    serve(root, frame.sample(300, random_state=0), shift=0.6)
    r = aiwb("monitor", "bc", "--json", cwd=root, env=env, timeout=600)
    assert r.code == 1, (r.code, r.out[-2000:], r.err[-2000:])  # drift found
    first = r.json()
    outcome = first["retraining"]
    assert first["verdict"] == "drift" and outcome["status"] == "succeeded", outcome
    assert (outcome["outcome"], outcome["challenger"], outcome["champion"]) == ("promoted", 2, 1), outcome
    assert (alias(root, "champion"), alias(root, "challenger")) == (2, 2)
    for _ in range(2):  # the same event delivered again: the recorded outcome, nothing moves
        again = aiwb("monitor", "bc", cwd=root, env=env, timeout=600)
        assert again.code == 1, (again.code, again.out, again.err)
        lines = again.out.splitlines()
        assert lines[0].startswith("drift: ") and "; worst: " in lines[0] and len(lines[0]) < 200, lines
        assert lines[1].startswith("report: ") and lines[1].endswith(".html"), lines
        assert "challenger v2 beat champion v1 and was promoted (this drift event was handled before)" in again.out
    assert len(retrain_runs(root)) == 1
    assert (alias(root, "champion"), versions(root)) == (2, 2)
    assert not (root / "mlflow.db").exists() and not (root / "mlruns").exists()


def test_drift_retrains_and_the_gate_refuses_a_worse_challenger(project, aiwb, env):
    root, frame = project
    write_retrain(root, "data/bc_shuffled.csv")  # the retraining learns shuffled labels: it cannot beat v2
    serve(root, frame.sample(300, random_state=1), shift=0.8)  # a new window: a new event
    holdout = env | {"AIWB_MONITORING_HOLDOUT": "data/bc.csv"}  # both scored on the same labelled rows
    r = aiwb("monitor", "bc", "--json", cwd=root, env=holdout, timeout=600)
    assert r.code == 1, (r.code, r.out[-2000:], r.err[-2000:])
    outcome = r.json()["retraining"]
    assert (outcome["status"], outcome["outcome"], outcome["challenger"]) == ("succeeded", "kept champion", 3), outcome
    refused = [c for c in outcome["checks"] if not c["passed"]]
    assert [c["name"] for c in refused] == ["beats champion on holdout_loss by >= 0"], outcome["checks"]
    assert (alias(root, "champion"), alias(root, "challenger")) == (2, 3)


def test_failed_retraining_keeps_the_champion(project, aiwb, env):
    root, frame = project
    write_retrain(root, "data/missing.csv")
    serve(root, frame.sample(300, random_state=2), shift=0.8)
    r = aiwb("monitor", "bc", "--json", cwd=root, env=env, timeout=600)
    assert r.code == 1, (r.code, r.out[-2000:], r.err[-2000:])
    outcome = r.json()["retraining"]
    assert outcome["status"] == "failed" and outcome["outcome"] == "kept champion", outcome
    assert "DataFileError" in outcome["why"] and "missing.csv" in outcome["why"]
    assert (alias(root, "champion"), versions(root)) == (2, 3)


def test_retrained_model_without_its_contract_is_refused_before_registering(project, aiwb, env):
    root, frame = project
    (root / "nbs" / "retrain.ipynb").write_text(notebook_source(BARE_MODEL_CELLS))
    serve(root, frame.sample(300, random_state=3), shift=0.8)
    r = aiwb("monitor", "bc", cwd=root, env=env, timeout=600)
    assert r.code == 2, (r.code, r.out[-2000:], r.err[-2000:])
    assert "the model logged by retraining run `" in r.err and "has no `aiwb.contract`" in r.err, r.err
    assert "nbs/retrain.ipynb" in r.err, r.err
    assert (alias(root, "champion"), alias(root, "challenger"), versions(root)) == (2, 3, 3)


def serve_values(root, columns, value, n=300) -> None:
    "Append `n` request-log lines whose every feature is `value` (a window of only 1e308, or only nulls)."
    folder = load_settings(root, environ={}).state_dir / "requests" / "bc"
    now = time.time()
    with open(folder / "requests-1.jsonl", "a") as fh:
        for i in range(n):
            record = {"ts": now + i * 1e-3, "request_id": f"x{i}", "model": "bc", "version": 1, "n": 1, "status": 200}
            record |= {"inputs": [dict.fromkeys(columns, value)], "outputs": [], "latency_ms": 3.0, "cpu_ms": 1.0}
            fh.write(json.dumps(record) + "\n")


def test_extreme_and_empty_windows_are_reported_in_words(project, aiwb, env):
    """The traffic the monitor exists to catch: a window of only 1e308 is drift with its report and plots; a window of
    only nulls is 'not enough data', in words; neither is a traceback."""
    root, frame = project
    features = [c for c in frame.columns if c != "target"]
    window = env | {"AIWB_MONITORING_WINDOW_ROWS": "300"}
    serve_values(root, features, 1e308)
    r = aiwb("monitor", "bc", "--no-retrain", "--json", cwd=root, env=window, timeout=600)
    assert r.code == 1, (r.code, r.out[-2000:], r.err[-2000:])
    result = r.json()
    notes = [f["note"] for f in result["drift"]["features"]]
    assert result["verdict"] == "drift" and all("near the float limits" in n for n in notes), notes
    page = open(result["report"]["html"]).read()
    assert page.count("<img") == len(result["drift"]["drifted"]) and "no plot" not in page
    serve_values(root, features, None)
    r = aiwb("monitor", "bc", "--no-retrain", cwd=root, env=window, timeout=600)
    assert r.code == 0 and "Traceback" not in r.err, (r.code, r.out[-2000:], r.err[-2000:])
    assert r.out.startswith("not enough data: no feature has values to judge in the window of 300 rows"), r.out
