"""Custom state backends: Meltano ``StateStoreManager`` add-ons from ``meltano.state_backends``.

As Meltano does (``StateBackend.get_manager_factory``), the entry point named exactly like
the URI scheme is loaded and called with ``uri``, the lock settings
(``lock_timeout_seconds``, ``lock_retry_seconds``) and every
``state_backend.<scheme>.<key>`` setting (from ``MELTANO_STATE_BACKEND_<SCHEME>_<KEY>``,
``.env`` or ``meltano.yml``) as keyword arguments. The manager is then used for every
command through ``PluginBackend``: reads with ``get``/``get_state_ids``, writes inside the
add-on's own ``acquire_lock``. Meltano's own entry points (``meltano.core...``) are skipped:
state-ext has native backends for those schemes.

A watchdog bounds every call into the add-on: calls run on one worker thread of the backend
(always the same one, since add-ons may hold thread-bound connections, such as SQLite's),
and a call that has not returned within the stall window (``stall_timeout_seconds``; plus
``lock_timeout_seconds`` and one retry for taking a lock, which the add-on may wait for)
fails in one line. The stuck thread is abandoned (a daemon thread: it cannot keep the
process alive) and no further call is made into the add-on.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import EntryPoint, entry_points

from state_ext.backends.base import StateBackend, StateSlot
from state_ext.errors import BackendError, ConfigurationError, StateExtError
from state_ext.model import Envelope
from state_ext.state_ids import matches, validate_state_id

GROUP = "meltano.state_backends"


def _entry_points() -> list[EntryPoint]:
    return [ep for ep in entry_points(group=GROUP) if not ep.value.startswith("meltano.core.")]


def plugin_schemes() -> list[str]:
    return sorted({ep.name for ep in _entry_points()})


def find_plugin(scheme: str):
    """The add-on's factory for ``scheme``, or None when no package registers it."""
    matching = [ep for ep in _entry_points() if ep.name == scheme]
    if not matching:
        return None
    from state_ext.backends import meltano_compat

    meltano_compat.install()
    entry = matching[0]
    try:
        return entry.load()
    except Exception as exc:
        raise ConfigurationError(
            f"Cannot load the state backend add-on {scheme!r} ({entry.value}): "
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from None


def _number(value: float):
    return int(value) if float(value).is_integer() else value


def _state_class():
    from meltano.core.state_store.base import MeltanoState

    return MeltanoState


class PluginBackend(StateBackend):
    """A ``StateStoreManager`` add-on behind state-ext's backend interface."""

    def __init__(self, settings, factory, *, warn=None):
        super().__init__(settings, warn=warn)
        from state_ext.deadline import Worker, stall_timeout_seconds

        self.stall = stall_timeout_seconds()
        self._worker = Worker("state-ext-add-on")
        self._stuck: str | None = None
        self.name = getattr(factory, "__name__", repr(factory))
        self._secrets = sorted(
            {str(v) for k, v in settings.options.items()
             if v and any(w in k.lower() for w in ("password", "secret", "token", "key"))},
            key=len, reverse=True)
        from urllib.parse import urlsplit

        password = urlsplit(settings.uri).password
        if password:
            self._secrets.append(password)
        kwargs = {
            "uri": settings.uri,
            "lock_timeout_seconds": _number(settings.lock_timeout_seconds),
            "lock_retry_seconds": _number(settings.lock_retry_seconds),
            **settings.options,
        }
        self.manager = self._call("connect", factory, **kwargs)

    def _fail(self, what: str, exc: BaseException) -> BackendError:
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return BackendError(
            f"State backend add-on {self.settings.scheme!r} ({self.name}, {self.label}): "
            f"cannot {what}: {type(exc).__name__}: {text}"
        )

    def _call(self, what: str, function, *args, _extra_wait: float = 0.0, **kwargs):
        """Call into the add-on on its worker thread, bounded by the stall window."""
        if self._stuck is not None:
            raise BackendError(self._stuck)
        bound = self.stall + _extra_wait
        future = self._worker.submit(function, *args, **kwargs)
        try:
            return future.result(timeout=bound)
        except StateExtError:
            raise
        except (TimeoutError, concurrent.futures.TimeoutError):  # one class from 3.11 on
            if future.done():  # the add-on itself raised a TimeoutError
                raise self._fail(what, future.exception()) from None
            self._stuck = (
                f"State backend add-on {self.settings.scheme!r} ({self.name}, {self.label}): "
                f"cannot {what}: no answer within {bound:g} s (its store is not responding; "
                "the window is stall_timeout_seconds, env STATE_EXT_STALL_TIMEOUT_SECONDS)")
            raise BackendError(self._stuck) from None
        except Exception as exc:
            raise self._fail(what, exc) from None

    # -- reads ----------------------------------------------------------------------------
    def list_ids(self, pattern: str | None = None) -> list[str]:
        # The add-on's own pattern language may differ (LIKE, regex): let it narrow the
        # list when the pattern has no character class, then apply fnmatch ourselves.
        narrowed = pattern if pattern and "[" not in pattern else None
        ids = self._call("list state", lambda: list(self.manager.get_state_ids(narrowed)))
        return sorted({i for i in ids if matches(i, pattern)})

    def get(self, state_id: str) -> Envelope | None:
        validate_state_id(state_id)
        state = self._call(f"read state {state_id!r}", self.manager.get, state_id)
        if state is None:
            return None
        return Envelope.from_halves(state.completed_state, state.partial_state,
                                    where=f"{self.label} {state_id!r}", warn=self.warn)

    # -- writes ---------------------------------------------------------------------------
    @contextmanager
    def transaction(self, state_id: str) -> Iterator[StateSlot]:
        validate_state_id(state_id)
        lock = self._call(f"lock state {state_id!r}", self.manager.acquire_lock, state_id,
                          retry_seconds=self.settings.lock_retry_seconds)
        lock_wait = self.settings.lock_timeout_seconds + self.settings.lock_retry_seconds
        self._call(f"lock state {state_id!r}", lock.__enter__, _extra_wait=lock_wait)
        try:
            yield _PluginSlot(self, state_id)
        except BaseException as exc:
            if self._stuck is not None:  # the add-on is hung: do not call it again, and
                self._worker.keep(lock)  # never let another thread finalise its lock
                raise
            if not self._call(f"unlock state {state_id!r}", lock.__exit__, type(exc), exc,
                              exc.__traceback__):
                raise
        else:
            self._call(f"unlock state {state_id!r}", lock.__exit__, None, None, None)

    def close(self) -> None:
        if self._stuck is not None:
            return  # its worker is hung: calling it again would only wait once more
        closer = getattr(self.manager, "close", None)
        try:
            if closer is not None:
                self._call("close", closer)
        finally:
            self._worker.stop()


class _PluginSlot(StateSlot):
    def __init__(self, backend: PluginBackend, state_id: str):
        self.backend, self.state_id = backend, state_id

    def read(self) -> Envelope | None:
        return self.backend.get(self.state_id)

    def write(self, envelope: Envelope) -> None:
        state = _state_class()(state_id=self.state_id, partial_state=envelope.partial,
                               completed_state=envelope.completed)
        self.backend._call(f"write state {self.state_id!r}", self.backend.manager.set, state)

    def delete(self) -> bool:
        existed = self.read() is not None
        if existed:
            self.backend._call(f"delete state {self.state_id!r}", self.backend.manager.delete,
                               self.state_id)
        return existed
