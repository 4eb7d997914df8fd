"""Run the real executables (state_extension, meltano) as subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_EXTENSION = Path(sys.executable).parent / "state_extension"


@dataclass
class Result:
    args: list
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"{self.args} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"


def clean_env(**extra: str) -> dict[str, str]:
    """The test process env without anything that would point at another project or store."""
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("MELTANO_", "STATE_EXT_", "LOG_"))
        or k == "MELTANO_SEND_ANONYMOUS_USAGE_STATS"
    }
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    env.update(extra)
    return env


def run(args, *, cwd, env=None, input=None, timeout=120) -> Result:
    proc = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env if env is not None else clean_env(),
        input=input, capture_output=True, text=True, timeout=timeout,
    )
    return Result([str(a) for a in args], proc.returncode, proc.stdout, proc.stderr)


def state_ext(*args, cwd, env=None, input=None, check=True, timeout=120) -> Result:
    result = run([STATE_EXTENSION, *args], cwd=cwd, env=env, input=input, timeout=timeout)
    if check:
        assert result.returncode == 0, str(result)
    return result


def meltano_path() -> Path:
    path = Path(os.environ.get("STATE_EXT_TEST_MELTANO", REPO_ROOT / ".venv-meltano/bin/meltano"))
    if not path.exists():
        raise RuntimeError(
            f"The meltano CLI is not at {path}: run `bash scripts/bootstrap.sh` "
            "(or set STATE_EXT_TEST_MELTANO)"
        )
    return path


def meltano(*args, cwd, env=None, input=None, check=True, timeout=300) -> Result:
    result = run([meltano_path(), *args], cwd=cwd, env=env, input=input, timeout=timeout)
    if check:
        assert result.returncode == 0, str(result)
    return result


def one_error_line(result, *needles: str, code: int = 1) -> None:
    """An expected error: exit ``code``, one line on stderr holding every needle, no
    traceback."""
    assert result.returncode == code, str(result)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
