"""Object-store backends (s3://, gs://, azure://) against real local servers, in process.

Every test runs against moto (S3), fake-gcs-server (GCS) and Azurite (Azure Blob), started
once for the session on 127.0.0.1 (tests/support/emulators.py).
"""

from __future__ import annotations

import json
import sys
import threading
import time

import pytest

from state_ext.backends import clouds, open_backend
from state_ext.errors import BackendError, ConfigurationError, LockTimeoutError, MissingExtraError
from state_ext.model import Envelope
from state_ext.settings import BackendSettings
from tests.support.emulators import (  # noqa: F401 - fixtures
    S3_SECRET,
    azure_server,
    free_port,
    gcs_server,
    s3_server,
    seed_objects,
    store,
    unique_bucket,
)

WEIRD_IDS = ["dev:tap-a-to-target-b:blue", "q?x", "h#x", "sp ace", "pct%20x", "ü-ñ", "a/b/c",
             "star*[x]"]


def complete(value) -> Envelope:
    return Envelope.complete({"singer_state": value})


def test_layout_is_meltanos(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/meltano/state") as backend:
        backend.put("dev:tap-a-to-target-b", complete({"x": 1}))
    assert store.keys(bucket) == ["meltano/state/dev:tap-a-to-target-b/state.json"]
    body, content_type = store.read(bucket, "meltano/state/dev:tap-a-to-target-b/state.json")
    assert body == b'{"completed": {"singer_state": {"x": 1}}, "partial": {}}'
    assert content_type == "application/json"


@pytest.mark.parametrize("suffix", ["", "/", "//"])
def test_empty_prefix_is_bucket_root(store, suffix):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}{suffix}") as backend:
        backend.put("abc", complete({"x": 1}))
        assert backend.list_ids() == ["abc"]
    assert store.keys(bucket) == ["abc/state.json"]


def test_prefix_outer_slashes_are_stripped(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}//a/b//") as backend:
        backend.put("x", complete({}))
    assert store.keys(bucket) == ["a/b/x/state.json"]


