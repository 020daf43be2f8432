import json
import subprocess
import sys
from pathlib import Path

import pytest

AIWB = str(Path(sys.executable).parent / "aiwb")


class Result:
    def __init__(self, proc: subprocess.CompletedProcess):
        self.code, self.out, self.err = proc.returncode, proc.stdout, proc.stderr

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def aiwb():
    "Run the installed `aiwb` in its own process: `aiwb('data', 'validate', ...)` -> Result(code, out, err)."

    def run(*args, cwd=None, timeout=120, env=None) -> Result:
        proc = subprocess.run(
            [AIWB, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env
        )
        return Result(proc)

    return run
