"""The system database's engine: its URL read once, its dialect chosen, its waits bounded.

Kept apart from the backend because everything here happens once per process, before the
first query, and is where a wrong URI, a missing driver or a missing database file must
become one line (with the URI's password redacted). Every wait is bounded here too: a
PostgreSQL server that stopped answering fails after the stall window
(``state_ext.deadline``) instead of hanging; SQLite's only wait, for another writer, is its
busy ``timeout`` (``lock_timeout_seconds``).
"""

from __future__ import annotations

import os

from state_ext.backends.systemdb.dialects import dialect_for
from state_ext.errors import ConfigurationError, MissingExtraError, one_line
from state_ext.redact import redact_uri


def _url(database_uri: str):
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(database_uri)
    except (ArgumentError, ValueError):
        return None


def location(database_uri: str) -> tuple[str, str, str]:
    """The database itself, whatever the driver or spelling of its URL."""
    url = _url(database_uri)
    if url is None:
        return ("systemdb", database_uri, "")
    backend = url.get_backend_name()
    if backend == "sqlite":
        return ("systemdb", "sqlite", os.path.realpath(url.database or ""))
    port = url.port or dialect_for(backend).default_port
    return ("systemdb", f"{backend}://{url.host or ''}:{port}", url.database or "")


def sqlite_path(database_uri: str) -> str | None:
    url = _url(database_uri)
    return None if url is None else url.database


def build(database_uri: str, lock_timeout: float):
    """``(engine, dialect)`` for ``database_uri``; errors are one line, URI redacted."""
    from sqlalchemy import create_engine
    from sqlalchemy.exc import NoSuchModuleError

    from state_ext.deadline import stall_timeout_seconds

    url = _url(database_uri)
    if url is None:
        raise ConfigurationError(f"Invalid database_uri {redact_uri(database_uri)!r}")
    dialect = dialect_for(url.get_backend_name())
    url, kwargs = dialect.engine_options(url, lock_timeout, stall_timeout_seconds())
    try:
        engine = create_engine(url, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
        if dialect.extra:
            raise MissingExtraError(f"The {dialect.name} system database", dialect.extra) from None
        reason = one_line(exc, limit=None, first_line=True)
        raise ConfigurationError(
            f"No driver for database_uri {redact_uri(database_uri)!r}: {reason}") from None
    dialect.prepare(engine)
    return engine, dialect
