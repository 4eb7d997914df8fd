"""``systemdb`` backend: the ``state`` table of Meltano's system database.

We read and write Meltano's table through SQLAlchemy Core and never create or migrate
its schema: that belongs to ``meltano``. An import is a single transaction: all states
or none. The package is split by what changes for which reason:

* ``backend``: the one algorithm (reads, locked writes, checked bulk writes, errors);
* ``dialects``: what differs between SQLite, PostgreSQL and the rest (MSSQL), one object
  each, so the algorithm has no ``if postgresql`` branches;
* ``engine``: the URL, the driver, the engine and the bounds on every wait (connect and
  statement timeouts from the stall window);
* ``rows``: rows as envelopes and back, under the JSON rules, and the chunks they go in.
* ``runs``: the last run of each state ID, for ``check``'s interrupted-partial rule.
"""

from state_ext.backends.systemdb.backend import SystemDbBackend

__all__ = ["SystemDbBackend"]
