"""New states written in one conditional create each (issue #13), on real servers.

* exactness and Meltano's layout after a migrate whose new states took the fast path, with
  the requests counted by the latency proxy in front of each object store;
* a state created by a real ``meltano state set`` between the plan and the write is never
  overwritten, and is reported as a conflict;
* an upload damaged in transit (the proxy rewrites a few body bytes) is detected by the
  checksum, reported, and nothing is left under the state's name.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pytest

from state_ext.model import Envelope
from tests.support.cli import clean_env, meltano, state_ext
from tests.support.emulators import (  # noqa: F401 - fixtures
    StoreCase,
    azure_server,
    gcs_server,
    proxied,
    s3_server,
    store,
)
from tests.support.project import seed_file_store, write_project

ODD_IDS = ["dev:tap-a-to-target-b", "q?x", "h#x", "sp ace", "ü-ñ", "nested/child"]


def envelopes(count: int, marker: str = "") -> dict[str, Envelope]:
    found = {f"dev:tap-{i:03d}-to-target": Envelope(
        {"singer_state": {"bookmarks": {"s": {"k": i, "m": marker}}}},
        {"singer_state": {"p": i}} if i % 4 == 0 else {}) for i in range(count)}
    for state_id in ODD_IDS:
        found[state_id] = Envelope.complete({"singer_state": {"id": state_id}})
    return found


def file_tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes): locks and temporaries included."""
    found = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


def migrate(root, env, src_uri, dst_uri, *extra, check=True):
    return state_ext("migrate", "--uri", src_uri, "--to", dst_uri, "--format", "json",
                     *extra, cwd=root, env=env, check=check, timeout=300)


def test_fast_path_is_exact_and_leaves_meltanos_layout(store, tmp_path):  # noqa: F811
    """50+ new states, one existing (identical) and one existing (different, overwritten
    under its lock): keys and bytes exactly Meltano's, one request per new state."""
    states = envelopes(50)
    source = seed_file_store(tmp_path / "src", states)
    through, proxy = proxied(store)
    try:
        bucket = store.new_bucket()
        uri = f"{store.scheme}://{bucket}/meltano/state"
        same, other = "dev:tap-001-to-target", "dev:tap-002-to-target"
        store.write(bucket, f"meltano/state/{same}/state.json", states[same].to_json().encode())
        store.write(bucket, f"meltano/state/{other}/state.json",
                    Envelope.complete({"singer_state": {"old": 1}}).to_json().encode())
        root = project(tmp_path)
        env = clean_env(**through.settings_env(uri))
        proxy.reset()
        report = migrate(root, env, source, uri, "--on-conflict", "overwrite").json()
        requests = proxy.stats()["requests"]
    finally:
        proxy.stop()
    new = len(states) - 2
    assert report["ok"] and report["copied"] == new and report["overwritten"] == 1
    assert report["identical"] == 1 and report["created_unlocked"] == new
    assert report["write_path"] is None
    # new states: one create each; plus listing, scratch probe (2), the overwritten state
    # (lock, read, write, unlock, read back) and the source-side nothing (file://)
    assert new <= requests <= new + 10, requests
    assert store.keys(bucket) == sorted(f"meltano/state/{i}/state.json" for i in states)
    for state_id, envelope in states.items():
        data, content_type = store.read(bucket, f"meltano/state/{state_id}/state.json")
        assert data == json.dumps(envelope.to_dict()).encode(), state_id
        assert content_type == "application/json" or state_id == same  # seeded raw
    got = meltano("state", "get", "dev:tap-004-to-target", cwd=root,
                  env=clean_env(**store.settings_env(uri)))
    assert json.loads(got.stdout) == states["dev:tap-004-to-target"].effective()


def test_fast_path_on_file_is_exact_with_no_leftovers(tmp_path):
    states = envelopes(60)
    source = seed_file_store(tmp_path / "src", states)
    dst = tmp_path / "dst"
    root = project(tmp_path)
    env = clean_env(MELTANO_STATE_BACKEND_URI=dst.as_uri())
    report = migrate(root, env, source, dst.as_uri()).json()
    assert report["ok"] and report["copied"] == len(states)
    assert file_tree(dst) == {f"{i}/state.json": states[i].to_json().encode() for i in states}
    got = meltano("state", "get", "dev:tap-008-to-target", cwd=root, env=env)
    assert json.loads(got.stdout) == states["dev:tap-008-to-target"].effective()


