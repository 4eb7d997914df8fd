"""Any other fsspec protocol (``memory://``, ``ftp://``, ``sftp://``, ``s3a://``...):
the filesystem fsspec builds from the URL, and the object operations through fsspec's
public API; sync filesystems (FTP, SFTP) too.

Its words are every cloud's (``WORDS`` merged by the registry): a generic URL may be one
of their SDKs under another scheme (``s3a://`` is s3fs, ``az://`` adlfs, ``gcs://``
gcsfs), with the generic hint.
"""

from __future__ import annotations

import asyncio
import contextlib
from urllib.parse import unquote, urlsplit

from state_ext.backends.clouds.base import Connection, ObjectClient, tuning
from state_ext.backends.clouds.failures import Translation, explain
from state_ext.errors import BackendError, ConfigurationError

WORD = "store"
WORDS = Translation()


def connect(scheme: str, uri: str, options: dict, words: Translation = WORDS) -> Connection:
    """The filesystem of ``uri`` as fsspec builds it from a URL (``fsspec.core.url_to_fs``:
    host, port, user and password from the URL), with the ``state_backend.<scheme>.*``
    settings as storage options converted to the types the filesystem declares (see
    fsspec_options.py). Building it may already connect (FTP, SFTP): any failure then is
    one line too, and the half-built filesystem's finaliser stays quiet."""
    import fsspec
    from fsspec.core import url_to_fs

    from state_ext.backends.fsspec_options import quiet_finalisers, typed_options

    try:
        cls = fsspec.get_filesystem_class(scheme)
    except ImportError as exc:
        raise ConfigurationError(
            f"The {scheme}:// state backend needs a package that is not installed: {exc}"
        ) from None
    except ValueError:
        raise ConfigurationError(f"No fsspec filesystem for scheme {scheme!r}") from None
    storage_options = typed_options(cls, scheme, {
        k: v for k, v in options.items() if k not in ("timeout_seconds", "max_attempts")})
    timeout, attempts = tuning(options)
    secrets = [str(v) for k, v in storage_options.items()
               if any(w in k.lower() for w in ("secret", "password", "token", "key"))]
    password = urlsplit(uri).password
    if password:
        secrets += [password, unquote(password)]
    try:
        host = storage_options.get("host") or urlsplit(uri).hostname
        port = storage_options.get("port") or urlsplit(uri).port
    except ValueError:  # a port that is not a number in the URI
        raise ConfigurationError(f"Invalid state backend URI: bad port in {scheme}://") from None
    endpoint = f"{host}:{port}" if host and port else host
    failure = None
    with quiet_finalisers(cls):
        try:
            fs, root = url_to_fs(uri, **storage_options)
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line below
            failure = _construction_failure(scheme, cls, exc, endpoint, words)
    if failure is not None:
        for secret in secrets:
            failure.message = failure.message.replace(secret, "***")
        failure.args = (failure.message,)
        raise failure
    return Connection(fs, secrets, endpoint, timeout, attempts, root=root)


def _construction_failure(scheme: str, cls, exc: BaseException, endpoint: str | None,
                          words: Translation):
    """The error for a filesystem that could not be built: settings, or the server."""
    import re

    name = cls.__name__
    twice = re.search(r"multiple values for keyword argument '(\w+)'", str(exc))
    if isinstance(exc, TypeError) and twice:
        return ConfigurationError(
            f"The {scheme}:// state backend gets {twice[1]!r} twice, from the URI and from "
            f"state_backend.{scheme}.{twice[1]}: give it once"
        )
    if isinstance(exc, TypeError):
        text = " ".join(str(exc).split())
        return ConfigurationError(
            f"The {scheme}:// state backend ({name}) does not accept its settings: {text}; "
            f"give them in the URI ({scheme}://user:password@host:port/path) or as "
            f"state_backend.{scheme}.<option> (MELTANO_STATE_BACKEND_{scheme.upper()}_<OPTION>)"
        )
    reason = explain(exc, words, service=scheme, word=WORD, endpoint=endpoint)
    return BackendError(f"Cannot open the {scheme}:// state backend ({name}): {reason}")


