"""Durations and times as users type them on the command line, and as state-ext prints them.

One reader for every option that takes a duration (``check --max-age``, ``snapshots prune
--older-than``) or a time (``restore --before``), so that ``7d`` means the same everywhere
and a mistake reads the same way, naming the option.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from state_ext.errors import InvalidInputError

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, option: str) -> timedelta:
    """``90s``, ``30m``, ``12h``, ``7d``, ``2w``, or sums such as ``1d12h`` (``1.5h`` too)."""
    compact = text.strip().lower()
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise InvalidInputError(
            f"Invalid value for {option}: {text!r} (use a duration such as 36h, 7d, 30m or "
            "1d12h)")
    return timedelta(seconds=sum(float(n) * _SECONDS[u] for n, u in parts))


def parse_time(text: str) -> datetime:
    """An ISO-8601 time (``2026-12-01``, ``2026-12-01T06:15``, ``...Z``); naive means UTC."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidInputError(
            f"Invalid time {text!r}: use ISO 8601, e.g. 2026-12-01T06:15:00Z") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def iso(moment: datetime) -> str:
    """A UTC time as state-ext prints it: ``2026-12-01T06:15:00.000000Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds").replace(
        "+00:00", "Z")
