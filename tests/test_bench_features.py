"The features benchmark runs once at tiny sizes: it exits by itself and prints its ratio last. No timing is asserted."

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "features.py"


def test_features_benchmark_runs_and_prints_a_ratio():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio"), proc.stdout
    assert "results agree: True" in proc.stdout, proc.stdout
