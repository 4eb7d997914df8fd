"""Meltano's ``runs`` table, read by ``check`` (the last run of each state ID) and by
``locks`` (the runs still marked RUNNING).

Kept with the system database because it is its SQL; the judgements (an interrupted
partial, a stale run) stay with the commands. A failed read is one line naming the store;
each command keeps the wording it has always printed (``locks``: the first line of the
driver's message, ``check``: the whole message folded into one bounded line).
"""

from __future__ import annotations

from state_ext.backends.systemdb.rows import chunks
from state_ext.errors import BackendError, StateExtError, one_line


def last_runs(backend, state_ids: list[str]) -> list[tuple]:
    """``(state_id, run_id, state, ended_at, payload_flags)`` of the latest ``runs`` row
    of each of ``state_ids`` that has one."""
    from sqlalchemy import bindparam, text

    query = text(
        "SELECT r.job_name, r.run_id, r.state, r.ended_at, r.payload_flags FROM runs r "
        "JOIN (SELECT job_name, MAX(id) AS last FROM runs WHERE job_name IN :ids "
        "GROUP BY job_name) m ON r.id = m.last").bindparams(bindparam("ids", expanding=True))
    return _read(backend, query, [{"ids": chunk} for chunk in chunks(state_ids)],
                 StateExtError, one_line)


def running_runs(backend) -> list[tuple]:
    """``(id, job_name, run_id, started_at, last_heartbeat_at)`` of every run in state
    RUNNING, by state ID then row."""
    from sqlalchemy import text

    query = text("SELECT id, job_name, run_id, started_at, last_heartbeat_at FROM runs "
                 "WHERE state = 'RUNNING' ORDER BY job_name, id")
    return _read(backend, query, [{}], BackendError, _first_line)


def _first_line(exc: BaseException) -> str:
    """The first line of the message as SQLAlchemy gives it (the driver's class included)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


def _read(backend, query, parameters: list[dict], error: type[StateExtError],
          describe) -> list[tuple]:
    from sqlalchemy.exc import SQLAlchemyError

    found = []
    try:
        with backend.engine.connect() as conn:
            for values in parameters:
                found.extend(tuple(row) for row in conn.execute(query, values))
    except SQLAlchemyError as exc:
        raise error(f"{backend.label}: cannot read the runs table: {describe(exc)}") from None
    return found
