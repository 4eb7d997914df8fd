"""structlog, configured the EDK way, readable where Meltano re-logs it, without rich.

* Levels: Meltano re-logs every stderr line of a utility at *info*, so under
  ``meltano invoke``/``meltano run`` each line carries its own level (``[error    ]
  ...``), whatever ``LOG_LEVELS`` says. ``MELTANO_LOG_JSON`` lines always have
  ``level``, ``event`` and ``timestamp``.
* SDK loggers (botocore, s3fs, gcsfs, azure, urllib3, SQLAlchemy...) stay at
  ``--sdk-log-level`` (default warning) even when state-ext logs at debug: their debug
  output is thousands of lines of wire traffic, headers included.
* structlog's dev module imports rich (about 85 ms) when it is installed, only to render
  tracebacks prettily; our logs are plain EDK console or JSON lines, so structlog is
  imported while rich is hidden. Configuration is applied on first use, so ``--help``
  never pays for logging at all.
"""

from __future__ import annotations

import sys

from state_ext import APP_NAME

SDK_LOGGERS = (
    "aiobotocore", "aiohttp", "asyncio", "adlfs", "azure", "boto3", "botocore", "fsspec",
    "gcsfs", "google", "psycopg", "s3fs", "s3transfer", "sqlalchemy", "urllib3",
)
_pending: dict = {}


def configure(level: str, timestamps: bool, levels: bool, json_format: bool,
              sdk_level: str = "warning") -> None:
    """Remember the CLI's logging options; applied by the first ``get_logger``."""
    _pending.update(level=level, timestamps=timestamps, levels=levels, json=json_format,
                    sdk_level=sdk_level)


def get_logger(name: str = APP_NAME):
    structlog = _import_structlog()
    if _pending:
        options = dict(_pending)
        _pending.clear()
        _apply(**options)
    return structlog.get_logger(name)


def _apply(level: str, timestamps: bool, levels: bool, json: bool, sdk_level: str) -> None:
    import logging

    from meltano.edk.logging import default_logging_config, parse_log_level

    from state_ext.under_meltano import run_by_meltano

    numeric = parse_log_level(level)
    default_logging_config(
        level=numeric,
        timestamps=timestamps or json,
        levels=levels or json or run_by_meltano(),
        json_format=json,
    )
    quiet = max(numeric, parse_log_level(sdk_level))
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)


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
