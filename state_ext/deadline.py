"""How long state-ext waits for a store that stopped answering: by progress, not by size.

A frozen server (SIGSTOP, a network black hole, a stuck proxy) answers nothing and closes
nothing; a wait bounded by the size of the job (minutes per thousand states) looks like a
hang to whoever runs it. Every backend call is therefore bounded by the *stall window*: the
operation fails when no request has completed for that long, whatever its size.

The window is the setting ``stall_timeout_seconds`` (env ``STATE_EXT_STALL_TIMEOUT_SECONDS``,
default 30 s); this module is the one place that reads it. Where each backend applies it:

* object stores: ``aio.run`` waits by progress (a request answered, a task done, a lock
  poll answered), and the SDK clients keep their connect and read timeouts;
* plugin backends (``meltano.state_backends`` add-ons): every call runs on a ``Worker``
  thread and is abandoned once it exceeds the window (plus the lock wait when locking);
* the system database: ``sql_connect_args(dialect)`` for SQLAlchemy's ``connect_args``
  (connect and statement timeouts, keepalives).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from concurrent.futures import Future

from state_ext.errors import ConfigurationError

STALL_TIMEOUT_ENV = "STATE_EXT_STALL_TIMEOUT_SECONDS"
DEFAULT_STALL_TIMEOUT_SECONDS = 30.0


def stall_timeout_seconds(environ=None) -> float:
    """The stall window in seconds (a positive number; bad values are one clear line)."""
    raw = (os.environ if environ is None else environ).get(STALL_TIMEOUT_ENV, "")
    if not str(raw).strip():
        return DEFAULT_STALL_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"{STALL_TIMEOUT_ENV} (setting stall_timeout_seconds) must be a positive number "
            f"of seconds, not {raw!r}")
    return value


def sql_connect_args(dialect: str, lock_timeout_seconds: float = 10.0,
                     environ=None) -> dict:
    """``connect_args`` for SQLAlchemy's ``create_engine`` of the system database, so that a
    database that stops answering ends in bounded time (for the systemdb backend).

    PostgreSQL (psycopg / libpq): ``connect_timeout`` is the stall window (whole seconds,
    at least 2 as libpq requires); ``statement_timeout`` is the window plus the lock wait
    (a statement waiting for a row lock is still running), set per session through
    ``options``; ``tcp_user_timeout`` and keepalives end a connection whose peer vanished
    (a dead host, a dropped route). A server process that is alive but frozen (SIGSTOP)
    still has its kernel acknowledging packets: only a client-side watchdog (``Worker``)
    bounds that. SQLite is a local file: its ``timeout`` is the busy wait (the lock
    timeout), nothing to add here.
    """
    stall = stall_timeout_seconds(environ)
    if dialect in ("postgresql", "postgres"):
        statement_ms = int((stall + max(0.0, float(lock_timeout_seconds))) * 1000)
        return {
            "connect_timeout": max(2, math.ceil(stall)),
            "options": f"-c statement_timeout={statement_ms}",
            "keepalives": 1,
            "keepalives_idle": max(1, math.ceil(stall / 3)),
            "keepalives_interval": max(1, math.ceil(stall / 6)),
            "keepalives_count": 3,
            "tcp_user_timeout": int(stall * 1000),
        }
    return {}


class Worker:
    """One daemon thread that runs calls in order, for callers that bound their wait.

    The watchdog of calls that have no timeout of their own (plugin backends' add-ons, a
    database driver reading from a frozen server): ``submit`` returns a ``Future``; the
    caller waits ``future.result(timeout=stall_timeout_seconds())`` and, on timeout,
    abandons the thread (a daemon: it cannot keep the process alive) and makes no further
    call. Always the same thread, since drivers may hold thread-bound connections (SQLite).
    """

    def __init__(self, name: str = "state-ext-watchdog"):
        self.name = name
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._kept: list = []  # referenced by the (daemon) thread's frame: never collected

    def keep(self, thing) -> None:
        """Objects of the add-on (a lock's generator) that only this thread may finalise."""
        self._kept.append(thing)

    def submit(self, function, *args, **kwargs) -> Future:
        future: Future = Future()
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name,
                                            daemon=True)
            self._thread.start()
        self._jobs.put((future, function, args, kwargs))
        return future

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, function, args, kwargs = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(function(*args, **kwargs))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                future.set_exception(exc)

    def stop(self) -> None:
        if self._thread is not None:
            self._jobs.put(None)
            self._thread = None
