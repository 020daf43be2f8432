"""Stopping what `aiwb team up` started, by pid, in the tests' teardowns (whatever state the test left it in)."""

import json
import os
import signal
from pathlib import Path

import psutil


def running(pid: int | None) -> bool:
    "Whether `pid` is a live process (not a zombie); False for None."
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, TypeError, ValueError):
        return False


def stop_team(state_file: Path) -> None:
    "SIGKILL the MLflow server's process group and stop PostgreSQL (fast shutdown) named in the team's `team.json`."
    state = json.loads(state_file.read_text()) if state_file.exists() else {}
    mlflow_pid = (state.get("mlflow") or {}).get("pid")
    if running(mlflow_pid):
        os.killpg(mlflow_pid, signal.SIGKILL)
    pg_pid = (state.get("postgres") or {}).get("pid")
    if running(pg_pid):
        os.kill(pg_pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        psutil.Process(pg_pid).wait(30)
