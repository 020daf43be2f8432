"""Notebook job start-up cost: papermill's CLI vs papermill in a warm process vs `aiwb jobs run` end to end.

A trivial parameterized notebook, run `--repeat` times each (median); `aiwb jobs run` both with a running scheduler
(warm workers, a pre-started kernel: submit to finished) and without one (`--local`). Also how late a schedule fires.

    python bench/jobs.py              # median of 5
    python bench/jobs.py --repeat 1   # a smoke run
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat

BIN = Path(sys.executable).parent


def make_project() -> Path:
    from aiworkbench.project import init_project

    root = init_project(Path(tempfile.mkdtemp()) / "bench")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("x = 1")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("y = x * 2\nprint(y)")]
    nbformat.write(nb, root / "nbs" / "trivial.ipynb")
    return root


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(cmd, cwd) -> None:
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    root = make_project()
    nb, out = root / "nbs" / "trivial.ipynb", root / "out.ipynb"
    os.environ["AIWB_ROOT"] = str(root)
    rows = {}
    rows["(a) papermill CLI"] = timed(lambda: run([BIN / "papermill", nb, out, "-p", "x", "3"], root), args.repeat)
    import papermill as pm

    pm.execute_notebook(nb, out, parameters={"x": 3}, progress_bar=False)  # warm up the process
    rows["(b) papermill.execute_notebook, warm"] = timed(
        lambda: pm.execute_notebook(nb, out, parameters={"x": 3}, progress_bar=False), args.repeat
    )
    aiwb = [BIN / "aiwb", "jobs", "run", "nbs/trivial.ipynb", "-p", "x", "3"]
    run([*aiwb, "--local"], root)  # creates the stores once
    rows["(c0) aiwb jobs run --local (no scheduler)"] = timed(lambda: run([*aiwb, "--local"], root), args.repeat)
    sched = subprocess.Popen(
        [BIN / "aiwb", "scheduler", "--workers", "1"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        from aiworkbench.config import load_settings
        from aiworkbench.runner import scheduler_info

        settings = load_settings(root)
        deadline = time.monotonic() + 60
        while scheduler_info(settings) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        run(aiwb, root)  # the worker is warm after this
        time.sleep(3)  # let the worker pre-start its next kernel, as it would between real jobs

        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            run(aiwb, root)
            times.append(time.perf_counter() - t0)
            time.sleep(2)
        rows["(c) aiwb jobs run via scheduler (pre-started kernel)"] = statistics.median(times)
        from aiworkbench.jobstore import create_job, list_runs

        create_job({"name": "every-second", "notebook": "nbs/trivial.ipynb", "cron": "* * * * * */2"}, settings)
        deadline = time.monotonic() + 30
        while len(list_runs("every-second", settings)) < args.repeat + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        lates = [
            r["queued_at"] - datetime.fromisoformat(r["scheduled_for"]).timestamp()
            for r in list_runs("every-second", settings)
        ]
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.wait(60)
    ref = rows["(a) papermill CLI"]
    print(f"{'path':58} {'median s':>9} {'x (a)':>7}")
    for name, t in rows.items():
        print(f"{name:58} {t:9.3f} {t / ref:7.2f}")
    print(
        f"schedule fired after its time: median {statistics.median(lates):.3f} s, max {max(lates):.3f} s "
        f"({len(lates)} ticks)"
    )
    c, c0, b = (
        rows["(c) aiwb jobs run via scheduler (pre-started kernel)"],
        rows["(c0) aiwb jobs run --local (no scheduler)"],
        rows["(b) papermill.execute_notebook, warm"],
    )
    print(f"ratio to papermill CLI: scheduler {c / ref:.2f}x, local {c0 / ref:.2f}x, warm papermill {b / ref:.2f}x")


if __name__ == "__main__":
    main()
