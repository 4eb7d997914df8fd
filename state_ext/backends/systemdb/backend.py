"""``SystemDbBackend``: one algorithm over Meltano's ``state`` table, whatever the database.

Each write is one transaction that locks what the database can lock (the dialect says
how: SQLite's write lock, PostgreSQL's advisory plus row locks), so a partial merge is
never lost to a concurrent one; checked bulk writes lock, compare and write one chunk
per transaction. Database errors leave here as one line naming the database (URI
redacted): locked, missing schema, undecodable text, or the driver's first line.
"""

from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from functools import cached_property

from state_ext.backends.base import CHANGED, StateBackend, StateSlot, digest
from state_ext.backends.systemdb import engine as engines
from state_ext.backends.systemdb.dialects import CREATE_HINT
from state_ext.backends.systemdb.rows import chunks, envelope, row, table, undecodable
from state_ext.errors import BackendError, ConfigurationError, LockTimeoutError, one_line
from state_ext.model import Envelope
from state_ext.redact import redact_uri
from state_ext.state_ids import matches, validate_state_id


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
        return engines.location(self.database_uri)

    # -- engine ------------------------------------------------------------------
    @cached_property
    def _built(self):
        return engines.build(self.database_uri, self.settings.lock_timeout_seconds)

    @property
    def engine(self):
        """The SQLAlchemy engine (``history`` and ``lock_tools`` read ``runs`` with it)."""
        return self._built[0]

    @property
    def dialect(self):
        return self._built[1]

    @cached_property
    def table(self):
        return table()

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
                    self.dialect.begin(conn, write=write)
                    yield conn
        except DBAPIError as exc:
            raise self._failure(exc) from None
        except SQLAlchemyError as exc:
            message = one_line(exc, limit=None, first_line=True)
            raise BackendError(
                f"System database {redact_uri(self.database_uri)}: {message}") from None

    def _failure(self, exc: BaseException) -> BackendError:
        """A database error (SQLAlchemy's or the driver's own) as one readable line."""
        message = one_line(exc, limit=None, first_line=True)
        where = f"System database {redact_uri(self.database_uri)}"
        if message.startswith("Could not decode to UTF-8"):  # sqlite3, before any lock test:
            return BackendError(  # the message quotes the stored text
                undecodable(engines.sqlite_path(self.database_uri),
                            self.settings.lock_timeout_seconds)
                or f"{where}: a stored text is not valid UTF-8")
        if "locked" in message.lower() or "lock timeout" in message.lower():
            return LockTimeoutError(f"{where} is locked by another process: {message}")
        stalled = self.__dict__.get("_built") and self.dialect.stalled()
        if stalled:
            return BackendError(f"{where}: {stalled}")
        return BackendError(f"{where}: {message}")

    def _envelope(self, state_id: str, completed, partial) -> Envelope:
        return envelope(state_id, completed, partial, self.warn)

    def _in(self, ids: list[str]):
        return self.dialect.id_in(self.table.c.state_id, ids)

    def _select_rows(self):
        from sqlalchemy import select

        t = self.table
        return select(t.c.state_id, t.c.completed_state, t.c.partial_state)

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
            found = conn.execute(
                select(t.c.completed_state, t.c.partial_state).where(t.c.state_id == state_id)
            ).first()
        return None if found is None else self._envelope(state_id, *found)

    def iter_all(self, pattern: str | None = None):
        """One streamed query, in state ID order (byte order on SQLite and PostgreSQL)."""
        with self._connect(write=False) as conn:
            query = self._select_rows().order_by(self.dialect.id_order(self.table.c.state_id))
            rows = conn.execution_options(stream_results=True, yield_per=1000).execute(query)
            for state_id, completed, partial in rows:
                if matches(state_id, pattern):
                    yield state_id, self._envelope(state_id, completed, partial)

    def iter_states(self, state_ids):
        for chunk in chunks(list(state_ids)):
            with self._connect(write=False) as conn:
                rows = conn.execute(self._select_rows().where(self._in(chunk))).all()
            found = {r[0]: self._envelope(*r) for r in rows}
            for state_id in chunk:
                yield state_id, found.get(state_id)

    # -- writes ------------------------------------------------------------------
    @contextmanager
    def transaction(self, state_id: str):
        validate_state_id(state_id)
        with self._connect(write=True) as conn:
            self.dialect.lock_id(conn, state_id)
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
                self._replace(conn, [(scratch, Envelope())], [])
                savepoint.rollback()
        except BackendError as exc:
            raise BackendError(
                f"{self.label} does not accept writes, so nothing was written: {exc.message}"
            ) from None

    def _replace(self, conn, items: list[tuple[str, Envelope]], replaced: list[str]) -> None:
        """Delete the ``replaced`` rows, insert ``items``: in this transaction."""
        if replaced:
            conn.execute(self.table.delete().where(self._in(replaced)))
        if items:
            now = datetime.now()
            self.dialect.insert(conn, self.table, [row(i, e, now) for i, e in items],
                                self._failure)

    def put_many(self, states: dict[str, Envelope]) -> int:
        for state_id in states:
            validate_state_id(state_id)
        items = list(states.items())
        with self._connect(write=True) as conn:
            for chunk in chunks(items):
                self._replace(conn, chunk, [i for i, _ in chunk])
        return len(items)

    def delete_many(self, state_ids) -> int:
        count = 0
        with self._connect(write=True) as conn:
            for chunk in chunks(list(state_ids)):
                count += conn.execute(self.table.delete().where(self._in(chunk))).rowcount
        return count

    # -- checked bulk writes: one transaction per chunk --------------------------
    def _checked(self, expected: dict[str, str | None], write) -> dict[str, str]:
        """Per chunk: lock the IDs, keep those still as ``expected``, ``write(conn, ready,
        current)`` them; the others are failures."""
        failures: dict[str, str] = {}
        for chunk in chunks(list(expected)):
            with self._connect(write=True) as conn:
                self.dialect.lock_ids(conn, chunk)
                query = self.dialect.for_update(self._select_rows().where(self._in(chunk)))
                current = {r[0]: digest(self._envelope(*r)) for r in conn.execute(query)}
                ready = []
                for state_id in chunk:
                    if current.get(state_id) != expected[state_id]:
                        failures[state_id] = CHANGED
                    else:
                        ready.append(state_id)
                write(conn, ready, current)
        return failures

    def put_many_checked(self, states, expected, concurrency=8):
        def write(conn, ready, current):
            self._replace(conn, [(i, states[i]) for i in ready], [i for i in ready if i in current])

        return self._checked({i: expected[i] for i in states}, write)

    def delete_many_checked(self, expected, concurrency=8):
        def write(conn, ready, current):
            if ready:
                conn.execute(self.table.delete().where(self._in(ready)))

        return self._checked(expected, write)

    def close(self) -> None:
        built = self.__dict__.get("_built")
        if built is not None:
            built[0].dispose()


class _DbSlot(StateSlot):
    def __init__(self, backend: SystemDbBackend, conn, state_id: str):
        self.backend, self.conn, self.state_id = backend, conn, state_id

    def read(self) -> Envelope | None:
        from sqlalchemy import select

        t = self.backend.table
        query = select(t.c.completed_state, t.c.partial_state).where(t.c.state_id == self.state_id)
        found = self.conn.execute(self.backend.dialect.for_update(query)).first()
        return None if found is None else self.backend._envelope(self.state_id, *found)

    def write(self, envelope: Envelope) -> None:
        t = self.backend.table
        values = row(self.state_id, envelope, datetime.now())
        updated = self.conn.execute(
            t.update().where(t.c.state_id == self.state_id).values(
                completed_state=values["completed_state"],
                partial_state=values["partial_state"], updated_at=values["updated_at"],
            )
        ).rowcount
        if not updated:
            self.conn.execute(t.insert().values(**values))

    def delete(self) -> bool:
        t = self.backend.table
        deleted = self.conn.execute(t.delete().where(t.c.state_id == self.state_id)).rowcount
        return bool(deleted)