def test_verify_read_back_reads_every_new_state(s3_server, tmp_path):  # noqa: F811
    case = StoreCase("s3", s3_server)
    states = envelopes(20)
    source = seed_file_store(tmp_path / "src", states)
    through, proxy = proxied(case)
    try:
        bucket = case.new_bucket()
        uri = f"s3://{bucket}/p"
        root = project(tmp_path)
        proxy.reset()
        migrate(root, clean_env(**through.settings_env(uri)), source, uri,
                "--verify", "read-back")
        by_method = proxy.stats()["by_method"]
    finally:
        proxy.stop()
    assert by_method.get("GET", 0) >= len(states)  # each new state read back
    assert by_method.get("PUT", 0) == len(states) + 1  # one create each, plus the probe


@pytest.mark.meltano
@pytest.mark.parametrize("kind", ["file", "s3", "gs", "azure"])
def test_state_created_by_meltano_after_the_plan_is_never_overwritten(kind, tmp_path, request):
    """The plan sees the ID absent; a real `meltano state set` creates it before our write.
    With --on-conflict fail it is a reported conflict; its value stays Meltano's."""
    from state_ext.backends import open_backend
    from state_ext.settings import BackendSettings
    from state_ext.transfer import transfer

    states = envelopes(8)
    victim = "dev:tap-005-to-target"
    source = open_backend(BackendSettings(seed_file_store(tmp_path / "src", states), 2, 0.05, {}))
    if kind == "file":
        uri, env_extra = (tmp_path / "dst").as_uri(), {}
        destination = open_backend(BackendSettings(uri, 2, 0.05, {}))
    else:
        fixture = {"s3": "s3_server", "gs": "gcs_server", "azure": "azure_server"}[kind]
        case = StoreCase(kind, request.getfixturevalue(fixture))
        uri = f"{kind}://{case.new_bucket()}/meltano/state"
        env_extra = case.settings_env(uri)
        destination = case.backend(uri)
    root = project(tmp_path)
    env = clean_env(**{**env_extra, "MELTANO_STATE_BACKEND_URI": uri})
    fired = []

    def progress(phase, done, total):
        if phase == "plan" and done == total and not fired:
            fired.append(phase)
            meltano("state", "set", "--force", victim, '{"singer_state": {"by": "meltano"}}',
                    cwd=root, env=env)

    try:
        report = transfer(source, destination, progress=progress)
        assert fired
        assert report.raced == [victim] and report.ok is False
        assert victim not in report.failed and report.copied == len(states) - 1
        assert report.mismatched == []  # their state is theirs: not read back as ours
        assert destination.get(victim) == Envelope.complete({"singer_state": {"by": "meltano"}})
        for state_id, envelope in states.items():
            if state_id != victim:
                assert destination.get(state_id) == envelope, state_id
        got = meltano("state", "get", victim, cwd=root, env=env)
        assert json.loads(got.stdout) == {"singer_state": {"by": "meltano"}}
    finally:
        source.close(), destination.close()


def test_conflict_after_the_plan_on_file_is_skipped_and_not_read_back(tmp_path):
    """file://: a state created between plan and write is skipped with --on-conflict
    skip (the run is ok), never compared with ours, never counted as copied."""
    from state_ext.backends import open_backend
    from state_ext.settings import BackendSettings
    from state_ext.transfer import transfer

    states = envelopes(5)
    victim = "q?x"
    source = open_backend(BackendSettings(seed_file_store(tmp_path / "src", states), 2, 0.05, {}))
    dst = tmp_path / "dst"
    destination = open_backend(BackendSettings(dst.as_uri(), 2, 0.05, {}))
    theirs = '{"completed": {"singer_state": {"theirs": 1}}, "partial": {}}'

    def progress(phase, done, total):
        if phase == "plan" and done == total:
            (dst / victim).mkdir(parents=True, exist_ok=True)
            (dst / victim / "state.json").write_text(theirs)

    try:
        report = transfer(source, destination, on_conflict="skip", progress=progress)
        assert report.skipped_conflicts == [victim] and report.mismatched == [], report
        assert report.ok and report.copied == len(states) - 1
        assert (dst / victim / "state.json").read_text() == theirs
    finally:
        source.close(), destination.close()