class FsspecClient(ObjectClient):
    """Through the public fsspec API; sync filesystems (FTP, SFTP...) too.

    ``root`` is ``"/"`` when the URI's path was absolute (``ftp://host/state``), else empty;
    a key is then the path ``root + key``, exactly where fsspec's URL parsing points. On
    filesystems with real folders a write creates the ID's folder when it is missing, and
    the release of a lock removes the folder again when nothing else is in it, so the
    layout is that of Meltano's ``file://`` backend. Exclusive lock creation is only as
    atomic as the filesystem's ``pipe_file(mode="create")`` (a check, then a write, on FTP).
    """

    def __init__(self, fs, root: str = ""):
        from state_ext.deadline import Worker

        super().__init__(fs, "")
        self.root = root
        self._lock = asyncio.Lock()
        self._worker = Worker("state-ext-fsspec")

    def _path(self, key):
        return self.root + key

    async def _run(self, name, *args, **kwargs):
        """A sync filesystem (FTP, SFTP) blocks in its own sockets: its calls run, one at a
        time as before, on one daemon thread, so that the event loop stays free to give up
        on a frozen server when the stall window passes (``aio.run``) and the stuck call
        cannot hold the process at exit."""
        if getattr(self.fs, "async_impl", False):
            return await getattr(self.fs, "_" + name)(*args, **kwargs)
        return await asyncio.wrap_future(
            self._worker.submit(getattr(self.fs, name), *args, **kwargs))

    async def close(self):
        self._worker.stop()

    async def list_keys(self, prefix):
        try:
            found = await self._run("find", self._path(prefix.rstrip("/")))
        except FileNotFoundError:
            return []
        # find() answers with the filesystem's own spelling of each path: maybe a protocol,
        # maybe a leading "/" (our keys never start with one).
        keys = (path.split("://", 1)[-1].lstrip("/") for path in found)
        return [key for key in keys if key.startswith(prefix)]

    async def get_stamped(self, key):
        try:
            data = await self._run("cat_file", self._path(key))
        except FileNotFoundError:
            return None
        return data, data, None  # the content is the version: compared before a delete

    async def _pipe(self, key, data, **kwargs):
        path = self._path(key)
        try:
            await self._run("pipe_file", path, data, **kwargs)
        except (FileExistsError, TypeError, NotImplementedError):
            raise
        except Exception:  # noqa: BLE001 - a missing folder: FTP says "550", others OSError
            parent = path.rpartition("/")[0]
            if not parent or await self._run("exists", parent):
                raise
            await self._run("makedirs", parent, exist_ok=True)
            await self._run("pipe_file", path, data, **kwargs)

    async def put(self, key, data):
        await self._pipe(key, data)

    async def create(self, key, data):
        async with self._lock:
            try:
                await self._pipe(key, data, mode="create")
            except FileExistsError:
                return None
            except (TypeError, NotImplementedError):  # no exclusive create: best effort
                if await self.exists(key):
                    return None
                await self.put(key, data)
        return data

    async def delete(self, key):
        with contextlib.suppress(FileNotFoundError):
            await self._run("rm_file", self._path(key))

    async def delete_if(self, key, marker):
        async with self._lock:
            current = await self.get_versioned(key)
            if current is None or current[1] != marker:
                return False
            await self.delete(key)
            parent = self._path(key).rpartition("/")[0]
            if parent and not getattr(self.fs, "async_impl", False):
                with contextlib.suppress(Exception):  # not empty, or no folders at all
                    await self._run("rmdir", parent)
            return True


def client(connection: Connection, bucket: str = "") -> FsspecClient:
    return FsspecClient(connection.fs, "/" if connection.root.startswith("/") else "")
