"""Delta tables under contracts as users run them: each `aiwb` step its own process in a fresh project.

Writes, versions, time travel, `lake:` references wherever a data file goes, lineage of a run to the exact version,
vacuum refusing what registered models need; a writer SIGKILLed mid-commit; four appenders at once.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import AIWB, Result

CONTRACT = """\
name: sales
version: 1
target: churned
columns:
  user: {dtype: int}
  ts: {dtype: datetime}
  spend: {dtype: float, min: 0}
  churned: {dtype: int, allowed: [0, 1]}
"""


def rows(n: int, start: int = 0, bad: int = 0) -> str:
    lines = ["user,ts,spend,churned"]
    for i in range(start, start + n):
        spend = -1.0 if i - start < bad else (i % 17) * 1.5
        lines.append(f"{i},2026-01-{1 + i % 28:02d}T00:00:00Z,{spend},{int(i % 3 == 0)}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake") / "p"
    subprocess.run([AIWB, "init", str(root), "--name", "lakep"], check=True, capture_output=True)
    (root / "sales.yaml").write_text(CONTRACT)
    (root / "v1.csv").write_text(rows(200))
    (root / "v2.csv").write_text(rows(50, start=200, bad=3))
    return root


def run(root: Path, *args, timeout=300, **extra_env) -> Result:
    env = {k: v for k, v in os.environ.items() if k != "AIWB_ROOT"} | extra_env
    return Result(
        subprocess.run([AIWB, *map(str, args)], cwd=root, capture_output=True, text=True, timeout=timeout, env=env)
    )


def test_tables_versions_refs_lineage_and_vacuum(project):
    r = run(project, "data", "write", "sales", "v1.csv", "--contract", "sales.yaml", "--json")
    assert r.code == 0, r.err
    assert (r.json()["version"], r.json()["written"], r.json()["quarantined"]) == (0, 200, 0)
    r = run(project, "data", "write", "sales", "v2.csv", "--contract", "sales.yaml", "--json")
    assert r.code == 1, r.err  # some rows quarantined, never written
    assert (r.json()["version"], r.json()["written"], r.json()["quarantined"]) == (1, 47, 3)
    assert Path(r.json()["report"]["quarantine"]["rows"]).is_file()

    r = run(project, "data", "versions", "sales", "--json")
    assert [(v["version"], v["rows_added"], v["contract_version"]) for v in r.json()] == [(1, 47, 1), (0, 200, 1)]

    # a lake reference wherever a file goes: read, validate, time travel by version and by time
    r = run(project, "data", "read", "lake:sales@0", "-o", "out/v0.parquet", "--json")
    assert r.code == 0 and r.json()["rows"] == 200, r.err
    r = run(project, "data", "validate", "lake:sales", "--contract", "sales.yaml", "--json")
    assert r.code == 0 and r.json()["rows"] == 247, r.err
    r = run(project, "data", "validate", "lake:sales@0", "--json")  # no --contract: the one its commits record
    assert r.code == 0 and r.json()["rows"] == 200 and r.json()["contract"].startswith("sales"), r.out + r.err
    later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    r = run(project, "data", "read", f"lake:sales@{later}", "-o", "out/now.csv", "--json")
    assert r.code == 0 and r.json()["ref"] == "lake:sales@1", r.err

    # bad references: exit 2, naming the table and what exists
    for ref, words in [
        ("lake:nope", "table `nope` does not exist"),
        ("lake:sales@7", "has no version 7; its versions are 0 to 1"),
        ("lake:sales@2001-01-01T00:00:00Z", "before the first commit of table `sales`"),
        ("lake:sales@soon", "neither a version number nor an ISO time"),
    ]:
        r = run(project, "data", "read", ref, "-o", "out/x.csv")
        assert r.code == 2 and words in r.err, (ref, r.code, r.err)
    assert not (project / "out" / "x.csv").exists()

    # schema evolution only through the contract: breaking refused with the diff printed, table unchanged
    narrow = CONTRACT.replace("version: 1", "version: 2").replace("min: 0", "min: 5")
    (project / "sales_v2.yaml").write_text(narrow)
    r = run(project, "data", "write", "sales", "v1.csv", "--contract", "sales_v2.yaml")
    assert r.code == 2 and "breaking change" in r.err and "BREAKING" in r.err, r.err
    r = run(project, "data", "versions", "sales", "--json")
    assert r.json()[0]["version"] == 1  # nothing was written by the refused write
    # a compatible change (a new optional column) evolves the schema
    wider = CONTRACT.replace("version: 1", "version: 3") + "  region: {dtype: str, nullable: true}\n"
    (project / "sales_v3.yaml").write_text(wider)
    (project / "v3.csv").write_text("user,ts,spend,churned,region\n900,2026-02-01T00:00:00Z,2.5,1,eu\n")
    r = run(project, "data", "write", "sales", "v3.csv", "--contract", "sales_v3.yaml", "--json")
    assert r.code == 0 and r.json()["version"] == 2, r.err
    r = run(project, "data", "read", "lake:sales@2", "-o", "out/v2.csv", "--json")
    assert r.code == 0 and r.json()["rows"] == 248, r.err
    assert (project / "out" / "v2.csv").read_text().splitlines()[0].endswith(",region")

    # training on version 0 records the exact version; the MLflow input keeps version 0. Loading it would take far
    # less than `[data] memory_budget_mb`, so it is loaded (`test_training_streams_...` has one streamed)
    r = run(
        project,
        "train",
        "lake:sales@0",
        "--contract",
        "sales.yaml",
        "--epochs",
        "2",
        "--register",
        "churn",
        "--json",
    )
    assert r.code == 0, r.err
    run_id = r.json()["run_id"]
    assert r.json()["metrics"]["val_loss"] > 0
    tags = r.json()["lineage"]
    assert tags["aiwb.data.lake.version"] == "0" and tags["aiwb.data.ref"] == "lake:sales@0", tags
    assert (tags["aiwb.data.streamed"], tags["aiwb.data.streamed_by"]) == ("false", "estimate"), tags
    assert float(tags["aiwb.data.memory_estimate_mb"]) < float(tags["aiwb.data.memory_budget_mb"]) == 1024, tags
    check = textwrap.dedent(f"""
        import json
        from aiworkbench.config import load_settings
        from aiworkbench.tracking import client
        run = client(settings=load_settings()).get_run({run_id!r})
        print(run.data.params.get("data.streamed"))
        print(json.dumps([json.loads(d.dataset.source) for d in run.inputs.dataset_inputs
                          if d.dataset.source_type == "delta_table"]))
    """)
    out = subprocess.run([sys.executable, "-c", check], cwd=project, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-2] == "None", out.stdout + out.stderr[-2000:]  # loaded, not streamed
    assert json.loads(out.stdout.strip().splitlines()[-1])[0]["version"] == 0, out.stderr[-2000:]

    # an overwrite makes version 0's files removable; vacuum refuses, naming the model version
    r = run(project, "data", "write", "sales", "v3.csv", "--contract", "sales_v3.yaml", "--mode", "overwrite")
    assert r.code == 0, r.err
    r = run(project, "data", "vacuum", "sales", "--keep-days", "0")
    assert r.code == 2 and "version 0 (churn/v1)" in r.err, r.err
    r = run(project, "data", "read", "lake:sales@0", "-o", "out/still.csv", "--json")
    assert r.code == 0 and r.json()["rows"] == 200, r.err

    # a breaking contract replaces the table only with --mode overwrite --allow-breaking; older versions stay readable
    (project / "v5.csv").write_text("user,ts,spend,churned\n7,2026-03-01T00:00:00Z,6.5,0\n8,2026-03-02T00:00:00Z,9,1\n")
    r = run(project, "data", "write", "sales", "v5.csv", "--contract", "sales_v2.yaml", "--mode", "overwrite")
    assert r.code == 2 and "breaking change" in r.err and "--allow-breaking" in r.err, r.err
    r = run(project, "data", "write", "sales", "v5.csv", "--contract", "sales_v2.yaml", "--mode", "overwrite",
            "--allow-breaking", "--json")  # fmt: skip
    assert r.code == 0 and (r.json()["version"], r.json()["written"]) == (4, 2), r.out + r.err
    r = run(project, "data", "versions", "sales", "--json")
    assert (r.json()[0]["contract_version"], r.json()[0]["mode"]) == (2, "Overwrite"), r.json()[0]
    r = run(project, "data", "read", "lake:sales", "-o", "out/v4.csv", "--json")
    assert r.code == 0 and r.json()["rows"] == 2, r.err
    r = run(project, "data", "read", "lake:sales@0", "-o", "out/v0.csv", "--json")
    assert r.code == 0 and r.json()["rows"] == 200, r.err

    # an unusable file: exit 2 naming it, nothing written
    (project / "broken.parquet").write_text("not parquet at all")
    for name, words in [("broken.parquet", "`broken.parquet` is not a readable parquet file"),
                        ("nosuch.csv", "`nosuch.csv` does not exist")]:  # fmt: skip
        r = run(project, "data", "write", "sales", name, "--contract", "sales_v2.yaml")
        assert r.code == 2 and words in r.err, (name, r.code, r.err)
    assert run(project, "data", "versions", "sales", "--json").json()[0]["version"] == 4


def test_training_streams_a_table_over_the_memory_budget(project):
    "Without --stream, `aiwb train lake:...` streams when loading would take more than `[data] memory_budget_mb`."
    (project / "big.csv").write_text(rows(12_000))  # about 0.4 MB of Arrow columns: 1.6 MB to train on, loaded
    assert run(project, "data", "write", "bigsales", "big.csv", "--contract", "sales.yaml").code == 0
    r = run(project, "train", "lake:bigsales", "--contract", "sales.yaml", "--epochs", "1", "--batch-size", "512",
            "--json", AIWB_DATA_MEMORY_BUDGET_MB="1")  # fmt: skip
    assert r.code == 0, r.err[-3000:]
    tags = r.json()["lineage"]
    assert (tags["aiwb.data.streamed"], tags["aiwb.data.streamed_by"]) == ("true", "estimate"), tags
    assert float(tags["aiwb.data.memory_estimate_mb"]) > float(tags["aiwb.data.memory_budget_mb"]) == 1, tags
    assert tags["aiwb.data.ref"] == "lake:bigsales@0", tags
    shown = run(project, "runs", "show", r.json()["run_id"], "--json").json()
    assert shown["params"]["data.streamed"] == "True", shown["params"]


WRITER = """
import sys
import numpy as np, pandas as pd
from aiworkbench.config import load_settings
from aiworkbench.contracts import parse_contract
from aiworkbench.lake import write
s = load_settings()
c = parse_contract(open("big.yaml").read())
start, n, commits = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for k in range(commits):
    ids = np.arange(start + k * n, start + (k + 1) * n)
    write("big", pd.DataFrame({"id": ids, "x": ids * 0.5}), c, settings=s)
    print("committed", flush=True)
