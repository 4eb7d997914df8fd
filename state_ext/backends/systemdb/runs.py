"""Meltano's ``runs`` table: the last run of each state ID.

Read only by ``check`` (``health``), to tell whether a partial half was left by a run
that ended FAIL or DEAD. Kept with the system database because it is its SQL; the
judgement stays with the check.
"""

from __future__ import annotations

from state_ext.backends.systemdb.rows import chunks
from state_ext.errors import StateExtError, one_line


def last_runs(backend, state_ids: list[str]) -> list[tuple]:
    """``(state_id, run_id, state, ended_at, payload_flags)`` of the latest ``runs`` row
    of each of ``state_ids`` that has one; a failed read is one line naming the store."""
    from sqlalchemy import bindparam, text
    from sqlalchemy.exc import SQLAlchemyError

    query = text(
        "SELECT r.job_name, r.run_id, r.state, r.ended_at, r.payload_flags FROM runs r "
        "JOIN (SELECT job_name, MAX(id) AS last FROM runs WHERE job_name IN :ids "
        "GROUP BY job_name) m ON r.id = m.last").bindparams(bindparam("ids", expanding=True))
    found = []
    try:
        with backend.engine.connect() as conn:
            for chunk in chunks(state_ids):
                found.extend(tuple(row) for row in conn.execute(query, {"ids": chunk}))
    except SQLAlchemyError as exc:
        raise StateExtError(f"{backend.label}: cannot read the runs table: "
                            f"{one_line(exc)}") from None
    return found
