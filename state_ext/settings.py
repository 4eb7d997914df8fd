"""Resolve ``state_backend.*`` and ``database_uri`` exactly where Meltano finds them.

Precedence, highest first (Meltano's ``SettingValueStore`` order for project settings):
the process environment (plus Meltano's project variables and the top-level ``env:`` of
``meltano.yml``), the project's ``.env``, the top-level ``state_backend:`` of
``meltano.yml`` (nested or dotted keys), then the defaults. ``$VAR``/``${VAR}`` are
expanded against the same environment, ``.env`` included. Every value remembers where
it came from, so ``config`` can explain it, and sensitive values never leave unredacted.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from state_ext.errors import ConfigurationError, one_line
from state_ext.redact import redact_uri
from state_ext.settings_known import (
    BY_NAME,
    KNOWN_SETTINGS,
    SettingDefinition,
    is_sensitive,
    to_env_var,
)

MELTANO_YML = "meltano.yml"
SCHEME_TO_NAMESPACE = {"gs": "gcs"}
REDACTED = "(redacted)"


_ENV_VAR_PATTERN = re.compile(r"(?P<escape>\\)?\$(?:{(?P<curly>\w+)}|(?P<normal>[A-Z][A-Z0-9_]*))")


def expand_env_vars(value: str, env: dict[str, str]) -> str:
    """Meltano's ``expand_env_vars``: unknown variables become ''; ``\\$X`` stays literal."""

    def replace(match: re.Match) -> str:
        var = match["curly"] or match["normal"]
        if match["escape"]:
            return f"${{{var}}}" if match["curly"] else f"${var}"
        return str(env.get(var, ""))

    return _ENV_VAR_PATTERN.sub(replace, value)


@dataclass(frozen=True)
class SettingValue:
    """One resolved setting and its provenance."""

    name: str
    value: Any
    source: str  # env | .env | meltano.yml | default | --uri | unset
    env_var: str
    sensitive: bool = False

    def display_value(self) -> Any:
        if self.value is None:
            return None
        if self.sensitive:
            return REDACTED
        if isinstance(self.value, str) and "://" in self.value:
            return redact_uri(self.value)
        return self.value


@dataclass
class BackendSettings:
    """Everything a backend needs: its URI, lock settings and its own namespace."""

    uri: str
    lock_timeout_seconds: float
    lock_retry_seconds: float
    options: dict[str, Any] = field(default_factory=dict)
    database_uri: str | None = None

    @property
    def scheme(self) -> str:
        return uri_scheme(self.uri)


def uri_scheme(uri: str) -> str:
    if uri == "systemdb":
        return "systemdb"
    if "://" not in uri:
        raise ConfigurationError(
            f"Invalid state backend URI {redact_uri(uri)!r}: expected 'systemdb' or "
            "'<scheme>://...' (file:///path, s3://bucket/prefix, gs://..., azure://...)"
        )
    scheme = uri.split("://", 1)[0].lower()
    if not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise ConfigurationError(f"Invalid state backend URI {redact_uri(uri)!r}: bad scheme")
    return scheme


def find_project_root(explicit: str | os.PathLike | None, environ: dict[str, str]) -> Path | None:
    """``--project-root`` > ``MELTANO_PROJECT_ROOT`` > nearest ``meltano.yml`` upward."""
    if explicit:
        root = Path(explicit).expanduser().resolve()
        if not (root / MELTANO_YML).is_file():
            raise ConfigurationError(f"No {MELTANO_YML} in project root {root}")
        return root
    if environ.get("MELTANO_PROJECT_ROOT"):
        return Path(environ["MELTANO_PROJECT_ROOT"]).expanduser().resolve()
    try:
        here = Path.cwd().resolve()
    except FileNotFoundError:  # the working directory was deleted
        return None
    for candidate in (here, *here.parents):
        if (candidate / MELTANO_YML).is_file():
            return candidate
    return None


