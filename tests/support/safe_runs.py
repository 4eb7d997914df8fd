"""What the safe-run tests share: Singer states with bookmarks, three of them to start
from, and a Meltano project's plugins (tap-mini, target-mini and state-ext's commands).

tap-mini and target-mini live in ``support/singer``; the utility is declared with
``executable:`` (this checkout's console script), so nothing is installed.
"""

from __future__ import annotations

from pathlib import Path

from tests.support.cli import STATE_EXTENSION

SINGER = Path(__file__).resolve().parent / "singer"


def singer(**streams) -> dict:
    return {"singer_state": {"bookmarks": {
        name: {"replication_key": "updated_at", "replication_key_value": value}
        for name, value in streams.items()}}}


STATES = {
    "dev:tap-a-to-target-b": {"completed": singer(orders="2024-05-01T00:00:00Z"),
                              "partial": {}},
    "dev:tap-c-to-target-b": {"completed": singer(items=10), "partial": {}},
    "prod:tap-a-to-target-b": {"completed": singer(orders="2024-06-01"), "partial": {}},
}


def plugins() -> dict:
    commands = {
        "snapshot": {"args": "snapshot --label pre-run"},
        "guard": {"args": "guard"},
        "snapshots": {"args": "snapshots"},
        "restore": {"args": "restore"},
        "history": {"args": "history"},
    }
    return {
        "extractors": [{"name": "tap-mini", "namespace": "tap_mini",
                        "executable": str(SINGER / "tap_mini.py"), "capabilities": ["state"]}],
        "loaders": [{"name": "target-mini", "namespace": "target_mini",
                     "executable": str(SINGER / "target_mini.py")}],
        "utilities": [{"name": "state-ext", "namespace": "state_ext",
                       "executable": str(STATE_EXTENSION), "commands": commands,
                       "settings": [{"name": "snapshot_uri"}]}],
    }
