"""Run a process whose standard input is a terminal, as a person at a keyboard.

stdin is a pseudo-terminal; stdout and stderr stay pipes, so they are captured apart.
The answer is typed only once the prompt has appeared on stderr: a test that passes
proves the question was visible before it was answered (a prompt left without its
newline inside a line-buffering reader such as ``meltano invoke`` never appears, and
the run fails on the timeout instead).
"""

from __future__ import annotations

import os
import pty
import subprocess
import threading
import time

from tests.support.cli import Result, clean_env

EOF_KEY = "\x04"  # Ctrl-D at the start of a line: end of input


def run_at_terminal(args, *, cwd, env=None, answer: str | None = None,
                    prompt: str = "[y/N]", timeout: float = 120) -> Result:
    """Run ``args``; when ``answer`` is given, wait for ``prompt`` on stderr and type it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(a) for a in args], cwd=cwd, env=env if env is not None else clean_env(),
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    os.close(slave)
    out, err = bytearray(), bytearray()
    readers = [threading.Thread(target=_drain, args=(proc.stdout, out), daemon=True),
               threading.Thread(target=_drain, args=(proc.stderr, err), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        if answer is not None:
            deadline = time.monotonic() + timeout
            while prompt.encode() not in err:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no prompt {prompt!r} before the answer; stderr: "
                                         f"{err.decode(errors='replace')}")
                time.sleep(0.02)
            os.write(master, answer.encode())
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for reader in readers:
            reader.join(timeout=10)
        os.close(master)
    return Result([str(a) for a in args], proc.returncode, out.decode(), err.decode())


def _drain(stream, into: bytearray) -> None:
    for chunk in iter(lambda: stream.read1(65536), b""):
        into.extend(chunk)
