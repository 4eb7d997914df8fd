"""Meltano's ``file://`` layout: which folder a URI names, and the two files of a state.

``<dir>/<state_id>/state.json`` holds the envelope and ``<dir>/<state_id>/lock`` the lock,
with the raw state ID as folder name (IDs with ``/`` nest). Kept apart from the backend so
that its parts (reads and writes, lock files, lock-free creation) and the snapshot
stores, which accept ``file://`` URIs too, share one definition without importing
each other.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from state_ext.errors import ConfigurationError
from state_ext.settings import redact_uri

STATE_FILE = "state.json"
LOCK_FILE = "lock"


def state_dir_from_uri(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        host = parts.netloc.rpartition("@")[2]
        raise ConfigurationError(
            f"Invalid file URI {redact_uri(uri)!r}: the path must be absolute, as in "
            f"file:///path/to/state (here {host!r} would be read as a host)"
        )
    if not parts.path or parts.path == "/":
        raise ConfigurationError(f"Invalid file URI {redact_uri(uri)!r}: it names no directory")
    # `file:///${MELTANO_SYS_DIR_ROOT}/state` expands to four slashes: still one path.
    return Path("/" + parts.path.lstrip("/"))
