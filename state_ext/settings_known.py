"""The settings state-ext knows: their names, defaults, kinds and which are sensitive
(Meltano's ``state_backend.*`` and ``database_uri``), and the environment variable of each.

The clouds' own settings are listed here, not in backends/clouds/: settings sit below the
backends (they must not import them), and this list must be whole before any backend is
imported (``config``, redaction and ``is_sensitive`` run without one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["BY_NAME", "KNOWN_SETTINGS", "SettingDefinition", "is_sensitive", "to_env_var"]


@dataclass(frozen=True)
class SettingDefinition:
    name: str
    default: Any = None
    kind: str = "string"  # string | number
    sensitive: bool = False

    @property
    def env_var(self) -> str:
        return to_env_var(self.name)


KNOWN_SETTINGS = [
    SettingDefinition("state_backend.uri", "systemdb"),
    SettingDefinition("state_backend.lock_timeout_seconds", 10, "number"),
    SettingDefinition("state_backend.lock_retry_seconds", 1, "number"),
    SettingDefinition("state_backend.s3.aws_access_key_id", sensitive=True),
    SettingDefinition("state_backend.s3.aws_secret_access_key", sensitive=True),
    SettingDefinition("state_backend.s3.endpoint_url"),
    SettingDefinition("state_backend.gcs.application_credentials"),
    SettingDefinition("state_backend.gcs.application_credentials_path"),
    SettingDefinition("state_backend.gcs.application_credentials_json", sensitive=True),
    SettingDefinition("state_backend.azure.connection_string", sensitive=True),
    SettingDefinition("state_backend.azure.storage_account_url"),
    SettingDefinition("database_uri"),
]
BY_NAME = {d.name: d for d in KNOWN_SETTINGS}
_SENSITIVE_WORDS = ("password", "secret", "token", "key", "connection_string", "credentials_json")


def to_env_var(name: str, prefix: str = "MELTANO_") -> str:
    """Meltano's ``to_env_var``: non-alphanumerics become ``_``, upper-cased."""
    return prefix + re.sub(r"[^A-Za-z0-9_]", "_", name).upper()


def is_sensitive(name: str) -> bool:
    definition = BY_NAME.get(name)
    if definition is not None:
        return definition.sensitive
    last = name.rsplit(".", 1)[-1].lower()
    return any(word in last for word in _SENSITIVE_WORDS)
