"Exit codes as the README states them: an unexpected error exits 3 with one line on stderr and its traceback in a log."

import os
from pathlib import Path

import pytest

from aiworkbench.project import init_project

# Loaded by the `aiwb` process at start (it is on its PYTHONPATH): replaces `FAULT_TARGET` (`module:attr.path`)
# with a function that raises, as a broken library or environment would.
SITECUSTOMIZE = """
import importlib
import os

target = os.environ.get("FAULT_TARGET")
if target:
    module, _, path = target.partition(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)

    def fault(*args, **kwargs):
        raise RuntimeError("injected fault: the library call failed\\nwith a second line")

    setattr(owner, name, fault)
"""


@pytest.fixture
def faulty_env(tmp_path):
    "The environment of an `aiwb` process whose `FAULT_TARGET` raises; its temp folder is `tmp_path/tmp`."
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWB_")}

    def make(target: str | None) -> dict:
        extra = {"FAULT_TARGET": target} if target else {}
        return env | extra | {"PYTHONPATH": str(tmp_path / "site"), "TMPDIR": str(tmp_path / "tmp")}

    return make


def logged(err: str) -> Path:
    "The log file the one-line message names."
    assert err.count("\n") == 1 and err.endswith("\n"), err  # exactly one line
    return Path(err.split("traceback in ")[1].split(";")[0])


def test_unexpected_error_in_a_project_exits_3_with_a_log(aiwb, tmp_path, faulty_env):
    root = init_project(tmp_path / "p")
    assert aiwb("kpi", cwd=root, env=faulty_env(None)).code == 0  # the same command without the fault
    r = aiwb("kpi", cwd=root, env=faulty_env("rich.table:Table.add_row"))
    assert r.code == 3, (r.code, r.out, r.err)
    assert r.err.startswith("error: aiwb kpi failed unexpectedly (RuntimeError: injected fault"), r.err
    log = logged(r.err)
    assert log.parent == root / ".aiwb" / "logs" and log.name.startswith("aiwb-") and log.suffix == ".log"
    text = log.read_text()
    assert text.startswith("$ aiwb kpi\n") and "Traceback (most recent call last)" in text
    assert "cli/monitoring.py" in text and "RuntimeError: injected fault" in text
    assert "Traceback" not in r.err and "Traceback" not in r.out


def test_unexpected_error_with_json_prints_a_json_error(aiwb, tmp_path, faulty_env):
    root = init_project(tmp_path / "p")
    r = aiwb("kpi", "--json", cwd=root, env=faulty_env("aiworkbench.monitoring.kpis:kpi_report"))
    assert r.code == 3, (r.code, r.out, r.err)
    body = r.json()
    assert (body["error"], body["exception"], body["command"], body["status"]) == (
        "UnexpectedError",
        "RuntimeError",
        "aiwb kpi",
        500,
    )
    assert Path(body["log"]) == logged(r.err) and "kpi_report" in Path(body["log"]).read_text()
    assert "\n" not in body["message"] and body["log"] in body["message"]


def test_unexpected_error_outside_a_project_logs_to_the_temp_folder(aiwb, tmp_path, faulty_env):
    work = tmp_path / "w"
    work.mkdir()
    (work / "d.csv").write_text("a,b\n1,x\n2,y\n")
    assert aiwb("data", "fingerprint", "d.csv", cwd=work, env=faulty_env(None)).code == 0
    r = aiwb("data", "fingerprint", "d.csv", cwd=work, env=faulty_env("aiworkbench.datasets:read_table"))
    assert r.code == 3, (r.code, r.out, r.err)
    assert r.err.startswith("error: aiwb data fingerprint failed unexpectedly (RuntimeError"), r.err
    log = logged(r.err)
    assert log.parent == tmp_path / "tmp" / "aiwb-logs" and "read_table" in log.read_text()
    assert not (work / ".aiwb").exists()


def test_problems_and_unusable_input_keep_exits_1_and_2(aiwb, tmp_path, faulty_env):
    work = tmp_path / "w"
    work.mkdir()
    (work / "d.csv").write_text("a\n1\n2\n3\n")
    (work / "bad.csv").write_text("a\n1\n-5\n")
    env = faulty_env(None)
    assert aiwb("data", "infer", "d.csv", "-o", "c.yaml", cwd=work, env=env).code == 0
    r = aiwb("data", "validate", "bad.csv", "--contract", "c.yaml", cwd=work, env=env)
    assert r.code == 1, (r.code, r.out, r.err)  # the check ran and found a problem
    r = aiwb("data", "validate", "missing.csv", "--contract", "c.yaml", "--json", cwd=work, env=env)
    assert r.code == 2 and "missing.csv" in r.json()["message"], (r.code, r.out, r.err)  # unusable input
    assert not (tmp_path / "tmp" / "aiwb-logs").exists()  # neither is an unexpected error
