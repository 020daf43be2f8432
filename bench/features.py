"""Lakehouse and feature store: the workbench vs the plain reference for each part, side by side in one run.

1. a point-in-time join of E entity rows against F feature rows (K keys, a TTL): `get_training_set` (the needed columns
   read from the Delta table, then a vectorized as-of join) vs pandas `merge_asof` on frames in memory, pre-sorted, and
   vs DuckDB's ASOF JOIN over the Arrow dataset of the same Delta table version (DuckDB's `delta` extension is
   downloaded at run time, so it scans `DeltaTable.to_pyarrow_dataset()`, which is also what the workbench reads);
2. an online lookup of one entity from the materialized view (p50, p99 of single lookups);
3. a contract-checked write (`lake.write`) vs a plain `write_deltalake` of the same DataFrame;
4. the peak memory of one streamed training epoch from an R-row and a 5R-row table, each in its own process, above the
   memory of that process once it has imported everything (so the started interpreter does not hide the growth).

    python bench/features.py            # E=1,000,000  F=10,000,000  K=100,000  W=1,000,000  R=1,000,000
    python bench/features.py --quick    # small sizes, seconds
"""

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

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2026-01-01T00:00:00Z")
CONTRACT = {
    "name": "bench",
    "columns": {
        "key": {"dtype": "int", "min": 0},
        "ts": {"dtype": "datetime"},
        "f1": {"dtype": "float", "min": -10.0, "max": 10.0},
        "f2": {"dtype": "int", "min": 0, "max": 1000},
    },
}


def features_frame(rows: int, keys: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "key": rng.integers(0, keys, rows),
            "ts": T0 + pd.to_timedelta(rng.integers(0, 90 * 86400, rows), unit="s"),
            "f1": rng.normal(0, 1, rows).clip(-10, 10),
            "f2": rng.integers(0, 1000, rows),
        }
    )


def entities_frame(rows: int, keys: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "key": rng.integers(0, keys, rows),
            "event_timestamp": T0 + pd.to_timedelta(rng.integers(0, 100 * 86400, rows), unit="s"),
        }
    )


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


EPOCH = """
import sys, json
import lightning, mlflow, torch, deltalake, pyarrow.dataset  # noqa: F401 - what the epoch imports, before the baseline
import mlflow.pytorch  # noqa: F401
from aiworkbench.config import load_settings
from aiworkbench.contracts import Contract
from aiworkbench.streaming import StreamingDataModule  # noqa: F401
from aiworkbench.training import quiet, train_streaming


def status(field):
    # this process's own memory (VmRSS now, VmHWM its peak): getrusage's ru_maxrss would start from the size of the
    # big benchmark process that forked this one
    line = next(x for x in open("/proc/self/status") if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


s = load_settings()
c = Contract.model_validate(json.loads(sys.argv[2]))
start = status("VmRSS")
try:
    open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from here: imports' transients left out
except OSError:
    pass
with quiet():
    train_streaming(sys.argv[1], c, max_epochs=1, batch_size=4096, settings=s, enable_progress_bar=False,
                    log_model_artifact=False)
print(json.dumps({"start": start, "peak": status("VmHWM")}))
"""

DUCKDB_ASOF = """
SELECT e.__i, CASE WHEN e.event_timestamp - f.ts <= INTERVAL 7 DAY THEN f.f1 END AS f1,
       CASE WHEN e.event_timestamp - f.ts <= INTERVAL 7 DAY THEN f.f2 END AS f2
FROM ents e ASOF LEFT JOIN feats f ON e.key = f.key AND e.event_timestamp >= f.ts
"""


