"The `aiwb` command in its own process: startup, init, the data commands' exit codes and messages, quickstart."

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from aiworkbench import __version__

HEAVY = ("torch", "lightning", "mlflow", "bentoml", "papermill", "pandas", "pandera", "pydantic", "sklearn")


@pytest.fixture
def aiwb(aiwb, tmp_path):
    "conftest's `aiwb`, run from `tmp_path` unless told where: no validation record lands in a project around the repo."

    def run(*args, cwd=None, **kw):
        return aiwb(*args, cwd=cwd or tmp_path, **kw)

    return run


def test_help_imports_nothing_heavy():
    code = (
        "import sys; sys.argv = ['aiwb', '--help']\n"
        "from aiworkbench.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY', sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "quickstart" in out and "data" in out
    assert out.strip().endswith("HEAVY []"), out


def test_version(aiwb):
    r = aiwb("version")
    assert (r.code, r.out.strip()) == (0, __version__)


def test_init_refuses_a_non_empty_folder_without_force(aiwb, tmp_path):
    project = tmp_path / "proj"
    assert aiwb("init", project).code == 0
    assert (project / "settings.ini").exists() and (project / "nbs" / "02_validate_data.ipynb").exists()
    r = aiwb("init", project)
    assert r.code == 2 and "is not empty" in r.err and "--force" in r.err
    assert aiwb("init", project, "--force", "--name", "other").code == 0
    assert "name = other" in (project / "settings.ini").read_text()


def test_settings_error_names_the_variable(aiwb, tmp_path):
    aiwb("init", tmp_path / "p")
    env = {"PATH": "/usr/bin:/bin", "AIWB_KPI_P95_LATENCY_MS": "fast"}
    r = aiwb("settings", cwd=tmp_path / "p", env=env)
    assert r.code == 2 and "AIWB_KPI_P95_LATENCY_MS = `fast` is not a number" in r.err
    r = aiwb("settings", "--json", cwd=tmp_path / "p", env={"PATH": "/usr/bin:/bin"})
    assert r.code == 0 and r.json()["kpi"]["p95_latency_ms"] == 50.0


@pytest.fixture
def people(tmp_path, aiwb):
    "A valid CSV and the contract inferred from it."
    df = pd.DataFrame(
        {
            "id": range(1, 31),
            "age": [20 + i for i in range(30)],
            "score": [0.5 + i / 100 for i in range(30)],
            "group": ["a", "b", "c"] * 10,
        }
    )
    df.to_csv(tmp_path / "people.csv", index=False)
    r = aiwb("data", "infer", tmp_path / "people.csv", "-o", tmp_path / "people.yaml")
    assert r.code == 0, r.err
    return tmp_path, df


def validate(aiwb, folder, text: str | bytes, *extra, name="in.csv"):
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return aiwb("data", "validate", path, "--contract", folder / "people.yaml", *extra)


HEADER = "id,age,score,group\n"


@pytest.mark.parametrize(
    "body, row, column, check",
    [
        ("1,25,0.6,a\n2,abc,0.7,b\n", 1, "age", "dtype(int)"),
        ("1,25,0.6,a\n2,26.5,0.7,b\n", 1, "age", "dtype(int)"),
        ("1,25,0.6,a\n2,,0.7,b\n", 1, "age", "not_nullable"),
        ("1,25,0.6,a\n2,99,0.7,b\n", 1, "age", "less_than_or_equal_to(49)"),
        ("1,25,0.6,zz\n", 0, "group", "isin(['a', 'b', 'c'])"),
        ("1,25,0.6,a\n1,26,0.7,b\n", 1, "id", "field_uniqueness"),
    ],
    ids=["text-in-int", "fraction-in-int", "null", "out-of-range", "unknown-category", "duplicate-id"],
)
def test_row_failures_name_row_column_and_check(aiwb, people, body, row, column, check):
    folder, _ = people
    r = validate(aiwb, folder, HEADER + body, "--json")
    assert r.code == 1, r.err
    report = r.json()
    assert [(f["row"], f["column"], f["check"]) for f in report["failures"]] == [(row, column, check)]
    assert report["bad"] == 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,age,score\n1,25,0.6\n", "column `group` is missing"),
        (HEADER.strip() + ",extra\n1,25,0.6,a,x\n", "column `extra` is not in contract `people@v1`"),
    ],
    ids=["missing-column", "extra-column"],
)
def test_table_failures(aiwb, people, text, message):
    folder, _ = people
    r = validate(aiwb, folder, text)
    assert r.code == 1 and message in r.out
    r = validate(aiwb, folder, text, "--quarantine", folder / "q")
    assert r.code == 1 and message in r.err and not (folder / "q").exists()


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "is empty"),
        (HEADER.encode() + b"1,25,0.6\n2,26,0.7,b\n", "ragged row(s): line 2: 3 fields, expected 4"),
        (b"id,age,age,group\n1,2,3,a\n", "duplicate column name `age` at columns 2, 3"),
        (HEADER.encode() + "1,25,0.6,é\n".encode("latin-1"), "line 2, column `group`: not UTF-8 text"),
    ],
    ids=["empty", "ragged", "duplicate-header", "bad-encoding"],
)
def test_unusable_csv_exits_2_naming_file_and_line(aiwb, people, data, message):
    folder, _ = people
    r = validate(aiwb, folder, data)
    assert r.code == 2 and message in r.err and "in.csv" in r.err, r.err


