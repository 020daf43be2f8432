"The monitoring loop with real notebook jobs: drift triggers one retraining per event; a failed one keeps the champion."

import json
import time

import pytest
from sklearn.datasets import load_breast_cancer

from aiworkbench.config import load_settings
from aiworkbench.contracts import infer_contract
from aiworkbench.monitoring import monitor
from aiworkbench.project import _notebook, init_project, retrain_cells
from aiworkbench.registry import promote, resolve_version
from aiworkbench.training import quiet, train_tabular


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = init_project(tmp_path_factory.mktemp("mon") / "p")
    settings = load_settings(root)
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(root / "data" / "bc.csv", index=False)
    contract = infer_contract(frame, "bc", target="target")
    contract.save(root / "contracts" / "bc.yaml")
    (root / "nbs" / "retrain.ipynb").write_text(_notebook(retrain_cells("bc", "data/bc.csv", "contracts/bc.yaml")))
    with quiet():
        train_tabular(frame, contract, max_epochs=2, settings=settings, register="bc", enable_progress_bar=False)
    promote("bc", 1, settings=settings)
    return root, frame


def serve(root, rows, shift: float) -> None:
    "Append request-log lines for `rows` (features scaled by 1 + shift), as the served model writes them."
    folder = load_settings(root).state_dir / "requests" / "bc"
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    feats = rows.drop(columns="target") * (1 + shift)
    with open(folder / "requests-1.jsonl", "a") as fh:
        for i, r in enumerate(feats.to_dict("records")):
            fh.write(
                json.dumps(
                    {
                        "ts": now + i * 1e-3,
                        "request_id": str(i),
                        "model": "bc",
                        "version": 1,
                        "n": 1,
                        "inputs": [r],
                        "outputs": [],
                        "latency_ms": 3.0,
                        "cpu_ms": 1.0,
                        "rss_mb": 400.0,
                        "status": 200,
                    }
                )
                + "\n"
            )


def retrain_runs(root) -> list[dict]:
    from aiworkbench.jobstore import list_runs

    return list_runs("nb:nbs/retrain.ipynb", load_settings(root))


def test_one_retraining_per_drift_event(project):
    root, frame = project
    settings = load_settings(root)
    serve(root, frame.sample(300, random_state=0), shift=0.6)
    first = monitor("bc", settings)
    assert first["verdict"] == "drift"
    outcome = first["retraining"]
    assert outcome["status"] == "succeeded" and outcome["outcome"] in ("promoted", "kept champion"), outcome
    assert outcome["challenger"] == 2
    champion = int(resolve_version("bc", "champion", settings).version)
    assert champion == (2 if outcome["outcome"] == "promoted" else 1)
    assert int(resolve_version("bc", "challenger", settings).version) == 2
    for _ in range(2):  # the same event delivered again
        again = monitor("bc", settings)
        assert again["event"] == first["event"] and again["retraining"]["repeated"]
    assert len(retrain_runs(root)) == 1
    assert int(resolve_version("bc", "champion", settings).version) == champion


def test_failed_retraining_keeps_the_champion(project):
    root, frame = project
    settings = load_settings(root)
    champion = int(resolve_version("bc", "champion", settings).version)
    (root / "nbs" / "retrain.ipynb").write_text(_notebook(retrain_cells("bc", "data/missing.csv", "contracts/bc.yaml")))
    serve(root, frame.sample(300, random_state=1), shift=0.8)  # a new window: a new event
    result = monitor("bc", settings)
    outcome = result["retraining"]
    assert outcome["status"] == "failed" and outcome["outcome"] == "kept champion"
    assert "DataFileError" in outcome["why"] and "missing.csv" in outcome["why"]
    assert int(resolve_version("bc", "champion", settings).version) == champion
