"`bench/serve.py` runs end to end on tiny settings and prints its table and the closing ratio line."

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "serve.py"


@pytest.mark.slow
def test_serving_benchmark_smoke(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--seconds",
            "1",
            "--concurrency",
            "8",
            "--variants",
            "a,c,cm,cn,o,s",  # BentoML's defaults (b) and mlflow models serve (d): only in the full run
            "--swaps",
            "1",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio at c=8: "), lines[-1]
    assert "c/a req/s" in lines[-1] and "logging costs" in lines[-1]  # (c) beside (cn), its request log off
    table = [line for line in lines if line.startswith(("(a)", "(b)", "(c)", "(d)", "(o)", "(s)"))]
    assert {line[:3] for line in table} >= {"(a)", "(c)"}, proc.stdout
    assert [line for line in table if line.startswith("(c) 20 % bad requests")], proc.stdout  # mixed traffic ran
    assert {line[:3] for line in table} >= {"(o)", "(s)"}, proc.stdout  # the ONNX runtime and the shadow ran
    assert "alias swaps under c=8: 1 done" in proc.stdout and "swaps 1 failed 0" in lines[-1], proc.stdout
    # no errors: every good request 200, every bad one (in the mixed traffic) its 4xx, none a 5xx
    assert all(int(line.split()[-4]) == 0 for line in table if line.startswith(("(c)", "(o)", "(s)"))), proc.stdout
