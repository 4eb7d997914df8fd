"""Pick the backend for a URI scheme; import its module (and heavy deps) only then."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from state_ext.backends.base import StateBackend, StateSlot
from state_ext.errors import ConfigurationError
from state_ext.settings import BackendSettings, redact_uri

__all__ = ["BUILTIN_BACKENDS", "StateBackend", "StateSlot", "available_schemes", "open_backend"]

# scheme -> "module:Class"; modules are imported lazily so `--help` stays fast.
BUILTIN_BACKENDS = {
    "systemdb": "state_ext.backends.systemdb:SystemDbBackend",
    "file": "state_ext.backends.file:FileBackend",
}


def available_schemes() -> list[str]:
    return sorted(BUILTIN_BACKENDS)


def open_backend(
    settings: BackendSettings, *, warn: Callable[[str], None] | None = None
) -> StateBackend:
    scheme = settings.scheme
    target = BUILTIN_BACKENDS.get(scheme)
    if target is None:
        raise ConfigurationError(
            f"No state backend for scheme {scheme!r} in {redact_uri(settings.uri)!r}; "
            f"available: {', '.join(available_schemes())}"
        )
    module_name, class_name = target.split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    return backend_class(settings, warn=warn)