def test_parquet_truncated_or_retyped(aiwb, people):
    folder, df = people
    df.to_parquet(folder / "ok.parquet")
    assert aiwb("data", "validate", folder / "ok.parquet", "--contract", folder / "people.yaml").code == 0
    (folder / "trunc.parquet").write_bytes((folder / "ok.parquet").read_bytes()[:-100])
    r = aiwb("data", "validate", folder / "trunc.parquet", "--contract", folder / "people.yaml")
    assert r.code == 2 and "trunc.parquet` is not a readable parquet file" in r.err
    df.astype({"age": str}).to_parquet(folder / "retyped.parquet")
    r = aiwb("data", "validate", folder / "retyped.parquet", "--contract", folder / "people.yaml", "--json")
    assert r.code == 1 and r.json()["column"] == "age" and "says `int`" in r.json()["message"]


@pytest.mark.parametrize(
    "yaml_text, message",
    [
        ("name: p\ncolumns:\n  age: {dtype: integer}\n", "columns.age.dtype: `integer` is not allowed"),
        ("name: p\ncolumns:\n  age: {dtype: int, nulable: true}\n", "did you mean `nullable`?"),
    ],
    ids=["unknown-dtype", "typo-key"],
)
def test_bad_contract_exits_2_naming_file_and_field(aiwb, people, yaml_text, message):
    folder, _ = people
    (folder / "bad.yaml").write_text(yaml_text)
    r = aiwb("data", "validate", folder / "people.csv", "--contract", folder / "bad.yaml", "--json")
    assert r.code == 2
    err = r.json()
    assert err["error"] == "ContractError" and message in err["message"] and err["file"].endswith("bad.yaml")


def test_quarantine_keeps_every_row(aiwb, tmp_path):
    rows = [f"{i},{20 + i % 30},0.6,{'abc'[i % 3]}\n" for i in range(1, 101)]
    (tmp_path / "people.csv").write_text(HEADER + "".join(rows))
    assert aiwb("data", "infer", tmp_path / "people.csv", "-o", tmp_path / "people.yaml").code == 0
    bad_rows = [r.replace(",c\n", ",z\n") for r in rows]  # every third row gets an unknown group
    r = validate(aiwb, tmp_path, HEADER + "".join(bad_rows), "--quarantine", tmp_path / "q", "--json")
    report = r.json()
    assert r.code == 1 and report["good"] + report["bad"] == 100 and report["bad"] == 33
    assert {f["row"] for f in report["failures"]} == {i - 1 for i in range(1, 101) if i % 3 == 2}
    bad = pd.read_parquet(report["quarantine"]["rows"])
    assert len(bad) == 33 and set(bad["group"]) == {"z"}
    assert json.loads(Path(report["quarantine"]["report"]).read_text())["bad"] == 33


def test_diff_exit_code(aiwb, people):
    folder, _ = people
    text = (folder / "people.yaml").read_text()
    assert "max: 49" in text and "- c\n" in text, text
    widened = text.replace("max: 49", "max: 60").replace("name: people", "name: people\nversion: 2")
    (folder / "v2.yaml").write_text(widened)
    r = aiwb("data", "diff", folder / "people.yaml", folder / "v2.yaml", "--json")
    assert r.code == 0 and not r.json()["breaking"], r.out  # a wider range accepts every row the old one did
    assert [(c["column"], c["kind"], c["old"], c["new"]) for c in r.json()["changes"]] == [("age", "max", 49, 60)]
    (folder / "v3.yaml").write_text(text.replace("- c\n", "").replace("name: people", "name: people\nversion: 3"))
    r = aiwb("data", "diff", folder / "people.yaml", folder / "v3.yaml", "--json")
    assert r.code == 1 and r.json()["breaking"], r.out
    assert [c["column"] for c in r.json()["changes"] if c["breaking"]] == ["group"], r.out


def test_infer_refuses_to_overwrite(aiwb, people):
    folder, _ = people
    r = aiwb("data", "infer", folder / "people.csv", "-o", folder / "people.yaml")
    assert r.code == 2 and "exists; pass --force" in r.err
    r = aiwb("data", "infer", folder / "people.csv", "-o", folder / "x.yaml", "--target", "nope")
    assert r.code == 2 and "target `nope` is not a column" in r.err


