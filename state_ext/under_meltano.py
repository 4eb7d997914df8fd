"""What changes when Meltano runs state-ext, and how state-ext tells.

``meltano invoke`` and ``meltano run`` start ``state_extension`` with the plugin's
identity in the environment (``MELTANO_UTILITY_NAME``), and then treat its streams in two
ways (Meltano 4.4.1, ``cli/invoke.py`` and ``core/block/plugin_command.py``):

* stderr is always a pipe that Meltano reads line by line and re-logs at *info* level:
  a log line must carry its own level to read as an error, and a prompt must end its
  line to be shown before it is answered;
* stdout is passed through untouched by ``meltano invoke`` (it is Meltano's own stdout:
  a terminal, a file, the user's pipe), but is a pipe that Meltano reads by
  ``meltano run``, with a 64 KiB limit per line: a longer line makes Meltano stop
  reading (``Separator is not found, and chunk exceed the limit``), and a writer with
  more output then blocks forever on the full pipe.

So stdout is "read by Meltano" when it is a pipe and it is not the pipe Meltano itself
writes to. On Linux that is decided exactly by comparing our fd 1 with the parent's
(``/proc/<ppid>/fd/1``); where that cannot be read, any pipe counts, which only costs a
longer layout of the same JSON.
"""

from __future__ import annotations

import os
import stat
import sys
from functools import cache

# asyncio.StreamReader's default limit, which Meltano keeps: a line and its newline.
MELTANO_LINE_LIMIT = 64 * 1024


def run_by_meltano(environ=None) -> bool:
    """True under ``meltano invoke``/``meltano run`` (any plugin type that runs us)."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("MELTANO_UTILITY_NAME"))


@cache
def stdout_read_by_meltano() -> bool:
    """True when each stdout line must stay under ``MELTANO_LINE_LIMIT``."""
    if not run_by_meltano():
        return False
    try:
        ours = os.fstat(sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    if not (stat.S_ISFIFO(ours.st_mode) or stat.S_ISSOCK(ours.st_mode)):
        return False  # a terminal or a file: no reader with a line limit
    try:
        parents = os.stat(f"/proc/{os.getppid()}/fd/1")
    except OSError:
        return True
    return (parents.st_dev, parents.st_ino) != (ours.st_dev, ours.st_ino)


def setting_origin(settings, value) -> str:
    """Where a setting that Meltano passed in the environment really came from.

    ``meltano invoke`` exports every project setting (defaults included) as an
    environment variable, so "env" would be said of all of them. The value is traced
    back instead: to ``meltano.yml`` or ``.env`` when it equals what they hold, to the
    default when it is the default, else to Meltano itself (the shell environment, an
    environment's config or Meltano's settings database: state-ext cannot tell which).
    ``settings`` is a ``ProjectSettings``, ``value`` one of its ``SettingValue``s.
    """
    if value.source != "env" or not run_by_meltano(settings.environ):
        return value.source
    text = str(value.value)
    candidates = (
        ("meltano.yml", settings.meltano_yml_settings.get(value.name)),
        (".env", settings.dotenv.get(value.env_var)),
    )
    for source, raw in candidates:
        if raw is not None and str(settings.expand(raw)) == text:
            return source
    default = settings.default(value.name)
    if default is not None and str(default) == text:
        return "default"
    return "meltano"