def test_conflict_after_the_plan_is_skipped_with_on_conflict_skip(s3_server, tmp_path):  # noqa: F811
    """The same race, by a direct create of the key (a hook between plan and write)."""
    from state_ext.backends import open_backend
    from state_ext.settings import BackendSettings
    from state_ext.transfer import transfer

    case = StoreCase("s3", s3_server)
    states = envelopes(5)
    victim = "q?x"
    bucket = case.new_bucket()
    source = open_backend(BackendSettings(seed_file_store(tmp_path / "src", states), 2, 0.05, {}))
    destination = case.backend(f"s3://{bucket}/p")
    theirs = b'{"completed": {"singer_state": {"theirs": 1}}, "partial": {}}'

    def progress(phase, done, total):
        if phase == "plan" and done == total:
            case.write(bucket, f"p/{victim}/state.json", theirs)

    try:
        report = transfer(source, destination, on_conflict="skip", progress=progress)
        assert report.ok and report.skipped_conflicts == [victim] and report.raced == []
        assert case.read(bucket, f"p/{victim}/state.json")[0] == theirs
        assert report.copied == len(states) - 1
    finally:
        source.close(), destination.close()


def test_migrate_prints_the_conflict_and_exits_1(s3_server, tmp_path):  # noqa: F811
    """Through the CLI: the race reported in one error line naming the ID, exit 1."""
    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    uri = f"s3://{bucket}/p"
    states = envelopes(3)
    source = seed_file_store(tmp_path / "src", states)
    # the conflict is already there: as the plan sees it, a plain conflict (no race)
    case.write(bucket, "p/sp ace/state.json", b'{"completed": {}, "partial": {}}')
    result = migrate(project(tmp_path), clean_env(**case.settings_env(uri)), source, uri,
                     check=False)
    assert result.returncode == 1 and "sp ace" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["s3", "gs", "azure"])
def test_upload_damaged_in_transit_is_detected_and_leaves_nothing(kind, tmp_path, request):
    fixture = {"s3": "s3_server", "gs": "gcs_server", "azure": "azure_server"}[kind]
    case = StoreCase(kind, request.getfixturevalue(fixture))
    good = envelopes(6)
    victim = "dev:tap-003-to-target"
    states = {**good, victim: Envelope.complete({"singer_state": {"v": "CORRUPTME-123"}})}
    source = seed_file_store(tmp_path / "src", states)
    through, proxy = proxied(case, corrupt=(b"CORRUPTME", b"CORRUPTMF"))
    bucket = case.new_bucket()
    uri = f"{kind}://{bucket}/meltano/state"
    root = project(tmp_path)
    try:
        result = migrate(root, clean_env(**through.settings_env(uri)), source, uri, check=False)
        corrupted = proxy.stats()["corrupted"]
    finally:
        proxy.stop()
    assert corrupted == 1
    assert result.returncode == 1, str(result)
    assert victim in result.stderr and "Traceback" not in result.stderr
    report = result.json()
    assert victim in report["failed"] and report["copied"] == len(states) - 1
    keys = case.keys(bucket)
    assert f"meltano/state/{victim}/state.json" not in keys  # nothing under its name
    for state_id, envelope in states.items():
        if state_id != victim:
            assert case.read(bucket, f"meltano/state/{state_id}/state.json")[0] == \
                envelope.to_json().encode()
    # the re-run, undamaged, completes it
    again = migrate(root, clean_env(**case.settings_env(uri)), source, uri).json()
    assert again["ok"] and again["copied"] == 1 and again["identical"] == len(states) - 1
    assert case.read(bucket, f"meltano/state/{victim}/state.json")[0] == \
        states[victim].to_json().encode()


