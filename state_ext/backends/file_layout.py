"""Meltano's ``file://`` layout: which folder a URI names.

``<dir>/<state_id>/state.json`` holds the envelope and ``<dir>/<state_id>/lock`` the lock,
with the raw state ID as folder name (IDs with ``/`` nest; the two names are
``base.STATE_FILE`` and ``base.LOCK_FILE``, shared with the object stores). Kept apart from
the backend so that the snapshot stores, which accept ``file://`` URIs too, read a URI the
same way without importing the backend.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from state_ext.errors import ConfigurationError
from state_ext.redact import redact_uri


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
