"""Overhead of serving from a feature view: `/predict` of one model packaged two ways, side by side, on 127.0.0.1:
(f) `aiwb package --features spend`: the request carries the entity key, the service joins the online features
(SQLite, one batch lookup per view); (d) `--features none`: the same feature values sent in the request.
One client, keep-alive, requests one after the other (c=1) with ROWS rows each; p50/p95 latency in ms; the last
line is the ratio f/d.

    python bench/serve_features.py                    # 2000 requests of 1 row, then of 32 rows
    python bench/serve_features.py --requests 200     # a smoke run
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import tempfile
import time
from pathlib import Path

TX = "name: tx\ncolumns:\n  user: {dtype: int}\n  ts: {dtype: datetime}\n  spend: {dtype: float}\n  visits: {dtype: int}\n"  # noqa: E501


def prepare(work: Path, users: int) -> dict:
    "A project: table `tx`, view `spend` (TTL 3d) applied and materialized, `churn` trained from it and promoted."
    import pandas as pd

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import parse_contract
    from aiworkbench.features import apply, materialize
    from aiworkbench.lake import write
    from aiworkbench.project import init_project
    from aiworkbench.registry import promote
    from aiworkbench.workbench import Workbench

    root = init_project(work / "proj")
    settings = load_settings(root, environ={})
    now = pd.Timestamp.now(tz="UTC").floor("s")
    tx = pd.DataFrame(
        [(u, now - pd.Timedelta(hours=h), u * 1.5 + h, u % 7 + h) for u in range(users) for h in (1, 30)],
        columns=["user", "ts", "spend", "visits"],
    )
    write("tx", tx, parse_contract(TX), settings=settings)
    (root / "features").mkdir(exist_ok=True)
    (root / "features" / "spend.yaml").write_text(
        "source: tx\nentities: [user]\ntimestamp: ts\nttl: 3d\nfeatures: [spend, visits]\n"
    )
    apply(settings=settings)
    ents = pd.DataFrame({"user": range(users), "event_timestamp": now, "churned": [u % 2 for u in range(users)]})
    fit = Workbench(root).features.train(ents, "spend:spend,spend:visits", "churned", epochs=1, register="churn")
    promote("churn", int(fit.registered["version"]), settings=settings)
    materialize("spend", settings=settings)
    latest = tx.sort_values("ts").groupby("user").last()
    return {"settings": settings, "latest": latest}


def timings(port: int, bodies: list[bytes]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    out = []
    for body in bodies:
        started = time.perf_counter()
        conn.request("POST", "/predict", body, {"content-type": "application/json"})
        answer = conn.getresponse()
        text = answer.read()
        out.append((time.perf_counter() - started) * 1000)
        assert answer.status == 200, (answer.status, text[:500])
    conn.close()
    return out


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--rows", default="1,32", help="rows per request, one level each")
    ap.add_argument("--users", type=int, default=10_000, help="entities in the online store")
    args = ap.parse_args()

    from aiworkbench.serving.artifacts import bentoml_env
    from aiworkbench.serving.package import package
    from aiworkbench.serving.server import Server, free_port

    with tempfile.TemporaryDirectory(prefix="aiwb-bench-features-") as tmp:
        ctx = prepare(Path(tmp), args.users)
        settings, latest = ctx["settings"], ctx["latest"]
        servers = {}
        for variant, features in (("f", "spend"), ("d", "none")):
            built = package("churn@champion", out=Path(tmp, variant), features=features, settings=settings)
            servers[variant] = Server(
                Path(built["build_dir"]), "127.0.0.1", free_port(), bentoml_env(settings=settings)
            )
        try:
            for server in servers.values():
                server.start(120)
            lines = [f"{'variant':<34} {'rows':>4} {'p50 ms':>8} {'p95 ms':>8}"]
            ratios = []
            for rows in (int(r) for r in args.rows.split(",")):
                picks = [[(i * 7919 + j) % args.users for j in range(rows)] for i in range(args.requests)]
                keyed = [json.dumps({"rows": [{"user": u} for u in p]}).encode() for p in picks]
                sent = [
                    json.dumps(
                        {"rows": [{"spend": float(latest.spend[u]), "visits": int(latest.visits[u])} for u in p]}
                    ).encode()
                    for p in picks
                ]
                result = {}
                for variant, bodies in (("f", keyed), ("d", sent)):
                    port = int(servers[variant].url.rsplit(":", 1)[1])
                    timings(port, bodies[: max(20, len(bodies) // 10)])  # warm up
                    result[variant] = timings(port, bodies)
                names = {"f": "(f) entity keys, features joined", "d": "(d) features sent"}
                for variant in ("f", "d"):
                    got = result[variant]
                    lines.append(f"{names[variant]:<34} {rows:>4} {pct(got, 50):>8.3f} {pct(got, 95):>8.3f}")
                ratios.append(
                    f"rows={rows}: p50 {pct(result['f'], 50) / pct(result['d'], 50):.2f}x, "
                    f"p95 {pct(result['f'], 95) / pct(result['d'], 95):.2f}x"
                )
            print("\n".join(lines))
            print("ratio f/d (the lookup's overhead): " + "; ".join(ratios))
        finally:
            for server in servers.values():
                server.stop()


if __name__ == "__main__":
    main()
