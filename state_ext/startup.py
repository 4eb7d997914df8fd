"""The three start-up and exit measures, in one place; each buys what it says.

A state command lives well under a second, and three costs that have nothing to do with
state were about a quarter of it (measured by ``benchmarks/bench.py`` and, for each measure
alone, by ``benchmarks/bench_startup.py``):

* **Garbage-collector threshold.** The cyclic collector runs full collections over and
  over while SQLAlchemy's, typer's and the SDKs' thousands of module objects are
  imported. A first-generation threshold of 50,000 lets it run rarely; it still runs, so a
  100,000-state migrate stays at about 90 MB.
* **Exit without finalisation.** Tearing the imported modules down one by one costs tens of
  milliseconds. Every command has closed its backends (connections, sessions, locks) and
  joined its worker threads before the app returns, so once stdout and stderr are flushed
  the process ends at once with its code. If a thread is still at work (an unexpected
  error left it running), or coverage is measuring, the ordinary exit runs.
* **structlog without rich.** structlog's dev module imports rich, when it is installed,
  only to render tracebacks prettily; our logs are plain EDK console or JSON lines, so
  structlog is imported while rich is hidden.
"""

from __future__ import annotations

import gc
import os
import sys

GC_THRESHOLD = (50_000, 20, 20)


def collect_rarely() -> None:
    gc.set_threshold(*GC_THRESHOLD)


def exit_now(code) -> None:
    """Flush, then end the process with ``code`` (a SystemExit code) at once."""
    code = _flushed(_exit_code(code))
    if "coverage" in sys.modules or _threads_still_working():
        sys.exit(code)  # finalisation saves coverage data and joins the threads
    os._exit(code)


def import_structlog():
    if "structlog" in sys.modules:
        return sys.modules["structlog"]
    hidden = "rich" not in sys.modules
    if hidden:
        sys.modules["rich"] = None  # makes `import rich` fail inside structlog.dev
    try:
        import structlog
    finally:
        if hidden:
            del sys.modules["rich"]
    return structlog


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # what Python prints for sys.exit("message")
    return 1


def _threads_still_working() -> bool:
    import threading

    return any(t is not threading.main_thread() and not t.daemon and t.is_alive()
               for t in threading.enumerate())


def _flushed(code: int) -> int:
    """Flush the standard streams; a reader that went away is exit 120, as in Python."""
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    return code
