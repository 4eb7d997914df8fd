"""What a snapshot store must do: flat files by name, created only under a free name.

The four operations (list names, read one, create one *only if the name is free*, delete
one) and their defaults, apart from the two stores that implement them
(``snapshot_stores.FolderStore``, ``snapshot_object_store.ObjectSnapshotStore``): both
import this, and the bucket store (with the object-store layer behind it) is loaded only
when a bucket is named.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import IO

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
