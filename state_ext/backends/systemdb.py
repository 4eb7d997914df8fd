"""``systemdb`` backend: the ``state`` table of Meltano's system database.

We read and write Meltano's table through SQLAlchemy Core and never create or migrate
its schema: that belongs to ``meltano``. Each write is one transaction that locks what
the database can lock (SQLite: ``BEGIN IMMEDIATE``; PostgreSQL: a transaction advisory
lock on the ID plus ``SELECT ... FOR UPDATE``), so a partial merge is never lost to a
concurrent one. An import is a single transaction: all states or none.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property

from state_ext.backends.base import StateBackend, StateSlot, digest
from state_ext.errors import BackendError, ConfigurationError, LockTimeoutError, MissingExtraError
from state_ext.model import Envelope
from state_ext.settings import redact_uri
from state_ext.state_ids import matches, validate_state_id
from state_ext.strict_json import (
    LIMIT_TEXT,
    MAX_DEPTH,
    MAX_STATE_BYTES,
    JsonRefused,
    as_text,
    check_value,
    loads_stored,
)

CREATE_HINT = "run `meltano upgrade database` (or any `meltano state` command) in the project"
BATCH = 500


def _one_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


class SystemDbBackend(StateBackend):
    def __init__(self, settings, **kwargs):
        super().__init__(settings, **kwargs)
        if not settings.database_uri:
            raise ConfigurationError(
                "No system database: no Meltano project found (no meltano.yml here or above) "
                "and MELTANO_DATABASE_URI is not set; use --project-root, "
                "or --uri for another backend"
            )
        self.database_uri = settings.database_uri

    @property
    def label(self) -> str:
        return f"systemdb ({redact_uri(self.database_uri)})"

    @property
    def location(self):
        """The database itself, whatever the driver or spelling of its URL."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            url = make_url(self.database_uri)
        except (ArgumentError, ValueError):
            return ("systemdb", self.database_uri, "")
        backend = url.get_backend_name()
        if backend == "sqlite":
            return ("systemdb", "sqlite", os.path.realpath(url.database or ""))
        port = url.port or {"postgresql": 5432, "mssql": 1433}.get(backend, "")
        return ("systemdb", f"{backend}://{url.host or ''}:{port}", url.database or "")

    # -- engine ------------------------------------------------------------------
    @cached_property
    def engine(self):
        from sqlalchemy import create_engine, event
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            url = make_url(self.database_uri)
        except (ArgumentError, ValueError):
            raise ConfigurationError(
                f"Invalid database_uri {redact_uri(self.database_uri)!r}"
            ) from None
        timeout = self.settings.lock_timeout_seconds
        backend = url.get_backend_name()
        kwargs: dict = {}
        if backend == "sqlite":
            path = url.database
            if not path or path == ":memory:":
                raise ConfigurationError("An in-memory SQLite system database holds no state")
            if not os.path.isfile(path):
                raise BackendError(f"System database not found at {path}: {CREATE_HINT}")
            import sqlite3

            def connect():
                # mode=rw: never let a connection create an empty database file
                return sqlite3.connect(
                    f"file:{path}?mode=rw", uri=True, timeout=timeout, isolation_level=None,
                    check_same_thread=False,
                )

            kwargs["creator"] = connect
        elif backend == "postgresql":
            if url.drivername in ("postgresql", "postgres"):
                url = url.set(drivername="postgresql+psycopg")
            kwargs["connect_args"] = {"connect_timeout": max(1, int(timeout))}
        try:
            engine = create_engine(url, **kwargs)
        except (NoSuchModuleError, ModuleNotFoundError, ImportError) as exc:
            extra = {"postgresql": "postgres", "mssql": "mssql"}.get(backend)
            if extra:
                raise MissingExtraError(f"The {backend} system database", extra) from None
            raise ConfigurationError(
                f"No driver for database_uri {redact_uri(self.database_uri)!r}: {_one_line(exc)}"
            ) from None
        if backend == "sqlite":
            @event.listens_for(engine, "begin")
            def _begin(conn):
                # writes take SQLite's write lock up front; reads never wait for a writer
                conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")
        return engine

    @cached_property
    def table(self):
        from sqlalchemy import Column, DateTime, MetaData, String, Table, Text

        return Table(
            "state", MetaData(),
            Column("state_id", String(900), primary_key=True),
            Column("partial_state", Text),
            Column("completed_state", Text),
            Column("updated_at", DateTime),
        )

    @contextmanager
    def _connect(self, *, write: bool):
        """A checked connection in a transaction, with database errors made readable."""
        from sqlalchemy import inspect
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        try:
            with self.engine.connect() as conn:
                conn.info["write"] = False
                if not self.__dict__.get("_table_checked"):
                    if not inspect(conn).has_table("state"):
                        raise BackendError(
                            f"System database {redact_uri(self.database_uri)} has no 'state' "
                            f"table (Meltano's schema is missing): {CREATE_HINT}"
                        )
                    self._table_checked = True
                    conn.rollback()
                conn.info["write"] = write
                with conn.begin():
                    if write and conn.dialect.name == "postgresql":
                        # row and advisory lock waits end after lock_timeout_seconds
                        timeout_ms = max(1, int(self.settings.lock_timeout_seconds * 1000))
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {timeout_ms}")
                    yield conn
        except DBAPIError as exc:
            raise self._failure(exc) from None
        except SQLAlchemyError as exc:
            raise BackendError(
                f"System database {redact_uri(self.database_uri)}: {_one_line(exc)}"
            ) from None

    def _failure(self, exc: BaseException) -> BackendError:
        """A database error (SQLAlchemy's or the driver's own) as one readable line."""
        message = _one_line(exc)
        if message.startswith("Could not decode to UTF-8"):  # sqlite3, before any lock test:
            return BackendError(self._undecodable())  # the message quotes the stored text
        if "locked" in message.lower() or "lock timeout" in message.lower():
            return LockTimeoutError(
                f"System database {redact_uri(self.database_uri)} is locked by another "
                f"process: {message}"
            )
        return BackendError(f"System database {redact_uri(self.database_uri)}: {message}")

    def _undecodable(self) -> str:
        """sqlite3 could not decode a stored TEXT as UTF-8: say which state, column and byte.

        The driver's own message quotes the whole value (megabytes, possibly) and names
        no state, so a second, read-only connection looks at the raw bytes. Error path
        only: reads stay on sqlite3's fast strict decoding.
        """
        import sqlite3

        from sqlalchemy.engine import make_url

        try:
            con = sqlite3.connect(f"file:{make_url(self.database_uri).database}?mode=ro",
                                  uri=True, timeout=self.settings.lock_timeout_seconds)
            try:
                con.text_factory = bytes
                rows = con.execute("SELECT state_id, completed_state, partial_state FROM state "
                                   "ORDER BY state_id")
                for row in rows:
                    for column, raw in zip(("state_id", "completed_state", "partial_state"), row,
                                           strict=True):
                        try:
                            if isinstance(raw, bytes):
                                raw.decode("utf-8")
                        except UnicodeDecodeError as bad:
                            name = row[0].decode("utf-8", "backslashreplace")
                            return (f"systemdb state '{name}': {column} is not valid UTF-8 "
                                    f"(byte 0x{raw[bad.start]:02x} at offset {bad.start})")
            finally:
                con.close()
        except sqlite3.Error:
            pass
        return f"System database {redact_uri(self.database_uri)}: a stored text is not valid UTF-8"

    def _envelope(self, state_id: str, completed, partial) -> Envelope:
        if type(completed) is str and type(partial) is str and (
            len(completed) + len(partial) > MAX_STATE_BYTES
        ):
            raise BackendError(
                f"systemdb state {state_id!r} is "
                f"{(len(completed) + len(partial)) / 2**20:.1f} MiB of JSON, more than the "
                f"{LIMIT_TEXT} limit per state"
            )
        completed = _load(completed, state_id, "completed_state")
        partial = _load(partial, state_id, "partial_state")
        if type(completed) is dict and type(partial) is dict:
            # the common case, thousands of times per export or migrate: no checks to run
            return Envelope(completed=completed, partial=partial)
        return Envelope.from_halves(completed, partial, where=f"systemdb state {state_id!r}",
                                    warn=self.warn, checked=True)

    # -- reads -------------------------------------------------------------------
    def list_ids(self, pattern: str | None = None) -> list[str]:
        from sqlalchemy import select

        with self._connect(write=False) as conn:
            ids = conn.execute(select(self.table.c.state_id)).scalars().all()
        return sorted(i for i in ids if matches(i, pattern))

    def get(self, state_id: str) -> Envelope | None:
        from sqlalchemy import select

        validate_state_id(state_id)
        t = self.table
        with self._connect(write=False) as conn:
            row = conn.execute(
                select(t.c.completed_state, t.c.partial_state).where(t.c.state_id == state_id)
            ).first()
        return None if row is None else self._envelope(state_id, *row)

    def iter_all(self, pattern: str | None = None):
        """One streamed query, in state ID order (byte order on SQLite and PostgreSQL)."""
        from sqlalchemy import select

        t = self.table
        order = t.c.state_id
        with self._connect(write=False) as conn:
            if conn.dialect.name == "postgresql":
                order = t.c.state_id.collate("C")
            rows = conn.execution_options(stream_results=True, yield_per=1000).execute(
                select(t.c.state_id, t.c.completed_state, t.c.partial_state).order_by(order)
            )
            for state_id, completed, partial in rows:
                if matches(state_id, pattern):
                    yield state_id, self._envelope(state_id, completed, partial)

    def iter_states(self, state_ids):
        from sqlalchemy import select

        wanted = list(state_ids)
        t = self.table
        for start in range(0, len(wanted), BATCH):
            chunk = wanted[start:start + BATCH]
            with self._connect(write=False) as conn:
                rows = conn.execute(
                    select(t.c.state_id, t.c.completed_state, t.c.partial_state)
                    .where(self._in(conn, chunk))
                ).all()
            found = {r[0]: self._envelope(*r) for r in rows}
            for state_id in chunk:
                yield state_id, found.get(state_id)

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def transaction(self, state_id: str):
        validate_state_id(state_id)
        with self._connect(write=True) as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy import text

                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": state_id})
            yield _DbSlot(self, conn, state_id)

    def check_writable(self) -> None:
        """One scratch row inserted and rolled back: the database must take a write (a
        read-only file, a role without INSERT fail here), and nothing stays, even if the
        process dies meanwhile."""
        import os

        scratch = f"state-ext-write-check:{os.getpid()}"
        try:
            with self._connect(write=True) as conn:
                savepoint = conn.begin_nested()
                self._insert(conn, [_row(scratch, Envelope(), datetime.now())])
                savepoint.rollback()
        except BackendError as exc:
            raise BackendError(
                f"{self.label} does not accept writes, so nothing was written: {exc.message}"
            ) from None

    def put_many(self, states: dict[str, Envelope]) -> int:
        for state_id in states:
            validate_state_id(state_id)
        t = self.table
        items = list(states.items())
        now = datetime.now()
        with self._connect(write=True) as conn:
            for start in range(0, len(items), BATCH):
                chunk = items[start:start + BATCH]
                conn.execute(t.delete().where(self._in(conn, [i for i, _ in chunk])))
                self._insert(conn, [_row(i, e, now) for i, e in chunk])
        return len(items)

    def delete_many(self, state_ids) -> int:
        t = self.table
        ids = list(state_ids)
        count = 0
        with self._connect(write=True) as conn:
            for start in range(0, len(ids), BATCH):
                chunk = ids[start:start + BATCH]
                count += conn.execute(t.delete().where(self._in(conn, chunk))).rowcount
        return count

    # -- checked bulk writes: one transaction per chunk --------------------------
    def _locked_chunk(self, conn, ids: list[str]) -> dict[str, str | None]:
        """Lock ``ids`` for this transaction and return the digest each holds now."""
        from sqlalchemy import select, text

        t = self.table
        if conn.dialect.name == "postgresql":
            # sorted: two migrations locking overlapping chunks cannot deadlock
            conn.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(i)) FROM unnest(CAST(:ids AS text[])) "
                     "AS i ORDER BY i"),
                {"ids": sorted(ids)},
            )
        query = select(t.c.state_id, t.c.completed_state, t.c.partial_state).where(
            self._in(conn, ids)
        )
        if conn.dialect.name != "sqlite":
            query = query.with_for_update()
        current = {row[0]: digest(self._envelope(*row)) for row in conn.execute(query)}
        return {state_id: current.get(state_id) for state_id in ids}

    def _in(self, conn, ids: list[str]):
        """``state_id IN (...)``; on PostgreSQL ``= ANY(array)``: one parameter, so the
        statement text is the same for every chunk and is parsed once."""
        column = self.table.c.state_id
        if conn.dialect.name == "postgresql":
            from sqlalchemy import String, any_, bindparam
            from sqlalchemy.dialects.postgresql import ARRAY

            return column == any_(bindparam("ids", list(ids), type_=ARRAY(String)))
        return column.in_(ids)

    def _insert(self, conn, rows: list[dict]) -> None:
        """Many rows in this transaction; on PostgreSQL with psycopg, one ``COPY`` on the
        connection SQLAlchemy holds (about eight times faster than row-by-row inserts)."""
        if not rows:
            return
        if conn.dialect.name == "postgresql" and conn.dialect.driver == "psycopg":
            import psycopg

            columns = ("state_id", "completed_state", "partial_state", "updated_at")
            cursor = conn.connection.driver_connection.cursor()
            try:
                with cursor.copy(f"COPY state ({', '.join(columns)}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row([row[c] for c in columns])
            except psycopg.Error as exc:  # the driver's own: SQLAlchemy does not wrap it here
                raise self._failure(exc) from None
            return
        conn.execute(self.table.insert(), rows)

    def put_many_checked(self, states, expected, concurrency=8):
        t = self.table
        failures: dict[str, str] = {}
        items = list(states.items())
        for start in range(0, len(items), BATCH):
            chunk = items[start:start + BATCH]
            now = datetime.now()
            with self._connect(write=True) as conn:
                current = self._locked_chunk(conn, [i for i, _ in chunk])
                ready = []
                for state_id, envelope in chunk:
                    if current[state_id] != expected[state_id]:
                        failures[state_id] = "changed by another process during the operation"
                    else:
                        ready.append((state_id, envelope))
                replaced = [i for i, _ in ready if current[i] is not None]
                if replaced:
                    conn.execute(t.delete().where(self._in(conn, replaced)))
                self._insert(conn, [_row(i, e, now) for i, e in ready])
        return failures

    def delete_many_checked(self, expected, concurrency=8):
        t = self.table
        failures: dict[str, str] = {}
        ids = list(expected)
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            with self._connect(write=True) as conn:
                current = self._locked_chunk(conn, chunk)
                ready = [i for i in chunk if current[i] == expected[i]]
                failures.update({
                    i: "changed by another process during the operation"
                    for i in chunk if current[i] != expected[i]
                })
                if ready:
                    conn.execute(t.delete().where(self._in(conn, ready)))
        return failures

    def close(self) -> None:
        engine = self.__dict__.get("engine")
        if engine is not None:
            engine.dispose()


def _load(value, state_id: str, column: str):
    """A stored column as JSON, under state-ext's JSON rules (``strict_json``).

    Text Meltano wrote (``json.dumps``, ASCII, nothing around it) is decoded by one call
    of the C scanner once O(1)/``str.count`` bounds clear its depth and size
    (``loads_stored``); anything else is decoded and checked in full. A value the driver
    already decoded is checked as a value. ``None`` passes through.
    """
    if value is None:
        return None
    try:
        if type(value) is str:
            return loads_stored(value, max_depth=MAX_DEPTH)
        if isinstance(value, dict):
            check_value(value, max_depth=MAX_DEPTH)
            return value
        return loads_stored(as_text(value), max_depth=MAX_DEPTH)
    except JsonRefused as exc:
        if exc.syntax:
            raise BackendError(
                f"systemdb state {state_id!r}: {column} is not valid JSON ({exc.message})"
            ) from None
        raise BackendError(f"systemdb state {state_id!r}: {column} {exc.message}") from None


def _row(state_id: str, envelope: Envelope, now: datetime) -> dict:
    return {
        "state_id": state_id,
        "completed_state": json.dumps(envelope.completed),
        "partial_state": json.dumps(envelope.partial),
        "updated_at": now,
    }


class _DbSlot(StateSlot):
    def __init__(self, backend: SystemDbBackend, conn, state_id: str):
        self.backend, self.conn, self.state_id = backend, conn, state_id
        self.exists = False

    def read(self) -> Envelope | None:
        from sqlalchemy import select

        t = self.backend.table
        query = select(t.c.completed_state, t.c.partial_state).where(t.c.state_id == self.state_id)
        if self.conn.dialect.name != "sqlite":
            query = query.with_for_update()
        row = self.conn.execute(query).first()
        self.exists = row is not None
        return None if row is None else self.backend._envelope(self.state_id, *row)

    def write(self, envelope: Envelope) -> None:
        t = self.backend.table
        row = _row(self.state_id, envelope, datetime.now())
        updated = self.conn.execute(
            t.update().where(t.c.state_id == self.state_id).values(
                completed_state=row["completed_state"], partial_state=row["partial_state"],
                updated_at=row["updated_at"],
            )
        ).rowcount
        if not updated:
            self.conn.execute(t.insert().values(**row))
        self.exists = True

    def delete(self) -> bool:
        t = self.backend.table
        deleted = self.conn.execute(t.delete().where(t.c.state_id == self.state_id)).rowcount
        return bool(deleted)
