"""A stand-in for the parts of ``meltano.core`` that state-backend add-ons import.

Add-ons registered under ``meltano.state_backends`` subclass Meltano's ``StateStoreManager``
and build ``MeltanoState`` objects, so they import ``meltano.core.state_store.base`` (and
often ``meltano.core.error`` and ``meltano.core.setting_definition``). When Meltano itself is
installed next to state-ext, the real modules are used. Otherwise ``install()`` registers
these small equivalents (same names, same behaviour for what add-ons use) so the add-on
loads without pulling in Meltano and its dependencies.
"""

from __future__ import annotations

import copy
import enum
import json
import sys
import types
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


def merge(src: dict, dest: dict) -> dict:
    """Meltano's ``meltano.core.utils.merge``: deep-merge ``src`` into ``dest`` (mutates)."""
    for key, value in src.items():
        if isinstance(value, dict):
            node = dest.setdefault(key, {})
            merge(value, node)
        else:
            dest[key] = value
    return dest


@dataclass
class MeltanoState:
    state_id: str
    partial_state: dict | None = None
    completed_state: dict | None = None

    @classmethod
    def from_json(cls, state_id: str, json_str: str | None) -> MeltanoState:
        data = json.loads(json_str) if json_str else {}
        return cls(state_id=state_id, completed_state=data.get("completed", {}),
                   partial_state=data.get("partial", {}))

    @classmethod
    def from_file(cls, state_id: str, file_obj) -> MeltanoState:
        return cls.from_json(state_id, file_obj.read())

    def to_dict(self) -> dict:
        return {"completed": self.completed_state, "partial": self.partial_state}

    def json(self) -> str:
        return json.dumps(self.to_dict())

    def json_merged(self) -> str:
        return json.dumps(merge(self.partial_state, self.completed_state))

    def merge_partial(self, state: MeltanoState) -> None:
        self.partial_state = merge(state.partial_state, copy.deepcopy(self.partial_state))

    def is_complete(self) -> bool:
        return bool(self.completed_state)


class StateStoreManager(ABC):
    label: str = "Abstract State Store Manager"

    def __init__(self, **kwargs: Any) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        pass

    @abstractmethod
    def set(self, state: MeltanoState) -> None: ...

    @abstractmethod
    def get(self, state_id: str) -> MeltanoState | None: ...

    @abstractmethod
    def delete(self, state_id: str) -> None: ...

    @abstractmethod
    def get_state_ids(self, pattern: str | None = None) -> Iterable[str]: ...

    @abstractmethod
    @contextmanager
    def acquire_lock(self, state_id: str, *, retry_seconds: float) -> Iterator[None]: ...

    def update(self, state: MeltanoState) -> None:
        with self.acquire_lock(state.state_id, retry_seconds=1):
            current = self.get(state.state_id)
            if not state.is_complete() and current:
                current.merge_partial(state)
                self.set(current)
            else:
                self.set(state)

    def clear(self, state_id: str) -> None:
        with self.acquire_lock(state_id, retry_seconds=1):
            self.delete(state_id)

    def get_all(self, pattern: str | None = None) -> Iterable[MeltanoState]:
        for state_id in self.get_state_ids(pattern):
            state = self.get(state_id)
            if state is not None:
                yield state

    def set_all(self, states: Iterable[MeltanoState]) -> int:
        count = 0
        for state in states:
            self.set(state)
            count += 1
        return count

    def clear_all(self) -> int:
        count = 0
        for state_id in list(self.get_state_ids("*")):
            self.clear(state_id)
            count += 1
        return count

    def migrate(self) -> None:
        pass


class MeltanoError(Exception):
    def __init__(self, reason: str = "", instruction: str | None = None, *args: Any) -> None:
        self.reason, self.instruction = reason, instruction
        super().__init__(reason, instruction, *args)

    def __str__(self) -> str:
        return f"{self.reason}. {self.instruction}." if self.instruction else str(self.reason)


class UnsupportedStateBackendURIError(Exception): ...


class MissingStateBackendSettingsError(Exception): ...


class StateIDLockedError(Exception): ...


class SettingKind(str, enum.Enum):
    STRING = "string"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    DECIMAL = "decimal"
    DATE_ISO8601 = "date_iso8601"
    EMAIL = "email"
    PASSWORD = "password"
    OAUTH = "oauth"
    OPTIONS = "options"
    FILE = "file"
    ARRAY = "array"
    OBJECT = "object"
    HIDDEN = "hidden"


@dataclass
class SettingDefinition:
    name: str | None = None
    key: str | None = None
    kind: SettingKind | None = None
    label: str | None = None
    description: str | None = None
    sensitive: bool = False
    value: Any = None
    env: str | None = None
    extras: dict = field(default_factory=dict)

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        self.name = name or kwargs.get("key")
        for attr in ("key", "kind", "label", "description", "value", "env"):
            setattr(self, attr, kwargs.pop(attr, None))
        self.sensitive = bool(kwargs.pop("sensitive", False))
        self.extras = kwargs


def real_meltano_available() -> bool:
    try:
        import meltano.core.state_store.base  # noqa: F401
    except ImportError:
        return False
    return True


def install() -> None:
    """Register the stand-in modules unless the real ``meltano.core`` is importable."""
    if "meltano.core.state_store.base" in sys.modules or real_meltano_available():
        return
    this = sys.modules[__name__]
    modules = {
        "meltano.core": {},
        "meltano.core.state_store": {"MeltanoState": MeltanoState,
                                     "StateStoreManager": StateStoreManager},
        "meltano.core.state_store.base": {
            "MeltanoState": MeltanoState, "StateStoreManager": StateStoreManager,
            "UnsupportedStateBackendURIError": UnsupportedStateBackendURIError,
            "MissingStateBackendSettingsError": MissingStateBackendSettingsError,
            "StateIDLockedError": StateIDLockedError,
        },
        "meltano.core.error": {"MeltanoError": MeltanoError},
        "meltano.core.setting_definition": {"SettingDefinition": SettingDefinition,
                                            "SettingKind": SettingKind},
        "meltano.core.utils": {"merge": merge},
    }
    for name, attrs in modules.items():
        module = types.ModuleType(name, f"state-ext stand-in for {name} ({this.__name__})")
        module.__dict__.update(attrs)
        if name in ("meltano.core", "meltano.core.state_store"):
            module.__path__ = []  # a package, so submodules resolve through sys.modules
        sys.modules[name] = module
    try:
        import meltano
    except ImportError:  # pragma: no cover - meltano.edk is a dependency
        meltano = types.ModuleType("meltano")
        meltano.__path__ = []
        sys.modules["meltano"] = meltano
    meltano.core = sys.modules["meltano.core"]
    sys.modules["meltano.core"].state_store = sys.modules["meltano.core.state_store"]
    sys.modules["meltano.core.state_store"].base = sys.modules["meltano.core.state_store.base"]
    for leaf in ("error", "setting_definition", "utils"):
        setattr(sys.modules["meltano.core"], leaf, sys.modules[f"meltano.core.{leaf}"])
