"""Snapshots in ``s3://``, ``gs://``, ``azure://`` (or any fsspec URL) buckets.

Reached exactly as the state backends reach them: ``ObjectStoreBackend`` builds the
filesystem from the same ``state_backend.<ns>.*`` settings and credential chains, so a
snapshot store in the bucket of the state backend needs no extra configuration. A write
is one conditional create of the whole object: the services make an object visible only
once it is complete.
"""

from __future__ import annotations

from collections.abc import Callable

from state_ext.errors import BackendError, StateExtError
from state_ext.snapshot_store_base import CREATE_TRIES, SnapshotStore, Writer


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
        """A missing bucket is one line in the cloud's words (``ObjectStoreBackend.run``)."""
        self._run("open the snapshot store", self.backend.store.check_bucket)

    def names(self) -> list[str]:
        self._checked_bucket()
        keys = self._run("list snapshots", self.backend.store.list_keys, self.prefix)
        names = (key[len(self.prefix):] for key in keys)
        return [n for n in names if n and "/" not in n and not n.startswith(".")]

    def read(self, name: str) -> bytes | None:
        return self._run(f"read {name}", self.backend.store.get, self.prefix + name)

    def read_many(self, names: list[str]) -> dict[str, bytes | None]:
        from state_ext.backends import aio

        store, prefix = self.backend.store, self.prefix

        async def one(name):
            return await store.get(prefix + name)

        async def every():
            return await aio.bounded_gather(self.READ_CONCURRENCY, one, names)

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
            client = await store.client()
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
