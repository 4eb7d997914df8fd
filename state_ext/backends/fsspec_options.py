"""Settings for any fsspec filesystem: typed as its constructor declares, built quietly.

Settings from the environment and ``.env`` are strings (``MELTANO_STATE_BACKEND_FTP_PORT=2121``),
and fsspec passes storage options to the filesystem untouched, so ``FTPFileSystem`` would
compare ``'2121' > 0`` and fail with a ``TypeError``. A string setting is converted when the
filesystem says what it wants, looked up along its classes' ``__init__`` signatures:

1. the parameter's annotation names ``bool``, ``int`` or ``float``; else
2. the parameter's default is a ``bool``, ``int`` or ``float`` (``port=21``, ``tls=False``;
   a ``timeout`` or ``*_timeout`` declared by an integer default takes fractions too);
3. fsspec's own options, taken by every filesystem: ``skip_instance_cache``,
   ``use_listings_cache``, ``asynchronous`` (booleans), ``listings_expiry_time`` (a number),
   ``max_paths`` (an integer);
4. else, for parameters declared without a type (``block_size=None``) or forwarded unnamed
   (``**kwargs``, as SFTP does to paramiko), only the obvious: ``port``, ``*_port`` and
   ``*_size`` become integers, ``timeout`` and ``*_timeout`` numbers.

Anything else stays a string (a user name of digits stays a user name). Booleans accept
true/false, yes/no, on/off, 1/0. A value that does not convert is a one-line configuration
error naming the setting.
"""

from __future__ import annotations

import inspect
import sys
from contextlib import contextmanager

from state_ext.errors import ConfigurationError

_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")
_KINDS = {"bool": bool, "int": int, "float": float}
FSSPEC_OPTIONS = {"skip_instance_cache": bool, "use_listings_cache": bool, "asynchronous": bool,
                  "listings_expiry_time": float, "max_paths": int}


def _declared(cls) -> dict[str, inspect.Parameter]:
    params: dict[str, inspect.Parameter] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            signature = inspect.signature(init)
        except (TypeError, ValueError):
            continue
        for name, param in signature.parameters.items():
            if param.kind not in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                params.setdefault(name, param)
    return params


def _kind(name: str, param: inspect.Parameter | None):
    kind = _declared_kind(name, param)
    if kind is int and (name == "timeout" or name.endswith("_timeout")):
        return float  # ``timeout=30`` still means seconds, fractions included
    return kind


def _declared_kind(name: str, param: inspect.Parameter | None):
    if param is not None:
        annotation = param.annotation
        if isinstance(annotation, type) and annotation in (bool, int, float):
            return annotation
        if isinstance(annotation, str):  # postponed annotations: "int | None", "Optional[int]"
            words = set(annotation.replace("|", " ").replace("[", " ").replace("]", " ").split())
            found = [kind for word, kind in _KINDS.items() if word in words]
            if len(found) == 1:
                return found[0]
        default = param.default
        if isinstance(default, (bool, int, float)):
            return type(default)
        if annotation is not param.empty or default not in (param.empty, None):
            return None  # declared as something else: leave the string alone
    if name in FSSPEC_OPTIONS:
        return FSSPEC_OPTIONS[name]
    if name == "port" or name.endswith(("_port", "_size")):
        return int
    if name == "timeout" or name.endswith("_timeout"):
        return float
    return None


def _convert(value: str, kind, setting: str):
    text = value.strip()
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigurationError(f"Setting {setting} must be true or false, got {value!r}")
    try:
        number = float(text)
        if kind is int:
            if not number.is_integer():
                raise ValueError
            return int(number)
        return number
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigurationError(f"Setting {setting} must be {what}, got {value!r}") from None


def typed_options(cls, scheme: str, options: dict) -> dict:
    """``options`` with string values converted as the module docstring says."""
    declared = _declared(cls)
    typed = {}
    for name, value in options.items():
        kind = _kind(name, declared.get(name)) if isinstance(value, str) else None
        typed[name] = value if kind is None else _convert(
            value, kind, f"state_backend.{scheme}.{name}")
    return typed


@contextmanager
def quiet_finalisers(cls):
    """Silence the ``__del__`` of a ``cls`` instance whose construction failed.

    ``FTPFileSystem.__init__`` connects; when that fails, the half-built object is freed
    and its ``__del__`` (``self.ftp.close()``) raises an ``AttributeError`` that Python
    prints as "Exception ignored in ...". The failure itself is reported as one line.
    """
    previous = sys.unraisablehook

    def hook(unraisable):
        obj = unraisable.object
        owner = getattr(obj, "__qualname__", "")
        if owner.endswith("__del__") and any(
                owner.startswith(klass.__qualname__ + ".") for klass in cls.__mro__):
            return
        previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        import gc

        gc.collect()  # free a half-built filesystem held in a reference cycle now
        sys.unraisablehook = previous
