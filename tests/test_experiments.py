"Experiments across processes: parallel registrations, promotions killed midway, reproducible seeds, DDP, the CLI."

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sklearn.datasets import load_breast_cancer

from aiworkbench.config import load_settings
from aiworkbench.contracts import infer_contract
from aiworkbench.project import init_project
from aiworkbench.registry import history, promote, resolve_version, rollback
from aiworkbench.tracking import load_pytorch
from aiworkbench.training import train_tabular

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    "A project with the breast-cancer data and contract, and model `bc` v1 (champion) and v2."
    root = init_project(tmp_path_factory.mktemp("exp") / "p")
    settings = load_settings(root)
    frame = load_breast_cancer(as_frame=True).frame
    frame.to_csv(root / "data" / "bc.csv", index=False)
    contract = infer_contract(frame, "bc", target="target")
    contract.save(root / "contracts" / "bc.yaml")
    for epochs in (1, 3):
        train_tabular(frame, contract, max_epochs=epochs, settings=settings, register="bc", enable_progress_bar=False)
    promote("bc", 1, settings=settings)
    return root


def python(code: str, cwd: Path, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw
    )


def test_parallel_registrations_get_unique_consecutive_versions(project):
    uri = resolve_version("bc", 1, settings=load_settings(project)).source
    code = f"from aiworkbench.registry import register_model\nprint(register_model({uri!r}, 'par')['version'])"
    procs = [python(code, project) for _ in range(20)]
    outs = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-500:] for _, err in outs if err and "Error" in err]
    assert sorted(int(out.strip().splitlines()[-1]) for out, _ in outs) == list(range(1, 21))


def test_promotion_killed_midway_leaves_a_loadable_champion(project):
    settings = load_settings(project)
    rng = random.Random(0)
    code = (
        "import sys\nfrom aiworkbench.registry import promote, Gate\n"
        "print('ready', flush=True)\nsys.stdin.readline()\n"
        "promote('bc', int(sys.argv[1]), Gate(min_metrics={'val_acc': 0.0}), reason='chaos')"
    )
    for attempt in range(8):
        target = 2 if attempt % 2 == 0 else 1
        was, before = (
            int(resolve_version("bc", "champion", settings=settings).version),
            history("bc", settings=settings),
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code, str(target)],
            cwd=project,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        champion, after = resolve_version("bc", "champion", settings=settings), history("bc", settings=settings)
        assert int(champion.version) in (was, target)
        assert load_pytorch(champion.source, settings=settings) is not None
        # the history only grows, by at most the one intent recorded before the alias moves
        grown = after[len(before) :]
        assert after[: len(before)] == before
        assert [(e["kind"], e["from"], e["to"], e["why"]) for e in grown] in ([], [("promote", was, target, "chaos")])
        assert grown or int(champion.version) == was, "the alias moved without its history entry"
    was = int(resolve_version("bc", "champion", settings=settings).version)
    promote("bc", 1, settings=settings, reason="reset")
    promote("bc", 2, settings=settings, reason="next")
    assert rollback("bc", settings=settings) == {"name": "bc", "alias": "champion", "from": 2, "to": 1}
    tail = [(e["kind"], e["from"], e["to"], e["why"]) for e in history("bc", settings=settings)[-3:]]
    assert tail == [("promote", was, 1, "reset"), ("promote", 1, 2, "next"), ("rollback", 2, 1, "rollback")]
    assert int(resolve_version("bc", "champion", settings=settings).version) == 1


def test_same_seed_same_metrics_in_separate_processes(project, aiwb):
    args = (
        "train",
        project / "data" / "bc.csv",
        "--contract",
        project / "contracts" / "bc.yaml",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--json",
    )
    first, second = aiwb(*args, cwd=project), aiwb(*args, cwd=project)
    assert first.code == 0 and second.code == 0, (first.err + second.err)[-3000:]
    a, b = first.json(), second.json()
    assert a["run_id"] != b["run_id"]
    assert a["metrics"] == b["metrics"]
    assert a["lineage"]["aiwb.data.fingerprint"] == b["lineage"]["aiwb.data.fingerprint"]
    assert a["lineage"]["aiwb.seed"] == "3" and "torch" in json.loads(a["lineage"]["aiwb.packages"])


def test_ddp_two_cpu_processes_log_one_complete_run(project):
    from aiworkbench.tracking import list_runs

    env = {**os.environ, "PYTHONPATH": str(SCRIPTS)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_ddp.py"), str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (project / "rank-0.done").exists() and (project / "rank-1.done").exists()
    results = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert len(results) == 1, proc.stdout  # rank zero only
    result = json.loads(results[0].removeprefix("RESULT "))
    runs = list_runs(settings=load_settings(project), experiment="ddp")
    assert [r["run_id"] for r in runs] == [result["run_id"]]
    run = runs[0]
    assert run["status"] == "FINISHED"
    resolved = {"accelerator": "cpu", "devices": "2", "strategy": "ddp", "num_nodes": "1", "precision": "32-true"}
    assert {k: run["params"][k] for k in resolved} == resolved  # as the Trainer resolved them
    assert {"val_loss", "val_acc", "train_loss_step"} <= set(run["metrics"])
    assert result["model_uri"]


@pytest.mark.parametrize(
    "args, message",
    [
        (("runs", "show", "0" * 32), "no run `00000000"),
        (("models", "show", "nope"), "no registered model `nope`; models: bc"),
        (("models", "promote", "bc", "99"), "has no version `99`"),
        (("models", "promote", "bc", "challenger"), "has no alias `challenger`"),
        (("models", "promote", "bc", "2", "--min", "val_f1=0.5"), "names metric `val_f1`"),
        (("models", "promote", "bc", "2", "--min", "val_acc"), "write METRIC=NUMBER"),
        (("models", "rollback", "nope"), "no registered model `nope`"),
        (("runs", "list", "--experiment", "nope"), "no experiment `nope`"),
    ],
)
def test_cli_names_the_unknown_thing(project, aiwb, args, message):
    r = aiwb(*args, cwd=project)
    assert r.code == 2 and message in r.err, r.err


def test_cli_gate_refusal_prints_each_check(project, aiwb):
    other = project / "contracts" / "other.yaml"
    other.write_text((project / "contracts" / "bc.yaml").read_text().replace("mean radius", "radius"))
    r = aiwb("models", "promote", "bc", "2", "--contract", other, "--json", cwd=project)
    assert r.code == 1
    checks = {c["name"]: c for c in r.json()["checks"]}
    failed = checks["inputs match contract bc@v1"]
    assert not failed["passed"] and "model lacks ['radius']" in failed["detail"]