def test_import_writes_new_states_in_one_request_each(s3_server, tmp_path):  # noqa: F811
    """`import` of 40 new states and 1 existing one: one create per new state, the
    existing one overwritten under its lock (import overwrites). Without the automatic
    safety snapshot, which reads every listed ID first."""
    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    uri = f"s3://{bucket}/p"
    states = envelopes(35)
    case.write(bucket, "p/q?x/state.json", b'{"completed": {}, "partial": {}}')
    doc = {state_id: envelope.to_dict() for state_id, envelope in states.items()}
    through, proxy = proxied(case)
    try:
        proxy.reset()
        state_ext("import", "--no-snapshot", cwd=project(tmp_path), input=json.dumps(doc),
                  env=clean_env(**through.settings_env(uri)))
        by_method = proxy.stats()["by_method"]
    finally:
        proxy.stop()
    new = len(states) - 1
    # one create each for the new states; lock, write, unlock (PUT, PUT, DELETE) for the
    # existing one; a listing; the write check's PUT and DELETE at most
    assert new + 2 <= by_method.get("PUT", 0) <= new + 3, by_method
    assert by_method.get("DELETE", 0) <= 2 and by_method.get("GET", 0) <= 4, by_method
    assert case.keys(bucket) == sorted(f"p/{i}/state.json" for i in states)
    for state_id, envelope in states.items():
        assert case.read(bucket, f"p/{state_id}/state.json")[0] == envelope.to_json().encode()


def test_imports_safety_snapshot_reads_only_the_states_that_exist(s3_server, tmp_path):  # noqa: F811
    """With the automatic safety snapshot on: one listing tells which of the 35 IDs exist,
    so only the one existing state is read for the snapshot, not every ID of the document;
    the snapshot holds exactly that state."""
    from state_ext.model import parse_export_document

    case = StoreCase("s3", s3_server)
    bucket = case.new_bucket()
    uri = f"s3://{bucket}/p"
    states = envelopes(35)
    case.write(bucket, "p/q?x/state.json", b'{"completed": {"singer_state": {"o": 1}}, '
                                          b'"partial": {}}')
    doc = {state_id: envelope.to_dict() for state_id, envelope in states.items()}
    root = project(tmp_path)
    through, proxy = proxied(case)
    try:
        proxy.reset()
        state_ext("import", cwd=root, input=json.dumps(doc),
                  env=clean_env(**through.settings_env(uri)))
        by_method = proxy.stats()["by_method"]
    finally:
        proxy.stop()
    # listings (the snapshot's and the import's), the one existing state, the lock path
    assert by_method.get("GET", 0) <= 6, by_method
    (snapshot,) = (root / ".meltano" / "state-ext" / "snapshots").glob("*--import.json.gz")
    kept = parse_export_document(gzip.decompress(snapshot.read_bytes()).decode())
    assert list(kept) == ["q?x"] and kept["q?x"].effective() == {"singer_state": {"o": 1}}
    assert case.keys(bucket) == sorted(f"p/{i}/state.json" for i in states)


def test_a_store_without_conditional_create_keeps_the_locked_path_and_says_so(tmp_path):
    """fsspec's memory:// (like FTP, SFTP...) has no atomic create: new states are written
    under their locks, exactly, and the report says why."""
    from state_ext.backends import open_backend
    from state_ext.settings import BackendSettings
    from state_ext.transfer import transfer

    states = envelopes(6)
    source = open_backend(BackendSettings(seed_file_store(tmp_path / "src", states), 2, 0.05, {}))
    destination = open_backend(BackendSettings(f"memory://fast-{os.getpid()}/p", 2, 0.05, {}))
    try:
        report = transfer(source, destination)
        assert report.ok and report.copied == len(states) and report.created_unlocked == 0
        assert report.write_path and "no atomic conditional create" in report.write_path
        for state_id, envelope in states.items():
            assert destination.get(state_id) == envelope
    finally:
        source.close(), destination.close()