def test_raw_ids_round_trip(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        for i, state_id in enumerate(WEIRD_IDS):
            backend.put(state_id, complete({"i": i}))
        assert backend.list_ids() == sorted(WEIRD_IDS)
        for i, state_id in enumerate(WEIRD_IDS):
            assert backend.get(state_id).effective() == {"singer_state": {"i": i}}
        assert backend.list_ids("q?x") == ["q?x"]
        assert backend.list_ids("a/*") == ["a/b/c"]
    assert store.keys(bucket) == sorted(f"p/{s}/state.json" for s in WEIRD_IDS)


def test_listing_only_under_prefix(store):
    bucket = store.new_bucket()
    for key in ["meltano/state/a/state.json", "meltano/state-other/zzz/state.json",
                "meltano/state/b/lock", "meltano/state/c/other.json", "meltano/statex",
                "meltano/state/n/e/s/t/state.json", "elsewhere/state.json"]:
        store.write(bucket, key, b'{"completed": {}, "partial": {}}')
    with store.backend(f"{store.scheme}://{bucket}/meltano/state") as backend:
        assert backend.list_ids() == ["a", "n/e/s/t"]
        assert backend.list_ids("n*") == ["n/e/s/t"]


def test_listing_is_paginated(store, monkeypatch):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/pp") as backend:
        monkeypatch.setattr(backend.store, "page_size", 40)
        ids = [f"id-{i:04d}" for i in range(130)]
        seed_objects(backend, {backend.key(i): b'{"completed": {}, "partial": {}}' for i in ids})
        store.write(bucket, "pp-sibling/x/state.json", b"{}")
        calls = []
        original = backend.store.list_keys

        async def counting(prefix):
            calls.append(prefix)
            return await original(prefix)

        monkeypatch.setattr(backend.store, "list_keys", counting)
        assert backend.list_ids() == ids
        assert calls == ["pp/"]  # one (paginated) listing, no request per ID
        exported = dict(backend.iter_states(ids))
        assert len(exported) == 130 and all(e.is_empty() for e in exported.values())


def test_get_missing_and_delete(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        assert backend.get("nope") is None
        assert backend.delete("nope") is False
        backend.put("yes", complete({"a": 1}))
        assert backend.delete("yes") is True
        assert backend.list_ids() == []
    assert store.keys(bucket) == []


def test_merge_under_lock_and_no_lock_left(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        backend.put("m", complete({"bookmarks": {"s1": {"k": 1}}}))
        backend.update("m", lambda cur: cur.merged_with_partial(
            {"singer_state": {"bookmarks": {"s2": {"k": 2}}}}))
        assert backend.get("m").effective() == {
            "singer_state": {"bookmarks": {"s1": {"k": 1}, "s2": {"k": 2}}}}
    assert store.keys(bucket) == ["p/m/state.json"]


def test_conditional_create_is_enforced_by_the_server(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        first = backend.try_create("x", "1795255237.5")
        assert first is not None
        assert backend.try_create("x", "1795255238.5") is None
        assert backend.read_lock("x")[0] == "1795255237.5"
        backend.release("x", first)
        assert backend.read_lock("x") is None


def test_only_the_owner_deletes_its_lock(store, monkeypatch):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        old = backend.try_create("x", "1.0")
        if store.scheme == "gs":
            # fake-gcs-server ignores the generation of a DELETE (real GCS deletes only that
            # generation, 404 when it is gone): check that the release names the one we
            # created, and that the filesystem sends it as the request's generation.
            sent = []
            original = backend.fs._rm_file

            async def spy(path, **kwargs):
                sent.append((path, backend.fs.split_path(path)))
                return await original(path, **kwargs)

            monkeypatch.setattr(backend.fs, "_rm_file", spy)
            backend.release("x", old)
            assert old.marker and sent == [
                (f"{bucket}/p/x/lock#{old.marker}", (bucket, "p/x/lock", old.marker))]
            assert backend.read_lock("x") is None
            return
        store.delete(bucket, "p/x/lock")
        assert backend.try_create("x", str(time.time())) is not None  # someone else's lock now
        backend.release("x", old)  # our stale handle must not remove it
        assert backend.read_lock("x") is not None


def test_stale_lock_is_taken_over_fresh_lock_waits(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p", lock_timeout=30) as backend:
        store.write(bucket, "p/s/lock", str(time.time() - 60).encode())  # Meltano-style, stale
        started = time.monotonic()
        backend.put("s", complete({"v": 1}))
        assert time.monotonic() - started < 15  # taken over at once, not after 30 s
    with store.backend(f"{store.scheme}://{bucket}/p", lock_timeout=1) as backend:
        store.write(bucket, "p/f/lock", str(time.time()).encode())  # fresh: wait, then take over
        started = time.monotonic()
        backend.put("f", complete({"v": 2}))
        assert 0.9 < time.monotonic() - started < 15
    assert store.keys(bucket) == ["p/f/state.json", "p/s/state.json"]


def test_garbage_lock_times_out(store):
    """A lock that holds no time is judged by its age; written just before the write (the
    backend already open), it is young for the whole 2 s timeout, even on a loaded machine."""
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p", lock_timeout=2) as backend, \
            pytest.raises(LockTimeoutError, match="locked by another process"):
        store.write(bucket, "p/g/lock", b"not a timestamp")
        backend.put("g", complete({}))


def test_concurrent_merges_lose_nothing(store):
    bucket = store.new_bucket()
    uri = f"{store.scheme}://{bucket}/p"
    errors = []

    def merge(stream):
        try:
            with store.backend(uri, retry=0.02) as backend:
                backend.update("shared", lambda cur: (cur or Envelope()).merged_with_partial(
                    {"singer_state": {"bookmarks": {stream: {"n": 1}}}}))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=merge, args=(f"s{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    with store.backend(uri) as backend:
        assert sorted(backend.get("shared").effective()["singer_state"]["bookmarks"]) == [
            f"s{i}" for i in range(6)]


def test_bulk_import_and_clear(store):
    bucket = store.new_bucket()
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        states = {f"id-{i}": complete({"i": i}) for i in range(120)}
        assert backend.put_many(states) == 120
        assert backend.list_ids() == sorted(states)
        assert dict(backend.iter_states(sorted(states))) == states
        assert backend.delete_many(backend.list_ids()) == 120
    assert store.keys(bucket) == []


# -- errors --------------------------------------------------------------------------------
def test_missing_bucket_is_one_clear_line(store):
    bucket = unique_bucket("missing")
    with store.backend(f"{store.scheme}://{bucket}/p") as backend:
        for action in (backend.list_ids, lambda: backend.get("x"),
                       lambda: backend.put("x", complete({}))):
            started = time.monotonic()
            with pytest.raises(BackendError) as info:
                action()
            assert time.monotonic() - started < 10
            message = str(info.value)
            assert bucket in message and "does not exist" in message, message
            assert "\n" not in message


def test_unreachable_endpoint_fails_fast(store, monkeypatch):
    port = free_port()
    dead = f"http://127.0.0.1:{port}"
    options = {}
    if store.scheme == "s3":
        options = {"endpoint_url": dead}
    elif store.scheme == "gs":
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", dead)
    else:
        options = {"connection_string": store.server.connection_string.replace(
            store.server.url, dead)}
    settings = BackendSettings(f"{store.scheme}://bkt-dead/p", 10, 1,
                               {**store.options(), **options})
    started = time.monotonic()
    with pytest.raises(BackendError) as info, open_backend(settings) as backend:
        backend.list_ids()
    assert time.monotonic() - started < 15
    message = str(info.value)
    assert "bkt-dead" in message and "cannot reach" in message, message
    assert S3_SECRET not in message and "AccountKey=Eby8" not in message


def test_secrets_in_uri_are_redacted(s3_server):
    settings = BackendSettings(f"s3://testing:{S3_SECRET}@{unique_bucket('nob')}/p", 10, 1,
                               {"endpoint_url": s3_server.url})
    with pytest.raises(BackendError) as info, open_backend(settings) as backend:
        backend.list_ids()
    assert S3_SECRET not in str(info.value) and ":***@" in str(info.value)


def test_missing_aws_credentials(s3_server, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = BackendSettings("s3://bkt-x/p", 10, 1, {"endpoint_url": s3_server.url})
    with pytest.raises(BackendError, match="no AWS credentials found"), \
            open_backend(settings) as backend:
        backend.list_ids()


def test_s3_keys_must_come_in_pairs():
    with pytest.raises(ConfigurationError, match="needs both"):
        open_backend(BackendSettings("s3://b/p", 10, 1, {"aws_access_key_id": "k"}))


def test_azure_wrong_key_is_rejected(azure_server):
    bucket = unique_bucket()
    azure_server.create_bucket(bucket)
    bad = azure_server.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")
    settings = BackendSettings(f"azure://{bucket}/p", 10, 1, {"connection_string": bad})
    with pytest.raises(BackendError) as info, open_backend(settings) as backend:
        backend.list_ids()
    message = str(info.value)
    assert "rejected" in message or "denied" in message, message
    assert "Xby8" not in message and bucket in message


def test_azure_needs_some_credentials(monkeypatch):
    monkeypatch.delenv("AZURE_STORAGE_CONNECTION_STRING", raising=False)
    with pytest.raises(ConfigurationError, match="connection_string"):
        open_backend(BackendSettings("azure://c/p", 10, 1, {}))


def test_azure_connection_string_from_environment(azure_server, monkeypatch):
    bucket = unique_bucket()
    azure_server.create_bucket(bucket)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azure_server.connection_string)
    with open_backend(BackendSettings(f"azure://{bucket}/p", 10, 1, {})) as backend:
        backend.put("e", complete({}))
        assert backend.list_ids() == ["e"]


def test_gcs_bad_credentials_settings(tmp_path, gcs_server):
    cases = [
        ({"application_credentials_json": "{not json"}, "not valid JSON"),
        ({"application_credentials_path": str(tmp_path / "nope.json")}, "does not exist"),
        ({"application_credentials_json": "{}", "application_credentials_path": "x"},
         "only one"),
        ({"application_credentials_json": '{"type": "service_account"}'}, "Invalid GCS"),
    ]
    for options, expected in cases:
        with pytest.raises(ConfigurationError, match=expected):
            open_backend(BackendSettings("gs://b/p", 10, 1, options))


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'state-ext\[s3\]'"):
        open_backend(BackendSettings("s3://b/p", 10, 1, {}))
    monkeypatch.setitem(sys.modules, "adlfs", None)
    with pytest.raises(MissingExtraError, match=r"state-ext\[azure\]"):
        open_backend(BackendSettings("azure://b/p", 10, 1, {"connection_string": "x"}))


def test_bucket_is_required():
    with pytest.raises(ConfigurationError, match="names no bucket"):
        open_backend(BackendSettings("s3:///p", 10, 1, {}))


def test_generic_fsspec_memory_protocol():
    uri = f"memory://{unique_bucket()}/meltano/state"
    with open_backend(BackendSettings(uri, 10, 0.05, {})) as backend:
        backend.put("a/b", complete({"x": 1}))
        backend.put("c", complete({"y": 2}))
        assert backend.list_ids() == ["a/b", "c"]
        assert backend.get("a/b").effective() == {"singer_state": {"x": 1}}
        assert backend.try_create("c", "1.0") is not None
        assert backend.try_create("c", "2.0") is None
        assert json.loads(backend.fs.cat_file(f"{backend.bucket}/{backend.key('c')}")) == {
            "completed": {"singer_state": {"y": 2}}, "partial": {}}


def test_unknown_scheme_lists_available():
    with pytest.raises(ConfigurationError, match="available: .*azure.*gs.*s3"):
        open_backend(BackendSettings("nosuchproto://b/p", 10, 1, {}))


def test_the_registry_has_all_clouds():
    assert {scheme: cloud.SERVICE for scheme, cloud in clouds.CLOUDS.items()} == {
        "s3": "S3", "gs": "GCS", "azure": "Azure Blob"}


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_s3_endpoint_and_keys_from_the_aws_chain(s3_server, monkeypatch, variable):
    bucket = unique_bucket()
    s3_server.create_bucket(bucket)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv(variable, s3_server.url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with open_backend(BackendSettings(f"s3://{bucket}/p", 10, 1, {})) as backend:
        backend.put("chain", complete({"ok": True}))
        assert backend.list_ids() == ["chain"]


def test_s3_keys_in_uri(s3_server):
    bucket = unique_bucket()
    s3_server.create_bucket(bucket)
    uri = f"s3://testing:{S3_SECRET}@{bucket}/p"
    with open_backend(BackendSettings(uri, 10, 1, {"endpoint_url": s3_server.url})) as backend:
        backend.put("u", complete({}))
        assert backend.list_ids() == ["u"]


def _gcs_answering(monkeypatch, answers: dict[str, tuple[int, dict]]):
    """A GCS endpoint answering each GET with the first (status, JSON or bytes[, headers])
    whose path prefix matches (a list: in turn); the paths asked for and the server."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen = []

    class Answering(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            seen.append(self.path)
            found = next(a for p, a in answers.items() if self.path.startswith(p))
            if isinstance(found, list):  # one answer after the other, the last one stays
                found = found.pop(0) if len(found) > 1 else found[0]
            status, document, *headers = found
            body = document if isinstance(document, bytes) else json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            for name, value in (headers[0] if headers else {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_port}")
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    return seen, server


@pytest.mark.parametrize("status, message, expected", [
    (503, "try later", "cannot list state: 503: try later, 503"),
    # gcsfs retries a 401 "Invalid Credentials" too (an expired token): two attempts
    (401, "Invalid Credentials", "cannot list state: the credentials were rejected (401)"),
])
def test_gcs_requests_end_after_two_attempts(monkeypatch, status, message, expected):
    """gcsfs would retry a failing request 6 times (about 30 s): a server answering 503
    gets two attempts, and the error is the answer's own (gcs_requests.py)."""
    seen, server = _gcs_answering(
        monkeypatch, {"/": (status, {"error": {"code": status, "message": message}})})
    try:
        started = time.monotonic()
        with pytest.raises(BackendError) as info, \
                open_backend(BackendSettings(f"gs://bkt-{status}/p", 10, 1, {})) as backend:
            backend.list_ids()
        assert time.monotonic() - started < 10
    finally:
        server.shutdown()
    assert len(seen) == 2, seen
    assert expected in str(info.value), str(info.value)


def test_gcs_bucket_refused_but_listed_empty_is_not_missing(monkeypatch):
    """No storage.buckets.get (403 on the bucket) and an empty listing: the 403's own
    error, as when the bucket GET was all, never "the bucket does not exist"."""
    seen, server = _gcs_answering(monkeypatch, {
        "/storage/v1/b/bkt-403/o": (200, {"kind": "storage#objects"}),
        "/storage/v1/b/bkt-403": (403, {"error": {"code": 403, "message": "no buckets.get"}}),
        "/": (404, {"error": {"code": 404, "message": "Not Found"}}),
    })
    try:
        with pytest.raises(BackendError) as info, \
                open_backend(BackendSettings("gs://bkt-403/p", 10, 1, {})) as backend:
            backend.get("x")
    finally:
        server.shutdown()
    assert "does not exist" not in str(info.value), str(info.value)
    assert "Forbidden: b/bkt-403" in str(info.value) and "no buckets.get" in str(info.value)


def test_gcs_generation_comes_from_the_answer_gcsfs_retried_into(monkeypatch):
    """A 503, then the object: gcsfs's retry awaits the second attempt in the same task,
    so the generation read is that answer's."""
    import datetime

    seen, server = _gcs_answering(monkeypatch, {"/download/": [
        (503, {"error": {"code": 503, "message": "try later"}}),
        (200, b"1.5", {"X-Goog-Generation": "42",
                       "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT"})]})
    try:
        with open_backend(BackendSettings("gs://bkt-gen/p", 10, 1, {})) as backend:
            found = backend.run("read", backend.store.get_stamped, "p/x/lock")
    finally:
        server.shutdown()
    when = datetime.datetime(2026, 12, 1, 10, tzinfo=datetime.timezone.utc).timestamp()
    assert len(seen) == 2 and found == (b"1.5", "42", when), (seen, found)


def test_gcs_lock_read_and_exists_are_one_request_each(gcs_server):
    """A lock read is one GET (its generation and time from the answer's headers), and
    so is an existence check: no metadata GET, no listing (storage.objects.list)."""
    from tests.support.emulators import StoreCase, proxied

    case, proxy = proxied(StoreCase("gs", gcs_server))
    try:
        bucket = case.new_bucket()
        with case.backend(f"gs://{bucket}/p") as backend:
            held = backend.try_create("x", "1795255237.5")
            for key, present in (("p/x/lock", True), ("p/y/lock", False)):
                proxy.reset()
                found = backend.run("read", backend.store.get_stamped, key)
                assert proxy.stats()["by_method"] == {"GET": 1}
                if present:
                    assert found[0] == b"1795255237.5" and found[1] == held.marker
                    assert abs(found[2] - time.time()) < 600
                else:
                    assert found is None
                proxy.reset()
                assert backend.run("exists", backend.store.exists, key) is present
                assert proxy.stats()["by_method"] == {"GET": 1}
            proxy.reset()
            assert backend.read_lock("x") == ("1795255237.5", held.marker)
            assert proxy.stats()["by_method"] == {"GET": 1}
    finally:
        proxy.stop()


def test_gcs_token_refresh_failures_end_after_two_attempts():
    import asyncio

    from google.auth.exceptions import RefreshError

    from state_ext.backends.clouds import gcs, gcs_requests
    from state_ext.backends.clouds.failures import explain

    calls = []

    class Credentials:
        def apply(self, out):
            calls.append(out)
            raise RefreshError("the token endpoint said no")

    credentials = Credentials()
    gcs_requests.bound_token_refresh(credentials)

    async def attempts():  # as gcsfs retries: the same task, again and again
        for _ in range(6):
            try:
                credentials.apply({})
            except RefreshError:
                continue
            except gcs_requests.OutOfAttempts as exc:
                return exc

    exc = asyncio.run(attempts())
    assert len(calls) == 2 and isinstance(exc.__cause__, RefreshError)
    assert explain(exc, gcs.WORDS, service="GCS", word="bucket", endpoint=None) == \
        "cannot obtain a Google access token: the token endpoint said no"


def test_gcs_failure_counts_are_per_task_and_credentials_and_forgotten(monkeypatch):
    """A request whose retry was cancelled mid-backoff leaves no count for a later one;
    old counts are dropped; a token refresh counts per credentials object; a failure
    gcsfs does not retry (aiohttp's total timeout) is not counted."""
    import asyncio
    from types import SimpleNamespace

    from google.auth.exceptions import RefreshError

    from state_ext.backends.clouds import gcs_requests

    request = ("GET", "http://gcs/b/x/o/k")

    async def fail_once():
        return gcs_requests._requests.failed(request)

    async def main():
        assert await asyncio.create_task(fail_once()) == 1  # that task then ended
        assert await asyncio.create_task(fail_once()) == 1
        clock = [1000.0]
        monkeypatch.setattr(gcs_requests.time, "monotonic", lambda: clock[0])
        assert gcs_requests._requests.failed(request) == 1
        clock[0] += gcs_requests.FORGET_AFTER + 1
        assert gcs_requests._requests.failed(request) == 1  # the old one was forgotten
        gcs_requests._requests.done(request)
        params = SimpleNamespace(method="GET", url="http://gcs/b/x/o/k",
                                 exception=TimeoutError())
        for _ in range(3):  # gcsfs does not retry it: never OutOfAttempts
            await gcs_requests._on_exception(None, None, params)

        class Credentials:
            def apply(self, out):
                raise RefreshError("no")

        first, second = Credentials(), Credentials()
        for credentials in (first, second):
            gcs_requests.bound_token_refresh(credentials)
        for credentials in (first, second):  # one failure each: not two of one
            with pytest.raises(RefreshError):
                credentials.apply({})
        with pytest.raises(gcs_requests.OutOfAttempts):
            first.apply({})

    asyncio.run(main())


def test_out_of_attempts_leftovers_are_quiet():
    from state_ext.backends import aio
    from state_ext.backends.clouds.gcs_requests import OutOfAttempts

    try:
        raise OutOfAttempts("x") from ValueError("the token endpoint said no")
    except OutOfAttempts as exc:
        assert aio._leftover_of_a_failure(exc)
    assert not aio._leftover_of_a_failure(ValueError("a bug"))
