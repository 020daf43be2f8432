"Smoke run of bench/panel.py on a tiny fixture: it finishes by itself and prints its table and ratio."

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench" / "panel.py"


def test_bench_panel_small_runs_and_prints_a_ratio():
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--small", "--calls", "3"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-1].startswith("ratio ")
    table = "\n".join(lines)
    for route in (
        "GET phase",
        "GET kpis",
        "GET models",
        "GET jobs/{job}/runs",
        "GET lake/tables",
        "GET features",
        "GET services",
        "GET ci/runs",
        "POST models/{name}/promote",
        "panel rendered",
    ):
        assert route in table, table
    statuses = {line.split()[-1] for line in lines if line.startswith(("GET ", "POST "))}
    assert statuses == {"200"}, table  # every route answers, phase and kpis included
