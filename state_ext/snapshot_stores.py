"""Where snapshots live: a local folder, or any object store a state backend can use.

A snapshot store holds flat, immutable files: ``<name>.json.gz`` documents and their small
``<name>.meta.json`` sidecars. It needs four operations only: list names, read one, create
one *only if the name is free* (so two snapshots never replace each other, and a reader
never sees half a document), and delete one (``snapshot_store_base``). Here are the
local folder store and the choice of store (``open_store``: the ``snapshot_uri`` setting
or the project's default folder); buckets are in ``snapshot_object_store``, reached
exactly as the state backends reach them.

Local writes go to a hidden temporary name in the folder, are fsynced, then hard-linked
to the final name (``link`` refuses a taken name), so even a SIGKILL leaves at most a
``.tmp-*`` file, which listings ignore and ``prune`` removes once it is an hour old.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from state_ext import posix_io
from state_ext.errors import BackendError, ConfigurationError, StateExtError
from state_ext.redact import redact_uri
from state_ext.snapshot_store_base import CREATE_TRIES, SnapshotStore, Writer

TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600


class FolderStore(SnapshotStore):
    def __init__(self, folder: Path):
        self.folder = folder
        self.label = str(folder)

    def _fail(self, what: str, exc: OSError) -> BackendError:
        return BackendError(f"Snapshot store {self.label}: cannot {what}: {posix_io.describe(exc)}")

    def names(self) -> list[str]:
        try:
            return [n for n in os.listdir(self.folder) if not n.startswith(".")]
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise self._fail("list snapshots", exc) from None

    def read(self, name: str) -> bytes | None:
        try:
            return (self.folder / name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise self._fail(f"read {name}", exc) from None

    def size(self, name: str) -> int | None:
        try:
            return (self.folder / name).stat().st_size
        except OSError:
            return None

    def _write_temporary(self, name: str, write: Writer) -> str:
        try:
            return posix_io.write_temporary(self.folder, f"{TEMP_PREFIX}{name}.", write)
        except OSError as exc:
            raise self._fail(f"write {name}", exc) from None

    def create(self, names: Callable[[], str], write: Writer) -> str:
        name = names()
        temporary = self._write_temporary(name, write)
        try:
            for _ in range(CREATE_TRIES):
                try:
                    os.link(temporary, self.folder / name)  # refuses a taken name
                except FileExistsError:
                    name = names()
                    continue
                except OSError as exc:
                    raise self._fail(f"write {name}", exc) from None
                self._sync_folder()
                return name
        finally:
            with suppress(OSError):
                os.unlink(temporary)
        raise BackendError(f"Snapshot store {self.label}: no free name for the snapshot")

    def replace(self, name: str, data: bytes) -> None:
        temporary = self._write_temporary(name, lambda handle: handle.write(data))
        try:
            os.replace(temporary, self.folder / name)
        except OSError as exc:
            with suppress(OSError):
                os.unlink(temporary)
            raise self._fail(f"write {name}", exc) from None
        self._sync_folder()

    def _sync_folder(self) -> None:
        with suppress(OSError):
            posix_io.fsync_dir(self.folder)

    def delete(self, name: str) -> None:
        try:
            os.unlink(self.folder / name)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise self._fail(f"delete {name}", exc) from None

    def remove_stale_temporaries(self) -> int:
        """Temporary files a killed snapshot left behind, once surely abandoned."""
        removed = 0
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return 0
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                with suppress(OSError):
                    if time.time() - entry.stat().st_mtime > STALE_TEMP_SECONDS:
                        os.unlink(entry.path)
                        removed += 1
        return removed


def default_folder(project_settings) -> Path | None:
    root = project_settings.sys_dir_root
    return None if root is None else Path(root) / "state-ext" / "snapshots"


SNAPSHOT_URI_ENV = "STATE_EXT_SNAPSHOT_URI"


def snapshot_uri(project_settings) -> tuple[str | None, str]:
    """(the store's URI or folder, where it came from): the plugin setting ``snapshot_uri``
    (``meltano invoke`` passes it as ``STATE_EXT_SNAPSHOT_URI``; the project's ``.env``
    counts too), else ``<project>/.meltano/state-ext/snapshots``."""
    for source, store in (("env", project_settings.env), (".env", project_settings.dotenv)):
        value = store.get(SNAPSHOT_URI_ENV)
        if value:
            expanded = project_settings.expand(value)
            if expanded:
                return expanded.strip(), source
    folder = default_folder(project_settings)
    return (None if folder is None else str(folder)), "default"


def open_store(project_settings, uri: str | None = None) -> SnapshotStore:
    """The snapshot store named by ``uri`` or the ``snapshot_uri`` setting."""
    if uri is None:
        uri, _ = snapshot_uri(project_settings)
    if not uri:
        raise ConfigurationError(
            "No snapshot store: no Meltano project found (no meltano.yml here or above) and "
            f"{SNAPSHOT_URI_ENV} is not set; use --project-root or set {SNAPSHOT_URI_ENV}")
    if "://" not in uri:
        path = Path(uri).expanduser()
        if not path.is_absolute() and project_settings.root is not None:
            path = project_settings.root / path
        return FolderStore(path)
    scheme = uri.split("://", 1)[0].lower()
    if scheme == "file":
        from state_ext.backends.file_layout import state_dir_from_uri

        return FolderStore(state_dir_from_uri(uri))
    try:
        from state_ext.snapshot_object_store import ObjectSnapshotStore

        return ObjectSnapshotStore(project_settings.backend_settings(uri))
    except StateExtError as exc:
        raise type(exc)(f"Snapshot store {redact_uri(uri)}: {exc.message}") from None
