"""``msm://<host>/<database>``: Meltano's custom state backend example over a SQLite file.

The database is the file ``<database>.sqlite3`` in ``$MSM_DATA_DIR`` (default: the current
directory). Username and password come from the settings ``state_backend.msm.username`` /
``password`` or from the URI (``msm://user:pass@localhost/db``); the first user to open a
database owns it, later connections must present the same credentials.

Test knob: ``MSM_FREEZE_ON=get,set,...`` (method names) makes those calls hang, as a store
that stopped answering would (they sleep until the file ``$MSM_FREEZE_ON_RELEASE`` exists,
or forever).
"""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

from meltano.core.error import MeltanoError
from meltano.core.setting_definition import SettingDefinition, SettingKind
from meltano.core.state_store.base import MeltanoState, StateStoreManager

# `name=` (not the docs' `key=`): Meltano routes settings to kwargs by their full name.
USERNAME = SettingDefinition(
    name="state_backend.msm.username",
    label="Username",
    kind=SettingKind.STRING,
    description="The username to use when connecting to the custom state manager",
)

PASSWORD = SettingDefinition(
    name="state_backend.msm.password",
    label="Password",
    kind=SettingKind.STRING,
    sensitive=True,
    description="The password to use when connecting to the custom state manager",
)


class MyStateManagerError(MeltanoError):
    pass


def _maybe_freeze(method: str) -> None:
    if method not in os.environ.get("MSM_FREEZE_ON", "").split(","):
        return
    release = os.environ.get("MSM_FREEZE_ON_RELEASE")
    while not (release and os.path.exists(release)):
        time.sleep(0.1)


class MyStateManager(StateStoreManager):
    """My Custom State Manager"""

    label: str = "My Custom State Manager"

    def __init__(
        self,
        uri: str,
        *,
        username: str | None = None,
        password: str | None = None,
        lock_timeout_seconds: int = 10,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.uri = uri
        parsed = urlparse(uri)
        self.host = parsed.hostname
        self.database = parsed.path.lstrip("/")
        if not self.database:
            raise MyStateManagerError("Database is required: msm://<host>/<database>")
        self.username = username or (unquote(parsed.username) if parsed.username else None)
        if not self.username:
            raise MyStateManagerError("Username is required")
        self.password = password or (unquote(parsed.password) if parsed.password else None)
        if not self.password:
            raise MyStateManagerError("Password is required")
        self.lock_timeout_seconds = float(lock_timeout_seconds or 10)
        directory = Path(os.environ.get("MSM_DATA_DIR", "."))
        self.path = directory / f"{self.database}.sqlite3"
        self.conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.conn.executescript(
            "CREATE TABLE IF NOT EXISTS users (username TEXT PRIMARY KEY, password TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS states (state_id TEXT PRIMARY KEY, body TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS locks (state_id TEXT PRIMARY KEY, at REAL NOT NULL);"
        )
        self.conn.execute("INSERT OR IGNORE INTO users VALUES (?, ?)",
                          (self.username, self.password))
        row = self.conn.execute("SELECT password FROM users WHERE username = ?",
                                (self.username,)).fetchone()
        if row is None or row[0] != self.password:
            raise MyStateManagerError(f"Authentication failed for user {self.username!r}")

    def close(self) -> None:
        self.conn.close()

    def set(self, state: MeltanoState) -> None:
        _maybe_freeze("set")
        self.conn.execute("INSERT OR REPLACE INTO states VALUES (?, ?)",
                          (state.state_id, state.json()))

    def get(self, state_id: str) -> MeltanoState | None:
        _maybe_freeze("get")
        row = self.conn.execute("SELECT body FROM states WHERE state_id = ?",
                                (state_id,)).fetchone()
        return None if row is None else MeltanoState.from_json(state_id, row[0])

    def delete(self, state_id: str) -> None:
        self.conn.execute("DELETE FROM states WHERE state_id = ?", (state_id,))

    def get_state_ids(self, pattern: str | None = None) -> list[str]:
        _maybe_freeze("get_state_ids")
        if pattern:
            rows = self.conn.execute("SELECT state_id FROM states WHERE state_id GLOB ?",
                                     (pattern,))
        else:
            rows = self.conn.execute("SELECT state_id FROM states")
        return [r[0] for r in rows]

    @contextmanager
    def acquire_lock(self, state_id: str, *, retry_seconds: float = 1):
        _maybe_freeze("acquire_lock")
        while True:
            now = time.time()
            try:
                self.conn.execute("INSERT INTO locks VALUES (?, ?)", (state_id, now))
                break
            except sqlite3.IntegrityError:
                self.conn.execute("DELETE FROM locks WHERE state_id = ? AND at < ?",
                                  (state_id, now - self.lock_timeout_seconds))
                time.sleep(min(float(retry_seconds or 1), 0.2))
        try:
            yield
        finally:
            self.conn.execute("DELETE FROM locks WHERE state_id = ? AND at = ?", (state_id, now))
