"""`aiwb ci` as a CI system runs it: each step its own `aiwb` process in a real project (a git checkout).

One trained project (module fixture: a contract, a training notebook, champion v1 promoted by `aiwb ci --promote`)
is copied for each test. Faults: a contract its data no longer fits (validate names file, row, column), a notebook
that raises (test names notebook and cell), a candidate the gate refuses (exit 1, champion untouched, the refusal in
the summary), a service failing its smoke request, `aiwb ci` outside a project (exit 2), two `--promote` at once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
AIWB = str(BIN / "aiwb")
EPOCHS = 3  # the champion's recipe; a candidate of the same recipe is no worse, one of 1 epoch is worse
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AIWB_", "GITHUB_", "CI_"))}


def aiwb(*args, cwd: Path, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run([AIWB, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=ENV)


def git_commit(root: Path, message: str = "change", when: float | None = None) -> str:
    "Commit everything in `root` (at epoch time `when`, default now); its sha."
    git = ["git", "-C", str(root), "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    dated = {} if when is None else {"GIT_AUTHOR_DATE": f"@{int(when)}", "GIT_COMMITTER_DATE": f"@{int(when)}"}
    subprocess.run([*git, "commit", "-qm", message, "--allow-empty"], check=True, env={**os.environ, **dated})
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()


def write_notebook(path: Path, cells: list[tuple[str, str, list[str]]], ci: dict | None = None) -> None:
    from aiworkbench.project import notebook_source

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(notebook_source(cells, ci=ci))


def train_notebook(root: Path, name: str, epochs: int, contract: str = "contracts/wine.yaml") -> str:
    from aiworkbench.project import retrain_cells

    write_notebook(root / "nbs" / name, retrain_cells("wine", "data/wine.csv", contract, epochs=epochs, seed=0))
    return f"nbs/{name}"


def champion(root: Path) -> int | None:
    "The version `champion` names."
    shown = json.loads(aiwb("models", "show", "wine", "--json", cwd=root).stdout)
    return shown["aliases"].get("champion")


def stages(result: dict) -> dict[str, dict]:
    return {st["name"]: st for st in result["stages"]}


def failures(stage: dict) -> list[str]:
    return [f"{c['name']}: {c['message']}" for c in stage["cases"] if c["outcome"] == "failed"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A project with wine data, its contract and a training notebook, whose first champion two `aiwb ci --promote`
    started at once made: one promoted, the other found the champion moved and refused."""
    from sklearn.datasets import load_wine

    root = tmp_path_factory.mktemp("ci") / "wine"
    assert aiwb("init", root, cwd=root.parent).returncode == 0
    for starter in ("01_explore_data", "02_validate_data", "retrain"):  # tested in the fresh project's test (CI time)
        (root / "nbs" / f"{starter}.ipynb").unlink()
    df = load_wine(as_frame=True).frame
    df["target"] = df["target"].map(lambda i: f"class_{i}")
    df.to_csv(root / "data" / "wine.csv", index=False)
    r = aiwb("data", "infer", "data/wine.csv", "-o", "contracts/wine.yaml", "--target", "target", cwd=root)
    assert r.returncode == 0, r.stderr
    nb = train_notebook(root, "train.ipynb", EPOCHS)
    assert aiwb("ci", "init", "--train-notebook", nb, "--model", "wine", cwd=root).returncode == 0
    sha = git_commit(root, "first model", when=time.time() - 3 * 86400)  # the work began three days ago
    cmd = [AIWB, "ci", "--stages", "validate,train,gate", "--promote", "--json"]
    procs = [subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)]
    procs.append(subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV))
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1], [o[0][-2000:] + o[1][-2000:] for o in outs]
    results = sorted((json.loads(o[0]) for o in outs), key=lambda r: r["exit_code"])
    return {"root": root, "sha": sha, "promoted": results[0], "refused": results[1]}


def copy(trained: dict, tmp_path: Path) -> Path:
    root = tmp_path / "wine"
    shutil.copytree(trained["root"], root, symlinks=True)
    return root


