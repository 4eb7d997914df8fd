"""Files written so that a reader never sees half of one (exports, snapshot folders).

A document is written to a temporary name in its final folder, flushed and fsynced; the
caller then renames it (replacing) or links it (refusing a taken name) into place, and
unlinks the temporary name. The temporary name starts with a dot (and the caller's
prefix), so folder listings that skip hidden files never show it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO


def write_temporary(folder: Path, prefix: str, write: Callable[[BinaryIO], None],
                    suffix: str = "") -> str:
    """Create ``folder`` if missing and write a durable temporary file there with
    ``write(handle)``; returns its path. On any failure nothing is left behind and the
    error (``OSError`` included) is raised as it came."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise
    return temporary
