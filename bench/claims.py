"""Job claims: the per-call cost of a claim (claim + finish) on SQLite vs PostgreSQL, and claims/s with 1 vs 4
schedulers (processes) on PostgreSQL. Goal: 4 schedulers claim at least 3x the runs/s of one.

PostgreSQL is a throwaway cluster started here with the helpers of `aiwb team up` (Debian's server programs).
Run: `python bench/claims.py [--quick]`. `rows(quick)` is what bench/team.py imports.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLAIMER = """
import json, os, sys, time
from pathlib import Path
from aiworkbench.config import load_settings
from aiworkbench.jobs.runs import claim_next_run, finish_run
settings = load_settings()
claim_next_run(settings=settings, run_id="warm-up")  # the engine and its tables, before the clock starts
Path(f"{sys.argv[1]}.ready{os.getpid()}").touch()
while not Path(sys.argv[1]).exists():
    time.sleep(0.005)
t0, n = time.perf_counter(), 0
while (run := claim_next_run(settings=settings)) is not None:
    finish_run(run["id"], "succeeded", settings=settings)
    n += 1
print(json.dumps({"n": n, "s": time.perf_counter() - t0}))
"""


def _project(base: Path, name: str, store: str):
    import nbformat

    from aiworkbench.config import load_settings
    from aiworkbench.project import init_project

    root = init_project(base / name)
    if store:
        text = (root / "settings.ini").read_text().replace("[jobs]\n", f"[jobs]\nstore = {store}\n")
        (root / "settings.ini").write_text(text)
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, root / "nbs" / "t.ipynb")
    return root, load_settings(root)


def _queue(settings, n: int, jobs: int) -> None:
    from aiworkbench.jobs.store import create_job, submit_run

    made = [
        create_job({"name": f"j{i}-{time.monotonic_ns()}", "notebook": "nbs/t.ipynb", "max_concurrent": 10_000},
                   settings=settings)
        for i in range(jobs)
    ]  # fmt: skip
    for i in range(n):
        submit_run(made[i % jobs], settings=settings)


def _busy() -> tuple[float, float]:
    "(CPU seconds busy on the whole machine, wall seconds) now: every process, the claimers and PostgreSQL included."
    import psutil

    t = psutil.cpu_times()
    return sum(t) - t.idle - getattr(t, "iowait", 0.0), time.monotonic()


def _claim_loop(root: Path, processes: int, env: dict) -> tuple[int, float, float]:
    "Claim and finish every queued run with `processes` claimers at once; (runs, seconds of the slowest, busy cores)."
    go = Path(tempfile.mktemp(prefix="aiwb-claims-go-"))
    procs = [
        subprocess.Popen([sys.executable, "-c", CLAIMER, str(go)], cwd=root, env={**env, "AIWB_HOSTNAME": f"h{i}"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(processes)
    ]  # fmt: skip
    deadline = time.monotonic() + 120
    ready = lambda: list(go.parent.glob(go.name + ".ready*"))  # noqa: E731
    while len(ready()) < processes and time.monotonic() < deadline and all(p.poll() is None for p in procs):
        time.sleep(0.01)
    before = _busy()
    go.touch()  # every claimer warm: go
    out = []
    for p in procs:
        o, e = p.communicate(timeout=600)
        if p.returncode:
            raise SystemExit(f"a claimer failed:\n{e[-3000:]}")
        out.append(json.loads(o))
    after = _busy()
    for f in [go, *ready()]:
        f.unlink(missing_ok=True)
    return sum(o["n"] for o in out), max(o["s"] for o in out), (after[0] - before[0]) / (after[1] - before[1])


def _per_call(settings, n: int) -> float:
    "Milliseconds per claim + finish, one claimer in this process."
    from aiworkbench.jobs.runs import claim_next_run, finish_run

    _queue(settings, n, 1)
    claim_next_run(settings=settings, run_id="warm-up")
    t0 = time.perf_counter()
    done = 0
    while (run := claim_next_run(settings=settings)) is not None:
        finish_run(run["id"], "succeeded", settings=settings)
        done += 1
    assert done == n, (done, n)
    return (time.perf_counter() - t0) / n * 1000


def _postgres(base: Path):
    from aiworkbench.team.postgres import (
        cluster_user,
        ensure_databases,
        free_port,
        init_cluster,
        make_folders,
        postgres_bin,
        start_postgres,
        store_uri,
    )

    folder, user, bin = base / "team", cluster_user(), postgres_bin()
    make_folders(folder, user)
    init_cluster(folder, bin, user)
    port = free_port()
    start_postgres(folder, bin, user, port)
    ensure_databases(folder, port)
    os.environ["PGPASSFILE"] = str(folder / "pgpass")
    return folder, bin, user, store_uri(port, "aiwb_jobs")


def rows(quick: bool, store: str | None = None) -> list[dict]:
    """The benchmark's rows: per-call cost on SQLite and PostgreSQL, claims/s with 1 and 4 schedulers on PostgreSQL.
    `store`: a PostgreSQL job store with nothing queued (PGPASSFILE set; the runs stay there), else a throwaway one."""
    from aiworkbench.team.postgres import stop_postgres

    n_call, n_many = (40, 80) if quick else (300, 1200)
    base = Path(tempfile.mkdtemp(prefix="aiwb-bench-claims-"))
    base.chmod(0o755)
    pg = None
    try:
        _, sqlite = _project(base, "sqlite", "")
        sqlite_ms = _per_call(sqlite, n_call)
        if store is None:
            pg = _postgres(base)
        root, settings = _project(base, "pg", store or pg[3])
        pg_ms = _per_call(settings, n_call)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIWB_")}
        rates, busy = {}, {}
        for k in (1, 4):
            _queue(settings, n_many, 16)
            n, s, busy[k] = _claim_loop(root, k, env)
            assert n == n_many, (n, n_many)
            rates[k] = n / s
        return [
            {"what": "claim + finish, per call", "sqlite_ms": round(sqlite_ms, 2), "postgres_ms": round(pg_ms, 2),
             "ratio": round(pg_ms / sqlite_ms, 2)},
            {"what": f"claims/s, {n_many} runs of 16 jobs", "1 scheduler": round(rates[1], 1),
             "4 schedulers": round(rates[4], 1), "ratio": round(rates[4] / rates[1], 2),
             # claims are CPU work (the claimer's and PostgreSQL's): on one machine, 4 can go this much faster at most
             "cores": os.cpu_count(), "busy_1": round(busy[1], 2), "busy_4": round(busy[4], 2),
             "ceiling": round(os.cpu_count() / busy[1], 2)},
        ]  # fmt: skip
    finally:
        if pg is not None:
            stop_postgres(pg[0], pg[1], pg[2])
        shutil.rmtree(base, ignore_errors=True)


def ceiling_note(b: dict) -> str:
    "What one machine allows 4 schedulers: its cores over the cores that 1 scheduler (and PostgreSQL) keeps busy."
    return (f"note: 1 scheduler kept {b['busy_1']} of this machine's {b['cores']} cores busy (its claimer and "
            f"PostgreSQL; 4 kept {b['busy_4']}): 4 schedulers on one machine claim at most {b['ceiling']}x the runs/s "
            "of one; on separate hosts each brings its own cores")  # fmt: skip


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    result = rows(quick)
    a, b = result
    cells = [
        (a["what"], f"{a['sqlite_ms']} ms SQLite", f"{a['postgres_ms']} ms PG", a["ratio"]),
        (b["what"], f"{b['1 scheduler']}/s x1", f"{b['4 schedulers']}/s x4", b["ratio"]),
    ]
    print(f"{'what':38} {'reference':>18} {'measured':>18} {'ratio':>7}")
    for what, ref, got, ratio in cells:
        print(f"{what:38} {ref:>18} {got:>18} {ratio:>7}")
    print(ceiling_note(b))
    print(f"ratio {b['ratio']} (claims/s of 4 schedulers over 1 on PostgreSQL; goal >= 3)")
