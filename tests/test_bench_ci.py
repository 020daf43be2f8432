"The CI benchmark runs once, tiny (`--quick`): it exits by itself and prints its ratio last; no timing asserted."

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "ci.py"


def test_ci_benchmark_runs_and_prints_a_ratio():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio parallel/serial test stage"), proc.stdout
    assert "validate" in proc.stdout and "test" in proc.stdout, proc.stdout
