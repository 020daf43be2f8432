"""`bench/monitoring.py --quick` runs end to end, prints its table and the closing ratio line, and the KPI it times
counts every logged request, with a p95 from the hour sketches within 1 % of the exact one."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "monitoring.py"


@pytest.mark.slow
def test_monitoring_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio: aiwb kpi "), lines[-1]
    rows = {line[:3] for line in lines if line.startswith("(")}
    assert rows == {"(t)", "(d)", "(j)"}, proc.stdout
    off = re.search(r"exact [\d.]+ ms: ([\d.]+)% off", proc.stdout)
    assert off and float(off.group(1)) < 1.0, proc.stdout
    counted = re.search(r"aiwb kpi counted (\d+) requests; DuckDB (\d+)", proc.stdout)
    assert counted and counted.group(1) == counted.group(2), proc.stdout