def test_quickstart_end_to_end(aiwb, tmp_path):
    "The main job, for real; training is deterministic, so every stage's outcome, each gate's included, is known."
    from aiworkbench.cli.quickstart import BATCH_FAULTS

    cwd = tmp_path / "cwd"  # where a store made from MLflow's global default (`sqlite:///<cwd>/mlflow.db`) would land
    cwd.mkdir()
    r = aiwb("quickstart", tmp_path / "qs", "--json", timeout=900, cwd=cwd)
    assert r.code == 0, r.err[-3000:]
    stages = r.json()["stages"]
    data = stages["data"]
    assert data["valid"] and data["rows"] == 569
    assert (data["batch"]["rows"], data["batch"]["good"], data["batch"]["bad"]) == (40, 35, 5)
    assert {(f["row"], f["column"]) for f in data["batch"]["failures"]} == {(r, c) for r, c, _ in BATCH_FAULTS}
    assert stages["train"]["registered"]["version"] == 1 and stages["train"]["metrics"]["val_acc"] > 0.85
    registry = stages["registry"]
    assert (registry["champion_first"], registry["challenger"]) == (1, 2)
    assert registry["outcome"] == "challenger v2 promoted to champion", registry
    assert (registry["promotion"]["from"], registry["promotion"]["to"]) == (1, 2)
    assert all(c["passed"] for c in registry["promotion"]["checks"]), registry
    assert stages["serve"]["rows_served"] == 400 and stages["serve"]["normal_verdict"] == "no drift"
    monitor = stages["monitor"]
    assert monitor["verdict"] == "drift" and monitor["report"]["html"].endswith(".html")
    retraining = monitor["retraining"]
    assert (retraining["status"], retraining["champion"], retraining["challenger"]) == ("succeeded", 2, 3), retraining
    assert retraining["outcome"] == "promoted", retraining
    assert all(c["passed"] for c in retraining["checks"]), retraining
    assert stages["reproduce"]["verdict"] == "reproduced"
    assert stages["reproduce"]["original"] == retraining["job_run"]
    kpis = {k["key"]: k for k in stages["status"]["kpis"]}
    assert kpis["p95_latency"]["status"] == "ok" and kpis["reproducibility"]["value"] == 1.0
    assert kpis["deployment_cycle"]["status"] == "ok"
    assert kpis["cost_per_1m"]["value"] > 0 and kpis["cost_per_1m"]["status"] == "no data"  # no previous window
    assert stages["status"]["phase"] == 1
    for stage in ("data", "train", "registry", "serve", "monitor", "reproduce", "status"):
        assert f"✓ {stage}" in r.err
    # quiet output: no MLflow migration log, no kernel transport warning, no wall of feature names
    for noise in ("Creating initial MLflow database tables", "INFO mlflow", "without encryption"):
        assert noise not in r.err, r.err
    from sklearn.datasets import load_breast_cancer

    drift_line = next(line for line in r.err.splitlines() if line.strip().startswith("drift:"))
    assert sum(f in drift_line for f in load_breast_cancer().feature_names) <= 5, drift_line  # the worst few only
    assert "v3 promoted; val_loss = " in r.err and "report: " in r.err, r.err
    import psutil

    procs = psutil.process_iter(["cmdline", "cwd"])
    left = [p.info for p in procs if str(p.info["cwd"] or "").startswith(str(tmp_path))]
    assert not left, left  # the server (it runs in the build folder) and the job kernels are gone
    # what the quickstart left is what a later `aiwb` process reads from the project's own store
    shown = aiwb("models", "show", "breast_cancer", "--json", cwd=tmp_path / "qs")
    assert shown.code == 0, shown.err
    assert shown.json()["aliases"] == {"challenger": 3, "champion": 3}, shown.json()["aliases"]
    stray = [p for p in tmp_path.rglob("*") if p.name in ("mlflow.db", "mlruns") and ".aiwb" not in p.parts]
    assert stray == [], stray
    again = aiwb("quickstart", tmp_path / "qs")
    assert again.code == 2 and "--force" in again.err
    # the quickstart project is CI-ready: `aiwb ci` runs every stage on it and passes
    ci = aiwb("ci", "--json", "--summary", "reports/ci.md", cwd=tmp_path / "qs", timeout=900)
    assert ci.code == 0, ci.out[-4000:] + ci.err[-2000:]
    result = ci.json()
    outcomes = {st["name"]: (st["outcome"], st["message"]) for st in result["stages"]}
    assert result["outcome"] == "passed" and [o for o, _ in outcomes.values()] == ["passed"] * 6, outcomes
    by_stage = {st["name"]: [c["name"] for c in st["cases"]] for st in result["stages"]}
    assert "breast_cancer@v1 on data/breast_cancer.csv" in by_stage["validate"], by_stage["validate"]
    assert not [c for cases in by_stage.values() for c in cases if "incoming_batch" in c]  # traffic, not training data
    assert by_stage["train"] == ["train nbs/retrain.ipynb"] and "nbs/retrain.ipynb" not in by_stage["test"]
    assert result["candidate"] == 5, result["candidate"]  # after v1 to v4 of the quickstart
    summary = (tmp_path / "qs" / "reports" / "ci.md").read_text()
    assert "### gate: candidate v5 vs champion v3: would promote" in summary, summary
    shown = aiwb("models", "show", "breast_cancer", "--json", cwd=tmp_path / "qs")
    assert shown.json()["aliases"] == {"challenger": 3, "champion": 3}  # a dry run: no alias moved
