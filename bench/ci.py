"""`aiwb ci` on the quickstart project: the time of each stage, and the test stage serial vs parallel.

The project is made by `aiwb quickstart` (not timed; `--project DIR` reuses one, copied), which writes the `[ci]`
settings its pipeline needs (`train_notebook = nbs/retrain.ipynb`, `model = breast_cancer`); the bench adds
`--notebooks` small test notebooks (each reads the dataset and checks it, as a project's analysis notebooks do) to
the starter notebooks the test stage runs on their sample. Then, as users run
it, one `aiwb ci` process: every stage with its seconds (goal: the whole pipeline under 2 minutes). Then the test
stage alone, `--workers 1` (the reference: one notebook after another) and `--workers N` (`[jobs] workers`), taken
in turns `--repeat` times (median). The ratio is parallel / serial.

    python bench/ci.py             # quickstart project, 4 test notebooks, median of 3
    python bench/ci.py --quick     # a tiny project, no quickstart, no starter notebooks: validate + test, once
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith(("AIWB_", "GITHUB_", "CI_"))}
GOAL_S = 120.0


def aiwb(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run([str(BIN / "aiwb"), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=ENV)
    if check and r.returncode not in (0, 1):
        sys.exit(f"aiwb {' '.join(map(str, args))} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return r


def add_test_notebooks(root: Path, data: str, n: int) -> None:
    "`n` notebooks that read `data` and check it, each with a `parameters` cell CI sets (metadata `aiwb.ci`)."
    from aiworkbench.project import notebook_source

    for i in range(n):
        cells = [
            ("code", f'data_path = "{data}"\nrows = 0', ["parameters"]),
            ("code", "import pandas as pd\n\ndf = pd.read_csv(data_path)\nassert len(df) >= rows, len(df)", []),
            ("code", "summary = df.describe().T\nassert summary['count'].min() > 0\nsummary.head()", []),
        ]
        (root / "nbs" / f"check_{i}.ipynb").write_text(notebook_source(cells, ci={"parameters": {"rows": 10}}))


def quickstart_project(work: Path, given: Path | None) -> Path:
    root = work / "qs"
    if given is not None:
        shutil.copytree(given, root, symlinks=True)
    else:
        t0 = time.perf_counter()
        aiwb("quickstart", root, cwd=work)
        print(f"(aiwb quickstart made the project in {time.perf_counter() - t0:.0f} s; not counted)", file=sys.stderr)
    return root


def tiny_project(work: Path) -> Path:
    from sklearn.datasets import load_wine

    root = work / "tiny"
    aiwb("init", root, cwd=work)
    for notebook in (root / "nbs").glob("*.ipynb"):  # the starter notebooks: only the bench's own, for a smoke run
        notebook.unlink()
    load_wine(as_frame=True).frame.to_csv(root / "data" / "wine.csv", index=False)
    aiwb("data", "infer", "data/wine.csv", "-o", "contracts/wine.yaml", "--target", "target", cwd=root)
    return root


def git_commit(root: Path) -> None:
    git = ["git", "-C", str(root), "-c", "user.email=bench@example.com", "-c", "user.name=bench"]
    if not (root / ".git").exists():
        subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
    subprocess.run([*git, "commit", "-qm", "bench", "--allow-empty"], check=True)


def ci_json(root: Path, *args) -> tuple[dict, float]:
    t0 = time.perf_counter()
    r = aiwb("ci", "--json", *args, cwd=root)
    took = time.perf_counter() - t0
    return json.loads(r.stdout), took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a tiny project, the validate and test stages, once")
    ap.add_argument("--project", type=Path, help="a quickstart project to copy instead of making one")
    ap.add_argument("--notebooks", type=int, default=4, help="test notebooks added to the project")
    ap.add_argument("--repeat", type=int, default=3, help="turns of the serial/parallel test stage (median)")
    ap.add_argument("--workers", type=int, default=2, help="notebooks the parallel test stage runs at once")
    args = ap.parse_args()
    if args.quick:
        args.notebooks, args.repeat = 1, 1
    work = Path(tempfile.mkdtemp(prefix="bench-ci-"))
    try:
        root = tiny_project(work) if args.quick else quickstart_project(work, args.project)
        data = "data/wine.csv" if args.quick else "data/breast_cancer.csv"
        add_test_notebooks(root, data, args.notebooks)
        git_commit(root)
        stages = "validate,test" if args.quick else None
        result, total = ci_json(root, *(["--stages", stages] if stages else []))
        print(f"aiwb ci on the {'tiny' if args.quick else 'quickstart'} project: {result['outcome']}")
        print(f"{'stage':10} {'outcome':8} {'seconds':>8}  note")
        for st in result["stages"]:
            print(f"{st['name']:10} {st['outcome']:8} {st['seconds']:8.1f}  {st['message'][:90]}")
        print(f"{'pipeline':10} {'':8} {result['seconds']:8.1f}  (the command: {total:.1f} s, goal < {GOAL_S:.0f} s)")
        times: dict[str, list[float]] = {"serial": [], "parallel": []}
        for _ in range(args.repeat):
            for name, workers in (("serial", 1), ("parallel", args.workers)):
                r, _ = ci_json(root, "--stages", "test", "--workers", str(workers))
                times[name].append(r["stages"][0]["seconds"])
        serial, parallel = statistics.median(times["serial"]), statistics.median(times["parallel"])
        n = sum(c["outcome"] == "passed" for c in r["stages"][0]["cases"])
        print(f"\ntest stage, {n} notebooks (median of {args.repeat})")
        print(f"{'workers':10} {'seconds':>8}")
        print(f"{'1 (ref)':10} {serial:8.1f}")
        print(f"{args.workers:<10} {parallel:8.1f}")
        print(f"ratio parallel/serial test stage: {parallel / serial:.2f}x (pipeline {result['seconds']:.1f} s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
