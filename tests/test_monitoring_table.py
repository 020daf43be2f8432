"""The inference table under faults, as a service's writer meets them: each writer is its own process (the request
log a served model runs), each CLI step its own `aiwb` process: a writer SIGKILLed mid-batch, two writers of one
model at once, a full disk, a writer whose clock runs days ahead, and JSON-lines logs imported once."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from aiworkbench.config import load_settings
from aiworkbench.monitoring.inference_table import partitions, read_inference
from aiworkbench.project import init_project

# A served model's request log, alone in its process: `put` N records (ids `<tag>-<i>`), then what the args say. Odd
# records come as the service puts them (the raw bodies, read in bulk at each flush), even ones prepared already.
WRITER = r"""
import errno, json, sys, time
from aiworkbench.monitoring import request_log
from aiworkbench.serving.runtime import RecordReader
folder, tag, n, then, skew = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
if then == "disk-full":  # every flush refused, as by a full disk; the service keeps answering
    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")
    request_log.write_partitions = full
log = request_log.RequestLog(folder, prepare=RecordReader(["x", "c"]), features={"x": "float64", "c": "string"},
                             flush_interval_s=0.2, queue_size=100 if then == "disk-full" else 100_000)
def put(i):
    record = {"ts": time.time() + skew, "request_id": f"{tag}-{i}", "model": "m", "version": 1, "n": 0, "status": 200,
              "latency_ms": 1.0 + i % 7, "cpu_ms": 0.2}
    rows, predictions = [{"x": float(i), "c": "ab"[i % 2]}] * 2, [{"label": "1", "probabilities": [0.3, 0.7]}] * 2
    if i % 2:
        answer = {"model": "m", "version": 1, "predictions": predictions}
        record |= {"body": json.dumps({"rows": rows}).encode(), "response": json.dumps(answer).encode()}
    else:
        record |= {"n": 2, "inputs": rows, "outputs": predictions}
    log.put(record)
for i in range(n):
    put(i)
if then == "kill":  # everything so far landed; then a batch that never will
    while log.written < n:
        time.sleep(0.05)
    log.flush_interval_s = 3600
    for i in range(n, n + 300):
        put(i)
    while log._pending:
        time.sleep(0.01)
    print("ready", flush=True)
    time.sleep(600)
elif then == "disk-full":
    answered = 0
    for i in range(n, n + 100):  # requests keep being answered (put never blocks, never raises)
        put(i)
        answered += 1
    while log.write_errors < 2:  # two flushes refused
        time.sleep(0.05)
    print(json.dumps(log.status() | {"answered": answered}), flush=True)
    log.close(timeout=1)
else:
    log.close()
    assert log.bulk_fallbacks == 0, log.bulk_error  # the raw records were read in bulk