def test_two_promotions_at_once_and_the_commit_recorded(trained):
    root, sha = trained["root"], trained["sha"]
    promoted, refused = trained["promoted"]["promotion"], trained["refused"]["promotion"]
    assert promoted["outcome"] == "promoted" and promoted["from"] is None and promoted["to"] in (1, 2), promoted
    assert refused["outcome"] == "refused", refused
    assert f"moved from (none) to v{promoted['to']}" in refused["message"], refused
    assert trained["promoted"]["commit"]["sha"] == sha
    shown = json.loads(aiwb("models", "show", "wine", "--json", cwd=root).stdout)
    assert shown["aliases"]["champion"] == promoted["to"] and len(shown["versions"]) == 2
    moves = [m for m in shown["history"] if m["alias"] == "champion"]
    assert [(m["kind"], m["to"]) for m in moves] == [("promote", promoted["to"])] and sha in moves[0]["why"], moves
    from aiworkbench.config import load_settings
    from aiworkbench.registry import list_versions

    versions = list_versions("wine", settings=load_settings(root, environ={}))
    tags = next(v["tags"] for v in versions if v["version"] == promoted["to"])
    assert tags["aiwb.ci.commit"] == sha and float(tags["aiwb.ci.promoted_at"]) >= float(tags["aiwb.ci.commit_time"])
    # the deployment cycle runs from the commit (three days before) to the champion, not from the training run
    kpis = {k["key"]: k for k in json.loads(aiwb("kpi", "--json", cwd=root).stdout)["kpis"]}
    assert 2.99 < kpis["deployment_cycle"]["value"] < 3.1, kpis["deployment_cycle"]


def phase_item(root: Path) -> dict:
    "The phase item `aiwb ci` records are evidence for."
    return next(i for i in json.loads(aiwb("phase", "--json", cwd=root).stdout)["items"] if i["key"] == "ci")


def test_fresh_project_passes_and_its_workflows_validate(tmp_path):
    from aiworkbench import __version__

    root = tmp_path / "fresh"
    r = aiwb("init", root, "--ci", "github", cwd=tmp_path)
    assert r.returncode == 0 and (root / ".github" / "workflows" / "aiwb.yml").is_file(), r.stdout + r.stderr
    assert f"aiworkbench=={__version__}" in (root / "requirements.txt").read_text().splitlines()  # what CI installs
    r = aiwb("ci", "init", "--ci", "gitlab", cwd=root)  # a project that has one gets the other CI system's too
    assert r.returncode == 0 and ".gitlab-ci.yml" in r.stdout, r.stderr
    for kind, path in (("github", ".github/workflows/aiwb.yml"), ("gitlab", ".gitlab-ci.yml")):
        text = (root / path).read_text()
        assert "pip install -r requirements.txt" in text and "pip install aiworkbench" not in text, text
        schema = "vendor.github-workflows" if kind == "github" else "vendor.gitlab-ci"
        check = subprocess.run(
            [str(BIN / "check-jsonschema"), "--builtin-schema", schema, str(root / path)],
            capture_output=True,
            text=True,
        )
        assert check.returncode == 0, check.stdout + check.stderr
    again = aiwb("ci", "init", "--ci", "github", cwd=root)
    assert again.returncode == 2 and "exists" in again.stderr
    r = aiwb("init", tmp_path / "no-ci", "--ci", "jenkins", cwd=tmp_path)  # refused before anything is made
    assert r.returncode == 2 and "github, gitlab" in r.stderr and not (tmp_path / "no-ci").exists(), r.stderr
    git_commit(root)
    # the stages an empty project cannot run: each skipped, saying what to add; a run of only those checks nothing
    r = aiwb("ci", "--stages", "validate,train,gate,package,smoke", "--summary", "reports/s.md", "--json", cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    result = json.loads(r.stdout)
    notes = {st["name"]: (st["outcome"], st["message"]) for st in result["stages"]}
    assert result["outcome"] == "skipped" and {o for o, _ in notes.values()} == {"skipped"}, notes
    assert "aiwb data infer data/FILE.csv -o contracts/NAME.yaml" in notes["validate"][1], notes
    assert "aiwb ci init --train-notebook nbs/retrain.ipynb" in notes["train"][1], notes
    assert all("nothing was trained" in notes[n][1] for n in ("gate", "package", "smoke")), notes
    assert "**Nothing was checked: every stage skipped.**" in (root / "reports" / "s.md").read_text()
    item = phase_item(root)
    assert not item["ok"] and "checked nothing" in item["evidence"], item  # no evidence
    # the whole pipeline: the starter notebooks run for real, on the sample they declare
    r = aiwb("ci", "--json", "--junit", "reports/j.xml", cwd=root)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    result = json.loads(r.stdout)
    tested = {c["name"]: (c["outcome"], c["detail"].get("parameters")) for c in stages(result)["test"]["cases"]}
    assert result["outcome"] == "passed" and {o for o, _ in tested.values()} == {"passed"}, tested
    assert sorted(tested) == ["nbs/01_explore_data.ipynb", "nbs/02_validate_data.ipynb", "nbs/retrain.ipynb"]
    assert tested["nbs/retrain.ipynb"][1]["data_path"] == "nbs/samples/my_data.csv", tested
    assert ET.parse(root / "reports" / "j.xml").getroot().get("failures") == "0"
    changed = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True).stdout
    assert changed.split() == ["??", "reports/"], changed  # the notebooks wrote nothing into the project
    assert phase_item(root)["ok"]
    # unusable input: exit 2 with the name of what is wrong
    outside = aiwb("ci", cwd=tmp_path)
    assert outside.returncode == 2 and "settings.ini" in outside.stderr, outside.stderr
    bad = aiwb("ci", "--stages", "validate,deploy", cwd=root)
    assert bad.returncode == 2 and "`deploy` is not a stage" in bad.stderr, bad.stderr
    assert aiwb("ci", "init", "--train-notebook", "nbs/nope.ipynb", cwd=root).returncode == 0
    missing = aiwb("ci", cwd=root)
    assert missing.returncode == 2 and "[ci] train_notebook" in missing.stderr, missing.stderr


