"""How long state-ext waits for a store that stopped answering: by progress, not by size.

A frozen server (SIGSTOP, a network black hole, a stuck proxy) answers nothing and closes
nothing; a wait bounded by the size of the job (minutes per thousand states) looks like a
hang to whoever runs it. Every backend call is therefore bounded by the *stall window*: the
operation fails when no request has completed for that long, whatever its size.

The window is the setting ``stall_timeout_seconds`` (env ``STATE_EXT_STALL_TIMEOUT_SECONDS``,
default 30 s); this module is the one place that reads it.
"""

from __future__ import annotations

import math
import os

from state_ext.errors import ConfigurationError

STALL_TIMEOUT_ENV = "STATE_EXT_STALL_TIMEOUT_SECONDS"
DEFAULT_STALL_TIMEOUT_SECONDS = 30.0


def stall_timeout_seconds(environ=None) -> float:
    """The stall window in seconds (a positive number; bad values are one clear line)."""
    raw = (os.environ if environ is None else environ).get(STALL_TIMEOUT_ENV, "")
    if not str(raw).strip():
        return DEFAULT_STALL_TIMEOUT_SECONDS
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ConfigurationError(
            f"{STALL_TIMEOUT_ENV} (setting stall_timeout_seconds) must be a positive number "
            f"of seconds, not {raw!r}")
    return value