class ProjectSettings:
    """The project's view of Meltano settings, read once per command."""

    def __init__(
        self,
        project_root: str | os.PathLike | None = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.environ = dict(os.environ if environ is None else environ)
        self.root = find_project_root(project_root, self.environ)

    # -- sources ---------------------------------------------------------------
    @cached_property
    def meltano_yml(self) -> dict:
        if self.root is None:
            return {}
        path = self.root / MELTANO_YML
        if not path.is_file():
            return {}
        import yaml

        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        try:
            data = yaml.load(path.read_text(encoding="utf-8"), Loader=loader)
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigurationError(f"Cannot read {path}: {one_line(exc, limit=None)}") from None
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise ConfigurationError(f"Cannot read {path}: the top level is not a mapping")
        return data

    @cached_property
    def meltano_yml_settings(self) -> dict[str, Any]:
        """Top-level settings of meltano.yml flattened to dotted names."""
        flat: dict[str, Any] = {}

        def walk(prefix: str, node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    walk(f"{prefix}.{key}" if prefix else str(key), value)
            else:
                flat[prefix] = node

        for key in ("state_backend", "database_uri"):
            if key in self.meltano_yml:
                walk(key, self.meltano_yml[key])
        for key, value in self.meltano_yml.items():
            if isinstance(key, str) and key.startswith("state_backend."):
                walk(key, value)
        return flat

    @cached_property
    def dotenv(self) -> dict[str, str]:
        if self.root is None:
            return {}
        path = self.root / ".env"
        if not path.is_file():
            return {}
        from dotenv import dotenv_values

        return {k: v for k, v in dotenv_values(path).items() if v is not None}

    @cached_property
    def sys_dir_root(self) -> Path | None:
        if self.environ.get("MELTANO_SYS_DIR_ROOT"):
            return Path(self.environ["MELTANO_SYS_DIR_ROOT"]).expanduser()
        return None if self.root is None else self.root / ".meltano"

    @cached_property
    def env(self) -> dict[str, str]:
        """The 'environment' store: process env, project variables, meltano.yml ``env:``."""
        env = dict(self.environ)
        if self.root is not None:
            env["MELTANO_PROJECT_ROOT"] = str(self.root)
            env["MELTANO_SYS_DIR_ROOT"] = str(self.sys_dir_root)
        yml_env = self.meltano_yml.get("env")
        if isinstance(yml_env, dict):
            env.update({str(k): str(v) for k, v in yml_env.items() if v is not None})
        return env

    @cached_property
    def expansion_env(self) -> dict[str, str]:
        return {**self.dotenv, **self.env}

    # -- resolution ------------------------------------------------------------
    def get(self, name: str) -> SettingValue:
        definition = BY_NAME.get(name) or SettingDefinition(name)
        env_var = definition.env_var
        for source, store, key in (
            ("env", self.env, env_var),
            (".env", self.dotenv, env_var),
            ("meltano.yml", self.meltano_yml_settings, name),
        ):
            if key in store and store[key] is not None:
                value = self.expand(store[key])
                if value is not None:
                    if is_sensitive(name):
                        from state_ext import redact

                        redact.remember(str(value))
                    return SettingValue(name, value, source, env_var, is_sensitive(name))
        default = self.default(name)
        source = "default" if default is not None else "unset"
        return SettingValue(name, default, source, env_var, is_sensitive(name))

    def default(self, name: str) -> Any:
        """The value a setting has when nothing sets it."""
        if name == "database_uri" and self.sys_dir_root is not None:
            return f"sqlite:///{self.sys_dir_root / 'meltano.db'}"
        definition = BY_NAME.get(name)
        return None if definition is None else definition.default

    def expand(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        expanded = expand_env_vars(value, self.expansion_env)
        # Meltano: a value made only of missing variables counts as unset.
        return None if value and not expanded else expanded

    def namespace_names(self, namespace: str) -> list[str]:
        """Every ``state_backend.<namespace>.<key>`` set anywhere or known."""
        prefix = f"state_backend.{namespace}."
        names = {d.name for d in KNOWN_SETTINGS if d.name.startswith(prefix)}
        names |= {n for n in self.meltano_yml_settings if n.startswith(prefix)}
        env_prefix = to_env_var(prefix.rstrip(".")) + "_"
        for store in (self.env, self.dotenv):
            for var in store:
                if var.startswith(env_prefix) and len(var) > len(env_prefix):
                    names.add(prefix + var[len(env_prefix):].lower())
        return sorted(names)

    def number(self, name: str) -> float:
        setting = self.get(name)
        try:
            value = float(setting.value)
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"Setting {name} must be a number, got {setting.value!r} (from {setting.source})"
            ) from None
        if not math.isfinite(value) or value < 0:
            raise ConfigurationError(
                f"Setting {name} must be a finite number >= 0, got {setting.value!r} "
                f"(from {setting.source})"
            )
        return value

    def backend_settings(self, uri: str | None = None) -> BackendSettings:
        """Settings for the configured backend, or for ``uri`` when one is given."""
        # the configured value was expanded once by get(); an explicit --uri is used as given
        uri = uri if uri is not None else self.get("state_backend.uri").value
        if not uri:
            raise ConfigurationError("The state backend URI is empty")
        scheme = uri_scheme(uri)
        namespace = SCHEME_TO_NAMESPACE.get(scheme, scheme)
        options = {}
        for name in self.namespace_names(namespace):
            value = self.get(name).value
            if value is not None:
                options[name.rsplit(".", 1)[-1]] = value
        return BackendSettings(
            uri=uri,
            lock_timeout_seconds=self.number("state_backend.lock_timeout_seconds"),
            lock_retry_seconds=self.number("state_backend.lock_retry_seconds"),
            options=options,
            database_uri=self.get("database_uri").value,
        )

    def describe(self, uri: str | None = None) -> list[SettingValue]:
        """All settings relevant to the backend in use, for the ``config`` command."""
        values = [self.get(n) for n in ("state_backend.uri", "state_backend.lock_timeout_seconds",
                                        "state_backend.lock_retry_seconds", "database_uri")]
        if uri is not None:
            values[0] = SettingValue("state_backend.uri", uri, "--uri", values[0].env_var)
        scheme = uri_scheme(values[0].value or "systemdb")
        namespace = SCHEME_TO_NAMESPACE.get(scheme, scheme)
        values += [self.get(n) for n in self.namespace_names(namespace)]
        return values
