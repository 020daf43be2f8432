"The jobs benchmark runs once at a tiny size: it exits by itself and prints its ratio last. No timing is asserted."

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent.parent / "bench" / "jobs.py"


def test_jobs_benchmark_runs_and_prints_a_ratio():
    proc = subprocess.run([sys.executable, str(BENCH), "--repeat", "1"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio"), proc.stdout
