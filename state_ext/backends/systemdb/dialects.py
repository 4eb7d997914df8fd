"""What differs between the databases Meltano's system database can live in.

Meltano supports SQLite, PostgreSQL and (through SQLAlchemy) MSSQL. The backend's logic is
the same on all of them; only a few statements differ, and each difference is one method
here, so the backend reads as one algorithm and a new database is one more class:

* ``SQLite``: writes take the database's write lock up front (``BEGIN IMMEDIATE``, set up
  by ``prepare``), so row locks and ``FOR UPDATE`` are neither needed nor understood;
* ``PostgreSQL``: a transaction advisory lock on each written ID (Meltano's own writes
  take the row lock, state-ext's the advisory lock too, so a row that does not exist yet
  is locked as well), bounded lock waits, byte order for IDs, one array parameter for
  ``IN`` lists and ``COPY`` for bulk inserts;
* ``MSSQL``: portable SQL, with login and query timeouts in each driver's own words;
* ``Generic`` (anything else SQLAlchemy speaks): portable SQL only.

Nothing here imports SQLAlchemy at module level: ``--help`` must stay light.
"""

from __future__ import annotations

import math

# The one way to get Meltano's schema: state-ext reads and writes it, never creates it.
CREATE_HINT = "run `meltano upgrade database` (or any `meltano state` command) in the project"


class Generic:
    """Portable SQL: ``IN`` lists, ``SELECT ... FOR UPDATE``, plain inserts, no extra locks."""

    def __init__(self, name: str, default_port: int | str = "", extra: str | None = None):
        self.name = name  # SQLAlchemy's backend name
        self.default_port = default_port  # for ``location``: one database, however spelled
        self.extra = extra  # the pip extra of state-ext that installs the driver

    def engine_options(self, url, lock_timeout: float, stall: float):
        """The URL to connect to and ``create_engine`` keyword arguments."""
        return url, {}

    def prepare(self, engine) -> None:
        """Hooks on a new engine (none by default)."""

    def stalled(self) -> str | None:
        """Why a connection was cut for want of an answer, if it was (see ``watchdog``)."""
        return None

    def begin(self, conn, *, write: bool) -> None:
        """First statements of a transaction (none by default)."""

    def lock_id(self, conn, state_id: str) -> None:
        """Lock one state ID for this transaction, row or not (rows lock by FOR UPDATE)."""

    def lock_ids(self, conn, state_ids: list[str]) -> None:
        """Lock many state IDs for this transaction."""

    def for_update(self, query):
        return query.with_for_update()

    def id_order(self, column):
        return column

    def id_in(self, column, ids: list[str]):
        return column.in_(ids)

    def insert(self, conn, table, rows: list[dict], failure) -> None:
        """Insert ``rows``; ``failure(exc)`` turns a driver error into a BackendError."""
        conn.execute(table.insert(), rows)


class SQLite(Generic):
    """The file database: one writer at a time, taken up front; reads never wait for it."""

    def __init__(self) -> None:
        super().__init__("sqlite")

    def engine_options(self, url, lock_timeout: float, stall: float):
        import os
        import sqlite3

        from state_ext.errors import BackendError, ConfigurationError

        path = url.database
        if not path or path == ":memory:":
            raise ConfigurationError("An in-memory SQLite system database holds no state")
        if not os.path.isfile(path):
            raise BackendError(f"System database not found at {path}: {CREATE_HINT}")

        def connect():
            # mode=rw: never let a connection create an empty database file. SQLite has
            # no server to stall: its one wait is for another writer, bounded by `timeout`.
            return sqlite3.connect(
                f"file:{path}?mode=rw", uri=True, timeout=lock_timeout, isolation_level=None,
                check_same_thread=False,
            )

        return url, {"creator": connect}

    def prepare(self, engine) -> None:
        from sqlalchemy import event

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # writes take SQLite's write lock up front; reads never wait for a writer
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")

    def for_update(self, query):
        return query  # BEGIN IMMEDIATE already holds the whole database


