"""The system database's dialects in process: every server-backed dialect bounds its waits
by the stall window (``STATE_EXT_STALL_TIMEOUT_SECONDS``). PostgreSQL is exercised against
a real, frozen server in test_systemdb_stall.py; no SQL Server runs here, so for MSSQL
this checks what each of its drivers is given, in that driver's own words.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from state_ext.backends.systemdb.dialects import MSSQL, Generic, dialect_for


@pytest.mark.parametrize(("url", "expected"), [
    ("mssql+pymssql://u:p@db.example/meltano", {"login_timeout": 30, "timeout": 40}),
    ("mssql+pyodbc://u:p@dsn", {"timeout": 30}),
])
def test_mssql_drivers_get_login_and_query_timeouts(url, expected):
    dialect = dialect_for("mssql")
    assert isinstance(dialect, MSSQL) and dialect.extra == "mssql"
    _, options = dialect.engine_options(make_url(url), 10, 30)
    assert options["connect_args"] == expected
    assert dialect.query_timeout == 40  # pyodbc: set on each connection (prepare)


def test_fractional_windows_round_up_and_unknown_databases_stay_portable():
    _, options = dialect_for("mssql").engine_options(
        make_url("mssql+pymssql://u:p@h/db"), 0.5, 0.2)
    assert options["connect_args"] == {"login_timeout": 1, "timeout": 1}
    other = dialect_for("oracle")
    assert type(other) is Generic and other.engine_options(make_url("oracle://h"), 1, 1)[1] == {}