def test_every_stage_passes_on_a_trained_project(trained, tmp_path):
    root = copy(trained, tmp_path)
    cells = [("code", "x = 0", ["parameters"]), ("code", "assert x == 1, x  # the test value CI passes", [])]
    write_notebook(root / "nbs" / "check.ipynb", cells, ci={"parameters": {"x": 1}})
    sha = git_commit(root, "a notebook test")
    r = aiwb("ci", "--junit", "reports/j.xml", "--summary", "reports/s.md", "--json", cwd=root)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    result = json.loads(r.stdout)
    assert {n: st["outcome"] for n, st in stages(result).items()} == dict.fromkeys(
        ("validate", "test", "train", "gate", "package", "smoke"), "passed"
    ), {n: st["message"] for n, st in stages(result).items()}
    test_cases = {c["name"]: c["outcome"] for c in stages(result)["test"]["cases"]}
    assert test_cases["nbs/check.ipynb"] == "passed" and "nbs/train.ipynb" not in test_cases, test_cases
    smoke = stages(result)["smoke"]
    assert len(smoke["cases"]) == 5 and smoke["data"]["rows_from"] == "data/wine.csv", smoke
    junit = ET.parse(root / "reports" / "j.xml").getroot()
    assert [s.get("name") for s in junit] == ["validate", "test", "train", "gate", "package", "smoke"]
    assert junit.get("failures") == "0" and int(junit.get("tests")) >= 12
    summary = (root / "reports" / "s.md").read_text()
    assert summary.startswith("## aiwb ci: passed") and f"commit `{sha[:12]}`" in summary, summary
    first = trained["promoted"]["promotion"]["to"]
    assert f"### gate: candidate v3 vs champion v{first}: would promote" in summary, summary
    assert champion(root) == first  # a dry run: no alias moved
    phase = json.loads(aiwb("phase", "--json", cwd=root).stdout)
    item = next(i for i in phase["items"] if i["key"] == "ci")
    assert item["ok"] and item["evidence"].startswith("last passing `aiwb ci` run"), item


