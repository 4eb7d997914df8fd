"""structlog, configured the EDK way, without paying for rich.

structlog's dev module imports rich (about 85 ms) when it is installed, only to render
tracebacks prettily; our logs are plain EDK console or JSON lines, so we import structlog
while rich is hidden. Configuration is applied on first use, so ``--help`` never pays for
logging at all.
"""

from __future__ import annotations

import sys

from state_ext import APP_NAME

_pending: dict = {}


def configure(level: str, timestamps: bool, levels: bool, json_format: bool) -> None:
    """Remember the CLI's logging options; applied by the first ``get_logger``."""
    _pending.update(level=level, timestamps=timestamps, levels=levels, json=json_format)


def get_logger(name: str = APP_NAME):
    structlog = _import_structlog()
    if _pending:
        from meltano.edk.logging import default_logging_config, parse_log_level

        options = dict(_pending)
        _pending.clear()
        default_logging_config(
            level=parse_log_level(options["level"]),
            timestamps=options["timestamps"],
            levels=options["levels"],
            json_format=options["json"],
        )
    return structlog.get_logger(name)


def _import_structlog():
    if "structlog" in sys.modules:
        return sys.modules["structlog"]
    hidden = "rich" not in sys.modules
    if hidden:
        sys.modules["rich"] = None  # makes `import rich` fail inside structlog.dev
    try:
        import structlog
    finally:
        if hidden:
            del sys.modules["rich"]
    return structlog
