"Each benchmark runs once at a tiny size: it must exit by itself and print its ratio last. No timing is asserted."

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"


@pytest.mark.parametrize(
    "script, args",
    [
        ("contracts.py", ["--rows", "2000", "--repeat", "1"]),
        ("train.py", ["--rows", "1000", "--epochs", "2"]),
    ],
)
def test_benchmark_runs_and_prints_a_ratio(script, args):
    proc = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1].startswith("ratio"), proc.stdout
