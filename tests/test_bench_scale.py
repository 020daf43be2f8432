"The scale benchmark runs once at its quick size: it exits by itself and prints its ratio last. No timing is asserted."

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench" / "scale.py"


@pytest.mark.slow
def test_scale_benchmark_runs_and_prints_a_ratio():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio"), proc.stdout