class PostgreSQL(Generic):
    """A server: every wait on it is bounded, locks are advisory plus row locks."""

    def __init__(self) -> None:
        super().__init__("postgresql", 5432, "postgres")

    def engine_options(self, url, lock_timeout: float, stall: float):
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")
        # Row and advisory lock waits of a write end after lock_timeout_seconds (reported
        # as locked); its statements may take that long plus the stall window, so a lock
        # wait is reported as one, not as a stall.
        self.write_setup = (
            f"SELECT set_config('lock_timeout', '{_ms(lock_timeout)}', true), "
            f"set_config('statement_timeout', '{_ms(lock_timeout) + _ms(stall)}', true)")
        # A server that stopped answering must end in one line, not hang. Connecting is
        # bounded by the stall window; so is every statement on a live server (the
        # server's statement_timeout); a host or network that died mid-statement is found
        # by TCP (unacknowledged data, keepalive probes) within about twice the window.
        self.session_setup = f"SET statement_timeout = {_ms(stall)}"
        from state_ext.backends.systemdb.watchdog import Watchdog

        self.watchdog = Watchdog(after=lock_timeout + 2 * stall)
        seconds = max(1, math.ceil(stall))
        args: dict = {"connect_timeout": seconds}
        if url.get_driver_name() in ("psycopg", "psycopg2"):  # libpq's own options
            args.update(tcp_user_timeout=_ms(stall), keepalives=1, keepalives_idle=seconds,
                        keepalives_interval=max(1, math.ceil(stall / 3)), keepalives_count=3)
        return url, {"connect_args": args}

    def prepare(self, engine) -> None:
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record):
            # a SET, not the startup packet's `options`, which poolers such as PgBouncer
            # refuse; committed so that it outlives the connection's first transaction
            cursor = dbapi_connection.cursor()
            cursor.execute(self.session_setup)
            cursor.close()
            dbapi_connection.commit()

        self.watchdog.attach(engine)

    def stalled(self) -> str | None:
        if not self.watchdog.fired:
            return None
        return (f"the server stopped answering (nothing for {self.watchdog.after:g} s: "
                "the lock timeout plus twice stall_timeout_seconds)")

    def begin(self, conn, *, write: bool) -> None:
        if write:
            conn.exec_driver_sql(self.write_setup)

    def lock_id(self, conn, state_id: str) -> None:
        from sqlalchemy import text

        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:id))"), {"id": state_id})

    def lock_ids(self, conn, state_ids: list[str]) -> None:
        from sqlalchemy import text

        # sorted: two migrations locking overlapping chunks cannot deadlock
        conn.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(i)) FROM unnest(CAST(:ids AS text[])) "
                 "AS i ORDER BY i"),
            {"ids": sorted(state_ids)},
        )

    def id_order(self, column):
        return column.collate("C")  # byte order, as on SQLite and in every other backend

    def id_in(self, column, ids: list[str]):
        """``= ANY(array)``: one parameter, so the statement text is the same for every
        chunk and is parsed once."""
        from sqlalchemy import String, any_, bindparam
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == any_(bindparam("ids", list(ids), type_=ARRAY(String)))

    def insert(self, conn, table, rows: list[dict], failure) -> None:
        """With psycopg, one ``COPY`` on the connection SQLAlchemy holds (about eight
        times faster than row-by-row inserts)."""
        if conn.dialect.driver != "psycopg":
            return super().insert(conn, table, rows, failure)
        import psycopg

        columns = ("state_id", "completed_state", "partial_state", "updated_at")
        cursor = conn.connection.driver_connection.cursor()
        try:
            with cursor.copy(f"COPY state ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
        except psycopg.Error as exc:  # the driver's own: SQLAlchemy does not wrap it here
            raise failure(exc) from None


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class MSSQL(Generic):
    """SQL Server: portable SQL, plus login and query timeouts from the stall window (a
    frozen server must end a command in one line here too), which each driver names its
    own way: pymssql's ``login_timeout``/``timeout`` connect arguments, pyodbc's ``timeout``
    (login) and its connections' ``timeout`` attribute (queries)."""

    def __init__(self):
        super().__init__("mssql", 1433, "mssql")
        self.query_timeout = 0

    def engine_options(self, url, lock_timeout: float, stall: float):
        login = max(1, math.ceil(stall))
        self.query_timeout = max(1, math.ceil(lock_timeout + stall))
        driver = url.get_driver_name()
        if driver == "pymssql":
            return url, {"connect_args": {"login_timeout": login,
                                          "timeout": self.query_timeout}}
        if driver == "pyodbc":
            return url, {"connect_args": {"timeout": login}}
        return url, {}

    def prepare(self, engine) -> None:
        if engine.dialect.driver != "pyodbc":
            return
        from sqlalchemy import event

        @event.listens_for(engine, "connect")
        def query_timeout(dbapi_connection, _record):
            dbapi_connection.timeout = self.query_timeout


def dialect_for(backend_name: str) -> Generic:
    """The dialect object for SQLAlchemy's backend name (``url.get_backend_name()``)."""
    if backend_name == "sqlite":
        return SQLite()
    if backend_name == "postgresql":
        return PostgreSQL()
    if backend_name == "mssql":
        return MSSQL()
    return Generic(backend_name)

