"""``migrate``'s plugin settings, which ``meltano invoke`` passes as STATE_EXT_MIGRATE_<NAME>.

An option given on the command line wins over its setting; a bad value is a usage error
reported under the name it was given with (the variable and the plugin setting), so the
user finds it where they set it.
"""

import os

from state_ext.cli.common import UsageError
from state_ext.transfer_options import OnConflict

MIGRATE_SETTINGS = {
    "to": "STATE_EXT_MIGRATE_TO", "from_uri": "STATE_EXT_MIGRATE_FROM",
    "pattern": "STATE_EXT_MIGRATE_PATTERN", "on_conflict": "STATE_EXT_MIGRATE_ON_CONFLICT",
    "delete_source": "STATE_EXT_MIGRATE_DELETE_SOURCE",
    "concurrency": "STATE_EXT_MIGRATE_CONCURRENCY",
}


def setting(name: str, parse):
    """A migrate plugin setting from the environment, parsed, or None when unset."""
    env_var = MIGRATE_SETTINGS[name]
    value = os.environ.get(env_var, "").strip()
    if not value:
        return None
    try:
        return parse(value)
    except ValueError as exc:
        reason = str(exc) if parse in (boolean, concurrency_setting) else (
            f"one of {', '.join(o.value for o in OnConflict)}" if parse is OnConflict else exc)
        raise UsageError(
            f"Invalid value for {env_var} (plugin setting "
            f"{env_var.removeprefix('STATE_EXT_').lower()}): {value!r}: {reason}") from None


def boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on", "t", "y"):
        return True
    if lowered in ("0", "false", "no", "off", "f", "n"):
        return False
    raise ValueError("expected true or false")


def concurrency_setting(value: str) -> int:
    """Requests in flight, as ``--concurrency`` takes them (1-64)."""
    try:
        number = int(value)
    except ValueError:
        raise ValueError("expected a whole number from 1 to 64") from None
    if not 1 <= number <= 64:
        raise ValueError("expected a whole number from 1 to 64")
    return number