def duckdb_asof(table_path: str, ents: pd.DataFrame):
    "DuckDB's ASOF JOIN of the entities against the Delta table's Arrow dataset, 7-day TTL; rows in any order."
    import duckdb
    from deltalake import DeltaTable

    con = duckdb.connect()
    con.register("feats", DeltaTable(table_path).to_pyarrow_dataset())
    con.register("ents", ents)
    return con.sql(DUCKDB_ASOF).to_arrow_table()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=10_000_000)
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--write-rows", type=int, default=1_000_000)
    ap.add_argument("--epoch-rows", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of seconds")
    a = ap.parse_args()
    if a.quick:
        a.entities, a.features, a.keys, a.write_rows, a.epoch_rows, a.lookups, a.repeat = (
            2000,
            20000,
            500,
            20000,
            20000,
            500,
            1,
        )

    from deltalake import write_deltalake

    from aiworkbench.config import load_settings
    from aiworkbench.contracts import Contract
    from aiworkbench.features import apply, get_training_set, materialize, online_uri
    from aiworkbench.lake import to_arrow, write
    from aiworkbench.online import OnlineStore, lookup
    from aiworkbench.project import init_project

    tmp = Path(tempfile.mkdtemp(prefix="aiwb-bench-features-"))
    atexit.register(shutil.rmtree, tmp, True)  # on an error exit too
    root = init_project(tmp / "p")
    s = load_settings(root)
    contract = Contract.model_validate(CONTRACT)
    rows = []

    # 1. point-in-time join
    feats = features_frame(a.features, a.keys)
    write("feats", feats, contract, settings=s)
    (root / "features").mkdir(exist_ok=True)
    (root / "features" / "v.yaml").write_text(
        "source: feats\nentities: [key]\ntimestamp: ts\nttl: 7d\nfeatures: [f1, f2]\n"
    )
    apply(settings=s)
    ents = entities_frame(a.entities, a.keys)
    left = ents.sort_values("event_timestamp", kind="stable")
    right = feats.sort_values("ts", kind="stable")
    numbered = ents.assign(__i=np.arange(len(ents)))
    joins = {  # timed in turn, each repeat, so a busy spell of the machine falls on all three alike
        "wb": lambda: get_training_set(ents, ["v:f1", "v:f2"], settings=s),
        "pandas": lambda: pd.merge_asof(
            left, right, left_on="event_timestamp", right_on="ts", by="key", tolerance=pd.Timedelta(days=7)
        ),
        "duckdb": lambda: duckdb_asof(str(root / "lake" / "feats"), numbered),
    }
    took = {k: [] for k in joins}
    for _ in range(a.repeat):
        for k, fn in joins.items():
            took[k].append(best(fn, 1))
    wb_s, pd_s, duck_s = (min(took[k]) for k in ("wb", "pandas", "duckdb"))
    rows.append(("PIT join vs pandas merge_asof (s)", f"{wb_s:.3f}", f"{pd_s:.3f}", f"{pd_s / wb_s:.2f}x faster"))
    rows.append(("PIT join vs DuckDB ASOF JOIN (s)", f"{wb_s:.3f}", f"{duck_s:.3f}", f"{duck_s / wb_s:.2f}x faster"))
    ours = get_training_set(ents, ["v:f1", "v:f2"], settings=s)
    theirs = duckdb_asof(str(root / "lake" / "feats"), numbered).to_pandas().sort_values("__i")
    same = np.isclose(ours["f1"].to_numpy(float), theirs["f1"].to_numpy(float), equal_nan=True)
    duck_agree = float(same.mean())  # equal times of one key may differ: DuckDB picks any of them
    check = get_training_set(ents.head(2000), ["v:f1"], settings=s)
    ref = pd.merge_asof(
        ents.head(2000).reset_index().sort_values("event_timestamp"),
        right,
        left_on="event_timestamp",
        right_on="ts",
        by="key",
        tolerance=pd.Timedelta(days=7),
    ).sort_values("index")
    agree = np.allclose(check["f1"].to_numpy(float), ref["f1"].to_numpy(float), equal_nan=True)

    # 2. online lookups
    materialize("v", settings=s)
    store = OnlineStore(online_uri(settings=s))
    rng = np.random.default_rng(2)
    known = [int(k) for k in pd.read_parquet(root / "lake" / "feats", columns=["key"])["key"].unique()[:10000]]
    lat = []
    for k in rng.choice(known, a.lookups):
        t = time.perf_counter()
        lookup(store, "v", {"key": int(k)})
        lat.append((time.perf_counter() - t) * 1000)
    store.close()
    p50, p99 = np.percentile(lat, [50, 99])
    rows.append(("online lookup p50 / p99 (ms)", f"{p50:.3f} / {p99:.3f}", "", "goal p99 < 1 ms"))

    # 3. contract-checked write vs plain write_deltalake
    w = features_frame(a.write_rows, a.keys, seed=5)
    checked = best(lambda: write("w_checked", w, contract, settings=s), a.repeat)
    plain = best(lambda: write_deltalake(str(tmp / "plain"), w, mode="append"), a.repeat)
    arrow = to_arrow(w, contract)
    plain_arrow = best(lambda: write_deltalake(str(tmp / "plain_arrow"), arrow, mode="append"), a.repeat)
    overhead = checked / plain - 1
    rows.append(("write, same DataFrame (s)", f"{checked:.3f}", f"{plain:.3f}", f"{overhead:+.0%} (goal <= +30%)"))
    rows.append(
        ("  (plain write of a ready Arrow table) (s)", "", f"{plain_arrow:.3f}", f"{checked / plain_arrow - 1:+.0%}")
    )

    # 4. peak memory of one streamed epoch, R and 5R rows, each in its own process
    peaks = {}
    for n in (a.epoch_rows, 5 * a.epoch_rows):
        name = f"epoch{n}"
        ec = Contract.model_validate(
            {
                **CONTRACT,
                "name": "epoch",
                "target": "f2",
                "columns": {**CONTRACT["columns"], "f2": {"dtype": "int", "allowed": [0, 1]}},
            }
        )
        for part in range(0, n, 1_000_000):
            chunk = features_frame(min(1_000_000, n - part), a.keys, seed=part)
            write(name, chunk.assign(f2=chunk.f2 % 2), ec, settings=s)
        out = subprocess.run(
            [sys.executable, "-c", EPOCH, f"lake:{name}", json.dumps(ec.model_dump(mode="json"))],
            cwd=root,
            capture_output=True,
            text=True,
            env={**os.environ, "AIWB_ROOT": str(root)},
        )
        if out.returncode:
            sys.exit(out.stderr[-3000:])
        peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])
    p1, p5 = peaks[a.epoch_rows], peaks[5 * a.epoch_rows]
    r1, r5 = p1["peak"] - p1["start"], p5["peak"] - p5["start"]
    rows.append(
        (
            f"epoch peak above start (MB), {a.epoch_rows:,} / {5 * a.epoch_rows:,}",
            f"{r1:.0f} / {r5:.0f}",
            "",
            f"{r5 / max(r1, 1):.2f}x (goal <= 1.2x); start {p1['start']:.0f} / {p5['start']:.0f} MB",
        )
    )
    goals = {
        "PIT join >= 3x faster than merge_asof": pd_s / wb_s >= 3,
        "PIT join faster than DuckDB's ASOF JOIN": duck_s > wb_s,
        "online p99 < 1 ms": p99 < 1,
        "contract adds <= 30 % to the write": overhead <= 0.30,
        "5R-row epoch peak <= 1.2x the R-row one": r5 <= 1.2 * max(r1, 1),
    }

    print(f"entities {a.entities:,}  features {a.features:,}  keys {a.keys:,}  (results agree: {agree})")
    print(f"DuckDB's ASOF JOIN gives the same f1 for {duck_agree:.4%} of the entity rows (ties of one key aside)")
    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{'measure':44} {'workbench':>18} {'reference':>10}  note")
    for m, x, y, note in rows:
        print(f"{m:44} {x:>18} {y:>10}  {note}")
    for goal, met in goals.items():
        print(f"goal {'met    ' if met else 'NOT met'}  {goal}")
    print(
        f"ratio pit_speedup={pd_s / wb_s:.2f} duckdb_speedup={duck_s / wb_s:.2f} online_p99_ms={p99:.3f} "
        f"write_overhead={checked / plain:.2f} epoch_memory={r5 / max(r1, 1):.2f}"
    )


if __name__ == "__main__":
    main()
