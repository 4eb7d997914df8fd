"""structlog, configured the EDK way, readable where Meltano re-logs it.

* Levels: Meltano re-logs every stderr line of a utility at *info*, so under
  ``meltano invoke``/``meltano run`` each line carries its own level (``[error    ]
  ...``), whatever ``LOG_LEVELS`` says. ``MELTANO_LOG_JSON`` lines always have
  ``level``, ``event`` and ``timestamp``.
* SDK loggers (botocore, s3fs, gcsfs, azure, urllib3, SQLAlchemy...) stay at
  ``--sdk-log-level`` (default warning) even when state-ext logs at debug: their debug
  output is thousands of lines of wire traffic, headers included.
* structlog is imported without rich (``state_ext.startup``), and configured on first
  use, so ``--help`` never pays for logging at all.
"""

from __future__ import annotations

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
    from state_ext.startup import import_structlog

    structlog = import_structlog()
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