"""
BIG = "name: big\ncolumns:\n  id: {dtype: int}\n  x: {dtype: float}\n"


def count_rows(root: Path) -> tuple[int, int, int]:
    code = textwrap.dedent("""
        from aiworkbench.config import load_settings
        from aiworkbench.lake import read_ref
        df = read_ref("lake:big", settings=load_settings())
        print(len(df), df["id"].nunique(), df.attrs["aiwb.lake"]["version"])
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return tuple(map(int, out.stdout.split()[-3:]))


def test_writer_killed_mid_commit_and_concurrent_appenders(tmp_path):
    root = tmp_path / "p"
    subprocess.run([AIWB, "init", str(root)], check=True, capture_output=True)
    (root / "big.yaml").write_text(BIG)
    (root / "writer.py").write_text(WRITER)

    def py(*a):
        return subprocess.Popen(
            [sys.executable, "writer.py", *map(str, a)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    assert py(0, 1000, 1).wait(timeout=120) == 0
    assert count_rows(root) == (1000, 1000, 0)
    # a writer of one big commit, SIGKILLed while its parquet files are being written (polled, not slept for luck)
    p = py(10_000, 3_000_000, 1)
    deadline = time.monotonic() + 120
    lake = root / "lake" / "big"
    before = {f.name for f in lake.glob("*.parquet")}
    while time.monotonic() < deadline and not ({f.name for f in lake.glob("*.parquet")} - before) and p.poll() is None:
        time.sleep(0.005)
    os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    n, unique, version = count_rows(root)
    assert (n, unique) == (1000, 1000) and version == 0 or (n, unique, version) == (3_001_000, 3_001_000, 1)

    # four appenders at once, five commits each: every row exactly once (delta-rs retries conflicting commits)
    first = count_rows(root)[0]
    procs = [py(10_000_000 + i * 1_000_000, 200, 5) for i in range(4)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    n, unique, _ = count_rows(root)
    assert (n, unique) == (first + 4000, first + 4000)


TRAIN_NB = """\
data = "lake:nothing"  # parameters
"""
TRAIN_BODY = """\
from aiworkbench.workbench import Workbench
fitted = Workbench().runs.train(data, {contract!r}, epochs=1, progress=False)
print(fitted.lineage["aiwb.data.ref"], fitted.lineage["aiwb.data.rows"])
"""


def first_json(text: str):
    return json.loads(text[text.index("{") :])


def test_lake_reference_as_a_job_parameter_then_reproduced_at_its_version(project):
    "`-p data lake:TABLE` runs a notebook job on the latest version; after an append, reproduce reads that version."
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(TRAIN_NB)
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(TRAIN_BODY.format(contract=str(project / "sales.yaml")))
    nb.cells = [params, body]
    nbformat.write(nb, project / "nbs" / "train_lake.ipynb")
    assert run(project, "data", "write", "jobsales", "v1.csv", "--contract", "sales.yaml").code == 0

    r = run(project, "jobs", "run", "nbs/train_lake.ipynb", "-p", "data", "lake:jobsales", "--json")
    assert r.code == 0, r.out[-3000:] + r.err[-3000:]
    original = first_json(r.out)
    assert original["parameters"] == {"data": "lake:jobsales"}, original
    read = run(project, "runs", "show", original["mlflow_run_id"], "--json").json()["lineage"]
    assert (read["aiwb.data.ref"], read["aiwb.data.asked"], read["aiwb.data.rows"]) == (
        "lake:jobsales@0",
        "lake:jobsales",
        "200",
    ), read

    # a new version: the latest now has 247 rows, but the run read version 0
    assert run(project, "data", "write", "jobsales", "v2.csv", "--contract", "sales.yaml").code == 1
    r = run(project, "reproduce", original["id"], "--json", timeout=600)
    assert r.code == 0, r.out[-3000:] + r.err[-3000:]
    result = first_json(r.out)
    assert result["verdict"] == "reproduced", result
    runs = run(project, "jobs", "runs", original["job"], "--json").json()
    new = next(x for x in runs if x["id"] == result["new"])
    assert new["parameters"] == {"data": "lake:jobsales@0"}, new  # pinned to the version the original read
    again = run(project, "runs", "show", new["mlflow_run_id"], "--json").json()["lineage"]
    assert (again["aiwb.data.ref"], again["aiwb.data.rows"]) == ("lake:jobsales@0", "200"), again
    assert again["aiwb.data.fingerprint"] == read["aiwb.data.fingerprint"]
