"""Scaling out on Dask: notebook jobs through the local executor vs a local Dask cluster, and a sweep in parallel.

(a) `--jobs` notebook jobs of about `--work` seconds of CPU each through the local executor: `aiwb scheduler
    --workers 1` (a pre-started kernel per run), submit to all finished;
(b) the same jobs with `[jobs] executor = dask` on `aiwb cluster up --workers 2 --threads 1` (two single-threaded
    `dask worker` processes), `aiwb scheduler --workers 2` submitting them;
both after one warm-up run each (a kernel started, a Dask worker's runner process started). Per-job overhead is the
wall time per job per worker minus the work. Goals: (b)/(a) throughput >= 1.7x; Dask's overhead over local
<= 0.3 s. Then a `--trials` sweep (`aiwb sweep`, on the cluster) with `--parallel 2` vs `--parallel 1`: >= 1.6x.

Both projects live in one temporary folder, removed (after `aiwb cluster down`) when the script exits.

    python bench/scale.py            # 16 jobs of ~1 s, a 12-trial sweep
    python bench/scale.py --quick    # a smoke run: 2 jobs of ~0.05 s, a 2-trial sweep
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

BIN = Path(sys.executable).parent


def aiwb(*args, cwd, check=True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "aiwb"), *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"aiwb {' '.join(map(str, args))} failed ({r.returncode}): {r.stderr[-2000:]}")
    return r


def write_notebook(root: Path, name: str, params: str, body: str) -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, root / "nbs" / name)
    return f"nbs/{name}"


WORK = "import time\nt = time.process_time()\nwhile time.process_time() - t < work:\n    pass"
TRIAL = (
    WORK + "\nimport os, mlflow\nwith mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):\n"
    "    mlflow.log_metric('loss', (x - 0.3) ** 2)"
)


def project(base: Path, name: str, jobs_lines: str) -> Path:
    from aiworkbench.project import init_project

    root = init_project(base / name)
    text = (root / "settings.ini").read_text()
    (root / "settings.ini").write_text(text.replace("[jobs]\n", f"[jobs]\npoll_interval_s = 0.1\n{jobs_lines}", 1))
    return root


def through_scheduler(root: Path, nb: str, n: int, work: float, workers: int) -> float:
    "Seconds from submitting `n` runs to all finished, with `aiwb scheduler --workers W` executing them (warm)."
    from aiworkbench.config import load_settings
    from aiworkbench.jobs.store import create_job, list_runs, submit_run

    s = load_settings(root)
    job = create_job({"name": "bench", "notebook": nb, "max_concurrent": workers}, settings=s)
    scheduler = subprocess.Popen(
        [str(BIN / "aiwb"), "scheduler", "--workers", str(workers)],
        cwd=root,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def all_done(count: int) -> None:
        while True:
            runs = list_runs("bench", limit=1000, settings=s)
            if len(runs) >= count and all(r["finished"] for r in runs):
                bad = [r for r in runs if r["status"] != "succeeded"]
                if bad:
                    raise SystemExit(
                        f"a benchmark run in {root.name} failed: {bad[0]['error_name']}: {bad[0]['error_message']}"
                    )
                return
            time.sleep(0.05)

    try:
        for _ in range(workers):  # warm-up: each worker's kernel (or runner) started once
            submit_run(job, parameters={"work": 0.01}, settings=s)
        all_done(workers)
        t0 = time.perf_counter()
        for _ in range(n):
            submit_run(job, parameters={"work": work}, settings=s)
        all_done(n + workers)
        return time.perf_counter() - t0
    finally:
        os.killpg(scheduler.pid, signal.SIGTERM)
        scheduler.wait()


def sweep_seconds(root: Path, nb: str, trials: int, parallel: int, work: float, name: str = "") -> float:
    t0 = time.perf_counter()
    aiwb(
        "sweep",
        nb,
        "-p",
        "x=float(0,1)",
        "-p",
        f"work=choice({work})",
        "--metric",
        "loss",
        "--trials",
        trials,
        "--parallel",
        parallel,
        "--name",
        name or f"p{parallel}",
        cwd=root,
    )
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--work", type=float, default=1.0, help="CPU seconds of each job")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--quick", action="store_true", help="2 jobs of 0.05 s, a 2-trial sweep")
    a = ap.parse_args()
    if a.quick:
        a.jobs, a.work, a.trials = 2, 0.05, 2
    base = Path(tempfile.mkdtemp(prefix="aiwb-bench-scale-"))  # both projects; removed at exit, whatever happens
    dask = base / "dask"
    try:
        local = project(base, "local", "")
        nb = write_notebook(local, "work.ipynb", "work = 1.0", WORK)
        t_local = through_scheduler(local, nb, a.jobs, a.work, workers=1)

        dask = project(base, "dask", "prestart_kernels = 0\n")
        up = json.loads(aiwb("cluster", "up", "--workers", "2", "--threads", "1", "--json", cwd=dask).stdout)
        text = (dask / "settings.ini").read_text()
        lines = "\n".join(up["settings"][1:])
        (dask / "settings.ini").write_text(text.replace("[jobs]\n", f"[jobs]\n{lines}\n", 1))
        nb = write_notebook(dask, "work.ipynb", "work = 1.0", WORK)
        t_dask = through_scheduler(dask, nb, a.jobs, a.work, workers=2)
        trial = write_notebook(dask, "trial.ipynb", "x = 0.5\nwork = 1.0", TRIAL)
        sweep_seconds(dask, trial, 2, 2, 0.01, "warm-up")  # warm-up: each worker's runner started, mlflow's store made
        t_p1 = sweep_seconds(dask, trial, a.trials, 1, a.work)
        t_p2 = sweep_seconds(dask, trial, a.trials, 2, a.work)
    finally:
        if (dask / "settings.ini").exists():
            aiwb("cluster", "down", cwd=dask, check=False)
        shutil.rmtree(base, ignore_errors=True)

    over_local = t_local / a.jobs - a.work
    over_dask = 2 * t_dask / a.jobs - a.work
    rows = [
        ("(a) local executor, 1 worker", a.jobs, t_local, a.jobs / t_local, over_local),
        ("(b) Dask, 2 single-threaded workers", a.jobs, t_dask, a.jobs / t_dask, over_dask),
    ]
    print(f"{a.jobs} notebook jobs of {a.work:g} s CPU each (after a warm-up run per worker)")
    print(f"{'executor':38} {'jobs':>5} {'seconds':>8} {'jobs/s':>7} {'overhead/job s':>15}")
    for name, n, t, rate, over in rows:
        print(f"{name:38} {n:>5} {t:>8.2f} {rate:>7.2f} {over:>15.2f}")
    print(f"Dask's per-job overhead over local: {over_dask - over_local:+.2f} s (goal <= 0.3)")
    print(f"\nsweep of {a.trials} trials on the cluster: --parallel 1 {t_p1:.1f} s, --parallel 2 {t_p2:.1f} s")
    print(
        f"ratio throughput (b)/(a) {t_local / t_dask:.2f}x (goal >= 1.7); sweep parallel 2 vs 1 {t_p1 / t_p2:.2f}x "
        "(goal >= 1.6)"
    )


if __name__ == "__main__":
    main()
