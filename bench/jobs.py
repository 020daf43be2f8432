"""Notebook job start-up cost: papermill's CLI vs papermill in a warm process vs `aiwb jobs run` end to end.

A trivial parameterized notebook, run `--repeat` times each (median); `aiwb jobs run` both with a running scheduler
(warm workers, a pre-started kernel: submit to finished) and without one (`--local`). Then `aiwb jobs run` as users
run it first, with no scheduler, on papermill's own `simple_execute.ipynb`, side by side with papermill's CLI on the
same notebook (goal: at most 0.5x). Also how late a schedule fires, and how long an endless cell with a 10 s timeout
takes to be stopped (`--timeout-s`).

    python bench/jobs.py              # median of 5
    python bench/jobs.py --repeat 1   # a smoke run
"""

import argparse
import json
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


def side_by_side(fns: dict, repeat: int) -> dict[str, float]:
    "Median seconds of each callable, run in turn `repeat` times (so load on the machine hits them alike)."
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def simple_execute(root: Path) -> Path:
    "papermill's own test notebook `simple_execute.ipynb` (from its installed tests, or the same content) in `root`."
    import importlib.util

    found = Path(importlib.util.find_spec("papermill").origin).parent / "tests" / "notebooks" / "simple_execute.ipynb"
    dst = root / "nbs" / "simple_execute.ipynb"
    if found.exists():
        dst.write_bytes(found.read_bytes())
        return dst
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("msg = None")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [
        cell,
        nbformat.v4.new_code_cell("#papermill_description=DESC\nprint(msg)"),
        nbformat.v4.new_markdown_cell(),
    ]
    nbformat.write(nb, dst)
    return dst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="timeout of the endless-cell run")
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
    simple = simple_execute(root)
    first = side_by_side(
        {
            "(d0) papermill CLI, simple_execute.ipynb": lambda: run(
                [BIN / "papermill", simple, root / "out-simple.ipynb", "-p", "msg", "hi"], root
            ),
            "(d) aiwb jobs run, no scheduler, simple_execute.ipynb": lambda: run(
                [BIN / "aiwb", "jobs", "run", "nbs/simple_execute.ipynb", "-p", "msg", "hi"], root
            ),
        },
        args.repeat,
    )
    rows.update(first)
    endless = root / "nbs" / "endless.ipynb"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("print('started', flush=True)"),
        nbformat.v4.new_code_cell("while True:\n    pass"),
    ]
    nbformat.write(nb, endless)
    t0 = time.perf_counter()
    stopped = subprocess.run(
        [BIN / "aiwb", "jobs", "run", "nbs/endless.ipynb", "--timeout", str(args.timeout_s), "--json"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    stop_s = time.perf_counter() - t0
    stop_status = json.loads(stopped.stdout[stopped.stdout.index("{") :])["status"]
    sched = subprocess.Popen(
        [BIN / "aiwb", "scheduler", "--workers", "1"], cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        from aiworkbench.config import load_settings
        from aiworkbench.jobs.runner import scheduler_info

        settings = load_settings(root)
        deadline = time.monotonic() + 60
        while scheduler_info(settings=settings) is None and time.monotonic() < deadline:
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
        from aiworkbench.jobs.store import create_job, list_runs

        create_job(
            {"name": "every-second", "notebook": "nbs/trivial.ipynb", "cron": "* * * * * */2"}, settings=settings
        )
        deadline = time.monotonic() + 30
        while len(list_runs("every-second", settings=settings)) < args.repeat + 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        lates = [
            r["queued_at"] - datetime.fromisoformat(r["scheduled_for"]).timestamp()
            for r in list_runs("every-second", settings=settings)
        ]
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.wait(60)
    ref = rows["(a) papermill CLI"]
    print(f"{'path':58} {'median s':>9} {'x (a)':>7}")
    for name, t in rows.items():
        print(f"{name:58} {t:9.3f} {t / ref:7.2f}")
    print(
        f"endless cell, timeout {args.timeout_s:g} s: {stop_status} after {stop_s:.1f} s from `aiwb jobs run` start "
        "to exit (kernel killed, output kept)"
    )
    print(
        f"schedule fired after its time: median {statistics.median(lates):.3f} s, max {max(lates):.3f} s "
        f"({len(lates)} ticks)"
    )
    c, c0, b = (
        rows["(c) aiwb jobs run via scheduler (pre-started kernel)"],
        rows["(c0) aiwb jobs run --local (no scheduler)"],
        rows["(b) papermill.execute_notebook, warm"],
    )
    d = rows["(d) aiwb jobs run, no scheduler, simple_execute.ipynb"] / rows["(d0) papermill CLI, simple_execute.ipynb"]
    print(
        f"ratio to papermill CLI: aiwb jobs run as users run it first (no scheduler, simple_execute) {d:.2f}x "
        f"(goal <= 0.5), scheduler {c / ref:.2f}x, local {c0 / ref:.2f}x, warm papermill {b / ref:.2f}x"
    )


if __name__ == "__main__":
    main()
