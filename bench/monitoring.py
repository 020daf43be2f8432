"""Monitoring benchmark: N logged predictions (30 features, over 30 days, the last day holding the drift window) in
the inference table, then, each in its own process with its peak memory: `aiwb kpi` (30-day window), the panel's
`GET kpis` call (`Workbench.kpis()` in a started process), a 1-day drift window (read + drift report); side by side
with the JSON-lines reader of before the table (`read_request_log` over JSON lines, at the largest size it can
hold here, `--jsonl-rows`) and DuckDB over the same Parquet (the floor). The p95 from the hour sketches is checked
against the exact p95. With `--serve-rows`, that many predictions are also served through a real `aiwb serve`
(batches of rows per request) and counted by `aiwb kpi`. The last line starts with `ratio`.

    python bench/monitoring.py                  # 10,000,000 rows, drift window 1,000,000, JSON lines 300,000
    python bench/monitoring.py --serve-rows 1000000      # and the "done when" row through `aiwb serve`
    python bench/monitoring.py --quick          # a smoke run: 200,000 rows, seconds

The work folder (a temporary one, or `--workdir`) is deleted at exit unless `--keep` is given.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
FEATURES = [f"f{i:02d}" for i in range(30)]
MODEL = "bench"


def log(*args) -> None:
    print(*args, file=sys.stderr, flush=True)


def generate(root: Path, rows: int, drift_rows: int, days: int, now: float) -> dict:
    "The inference table, written vectorised: one file per hour, `drift_rows` in the last day, the rest before."
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from aiworkbench.config import load_settings
    from aiworkbench.monitoring.request_log import META_COLUMNS, hour_of, request_log_dir

    settings = load_settings(root, environ={})
    folder = request_log_dir(MODEL, settings=settings)
    rng = np.random.default_rng(0)
    last_hour = int(now // 3600) - 1  # the newest whole hour
    hours = np.arange(last_hour - days * 24 + 2, last_hour + 1)  # all inside the window of `days` days
    recent, older = hours[-24:], hours[:-24]
    per_hour = {int(h): drift_rows // 24 for h in recent} | {int(h): (rows - drift_rows) // len(older) for h in older}
    per_hour[int(older[0])] += rows - sum(per_hour.values())
    latencies = []
    for h, n in per_hour.items():
        ts = np.sort(h * 3600 + rng.random(n) * 3599)
        latency = rng.lognormal(1.5, 0.5, n)
        latencies.append(latency)
        status = np.where(rng.random(n) < 0.01, 422, 200).astype("int32")
        cols = {
            "ts": ts,
            "request_id": pa.array(np.char.add(f"{h}-", np.arange(n).astype(str))),
            "model": pa.array([MODEL] * n),
            "version": np.ones(n, dtype="int64"),
            "variant": pa.array(["champion"] * n),
            "row": np.zeros(n, dtype="int32"),
            "n": np.ones(n, dtype="int32"),
            "status": status,
            "latency_ms": latency,
            "cpu_ms": latency * 0.4,
            "rss_mb": np.full(n, 512.0),
            "error": pa.nulls(n, pa.string()),
        }
        assert list(cols) == list(META_COLUMNS)
        shift = 0.3 if h in set(recent.tolist()) else 0.0
        for f in FEATURES:
            cols[f"in.{f}"] = rng.normal(shift, 1, n).round(4)
        p1 = rng.random(n)
        cols |= {"out.label": pa.array(np.where(p1 > 0.5, "1", "0")), "out.p0": 1 - p1, "out.p1": p1}
        target = folder / "table" / "version=1" / f"hour={hour_of(h * 3600)}" / "part-bench.parquet"
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), target, compression="zstd")
    latency = np.concatenate(latencies)
    return {"folder": folder, "hours": len(per_hour), "exact_p95": None, "latency": latency}


def timed(cmd: list[str], cwd: Path, env: dict | None) -> tuple[str, dict]:
    """Run `cmd`; its stdout, and its wall seconds, peak RSS (MB) and CPU seconds, as `/usr/bin/time` sees them (a
    child forked from this big process would count this process's pages in its peak)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        wrapper = ["/usr/bin/time", "-f", "%M %U %S", "-o", stats.name] if Path("/usr/bin/time").exists() else []
        started = time.perf_counter()
        proc = subprocess.run([*wrapper, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"failed: {cmd[:2]}\n{proc.stderr[-3000:]}")
        fields = stats.read().split()[-3:] if wrapper else ["0", "0", "0"]
    return proc.stdout, {"wall_s": wall, "rss_mb": int(fields[0]) / 1024, "cpu_s": float(fields[1]) + float(fields[2])}


def measured(code: str, cwd: Path, env: dict | None = None) -> dict:
    "Run `code` in a fresh Python; its printed JSON plus its peak RSS (MB), wall and CPU seconds."
    out, stats = timed([sys.executable, "-c", code], cwd, env)
    result = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
    return result | stats


def aiwb_kpi(root: Path, env: dict) -> dict:
    out, stats = timed([str(BIN / "aiwb"), "kpi", "--json"], root, env)
    return {"s": stats["wall_s"], "rss_mb": stats["rss_mb"], "cpu_s": stats["cpu_s"], "report": json.loads(out)}


GET_KPIS = """
import json, time
from aiworkbench.workbench import Workbench
wb = Workbench({root!r})
wb.kpis()  # the panel asks again and again: the second call is what it pays
t = time.perf_counter(); r = wb.kpis(); s = time.perf_counter() - t
print(json.dumps({{"s": s, "p95": r.kpis[0].value, "evidence": r.kpis[0].evidence}}))
"""

DRIFT = """
import json, time
import numpy as np, pandas as pd
from aiworkbench.config import load_settings
from aiworkbench.contracts import infer_contract
from aiworkbench.monitoring.drift import drift_report
from aiworkbench.monitoring.monitor import current_window
from aiworkbench.reference import Reference
features = {features!r}
rng = np.random.default_rng(1)
train = pd.DataFrame({{f: rng.normal(0, 1, 20_000) for f in features}})
reference = Reference.build(train, infer_contract(train, "bench"), rows=10_000)
settings = load_settings({root!r}, environ={{}})
t = time.perf_counter()
rows, info = current_window({model!r}, now={now!r}, window_rows={window_rows}, features=features, settings=settings)
read_s = time.perf_counter() - t
report = drift_report(reference, rows, window=info)
print(json.dumps({{"s": time.perf_counter() - t, "read_s": read_s, "rows": len(rows), "verdict": report.verdict}}))
"""

JSONL_KPI = """
import json, time
import pandas as pd
from aiworkbench.jsonl import read_jsonl
from pathlib import Path
t = time.perf_counter()
# the reader of before the table: every JSON line parsed, a DataFrame of requests and one of rows
files = sorted(Path({folder!r}).glob("requests-*.jsonl"))
records = sorted((r for p in files for r in read_jsonl(p)), key=lambda r: r["ts"])
cols = ["ts", "latency_ms", "cpu_ms", "rss_mb", "status", "n", "version"]
requests = pd.DataFrame([{{c: r.get(c) for c in cols}} for r in records], columns=cols)
rows = pd.DataFrame(
    [{{"ts": r["ts"], "version": r["version"], **row}} for r in records if r["status"] == 200 for row in r["inputs"]]
)
ok = requests[requests.status == 200]
p95 = float(ok.latency_ms.quantile(0.95))
print(json.dumps({{"s": time.perf_counter() - t, "rows": len(requests), "p95": p95}}))
"""

DUCKDB = """
import json, time
import duckdb
glob = {glob!r}
t = time.perf_counter()
con = duckdb.connect()
n, p95 = con.execute(
    f"SELECT count(*), quantile_cont(latency_ms, 0.95) FROM read_parquet('{{glob}}') "
    "WHERE ts >= ? AND status = 200 AND row = 0", [{since!r}]).fetchone()
kpi_s = time.perf_counter() - t
t = time.perf_counter()
cols = ", ".join(f'"in.{{f}}"' for f in {features!r})
window = con.execute(f"SELECT ts, {{cols}} FROM read_parquet('{{glob}}') WHERE ts >= ?", [{day!r}]).to_arrow_table()
window_s = time.perf_counter() - t
print(json.dumps({{"kpi_s": kpi_s, "n": n, "p95": p95, "window_s": window_s, "window_rows": window.num_rows}}))
"""


def write_jsonl(folder: Path, n: int, now: float) -> None:
    "`n` requests in the request log's JSON-lines format (one row each, 30 features), as services wrote them."
    import numpy as np

    rng = np.random.default_rng(2)
    folder.mkdir(parents=True, exist_ok=True)
    values = rng.normal(0, 1, (n, len(FEATURES))).round(4)
    latency = rng.lognormal(1.5, 0.5, n)
    with open(folder / "requests-1.jsonl", "w") as fh:
        for i in range(n):
            record = {
                "ts": now - 86400 + i * 86400 / n,
                "request_id": str(i),
                "model": MODEL,
                "version": 1,
                "n": 1,
                "inputs": [dict(zip(FEATURES, values[i].tolist(), strict=True))],
                "outputs": [{"label": "1", "probabilities": [0.4, 0.6]}],
                "latency_ms": float(latency[i]),
                "cpu_ms": 0.5,
                "rss_mb": 512.0,
                "status": 200,
            }
            fh.write(json.dumps(record) + "\n")


def serve_step(work: Path, n_rows: int, batch: int, env: dict) -> dict:
    "`n_rows` predictions served through a real `aiwb serve` (batches of `batch` rows), then counted by `aiwb kpi`."
    import httpx
    from sklearn.datasets import load_breast_cancer

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import infer_contract
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote
    from aiworkbench.serving.server import free_port
    from aiworkbench.training import quiet, train_tabular

    root = init_project(work / "served", force=True)
    settings = load_settings(root, environ={})
    df = load_breast_cancer(as_frame=True).frame
    contract = infer_contract(df, "bc", target="target")
    for col in contract.features:
        contract.columns[col].min = contract.columns[col].max = None
    with quiet():
        fit = train_tabular(df, contract, max_epochs=1, settings=settings, register="bc", enable_progress_bar=False)
    promote("bc", fit.registered["version"], settings=settings)
    rows = json.loads(df.drop(columns="target").to_json(orient="records"))
    body = json.dumps({"rows": [rows[i % len(rows)] for i in range(batch)]}).encode()
    port = free_port()
    serve_env = env | {"AIWB_MAX_BODY_BYTES": str(64 * 2**20), "AIWB_MAX_BATCH_SIZE": str(batch)}
    proc = subprocess.Popen(
        [str(BIN / "aiwb"), "serve", "bc@champion", "--port", str(port)],
        cwd=root,
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    sent = 0
    try:
        url = proc.stdout.readline().strip()
        if not url:
            raise SystemExit(proc.stderr.read()[-3000:])
        started = time.perf_counter()
        with httpx.Client(timeout=120) as client:
            while sent < n_rows:
                r = client.post(f"{url}/predict", content=body, headers={"content-type": "application/json"})
                if r.status_code != 200:
                    raise SystemExit(f"{r.status_code}: {r.text[:500]}")
                sent += batch
        serve_s = time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(120)
    first = aiwb_kpi(root, env)
    kpi = aiwb_kpi(root, env)  # the second: what a user asking again pays (the first imports what was logged)
    evidence = kpi["report"]["kpis"][0]["evidence"]
    counted = int(evidence.split("(")[1].split()[0]) if "predictions" in evidence else 0
    return {
        "sent": sent,
        "serve_s": serve_s,
        "kpi_first_s": first["s"],
        "kpi_first_rss": first["rss_mb"],
        "kpi_s": kpi["s"],
        "kpi_rss": kpi["rss_mb"],
        "kpi_cpu": kpi["cpu_s"],
        "counted": counted,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--drift-rows", type=int, default=1_000_000)
    ap.add_argument("--jsonl-rows", type=int, default=300_000, help="the JSON-lines side (the issue's day of traffic)")
    ap.add_argument("--days", type=int, default=30, help="days of traffic, all in the KPI window (`[kpi] window_days`)")
    ap.add_argument("--serve-rows", type=int, default=0, help="also serve this many predictions through `aiwb serve`")
    ap.add_argument("--serve-batch", type=int, default=1000, help="rows per request in the `aiwb serve` step")
    ap.add_argument(
        "--quick", action="store_true", help="200,000 rows over 3 days, a 20,000-row window, 5,000 JSON lines"
    )
    ap.add_argument("--workdir", type=Path, default=None, help="work here (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (default: deleted at exit)")
    a = ap.parse_args()
    if a.quick:
        a.rows, a.drift_rows, a.jsonl_rows, a.days = 200_000, 20_000, 5_000, 3
    import numpy as np

    from aiworkbench.project import init_project

    work = Path(a.workdir or tempfile.mkdtemp(prefix="aiwb-bench-monitoring-"))
    if not a.keep:
        atexit.register(shutil.rmtree, work, True)  # on an error exit too
    root = init_project(work / "project", force=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIWB_")}
    now = time.time()
    t = time.perf_counter()
    made = generate(root, a.rows, a.drift_rows, a.days, now)
    gen_s = time.perf_counter() - t
    size = sum(f.stat().st_size for f in made["folder"].rglob("*.parquet")) / 2**20
    log(f"generated {a.rows:,} rows in {made['hours']} hours: {gen_s:.1f} s, {size:.0f} MB of Parquet")
    window = now - a.days * 86400
    exact = float(np.quantile(made.pop("latency"), 0.95))  # every row is a request; 1 % are 422s: close enough below
    first = aiwb_kpi(root, env)  # closes every hour once: what the hours' writers would have left behind
    log(f"aiwb kpi, first: {first['s']:.1f} s")
    warm = aiwb_kpi(root, env)
    log(f"aiwb kpi: {warm['s']:.2f} s")
    get = measured(GET_KPIS.format(root=str(root)), root, env)
    log(f"GET kpis: {get['s']:.3f} s")
    drift = measured(
        DRIFT.format(features=FEATURES, root=str(root), model=MODEL, now=now, window_rows=a.drift_rows), root, env
    )
    log(f"drift window: {drift['s']:.2f} s")
    glob = str(made["folder"] / "table" / "*" / "*" / "*.parquet")
    duck = measured(DUCKDB.format(glob=glob, since=window, day=now - 86400, features=FEATURES), root, env)
    log(f"duckdb: {duck['kpi_s']:.2f} + {duck['window_s']:.2f} s")
    exact = duck["p95"]  # the exact p95 of the successful requests in the window
    sketch = warm["report"]["kpis"][0]["value"]
    jl_folder = work / "jsonl"
    write_jsonl(jl_folder, a.jsonl_rows, now)
    jl = measured(JSONL_KPI.format(folder=str(jl_folder)), root, env)
    served = serve_step(work, a.serve_rows, a.serve_batch, env) if a.serve_rows else None

    print(
        f"{a.rows:,} logged predictions, {a.days} days ({made['hours']} hours), 30 features; "
        f"drift window {a.drift_rows:,}"
    )

    def row(label: str, seconds: float, mb: float | None = None, cpu: float | None = None, digits: int = 2) -> None:
        shown = [f"{seconds:9.{digits}f}", "" if mb is None else f"{mb:9.0f}", "" if cpu is None else f"{cpu:9.2f}"]
        print(f"{label:52} {shown[0]:>9} {shown[1]:>9} {shown[2]:>9}")

    print(f"{'':52} {'seconds':>9} {'peak MB':>9} {'CPU s':>9}")
    row(f"(t) aiwb kpi, first (closes {made['hours']} hours once)", first["s"], first["rss_mb"], first["cpu_s"])
    row(f"(t) aiwb kpi ({a.days}-day window)", warm["s"], warm["rss_mb"], warm["cpu_s"])
    row("(t) GET kpis (Workbench.kpis, started process)", get["s"], get["rss_mb"], digits=3)
    row(f"(t) drift window: read {drift['rows']:,} rows", drift["read_s"])
    row("(t) drift window: read + drift report", drift["s"], drift["rss_mb"], drift["cpu_s"])
    row("(d) DuckDB over the Parquet: count + p95", duck["kpi_s"])
    row("(d) DuckDB over the Parquet: 1-day window", duck["window_s"], duck["rss_mb"], duck["cpu_s"])
    row(f"(j) JSON lines, {a.jsonl_rows:,} requests: read + p95", jl["s"], jl["rss_mb"], jl["cpu_s"])
    print(f"p95 from the hour sketches {sketch:.4f} ms, exact {exact:.4f} ms: {abs(sketch / exact - 1):.3%} off")
    print(f"aiwb kpi counted {warm['report']['kpis'][0]['evidence'].split()[0]} requests; DuckDB {duck['n']}")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if served:
        row(f"(s) aiwb serve: {served['sent']:,} predictions sent", served["serve_s"], digits=1)
        row("(s) aiwb kpi after them, first (closes their hours)", served["kpi_first_s"], served["kpi_first_rss"])
        row("(s) aiwb kpi after them", served["kpi_s"], served["kpi_rss"], served["kpi_cpu"])
        print(f"aiwb kpi counted {served['counted']:,} of {served['sent']:,} served predictions")
    goals = {
        f"aiwb kpi < 1 s at {a.rows:,} rows": warm["s"] < 1,
        f"aiwb kpi < 300 MB at {a.rows:,} rows": warm["rss_mb"] < 300,
        f"drift window of {drift['rows']:,} rows < 3 s": drift["s"] < 3,
        "p95 from the sketches within 1 % of the exact one": abs(sketch / exact - 1) <= 0.01,
    }
    if served:
        goals[f"{served['sent']:,} served predictions all counted by aiwb kpi in < 1 s"] = (
            served["counted"] == served["sent"] and served["kpi_s"] < 1
        )
    for goal, met in goals.items():
        print(f"goal {'met    ' if met else 'NOT met'}  {goal}")
    per_row_jl = jl["s"] / a.jsonl_rows
    print(
        f"ratio: aiwb kpi {warm['s']:.2f} s at {a.rows:,} rows vs JSON lines {per_row_jl * a.rows:.0f} s extrapolated "
        f"({per_row_jl * a.rows / warm['s']:.0f}x); drift window {drift['s']:.2f} s vs DuckDB floor "
        f"{duck['window_s']:.2f} s ({drift['read_s'] / max(duck['window_s'], 1e-9):.1f}x to read)"
    )


if __name__ == "__main__":
    main()
