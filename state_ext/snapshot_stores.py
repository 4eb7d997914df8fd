"""Where snapshots live: a local folder, or any object store a state backend can use.

A snapshot store holds flat, immutable files: ``<name>.json.gz`` documents and their small
``<name>.meta.json`` sidecars. It needs four operations only: list names, read one, create
one *only if the name is free* (so two snapshots never replace each other, and a reader
never sees half a document), and delete one. Object stores are reached exactly as the
state backends reach them (``ObjectStoreBackend`` builds the filesystem from the same
``state_backend.<ns>.*`` settings and credential chains), so a snapshot store in the
bucket of the state backend needs no extra configuration.

Local writes go to a hidden temporary name in the folder, are fsynced, then hard-linked
to the final name (``link`` refuses a taken name), so even a SIGKILL leaves at most a
``.tmp-*`` file, which listings ignore and ``prune`` removes once it is an hour old.
Object-store writes are one conditional create of the whole object: the services make
an object visible only once it is complete.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import IO

from state_ext.errors import BackendError, ConfigurationError, StateExtError
from state_ext.settings import redact_uri

TEMP_PREFIX = ".tmp-"
STALE_TEMP_SECONDS = 3600
CREATE_TRIES = 10
Writer = Callable[[IO[bytes]], None]


class SnapshotStore(ABC):
    """Flat files by name; ``create`` never replaces an existing name."""

    label: str

    @abstractmethod
    def names(self) -> list[str]:
        """Every file name in the store (temporary files excluded)."""

    @abstractmethod
    def read(self, name: str) -> bytes | None:
        """The file's bytes, or None when there is no such file."""

    def read_many(self, names: list[str]) -> dict[str, bytes | None]:
        return {name: self.read(name) for name in names}

    @abstractmethod
    def create(self, names: Callable[[], str], write: Writer) -> str:
        """Write a new file whose bytes ``write`` produces (called once) under the first
        free name ``names()`` gives (a few tries), and return that name."""

    @abstractmethod
    def replace(self, name: str, data: bytes) -> None:
        """Write (or overwrite) a small file, atomically."""

    @abstractmethod
    def delete(self, name: str) -> None: ...

    def size(self, name: str) -> int | None:  # noqa: ARG002 - only folders know it cheaply
        return None

    def remove_stale_temporaries(self) -> int:
        return 0

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> SnapshotStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FolderStore(SnapshotStore):
    def __init__(self, folder: Path):
        self.folder = folder
        self.label = str(folder)

    def _fail(self, what: str, exc: OSError) -> BackendError:
        return BackendError(f"Snapshot store {self.label}: cannot {what}: {exc.strerror or exc}")

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
        from state_ext import posix_io

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
            fd = os.open(self.folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

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


class ObjectSnapshotStore(SnapshotStore):
    """``s3://``, ``gs://``, ``azure://`` (or any fsspec URL) through the state backends'
    own object-store layer: same settings, credentials, timeouts and one-line errors."""

    READ_CONCURRENCY = 64

    def __init__(self, settings):
        from state_ext.backends.objectstore import ObjectStoreBackend

        self.backend = ObjectStoreBackend(settings)
        self.label = self.backend.label
        self.prefix = self.backend.list_prefix

    def _run(self, what: str, coroutine_function, *args):
        # ObjectStoreBackend._run: the store's loop, its timeouts, one-line errors with
        # the service, bucket and redacted URI.
        return self.backend.run(what, coroutine_function, *args)

    def _checked_bucket(self) -> None:
        from state_ext.backends.clouds import BucketNotFound

        try:
            self._run("open the snapshot store", self.backend.store.check_bucket)
        except BucketNotFound:
            raise BackendError(f"Snapshot store {self.label}: the bucket or container "
                               f"{self.backend.bucket!r} does not exist") from None

    def names(self) -> list[str]:
        self._checked_bucket()
        keys = self._run("list snapshots", self.backend.store.list_keys, self.prefix)
        names = (key[len(self.prefix):] for key in keys)
        return [n for n in names if n and "/" not in n and not n.startswith(".")]

    def read(self, name: str) -> bytes | None:
        return self._run(f"read {name}", self.backend.store.get, self.prefix + name)

    def read_many(self, names: list[str]) -> dict[str, bytes | None]:
        import asyncio

        from state_ext.backends import aio

        store, prefix = self.backend.store, self.prefix

        async def every():
            limit = asyncio.Semaphore(self.READ_CONCURRENCY)

            async def one(name):
                async with limit:
                    return await store.get(prefix + name)

            return await aio.gather_or_cancel(one(n) for n in names)

        return dict(zip(names, self._run("read snapshot metadata", every), strict=True))

    def create(self, names: Callable[[], str], write: Writer) -> str:
        import io

        buffer = io.BytesIO()
        write(buffer)
        self._checked_bucket()
        for _ in range(CREATE_TRIES):
            name = names()
            marker = self._run(f"write {name}", self.backend.store.create, self.prefix + name,
                               buffer.getvalue())
            if marker is not None:
                return name
        raise BackendError(f"Snapshot store {self.label}: no free name for the snapshot")

    def replace(self, name: str, data: bytes) -> None:
        self._run(f"write {name}", self.backend.store.put, self.prefix + name, data)

    def keeps_versions(self) -> bool | None:
        """Whether the bucket keeps overwritten and deleted objects: S3 bucket versioning
        (GetBucketVersioning through the aiobotocore client s3fs hands out); None where
        that cannot be asked through the data API (GCS, Azure, other stores) or the
        identity may not ask it."""
        if self.backend.scheme != "s3":
            return None
        store = self.backend.store

        async def ask():
            client = await store.fs.set_session()
            return await client.get_bucket_versioning(Bucket=store.bucket)

        try:
            answer = self._run("read the bucket's versioning", ask)
        except StateExtError:
            return None
        return answer.get("Status") == "Enabled"

    def delete(self, name: str) -> None:
        self._run(f"delete {name}", self.backend.store.delete, self.prefix + name)

    def close(self) -> None:
        self.backend.close()


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
        return ObjectSnapshotStore(project_settings.backend_settings(uri))
    except StateExtError as exc:
        raise type(exc)(f"Snapshot store {redact_uri(uri)}: {exc.message}") from None
