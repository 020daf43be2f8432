"""The lifecycle as users run it: a fresh `aiwb init` project, every step a separate `aiwb` process, exit codes as the
README documents them (0 / 1 / 2), then the same moves through the REST API of a real Jupyter server; and the README's
"Using it" block, run as written."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from lifecycle_data import DATASETS, Dataset, drifted_rows, rows_of, set_parameters, write_batch  # noqa: E402

REPO = Path(__file__).parents[1]
AIWB = str(Path(sys.executable).parent / "aiwb")
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 120.0, every: float = 0.2):
    "Poll `predicate` until it returns something truthy, or fail naming `what` after `timeout` seconds."
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def stop(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    "SIGTERM `proc` (by its pid), then SIGKILL its process group if it does not end."
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def left_running(root: Path) -> list[dict]:
    "Processes whose working directory is inside `root`."
    import psutil

    procs = psutil.process_iter(["pid", "cmdline", "cwd"])
    return [p.info for p in procs if str(p.info["cwd"] or "").startswith(str(root))]


def stray_stores(root: Path) -> list[Path]:
    "Every `mlflow.db` or `mlruns/` under `root` outside a `.aiwb/` state dir."
    found = [*root.rglob("mlflow.db"), *root.rglob("mlruns")]
    return [p for p in found if ".aiwb" not in p.relative_to(root).parts]


def post_json(url: str, body, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"content-type": "application/json"})
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    return _send(req, timeout)


def get_json(url: str, headers: dict | None = None, timeout: float = 60) -> tuple[int, dict]:
    req = urllib.request.Request(url, headers=headers or {})
    return _send(req, timeout)


def _send(req, timeout) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, json.loads(text)
        except json.JSONDecodeError:
            return e.code, {"text": text.decode(errors="replace")}


class Served:
    "`aiwb serve REF --port 0` in its own process; the URL it prints when ready; stopped by its pid."

    def __init__(self, ref: str, cwd: Path):
        self.proc = subprocess.Popen(
            [AIWB, "serve", ref, "--port", "0"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()
        try:
            self.url = wait_for(self._url, f"`aiwb serve {ref}` to print its URL", timeout=180)
        except BaseException:
            stop(self.proc)
            raise

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def _url(self) -> str | None:
        if self.proc.poll() is not None:
            raise AssertionError(f"`aiwb serve` exited {self.proc.returncode}:\n{''.join(self.err)[-3000:]}")
        urls = [line.strip() for line in self.lines if line.startswith("http://")]
        return urls[0] if urls else None

    def predict(self, rows) -> tuple[int, dict]:
        return post_json(f"{self.url}/predict", {"rows": rows})


class JupyterServer:
    "A real `jupyter server` on the project with the aiworkbench extension, token auth, no unauthenticated access."

    def __init__(self, root: Path, tmp: Path):
        self.token, port = secrets.token_hex(16), free_port()
        (tmp / "jupyter-config").mkdir(exist_ok=True)
        config = {
            "ServerApp": {
                "jpserver_extensions": {"aiworkbench.lab.extension": True},
                "allow_unauthenticated_access": False,
            }
        }
        (tmp / "jupyter-config" / "jupyter_server_config.json").write_text(json.dumps(config))
        env = {k: v for k, v in os.environ.items() if k not in ("AIWB_ROOT", "JUPYTER_TOKEN")}
        env["JUPYTER_CONFIG_DIR"] = str(tmp / "jupyter-config")
        self.log = open(tmp / "jupyter.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jupyter_server",
                "--allow-root",
                "--no-browser",
                "--ip=127.0.0.1",
                f"--port={port}",
                "--port-retries=0",
                f"--IdentityProvider.token={self.token}",
                f"--ServerApp.root_dir={root}",
            ],
            cwd=root,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{port}/"
        self.auth = {"Authorization": f"token {self.token}"}
        try:
            wait_for(self._ready, "jupyter server to answer", timeout=120)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            self.log.flush()
            raise AssertionError("jupyter server exited:\n" + Path(self.log.name).read_text()[-3000:])
        try:
            return get_json(f"{self.base}api/status", self.auth, timeout=2)[0] == 200
        except OSError:
            return False

    def api(self, method: str, *parts: str, body=None, auth: bool = True) -> tuple[int, dict]:
        url = self.base + "aiworkbench/api/" + "/".join(parts)
        headers = self.auth if auth else {}
        return post_json(url, body or {}, headers) if method == "POST" else get_json(url, headers)

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def record(r, *codes: int):
    "Assert the step exited with one of `codes`; return its JSON output (or None when it printed none)."
    assert r.code in codes, f"exit {r.code}, wanted {codes}\nstdout: {r.out[-2000:]}\nstderr: {r.err[-3000:]}"
    text = r.out.strip()
    if not text:
        return None
    return json.loads(text[text.index("{") :] if text[0] not in "[{" else text)


# ---------------------------------------------------------------------------------------------------------------
# The lifecycle, one step per test (pytest runs a class's tests in order). A step whose predecessor failed is skipped
# with its name, so the first failure is the one to read.


def life_state(request, tmp_path_factory):
    "The lifecycle's shared state for one data set: the project, the data set, what earlier steps found."
    ds: Dataset = DATASETS[request.param]()
    tmp = tmp_path_factory.mktemp(f"life-{ds.key}")
    # a project named after its data set: against one team server (tests/test_team_lifecycle.py) each has its experiment
    state = {"ds": ds, "tmp": tmp, "root": tmp / f"{ds.key}-project", "failed": None, "procs": []}
    yield state
    for proc in state["procs"]:  # whatever a failed step left running
        if proc.poll() is None:
            stop(proc)


life = pytest.fixture(scope="class", params=list(DATASETS), name="life")(life_state)


class TestLifecycle:
    "One fresh project per data set, taken through every step as a user runs it, each `aiwb` in its own process."

    @pytest.fixture(autouse=True)
    def _in_order(self, request, life):
        "Skip a step when an earlier one failed (its report is the one to read); note this step's failure."
        if life["failed"]:
            pytest.skip(f"an earlier step failed: {life['failed']}")
        failures = request.session.testsfailed
        yield
        if request.session.testsfailed > failures:
            life["failed"] = request.node.name

    def test_01_init_and_data(self, aiwb, life):
        root, ds = life["root"], life["ds"]
        r = aiwb("init", root)
        assert r.code == 0, r.err
        ds.frame.to_csv(root / "data" / "train.csv", index=False)
        life["bad"] = write_batch(ds, root / "data" / "new.csv")
        r = aiwb("data", "infer", "data/train.csv", "-o", "contracts/train.yaml", "--target", ds.target, cwd=root)
        assert r.code == 0, r.err
        contract = yaml.safe_load((root / "contracts" / "train.yaml").read_text())
        assert contract["target"] == ds.target and set(contract["columns"]) == set(ds.frame.columns)
        r = aiwb("data", "validate", "data/train.csv", "--contract", "contracts/train.yaml", "--json", cwd=root)
        report = record(r, 0)
        assert (report["good"], report["bad"]) == (len(ds.frame), 0)

    def test_02_validate_with_quarantine(self, aiwb, life):
        root = life["root"]
        r = aiwb(
            "data", "validate", "data/new.csv", "--contract", "contracts/train.yaml",
            "--quarantine", ".aiwb/quarantine", "--json", cwd=root,
        )  # fmt: skip
        report = record(r, 1)
        assert report["good"] + report["bad"] == 60 and report["bad"] == len(life["bad"])
        assert sorted((f["row"], f["column"], f["check"]) for f in report["failures"]) == sorted(life["bad"])
        import pandas as pd

        quarantined = pd.read_parquet(root / report["quarantine"]["rows"])  # relative to the project, as given
        assert len(quarantined) == len(life["bad"])
        r = aiwb("data", "validate", "data/missing.csv", "--contract", "contracts/train.yaml", cwd=root)
        assert r.code == 2 and "missing.csv" in r.err, (r.code, r.err)

    def test_03_diff(self, aiwb, life):
        root, ds = life["root"], life["ds"]
        contract = yaml.safe_load((root / "contracts" / "train.yaml").read_text())
        wider = json.loads(json.dumps(contract))
        first = ds.features[0]
        wider["columns"][first]["max"] = contract["columns"][first]["max"] * 2  # accepts more: compatible
        (root / "contracts" / "wider.yaml").write_text(yaml.safe_dump(wider, sort_keys=False))
        r = aiwb("data", "diff", "contracts/train.yaml", "contracts/wider.yaml", "--json", cwd=root)
        assert not record(r, 0)["breaking"]
        narrower = json.loads(json.dumps(contract))
        del narrower["columns"][ds.features[1]]  # a column the model reads is gone: breaking
        (root / "contracts" / "narrower.yaml").write_text(yaml.safe_dump(narrower, sort_keys=False))
        r = aiwb("data", "diff", "contracts/train.yaml", "contracts/narrower.yaml", "--json", cwd=root)
        assert record(r, 1)["breaking"]

    def test_04_train_twice(self, aiwb, life):
        root, ds = life["root"], life["ds"]
        runs = []
        for epochs in (2, 4):
            r = aiwb(
                "train", "data/train.csv", "--contract", "contracts/train.yaml", "--epochs", epochs,
                "--register", ds.key, "--json", cwd=root, timeout=300,
            )  # fmt: skip
            runs.append(record(r, 0))
        assert [run["registered"]["version"] for run in runs] == [1, 2]
        r = aiwb("models", "show", ds.key, "--json", cwd=root)
        shown = record(r, 0)
        versions = {int(v["version"]): v for v in shown["versions"]}
        assert sorted(versions) == [1, 2]
        life["metrics"] = {n: versions[n]["metrics"] for n in (1, 2)}
        m1, m2 = life["metrics"][1], life["metrics"][2]
        assert m2["val_loss"] < m1["val_loss"], f"four epochs should beat two on {ds.key}: {m1} {m2}"
        r = aiwb("runs", "list", "--json", cwd=root)
        assert len(record(r, 0)) == 2

    def test_05_promote_through_gates_and_roll_back(self, aiwb, life):
        root, ds = life["root"], life["ds"]
        name, metric = ds.key, ds.gate_metric
        assert record(aiwb("models", "promote", name, "1", "--json", cwd=root), 0)["to"] == 1
        v2 = life["metrics"][2][metric]
        too_strict = v2 + 0.01 if ds.gate_option == "--min" else v2 - 0.01
        fair = v2 - 0.01 if ds.gate_option == "--min" else v2 + 0.01
        r = aiwb(
            "models", "promote", name, "2", ds.gate_option, f"{metric}={too_strict}", "--beat", "val_loss",
            "--json", cwd=root,
        )  # fmt: skip
        refused = record(r, 1)
        failed = [c["name"] for c in refused["checks"] if not c["passed"]]
        assert len(failed) == 1 and metric in failed[0], refused
        r = aiwb(
            "models", "promote", name, "2", ds.gate_option, f"{metric}={fair}", "--beat", "val_loss",
            "--reason", "four epochs", "--json", cwd=root,
        )  # fmt: skip
        moved = record(r, 0)
        assert (moved["from"], moved["to"]) == (1, 2) and all(c["passed"] for c in moved["checks"])
        back = record(aiwb("models", "rollback", name, "--json", cwd=root), 0)
        assert (back["from"], back["to"]) == (2, 1)
        r = aiwb("models", "history", name, "--json", cwd=root)
        history = record(r, 0)
        entries = history["history"] if isinstance(history, dict) else history
        moves = [(e["kind"], e["from"], e["to"]) for e in entries if e.get("alias") == "champion" and "kind" in e]
        assert [m for m in moves if m[0] in ("promote", "rollback")] == [
            ("promote", None, 1),
            ("promote", 1, 2),
            ("rollback", 2, 1),
        ], entries

    def test_06_package_serve_predict(self, aiwb, life):
        root, ds = life["root"], life["ds"]
        packaged = record(aiwb("package", f"{ds.key}@champion", "--json", cwd=root, timeout=300), 0)
        assert packaged["version"] == 1 and Path(packaged["build_dir"]).is_dir()
        r = aiwb("serve", "ghost@champion", "--port", "0", cwd=root)
        assert r.code == 2 and "ghost" in r.err, (r.code, r.err)
        server = Served(f"{ds.key}@champion", root)
        life["procs"].append(server.proc)
        try:
            code, answer = server.predict(rows_of(ds, 40))
            assert code == 200 and len(answer["predictions"]) == 40, answer
            key = "label" if ds.task == "classification" else "value"
            assert all(key in p for p in answer["predictions"]), answer["predictions"][0]
            bad = rows_of(ds, 2, seed=3)
            bad[1][ds.features[0]] = "high"
            code, answer = server.predict(bad)
            assert 400 <= code < 500 and answer["field"] == f"rows[1].{ds.features[0]}", (code, answer)
            drifted = drifted_rows(ds, 300)
            for i in range(0, len(drifted), 50):
                code, answer = server.predict(drifted[i : i + 50])
                assert code == 200, answer
        finally:
            stop(server.proc)
        assert server.proc.returncode in (0, -signal.SIGTERM), "".join(server.err)[-2000:]

    def test_07_monitor_retrains_and_gates(self, aiwb, life):
        root, ds = life["root"], life["ds"]
        set_parameters(
            root / "nbs" / "retrain.ipynb",
            data_path="data/train.csv",
            contract_path="contracts/train.yaml",
            epochs=ds.retrain_epochs,
        )
        result = record(aiwb("monitor", ds.key, "--json", cwd=root, timeout=600), 1)
        assert result["verdict"] == "drift" and result["champion"] == 1, result
        retraining = result["retraining"]
        assert retraining["status"] == "succeeded", retraining
        assert retraining["outcome"] == ds.monitor_outcome and retraining["challenger"] == 3, retraining
        life["retraining"] = retraining
        shown = record(aiwb("models", "show", ds.key, "--json", cwd=root), 0)
        champion = 3 if ds.monitor_outcome == "promoted" else 1
        assert shown["aliases"]["champion"] == champion and shown["aliases"]["challenger"] == 3, shown
        again = record(aiwb("monitor", ds.key, "--json", cwd=root, timeout=600), 1)
        assert again["retraining"]["repeated"] and again["retraining"]["job_run"] == retraining["job_run"]
        life["champion"] = champion

    def test_08_jobs_run(self, aiwb, life):
        root = life["root"]
        params = ["-p", "contract_path", "contracts/train.yaml"]
        r = aiwb("jobs", "run", "nbs/02_validate_data.ipynb", "-p", "data_path", "data/train.csv", *params,
                 "--json", cwd=root, timeout=300)  # fmt: skip
        run = record(r, 0)
        assert run["status"] == "succeeded" and Path(run["output_notebook"]).exists() and run["mlflow_run_id"]
        r = aiwb("jobs", "run", "nbs/02_validate_data.ipynb", "-p", "data_path", "data/new.csv", *params,
                 "--json", cwd=root, timeout=300)  # fmt: skip
        run = record(r, 1)
        assert run["status"] == "failed" and "rows fail" in (run["error"]["message"] or ""), run

    def test_09_cron_job_and_scheduler(self, aiwb, life):
        root = life["root"]
        r = aiwb(
            "jobs", "add", "check-train", "nbs/02_validate_data.ipynb", "-p", "data_path", "data/train.csv",
            "-p", "contract_path", "contracts/train.yaml", "--cron", "* * * * * */10", "--catchup", "none",
            "--json", cwd=root,
        )  # fmt: skip
        job = record(r, 0)
        assert job["cron"] == "* * * * * */10"
        # every ten seconds (the sixth field counts seconds): 35 s hold at least three ticks, whatever the clock says
        r = aiwb("scheduler", "--workers", "1", "--stop-after", "35", cwd=root, timeout=300)
        assert r.code == 0, r.err[-3000:]
        runs = record(aiwb("jobs", "runs", "check-train", "--json", cwd=root), 0)
        runs = runs["runs"] if isinstance(runs, dict) else runs
        ticked = [x for x in runs if x.get("scheduled_for")]
        assert ticked and any(x["status"] == "succeeded" for x in ticked), runs
        assert not [x for x in runs if x["status"] == "running"], runs

    def test_10_reproduce_kpi_phase(self, aiwb, life):
        root = life["root"]
        result = record(aiwb("reproduce", life["retraining"]["job_run"], "--json", cwd=root, timeout=600), 0)
        assert result["verdict"] == "reproduced", result
        r = aiwb("reproduce", "no-such-run", cwd=root)
        assert r.code == 2 and "no-such-run" in r.err, (r.code, r.err)
        kpis = record(aiwb("kpi", "--json", cwd=root), 0)
        by_key = {k["key"]: k for k in kpis["kpis"]}
        assert by_key["reproducibility"]["value"] == 1.0, by_key
        assert by_key["p95_latency"]["value"] > 0, by_key
        phase = record(aiwb("phase", "--json", cwd=root), 0)
        assert isinstance(phase["phase"], int) and phase["phase"] >= 1, phase

    def test_11_rest_api(self, aiwb, life):
        root, ds, tmp = life["root"], life["ds"], life["tmp"]
        server = JupyterServer(root, tmp)
        life["procs"].append(server.proc)
        try:
            assert server.api("GET", "models", auth=False)[0] == 403
            code, model = server.api("GET", "models", ds.key)
            assert code == 200 and model["aliases"]["champion"] == life["champion"], model
            v2 = life["metrics"][2][ds.gate_metric]
            bound = "min_metrics" if ds.gate_option == "--min" else "max_metrics"
            strict = v2 + 0.01 if bound == "min_metrics" else v2 - 0.01
            code, refused = server.api(
                "POST", "models", ds.key, "promote", body={"version": 2, "gate": {bound: {ds.gate_metric: strict}}}
            )
            assert code == 409 and refused["error"] == "GateRefused", refused
            code, moved = server.api("POST", "models", ds.key, "promote", body={"version": 2, "reason": "rest"})
            assert code == 200 and (moved["from"], moved["to"]) == (life["champion"], 2), moved
            code, back = server.api("POST", "models", ds.key, "rollback", body={})
            assert code == 200 and (back["from"], back["to"]) == (2, life["champion"]), back
            job = {
                "name": "rest-check",
                "notebook": "nbs/02_validate_data.ipynb",
                "parameters": {"data_path": "data/train.csv", "contract_path": "contracts/train.yaml"},
            }
            assert server.api("POST", "jobs", body=job)[0] == 200
            code, started = server.api("POST", "jobs", "rest-check", "run", body={})
            assert code == 200 and started["executor"] == "server", started
            run_id = started["run"]["id"]

            def finished():
                code, run = server.api("GET", "job-runs", run_id)
                return code == 200 and run["status"] in TERMINAL and run

            run = wait_for(finished, "the REST job run to finish", timeout=300, every=0.5)
            assert run["status"] == "succeeded", run
        finally:
            server.stop()
        history = record(aiwb("models", "history", ds.key, "--json", cwd=root), 0)
        entries = history["history"] if isinstance(history, dict) else history
        last = [(e["kind"], e["from"], e["to"]) for e in entries if e.get("alias") == "champion" and "kind" in e]
        assert last[-2:] == [("promote", life["champion"], 2), ("rollback", 2, life["champion"])], entries

    def test_12_nothing_left_behind(self, life):
        root, tmp = life["root"], life["tmp"]
        assert not stray_stores(tmp), stray_stores(tmp)
        on_server = os.environ.get("AIWB_TRACKING_URI", "").startswith("http")  # tests/test_team_lifecycle.py
        assert (root / ".aiwb" / "mlflow.db").exists() != on_server  # the store is where the tracking URI says
        assert not left_running(root), left_running(root)


# ---------------------------------------------------------------------------------------------------------------
# The README's "Using it" block, as written, in a fresh project.


def readme_block() -> list[str]:
    "The commands of the first ```bash block under README.md's `## Using it`: one per line, comments dropped."
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Using it", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)[1]
    commands = []
    for line in block.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a comment starts with `#` after blanks
        if line and not line.startswith("#"):
            commands.extend(part.strip() for part in line.split(" ; "))
    return commands


# What the README documents for the data the test brings (seeded bad rows in the batch, drifted served traffic);
# every other command exits 0.
EXPECTED = {
    "aiwb data validate": 1,  # rows fail
    "aiwb data diff": 1,  # the new batch's contract narrows the training one
    "aiwb jobs run": 1,  # the validation notebook fails on the batch's bad rows
    "aiwb monitor": 1,  # drift
}
# Only what cannot run unattended is replaced: the foreground scheduler and server.
SCHEDULER = "aiwb scheduler"
SERVE = re.compile(r"^aiwb serve (\S+)$")


def test_readme_using_it_runs_as_written(aiwb, tmp_path):
    commands = readme_block()
    assert commands[0].startswith("aiwb init my-project && cd my-project"), commands[0]
    assert SCHEDULER in commands and any(SERVE.match(c) for c in commands), commands
    ds = DATASETS["wine"]()
    ds.frame = ds.frame.rename(columns={"target": "label"})
    ds.target = "label"
    root = tmp_path / "my-project"
    cwd = tmp_path
    env = {**os.environ, "PATH": f"{Path(AIWB).parent}:{os.environ['PATH']}"}  # `aiwb` as an activated venv has it
    ran = []
    for command in commands:
        if command.startswith("aiwb init"):
            r = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            cwd = root  # the `cd` of that line
            ds.frame.to_csv(root / "data" / "my_data.csv", index=False)  # the user's data, where the README says
            write_batch(ds, root / "data" / "new.csv")
            ran.append((command, 0))
            continue
        if served := SERVE.match(command):
            server = Served(served[1], cwd)
            try:
                for i in range(0, 300, 50):
                    assert server.predict(drifted_rows(ds, 300)[i : i + 50])[0] == 200
            finally:
                stop(server.proc)
            ran.append((command, server.proc.returncode))
            continue
        if command == SCHEDULER:
            command += " --stop-after 5"
        r = subprocess.run(
            command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )  # fmt: skip
        want = next((code for prefix, code in EXPECTED.items() if command.startswith(prefix)), 0)
        assert r.returncode == want, f"`{command}` exited {r.returncode}, README says {want}:\n{r.stderr[-3000:]}"
        ran.append((command, r.returncode))
    assert not stray_stores(tmp_path), stray_stores(tmp_path)
    assert not left_running(root), left_running(root)
