"""structlog, configured the EDK way, readable where Meltano re-logs it.

* Levels: Meltano re-logs every stderr line of a utility at *info*, so under
  ``meltano invoke``/``meltano run`` each line carries its own level (``[error    ]
  ...``), whatever ``LOG_LEVELS`` says. ``MELTANO_LOG_JSON`` lines always have
  ``level``, ``event`` and ``timestamp``.
* SDK loggers (botocore, s3fs, gcsfs, azure, urllib3, SQLAlchemy...) stay at
  ``--sdk-log-level`` (default warning) even when state-ext logs at debug: their debug
  output is thousands of lines of wire traffic, headers included.
* Secrets are masked in every line, SDK lines included (``state_ext.redact``).
* structlog is imported without rich (``state_ext.startup``); ``--help`` never pays for
  logging at all.
"""

from __future__ import annotations

from state_ext import APP_NAME

SDK_LOGGERS = (
    "aiobotocore", "aiohttp", "asyncio", "adlfs", "azure", "boto3", "botocore", "fsspec",
    "gcsfs", "google", "psycopg", "s3fs", "s3transfer", "sqlalchemy", "urllib3",
)
_configured: list = []


def configure(level: str, timestamps: bool, levels: bool, json_format: bool,
              sdk_level: str = "warning") -> None:
    """Configure logging for this process (the CLI's callback, before any command runs):
    before an SDK can log, so that its first line already goes through the redaction."""
    import logging
    import os

    from state_ext.startup import import_structlog

    import_structlog()  # first: meltano.edk.logging imports structlog (and rich with it)

    from meltano.edk.logging import default_logging_config, parse_log_level

    from state_ext import redact
    from state_ext.under_meltano import run_by_meltano

    numeric = parse_log_level(level)
    default_logging_config(
        level=numeric,
        timestamps=timestamps or json_format,
        levels=levels or json_format or run_by_meltano(),
        json_format=json_format,
    )
    quiet = max(numeric, parse_log_level(sdk_level))
    for name in SDK_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    redact.remember_environment(os.environ)
    redact.install()
    _configured.append(True)


def get_logger(name: str = APP_NAME):
    from state_ext.startup import import_structlog

    if not _configured:  # used outside the CLI (a test, an embedding program)
        configure("info", False, False, False)
    return import_structlog().get_logger(name)
