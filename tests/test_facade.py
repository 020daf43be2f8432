"The facade on a small real project: one `Workbench` trains, registers, promotes and runs notebook jobs."

import json

import nbformat
import pytest
from sklearn.datasets import load_breast_cancer

from aiworkbench.errors import Conflict, InvalidInput, NotFound
from aiworkbench.facade import ValidationFailed
from aiworkbench.gates import GateRefused
from aiworkbench.results import (
    JobRun,
    ListModelsResponse,
    MoveAliasResponse,
    RunJobResponse,
    ShowJobRunOutputResponse,
    TrainModelResponse,
)
from aiworkbench.workbench import Workbench


@pytest.fixture(scope="module")
def wb(tmp_path_factory):
    "A project with the breast-cancer data, its contract, and model `bc` v1 and v2 (one epoch each)."
    wb = Workbench.init(tmp_path_factory.mktemp("facade") / "p")
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(wb.root / "data" / "bc.csv", index=False)
    wb.data.infer(wb.root / "data" / "bc.csv", target="target", out=wb.root / "contracts" / "bc.yaml")
    for seed in (0, 1):
        wb.runs.train(
            wb.root / "data" / "bc.csv", wb.root / "contracts" / "bc.yaml", epochs=1, seed=seed, register="bc",
            progress=False,
        )  # fmt: skip
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("n = 1\nword = 'x'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("assert n != 13, 'unlucky'\nprint(n * 2)")]
    nbformat.write(nb, wb.root / "nbs" / "double.ipynb")
    yield wb
    wb.close()


def test_training_is_tracked_and_registered(wb):
    runs = wb.runs.list().runs
    assert len(runs) == 2 and all(r.status == "FINISHED" for r in runs)
    run = wb.runs.get(runs[0].run_id)
    assert run.lineage["aiwb.contract.ref"].startswith("bc@") and "val_loss" in run.metrics
    models = wb.models.list()
    assert isinstance(models, ListModelsResponse)
    assert [(m.name, m.versions, m.latest) for m in models.models] == [("bc", 2, 2)]
    with pytest.raises(NotFound, match="no registered model `nope`"):
        wb.models.show("nope")


def test_bad_rows_refuse_training_unless_quarantined(wb, tmp_path):
    bad = load_breast_cancer(as_frame=True).frame
    bad.loc[3, "target"] = 7
    with pytest.raises(ValidationFailed) as e:
        wb.runs.train(bad, wb.root / "contracts" / "bc.yaml", epochs=1, progress=False)
    assert e.value.good == len(bad) - 1 and e.value.to_dict()["error"] == "ValidationFailed"
    fitted = wb.runs.train(bad, wb.root / "contracts" / "bc.yaml", epochs=1, quarantine=tmp_path / "q", progress=False)
    assert isinstance(fitted, TrainModelResponse) and fitted.quarantined == 1 and fitted.registered is None
    assert fitted.lineage["aiwb.data.fingerprint"]


def test_promote_through_a_gate_roll_back_and_delete(wb):
    moved = wb.models.promote("bc", 1, gate={"min_metrics": {"val_acc": 0.0}}, reason="first")
    assert isinstance(moved, MoveAliasResponse) and (moved.from_, moved.to) == (None, 1)
    assert moved.model_dump(by_alias=True)["from"] is None and all(c["passed"] for c in moved.checks)
    with pytest.raises(GateRefused) as refused:
        wb.models.promote("bc", 2, gate={"min_metrics": {"val_acc": 1.01}})
    assert [c.passed for c in refused.value.checks] == [True, False]
    with pytest.raises(InvalidInput, match="gate.min_delta"):
        wb.models.promote("bc", 2, gate={"min_delta": "a lot"})
    other = (wb.root / "contracts" / "bc.yaml").read_text().replace("mean radius", "radius")
    (wb.root / "contracts" / "other.yaml").write_text(other)
    with pytest.raises(GateRefused, match="inputs match contract"):
        wb.models.promote("bc", 2, contract=wb.root / "contracts" / "other.yaml")
    assert wb.models.promote("bc", 2, reason="second").to == 2
    back = wb.models.rollback("bc")
    assert (back.from_, back.to) == (2, 1)
    shown = wb.models.show("bc")
    assert shown.aliases == {"champion": 1}
    assert [(e["kind"], e["from"], e["to"]) for e in shown.history] == [
        ("promote", None, 1),
        ("promote", 1, 2),
        ("rollback", 2, 1),
    ]
    with pytest.raises(Conflict, match="holds alias"):
        wb.models.delete("bc", 1)
    assert wb.models.delete("bc", 2).deleted == 2


def test_jobs_run_here_in_threads_and_answer_their_output(wb):
    job = wb.jobs.add({"name": "double", "notebook": "nbs/double.ipynb", "parameters": {"n": 2}})
    assert job.parameters == {"n": 2}
    params = wb.jobs.parameters("nbs/double.ipynb")
    assert (params.parameters, params.types) == ({"n": 1, "word": "x"}, {"n": "int", "word": "str"})
    assert wb.jobs.parameters("double.ipynb", base=wb.root / "nbs").path == "nbs/double.ipynb"
    assert wb.jobs.parameters_from_text("nbs/double.ipynb", [("n", "5")]) == {"n": 5}

    here = wb.jobs.run("double", parameters={"n": 21})  # no scheduler: executed by this call
    assert isinstance(here, RunJobResponse) and here.executor == "local"
    assert (here.run.status, here.run.finished, here.run.parameters) == ("succeeded", True, {"n": 21})
    out = wb.jobs.output(here.run.id)
    assert isinstance(out, ShowJobRunOutputResponse) and out.path.startswith(".aiwb/")
    printed = ["".join(o.get("text", "")) for c in out.notebook["cells"] for o in c.get("outputs", [])]
    assert "42\n" in printed, printed
    assert "<html" in wb.jobs.output(here.run.id, format="html").lower()
    with pytest.raises(InvalidInput, match="format `pdf`"):
        wb.jobs.output(here.run.id, format="pdf")

    queued = wb.jobs.run("double", parameters={"n": 13}, retries=1, background=True)
    assert queued.executor == "server"
    wb.jobs.wait()  # the run and its retry, in the Workbench's threads
    runs = wb.jobs.runs("double").runs
    assert all(isinstance(r, JobRun) and r.finished for r in runs)
    assert [(r.status, r.attempt) for r in runs[:2]] == [("failed", 2), ("failed", 1)], runs
    assert runs[0].error_message and "unlucky" in runs[0].error_message
    assert wb.jobs.cancel("double").cancelled == []
    with pytest.raises(InvalidInput, match="must be a path relative"):
        wb.jobs.parameters("/etc/passwd")
    assert wb.jobs.remove("double").name == "double"


def test_kpis_and_phase_arrive_formatted(wb):
    kpis = wb.kpis()
    assert [k.key for k in kpis.kpis] == ["p95_latency", "deployment_cycle", "reproducibility", "cost_per_1m"]
    assert all(isinstance(k.shown, str) and k.shown for k in kpis.kpis)
    phase = wb.phase()
    assert [p.name for p in phase.phases][:1] == ["Prototype"] and len(phase.phases) == 4
    body = json.loads(phase.model_dump_json(by_alias=True))
    assert body["phase"] == phase.phase and body["items"]
