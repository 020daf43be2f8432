"""Benchmark the Workbench panel: each REST route (median and p95 of N calls) beside Jupyter's own routes, and the
time from JupyterLab's load to a rendered panel in headless Chromium.

Fixture: 1,000 MLflow runs, 20 models, 50 jobs with 2,000 runs, 20 lake tables, a materialized view, a build with
20,000 requests (5,000 labelled, every third shadowed) and 50 CI runs (`--small`: 50, 3, 5, 50; 3 tables, 600
requests, 200 labels, 5 CI runs). Goals: every route's p95 under 100 ms; the panel rendered within 1.5 s of
JupyterLab's own load. The last line starts with `ratio`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests" / "ui"))
from fixture_project import make_project  # noqa: E402
from lab import drive, jupyter_lab, missing  # noqa: E402
from panel_data import add_panel_data  # noqa: E402

ROUTE_GOAL_MS = 100.0
PANEL_GOAL_MS = 1500.0


def timed(conn: http.client.HTTPConnection, token: str, method: str, path: str, body: dict | None = None):
    "One call on a kept-alive connection: (milliseconds, status)."
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    t = time.perf_counter()
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    r = conn.getresponse()
    r.read()
    return (time.perf_counter() - t) * 1000, r.status


def p95(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=20, method="inclusive")[-1] if len(xs) > 1 else xs[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true", help="a smoke run on a tiny fixture")
    ap.add_argument("--calls", type=int, default=None, help="calls per route (default 50, 10 with --small)")
    args = ap.parse_args()
    sizes = (
        dict(runs=50, models=3, jobs=5, job_runs=50)
        if args.small
        else dict(runs=1000, models=20, jobs=50, job_runs=2000)
    )
    panel = (
        dict(tables=3, requests=600, labels=200, ci_runs=5)
        if args.small
        else dict(tables=20, requests=20_000, labels=5_000, ci_runs=50)
    )
    calls = args.calls or (10 if args.small else 50)
    why = missing()
    if why:
        sys.exit(f"bench/panel.py: {why}")
    with tempfile.TemporaryDirectory(prefix="aiwb-bench-") as tmp:
        t = time.perf_counter()
        root = make_project(Path(tmp) / "project", **sizes)
        add_panel_data(root, **panel)
        print(f"fixture {sizes | panel} built in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        with jupyter_lab(root) as (base, token):
            port = int(base.rsplit(":", 1)[1].strip("/"))
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            api = "/aiworkbench/api"
            _, _ = timed(conn, token, "GET", f"{api}/models")  # first call imports the library
            runs = json.loads(_get(conn, token, f"{api}/runs?limit=1"))["runs"]
            job_run = json.loads(_get(conn, token, f"{api}/jobs/job-00/runs?limit=1"))["runs"][0]["id"]
            routes = [
                ("GET", "/api/status (Jupyter, reference)", "/api/status", None),
                ("GET", "/api/contents (Jupyter, reference)", "/api/contents", None),
                ("GET", "phase", f"{api}/phase", None),
                ("GET", "kpis", f"{api}/kpis", None),
                ("GET", "runs (limit 50)", f"{api}/runs", None),
                ("GET", "runs/{id}", f"{api}/runs/{runs[0]['run_id']}", None),
                ("GET", "models", f"{api}/models", None),
                ("GET", "models/{name}", f"{api}/models/model-00", None),
                ("GET", "jobs", f"{api}/jobs", None),
                ("GET", "jobs/{job}", f"{api}/jobs/job-00", None),
                ("GET", "jobs/{job}/runs", f"{api}/jobs/job-00/runs", None),
                ("GET", "job-runs/{id}", f"{api}/job-runs/{job_run}", None),
                ("GET", "lake/tables", f"{api}/lake/tables", None),
                ("GET", "features", f"{api}/features", None),
                ("GET", "services", f"{api}/services", None),
                ("GET", "ci/runs (limit 5)", f"{api}/ci/runs?limit=5", None),
                ("GET", "notebooks/parameters", f"{api}/notebooks/parameters?path=nbs/train.ipynb", None),
                ("POST", "jobs/{job}/cancel", f"{api}/jobs/job-00/cancel", {}),
                ("POST", "models/{name}/promote", f"{api}/models/model-00/promote", {"version": 2}),
                ("POST", "models/{name}/rollback", f"{api}/models/model-00/rollback", {}),
            ]
            rows = []
            for method, name, path, body in routes:
                times, statuses = [], set()
                for _ in range(calls):
                    if name.endswith("promote"):  # alternate: promote to v2, roll back (timed in its own row)
                        ms, status = timed(conn, token, method, path, body)
                        timed(conn, token, "POST", f"{api}/models/model-00/rollback", {})
                    elif name.endswith("rollback"):
                        timed(conn, token, "POST", f"{api}/models/model-00/promote", {"version": 2})
                        ms, status = timed(conn, token, method, path, body)
                    else:
                        ms, status = timed(conn, token, method, path, body)
                    times.append(ms)
                    statuses.add(status)
                rows.append((f"{method} {name}", statistics.median(times), p95(times), sorted(statuses)))
            load = drive(base, token, Path(tmp) / "shots", mode="load")
    width = max(len(r[0]) for r in rows) + 2
    print(f"{'route':<{width}} {'median ms':>10} {'p95 ms':>8}  status")
    for name, med, q95, statuses in rows:
        print(f"{name:<{width}} {med:>10.1f} {q95:>8.1f}  {','.join(map(str, statuses))}")
    after = load["panel_rendered_ms"] - load["lab_ready_ms"]
    print(f"{'JupyterLab shell ready (reference)':<{width}} {load['lab_ready_ms']:>10.0f}")
    print(f"{'panel rendered after the shell':<{width}} {after:>10.0f}")
    ours = [r for r in rows if "reference" not in r[0]]
    slowest = max(ours, key=lambda r: r[2])
    print(
        f"ratio {slowest[2] / ROUTE_GOAL_MS:.2f} (slowest route p95 {slowest[2]:.1f} ms, {slowest[0]}, / "
        f"{ROUTE_GOAL_MS:.0f} ms goal); panel {after / PANEL_GOAL_MS:.2f} ({after:.0f} ms / "
        f"{PANEL_GOAL_MS:.0f} ms goal)"
    )


def _get(conn, token, path) -> bytes:
    conn.request("GET", path, headers={"Authorization": f"token {token}"})
    return conn.getresponse().read()


if __name__ == "__main__":
    main()
