"""Drift report throughput: aiworkbench vs scipy's ks_2samp per feature vs Evidently's DataDriftPreset.

Reference and current windows of `--rows` rows x `--features` numeric features (current shifted on a few
features). The reference is prepared (sorted) once, as training does; then, in one run:
  - numpy sort of the current data (the floor: an exact KS test must sort the window)
  - scipy.stats.ks_2samp on every feature
  - aiworkbench drift_report: PSI + KS on every feature, no HTML
  - Evidently DataDriftPreset (default preset), installed in a separate venv under ~/.cache (skip: --no-evidently)
Prints seconds for each and the ratios last.

    python bench/drift.py                              # 1,000,000 x 20, Evidently included
    python bench/drift.py --rows 20000 --no-evidently  # a quick look
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from aiworkbench.contracts import Contract
from aiworkbench.monitoring.drift import drift_report
from aiworkbench.reference import Reference

EVIDENTLY_VENV = Path.home() / ".cache" / "aiworkbench-bench" / "evidently-venv"
EVIDENTLY_SCRIPT = """
import sys, time, pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
t0 = time.perf_counter()
Report([DataDriftPreset()]).run(cur, ref)
print(time.perf_counter() - t0)
"""


def evidently_seconds(ref: pd.DataFrame, cur: pd.DataFrame) -> tuple[float | None, str]:
    "Evidently's time on the same data, in its own venv; (None, why) if it cannot be had."
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
        pip = subprocess.run(
            # Evidently does not import under pandas 3 (it uses pandas' removed `infer_dtype_from_object`)
            [str(python), "-m", "pip", "install", "-q", "evidently", "pandas<3", "pyarrow"],
            capture_output=True,
            text=True,
        )
        if pip.returncode != 0:
            return None, f"pip install evidently failed: {pip.stderr.strip().splitlines()[-1:]}"
    with tempfile.TemporaryDirectory() as tmp:
        ref.to_parquet(f"{tmp}/ref.parquet")
        cur.to_parquet(f"{tmp}/cur.parquet")
        out = subprocess.run(
            [str(python), "-c", EVIDENTLY_SCRIPT, f"{tmp}/ref.parquet", f"{tmp}/cur.parquet"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
    if out.returncode != 0:
        return None, f"evidently failed: {out.stderr.strip().splitlines()[-1:]}"
    return float(out.stdout.strip().splitlines()[-1]), ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--no-evidently", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    names = [f"f{i}" for i in range(args.features)]
    ref_df = pd.DataFrame(rng.normal(size=(args.rows, args.features)), columns=names)
    cur = rng.normal(size=(args.rows, args.features))
    cur[:, :3] += 0.5  # three features shifted
    cur_df = pd.DataFrame(cur, columns=names)
    contract = Contract.model_validate({"name": "bench", "columns": {n: {"dtype": "float"} for n in names}})
    reference = Reference.build(ref_df, contract, rows=args.rows)  # sorted once, at "training time"

    results = {}
    t0 = time.perf_counter()
    np.sort(cur, axis=0)
    results["numpy sort of the window"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    scipy_stats = [stats.ks_2samp(ref_df[n].to_numpy(), cur_df[n].to_numpy()).statistic for n in names]
    results["scipy ks_2samp per feature"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = drift_report(reference, cur_df)
    results["aiworkbench drift_report"] = time.perf_counter() - t0
    ours = {f.feature: f.statistic for f in report.features}
    assert all(ours[n] == s for n, s in zip(names, scipy_stats, strict=True)), "KS statistics differ from scipy"
    note = ""
    if not args.no_evidently:
        seconds, note = evidently_seconds(ref_df, cur_df)
        if seconds is not None:
            results["Evidently DataDriftPreset"] = seconds

    print(
        f"{args.rows:,} rows x {args.features} features, reference and window; verdict: {report.verdict}; "
        f"drifted features: {', '.join(report.drifted) or 'none'}"
    )
    ours_s = results["aiworkbench drift_report"]
    print(f"{'method':<30} {'seconds':>9} {'vs aiworkbench':>15}")
    for name, seconds in results.items():
        print(f"{name:<30} {seconds:>9.3f} {seconds / ours_s:>15.1f}")
    if note:
        print(f"Evidently: not measured ({note})")
    ratios = [
        f"aiworkbench/sort: {ours_s / results['numpy sort of the window']:.2f}",
        f"scipy/aiworkbench: {results['scipy ks_2samp per feature'] / ours_s:.1f}",
    ]
    if "Evidently DataDriftPreset" in results:
        ratios.append(f"Evidently/aiworkbench: {results['Evidently DataDriftPreset'] / ours_s:.0f}")
    print("ratio " + "  ".join(ratios))


if __name__ == "__main__":
    main()