"""


def writer(folder, tag, n, then="close", skew=0.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(folder), tag, str(n), then, str(skew)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = init_project(tmp_path_factory.mktemp("table") / "p")
    settings = load_settings(root, environ={})
    return root, settings, settings.state_dir / "requests" / "m"


@pytest.fixture
def env():
    return {k: v for k, v in os.environ.items() if not k.startswith("AIWB_")}


def ids(settings) -> list[str]:
    return (
        read_inference("m", columns=["request_id", "row"], settings=settings)
        .to_pandas()
        .query("row == 0")["request_id"]
        .tolist()
    )


def counted(settings) -> int:
    "The successful requests the KPIs count now, read in this process."
    from aiworkbench.monitoring.hourly import window_summary

    return window_summary("m", since=time.time() - 30 * 86400, until=None, settings=settings)["ok"]


def served_requests(aiwb, root, env) -> tuple[int, dict]:
    r = aiwb("kpi", "--json", cwd=root, env=env)
    assert r.code == 0, (r.code, r.out[-2000:], r.err[-2000:])
    report = r.json()
    evidence = report["kpis"][0]["evidence"]
    return (int(evidence.split()[0]) if evidence[0].isdigit() else 0), report


def test_two_writers_at_once_then_one_killed_mid_batch(project, aiwb, env):
    root, settings, folder = project
    both = [writer(folder, "a", 3000), writer(folder, "b", 3000)]  # two services of one model, same hours
    for p in both:
        assert p.wait(120) == 0, p.stderr.read()
    got = ids(settings)
    assert len(got) == len(set(got)) == 6000 and {i.split("-")[0] for i in got} == {"a", "b"}
    n, _ = served_requests(aiwb, root, env)
    assert n == 6000

    killed = writer(folder, "k", 1000, "kill")
    try:
        assert killed.stdout.readline().strip() == "ready", killed.stderr.read()
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
    got = ids(settings)  # the table is readable; what was flushed is all there, the unflushed batch is lost
    assert sorted(i for i in got if i.startswith("k-")) == sorted(f"k-{i}" for i in range(1000))
    assert not [f for f in folder.rglob("*.parquet") if f.name.startswith(".")]  # no half file is ever read
    n, report = served_requests(aiwb, root, env)
    assert n == 7000 and report["request_logging"]["m"]["dropped"] == 0, report["request_logging"]


def test_disk_full_keeps_answering_and_the_loss_is_counted_and_alerted(project, aiwb, env):
    root, settings, folder = project
    full = writer(folder, "f", 200, "disk-full")
    out, err = full.communicate(timeout=60)
    assert full.returncode == 0, err
    status = json.loads(out.splitlines()[-1])
    assert status["answered"] == 100 and status["write_errors"] >= 1 and "No space left" in status["last_error"]
    # the newest 100 (the queue's size) are kept for a retry; the rest counted: none silently gone
    assert status["written"] == 0 and status["waiting"] == 100, status
    assert status["dropped"] == status["dropped_write"] + status["dropped_queue"] == 200, status
    for _ in range(2):
        n, report = served_requests(aiwb, root, env)
        assert report["request_logging"]["m"]["dropped"] == status["dropped"], report["request_logging"]
        assert f"{status['dropped']} requests were lost by the request log" in report["kpis"][0]["evidence"]
    alerts = [json.loads(line) for line in (settings.state_dir / "alerts.jsonl").read_text().splitlines()]
    lost = [a for a in alerts if a["kind"] == "request log"]
    assert len(lost) == 1 and "No space left on device" in lost[0]["message"], lost  # alerted once, not per call


def test_clock_skew_future_timestamps_are_counted_not_lost(project, aiwb, env):
    root, settings, folder = project
    before = counted(settings)
    ahead = writer(folder, "s", 500, skew=2 * 86400)  # a writer whose clock runs two days ahead
    assert ahead.wait(60) == 0, ahead.stderr.read()
    future = [p for p in partitions(folder) if p.start > time.time() + 86400]
    assert future, "the skewed writer's hours"
    n, _ = served_requests(aiwb, root, env)
    assert n == before + 500
    r = aiwb("kpi", "--json", cwd=root, env=env | {"AIWB_MONITORING_RETENTION_DAYS": "1"})
    assert r.code == 0 and all(p.path.is_dir() for p in future)  # retention never deletes what is to come


def test_json_lines_logs_are_imported_once_nothing_lost(project, aiwb, env):
    root, settings, folder = project
    before = counted(settings)
    old = folder / "requests-4242.jsonl"
    now = time.time()
    lines = [
        {
            "ts": now - 7200 + i,
            "request_id": f"j-{i}",
            "model": "m",
            "version": 1,
            "n": 1,
            "status": 200,
            "latency_ms": 3.0,
            "cpu_ms": 1.0,
            "rss_mb": 400.0,
            "inputs": [{"x": 1e308, "c": "z"}],
            "outputs": [],
        }
        for i in range(250)
    ]
    old.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"ts": 1, "sta')  # a torn last line
    n, _ = served_requests(aiwb, root, env)
    assert n == before + 250 and old.exists()  # read while fresh (a service may still write it), not imported
    os.utime(old, (now - 3600, now - 3600))
    for _ in range(2):
        n, _ = served_requests(aiwb, root, env)
        assert n == before + 250
    assert not old.exists() and (folder / "imported" / old.name).is_file()
    assert sum(i.startswith("j-") for i in ids(settings)) == 250
