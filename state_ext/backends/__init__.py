"""Pick the backend for a URI scheme; import its module (and heavy deps) only then."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable

from state_ext.backends.base import StateBackend, StateSlot
from state_ext.errors import ConfigurationError
from state_ext.redact import redact_uri
from state_ext.settings import BackendSettings

__all__ = ["BUILTIN_BACKENDS", "StateBackend", "StateSlot", "available_schemes", "open_backend"]

# scheme -> "module:Class"; modules are imported lazily so `--help` stays fast.
BUILTIN_BACKENDS = {
    "systemdb": "state_ext.backends.systemdb:SystemDbBackend",
    "file": "state_ext.backends.file:FileBackend",
    "s3": "state_ext.backends.objectstore:ObjectStoreBackend",
    "gs": "state_ext.backends.objectstore:ObjectStoreBackend",
    "azure": "state_ext.backends.objectstore:ObjectStoreBackend",
}
GENERIC_FSSPEC_BACKEND = "state_ext.backends.objectstore:ObjectStoreBackend"


def available_schemes() -> list[str]:
    """Built-in schemes plus the add-ons registered under ``meltano.state_backends``."""
    from state_ext.backends.plugins import plugin_schemes

    return sorted(set(BUILTIN_BACKENDS) | set(plugin_schemes()))


def _fsspec_knows(scheme: str) -> bool:
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:  # pragma: no cover - fsspec is a dependency
        return False
    return scheme in registry or scheme in known_implementations


def _backend_class(target: str):
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


DATABASE_SCHEMES = ("sqlite", "postgresql", "postgres", "mssql", "mysql")


def is_database_url(scheme: str) -> bool:
    """``sqlite:///...``, ``postgresql+psycopg://...``: a system database named directly."""
    return scheme.split("+", 1)[0] in DATABASE_SCHEMES


def open_backend(
    settings: BackendSettings, *, warn: Callable[[str], None] | None = None
) -> StateBackend:
    """Built-in backend, else a ``meltano.state_backends`` add-on, else any fsspec protocol."""
    scheme = settings.scheme
    if is_database_url(scheme):
        settings = dataclasses.replace(settings, database_uri=settings.uri)
        scheme = "systemdb"
    target = BUILTIN_BACKENDS.get(scheme)
    if target is not None:
        return _backend_class(target)(settings, warn=warn)
    from state_ext.backends.plugins import PluginBackend, find_plugin

    factory = find_plugin(scheme)
    if factory is not None:
        return PluginBackend(settings, factory, warn=warn)
    if _fsspec_knows(scheme):
        return _backend_class(GENERIC_FSSPEC_BACKEND)(settings, warn=warn)
    raise ConfigurationError(
        f"No state backend for scheme {scheme!r} in {redact_uri(settings.uri)!r}; "
        f"available: {', '.join(available_schemes())} (and any fsspec protocol)"
    )
