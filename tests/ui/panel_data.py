"""What the panel's Data, Services and CI sections show, added to a fixture project cheaply: lake tables written
under an inferred contract, a feature view applied and materialized, build folders (a `build.json` each, no
`bentoml serve`) with request, label and shadow records, and recorded `aiwb ci` runs.

Used by tests/test_server.py, tests/ui/test_lab_ui.py and bench/panel.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path


def add_panel_data(
    root: Path,
    tables: int = 1,  # lake tables `tx`, `tx-01`, ...; `tx` feeds the view `spend`
    requests: int = 120,  # answered requests of `model-00` in the last hours (every third one shadowed)
    labels: int = 60,  # labels of the first requests (the older half all right, the newer half right one in two)
    ci_runs: int = 2,  # recorded `aiwb ci` runs, the newest passed, the others failed
    now: float | None = None,
) -> dict:
    "Add the records to the project at `root`; what was added."
    import pandas as pd

    from aiworkbench.ci.report import record_run
    from aiworkbench.monitoring.feedback import JsonLines
    from aiworkbench.monitoring.request_log import RequestLog, request_log_dir
    from aiworkbench.workbench import Workbench

    now = now or time.time()
    wb = Workbench(root)
    rows = pd.DataFrame(
        {
            "user": [1, 2, 2, 3],
            "ts": pd.to_datetime(["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"], utc=True),
            "spend": [1.0, 2.0, 3.0, 4.0],
        }
    )
    contract = wb.data.infer(rows, name="tx")
    names = ["tx", *(f"tx-{i:02d}" for i in range(1, tables))]
    for name in names:
        wb.lake.write(name, rows, contract)
    (wb.root / "features").mkdir(exist_ok=True)
    (wb.root / "features" / "spend.yaml").write_text(
        "source: tx\nentities: user\ntimestamp: ts\nttl: 30d\nfeatures: [spend]\n"
    )
    wb.features.apply()
    wb.features.materialize("spend")

    build = wb.root / "bentos" / "model-00-v2"
    build.mkdir(parents=True, exist_ok=True)
    challenger = {"version": 1, "file": "challenger.pt", "mode": "shadow", "share": 0.0}
    (build / "build.json").write_text(
        json.dumps(
            {
                "ref": "model-00@champion",
                "name": "model-00",
                "version": 2,
                "runtime": "onnx",
                "challenger": challenger,
                "follow": True,
                "build_dir": str(build),
            }
        )  # fmt: skip
    )
    folder = request_log_dir("model-00", settings=wb.settings)
    log, fb, sh = RequestLog(folder), JsonLines(folder, "feedback"), JsonLines(folder, "shadow")
    start = now - 2 * 3600
    for i in range(requests):
        ts = start + i * (3600 / max(1, requests))
        log.put({"ts": ts, "request_id": f"r{i}", "version": 2, "status": 200, "latency_ms": 2.0 + i % 10,
                 "n": 1, "variant": "champion", "inputs": [[0.0]], "outputs": [1]})  # fmt: skip
        if i % 3 == 0:
            log.put({"ts": ts, "request_id": f"s{i}", "version": 1, "status": 200, "latency_ms": 5.0, "n": 0,
                     "variant": "shadow", "inputs": [], "outputs": []})  # fmt: skip
            sh.put({"ts": ts, "request_id": f"r{i}", "champion": 2, "challenger": 1, "n": 1, "task": "classification",
                    "agreement": float(i % 6 == 0), "champion_ms": 2.0, "challenger_ms": 5.0})  # fmt: skip
        if i < labels:
            right = int(i < labels // 2 or i % 2 == 0)
            fb.put({"ts": ts, "request_id": f"r{i}", "variant": "champion", "version": 2, "n": 1, "correct": right,
                    "label": [1], "predicted": [1 if right else 0]})  # fmt: skip
    log.close(timeout=60)
    fb.close()
    sh.close()

    recorded = []
    for k in range(ci_runs):
        outcome = "passed" if k == ci_runs - 1 else "failed"
        stages = [{"name": "validate", "seconds": 0.5}, {"name": "train", "seconds": 3.0 + k}]
        result = {
            "id": f"ci-{k}",
            "commit": {"sha": f"{k:02d}" + "abcdef0123456789" * 2, "branch": "main"},
            "stages": stages,
            "outcome": outcome,
            "started": now - 600 * (ci_runs - k),
            "seconds": sum(st["seconds"] for st in stages),
            "model": "model-00",
            "promotion": {"outcome": "promoted", "to": 2} if outcome == "passed" else None,
        }
        recorded.append(record_run(result, "summary", "<testsuites/>", settings=wb.settings)["run_id"])
    return {"tables": names, "views": ["spend"], "builds": [str(build)], "ci_runs": recorded[::-1]}