def test_faults_fail_the_right_stages(trained, tmp_path):
    root = copy(trained, tmp_path)
    # the candidate: 1 epoch instead of the champion's 3, trained on the contract as it was
    shutil.copy(root / "contracts" / "wine.yaml", root / "data" / "wine_contract.yaml")
    train_notebook(root, "train.ipynb", 1, contract="data/wine_contract.yaml")
    # a contract its data no longer fits: `alcohol` capped below what the data holds
    contract = (root / "contracts" / "wine.yaml").read_text()
    contract = re.sub(r"(  alcohol:\n(?:    .*\n)*?    max: )[0-9.]+", r"\g<1>12.0", contract)
    (root / "contracts" / "wine.yaml").write_text(contract)
    # a notebook that raises in its third cell
    cells = [("md", "# broken", []), ("code", "x = 1", []), ("code", "raise ValueError('boom in a test notebook')", [])]
    write_notebook(root / "nbs" / "broken.ipynb", cells)
    # example rows the service must refuse: a feature missing
    header = (root / "data" / "wine.csv").read_text().splitlines()[0].split(",")
    row = {k: 1.0 for k in header if k not in ("target", "alcohol")}
    (root / "contracts" / "wine.examples.jsonl").write_text(json.dumps(row) + "\n")
    git_commit(root, "broken")
    r = aiwb("ci", "--promote", "--summary", "reports/s.md", "--json", cwd=root)
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    result = json.loads(r.stdout)
    st = stages(result)
    validate = " | ".join(failures(st["validate"]))
    assert re.search(r"data/wine\.csv: \d+ of 178 rows fail .*row \d+, column `alcohol`", validate), validate
    assert "breaking change from the champion's contract" in validate and "alcohol" in validate, validate
    test = failures(st["test"])
    assert len(test) == 1 and test[0].startswith("nbs/broken.ipynb: cell 3 (`raise ValueError"), test
    assert "boom in a test notebook" in test[0]
    assert st["train"]["outcome"] == "passed" and st["gate"]["outcome"] == "failed", st["gate"]
    assert st["gate"]["data"]["verdict"] == "refused" and st["package"]["outcome"] == "passed"
    smoke = failures(st["smoke"])
    assert smoke and all(re.search(r"HTTP 4\d\d: .*alcohol", m) for m in smoke), smoke
    first = trained["promoted"]["promotion"]["to"]
    assert result["promotion"]["outcome"] == "not promoted" and champion(root) == first
    summary = (root / "reports" / "s.md").read_text()
    assert f"### gate: candidate v3 vs champion v{first}: refused" in summary and "| **no** |" in summary, summary


def test_a_gate_refusal_alone_fails_the_run(trained, tmp_path):
    root = copy(trained, tmp_path)
    train_notebook(root, "train.ipynb", 1)  # the only change: 1 epoch, where the champion had 3
    git_commit(root, "fewer epochs")
    first = trained["promoted"]["promotion"]["to"]
    r = aiwb("ci", "--stages", "validate,train,gate", "--promote", "--summary", "reports/s.md", "--json", cwd=root)
    assert r.returncode == 1, r.stdout[-4000:] + r.stderr[-2000:]
    result = json.loads(r.stdout)
    outcomes = {n: st["outcome"] for n, st in stages(result).items()}
    assert outcomes == {"validate": "passed", "train": "passed", "gate": "failed"}, outcomes
    refused = [c["name"] for c in stages(result)["gate"]["data"]["checks"] if not c["passed"]]
    assert refused == ["beats champion on val_loss by >= 0"], stages(result)["gate"]["data"]
    assert result["promotion"]["outcome"] == "not promoted" and "gate" in result["promotion"]["message"]
    shown = json.loads(aiwb("models", "show", "wine", "--json", cwd=root).stdout)
    assert shown["aliases"]["champion"] == first and len(shown["versions"]) == 3, shown["aliases"]
    assert [m["to"] for m in shown["history"] if m["alias"] == "champion"] == [first]  # no move
    summary = (root / "reports" / "s.md").read_text()
    assert f"### gate: candidate v3 vs champion v{first}: refused" in summary, summary
    assert "| beats champion on val_loss by >= 0 | **no** |" in summary, summary
