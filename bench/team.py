"""The team server's per-call cost: `log_batch` (1,000 points), `promote` (through a gate, the registry lease held) and
`list_models`, on a project's SQLite store vs the local MLflow server on PostgreSQL that `aiwb team up` starts, side by
side (each call timed in turn on both, median). Then the job-claim rows of bench/claims.py, on the job store of the
same `aiwb team up`: a claim (+ finish) on SQLite vs PostgreSQL, and claims/s of 1 vs 4 schedulers.
Goals (issue 12), both on the last line, each said met or not: the server path costs at most 3x SQLite per call (the
worst of log_batch, promote, list_models and the claim), and 4 schedulers claim at least 3x the runs/s of one.

    python bench/team.py            # 20 calls of each
    python bench/team.py --quick    # 3 calls of each, and the claim rows at their quick size (a smoke run)
"""

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

MLMODEL = "artifact_path: model\nflavors:\n  python_function:\n    loader_module: bench_model\n"


def project(base: Path, name: str, uri: str | None):
    "A project (its own SQLite store, or `uri`) with model `bench` at versions 1 and 2, and a run to log to."
    from mlflow.entities import Metric

    from aiworkbench.config import load_settings
    from aiworkbench.project import init_project
    from aiworkbench.registry import register_model
    from aiworkbench.tracking import client, experiment_id

    root = init_project(base / name)
    if uri:
        ini = root / "settings.ini"
        ini.write_text(ini.read_text().replace("[tracking]\n", f"[tracking]\nuri = {uri}\n", 1))
    settings = load_settings(root, environ={})
    c = client(settings=settings)
    exp = experiment_id("bench", settings=settings)
    for acc in (0.9, 0.8):
        run = c.create_run(exp)
        c.log_batch(run.info.run_id, metrics=[Metric("acc", acc, int(time.time() * 1000), 0)])
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "model").mkdir()
            (Path(tmp) / "model" / "MLmodel").write_text(MLMODEL)
            c.log_artifacts(run.info.run_id, tmp)
        register_model(f"runs:/{run.info.run_id}/model", "bench", settings=settings)
    return settings, c, c.create_run(exp).info.run_id


def calls(settings, c, run_id: str) -> dict:
    "The three calls, as callables of no argument (each promote moves the alias to the other version)."
    from mlflow.entities import Metric

    from aiworkbench.gates import Gate
    from aiworkbench.registry import list_models, promote

    step, version = [0], [1]

    def log_batch():
        s = step[0]
        c.log_batch(
            run_id, metrics=[Metric("loss", 1.0 / (i + 1), 1_700_000_000_000 + i, i) for i in range(s, s + 1000)]
        )
        step[0] += 1000

    def promote_once():
        promote("bench", version[0], Gate(min_metrics={"acc": 0.5}), settings=settings)
        version[0] = 3 - version[0]

    return {
        "log_batch (1,000 points)": log_batch,
        "promote": promote_once,
        "list_models": lambda: list_models(settings=settings),
    }


def side_by_side(a: dict, b: dict, repeat: int) -> dict:
    "{call: (median ms on a, median ms on b)}, each call made on a then b, `repeat` times after one warm-up."
    out = {}
    for name in a:
        times = {"a": [], "b": []}
        for i in range(repeat + 1):
            for side, fns in (("a", a), ("b", b)):
                t0 = time.perf_counter()
                fns[name]()
                if i:
                    times[side].append((time.perf_counter() - t0) * 1000)
        out[name] = (statistics.median(times["a"]), statistics.median(times["b"]))
    return out


PER_CALL_GOAL, SCHEDULERS_GOAL = 3.0, 3.0  # server / SQLite per call at most; 4 schedulers / 1 at least


def claim_rows(quick: bool, store: str) -> list[dict]:
    "The job-claim rows of bench/claims.py on the job store `store` (PGPASSFILE set), or none with a note."
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from claims import rows
    except ImportError as e:
        print(f"note: no job-claim rows: bench/claims.py is missing or broken ({e})")
        return []
    return rows(quick, store=store)


def goals_line(measured: dict, claims: list[dict]) -> str:
    "The last line: every goal, its measured ratio, and whether it is met."
    met = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    per_call = {k: b / a for k, (a, b) in measured.items()}
    if claims:
        per_call["claim + finish"] = claims[0]["postgres_ms"] / claims[0]["sqlite_ms"]
    worst = max(per_call, key=per_call.get)
    line = f"ratio {per_call[worst]:.2f} server/SQLite per call, worst of {len(per_call)} ({worst}; goal <= "
    line += f"{PER_CALL_GOAL:g}: {met(per_call[worst] <= PER_CALL_GOAL)}"
    if not claims:
        return line + f", the claim not measured); 4 schedulers over 1: not measured (goal >= {SCHEDULERS_GOAL:g})"
    four = claims[1]["4 schedulers"] / claims[1]["1 scheduler"]
    return (
        line
        + f"); {four:.2f}x claims/s, 4 schedulers over 1 (goal >= {SCHEDULERS_GOAL:g}: {met(four >= SCHEDULERS_GOAL)})"
    )


def main(quick: bool) -> None:
    from aiworkbench.team.servers import team_down, team_up

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    base = Path(tempfile.mkdtemp(prefix="aiwb-bench-team-"))
    base.chmod(0o755)  # as root PostgreSQL runs as `postgres`, which must reach its folder
    try:
        t0 = time.perf_counter()
        up = team_up(dir=base / "team")
        up_s = time.perf_counter() - t0
        local = calls(*project(base, "sqlite", None))
        server = calls(*project(base, "server", up["settings"]["tracking.uri"]))
        measured = side_by_side(local, server, 3 if quick else 20)
        rows = [(k, f"{a:.1f} ms SQLite", f"{b:.1f} ms server", round(b / a, 2)) for k, (a, b) in measured.items()]
        os.environ["PGPASSFILE"] = up["pgpass"]  # the claimers open the team's job store with the role's password
        claims = claim_rows(quick, up["settings"]["jobs.store"])
        if claims:
            a, b = claims
            rows.append((a["what"], f"{a['sqlite_ms']} ms SQLite", f"{a['postgres_ms']} ms PG", a["ratio"]))
            rows.append((b["what"], f"{b['1 scheduler']}/s x1", f"{b['4 schedulers']}/s x4", b["ratio"]))
    finally:
        team_down(dir=base / "team")
        shutil.rmtree(base, ignore_errors=True)
    print(f"aiwb team up (cold): {up_s:.1f} s")
    print(f"{'what':38} {'reference':>18} {'measured':>18} {'ratio':>7}")
    for what, ref, got, ratio in rows:
        print(f"{what:38} {ref:>18} {got:>18} {ratio:>7}")
    if claims:
        from claims import ceiling_note

        print(ceiling_note(claims[1]))
    print(goals_line(measured, claims))


if __name__ == "__main__":
    main("--quick" in sys.argv)
