"""The transfer engine's own rules, through its Python API (no CLI): what ``prepare``
refuses before anything is listed or written, and the one ``OnConflict``.

The engine's behaviour under races, faults and bulk loads (plan, write, verify, delete)
is tested on every store in test_migrate.py's "engine properties" section and
test_fast_path.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from state_ext.backends import open_backend
from state_ext.errors import ConfigurationError, InvalidInputError, InvalidStateIdError
from state_ext.model import Envelope
from state_ext.settings import BackendSettings
from state_ext.transfer import prepare, run, transfer
from state_ext.transfer_options import OnConflict, Verify


def file_store(root: Path):
    return open_backend(BackendSettings(uri=f"file://{root}", lock_timeout_seconds=2,
                                        lock_retry_seconds=0.05))


def seed(root: Path, states: dict[str, dict]) -> None:
    """Meltano's layout, written without state-ext (IDs state-ext would refuse included)."""
    for state_id, completed in states.items():
        folder = root / state_id
        folder.mkdir(parents=True)
        (folder / "state.json").write_text(
            json.dumps({"completed": completed, "partial": {}}))


def tree(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


ONE = {"singer_state": {"bookmarks": {"s": {"v": 1}}}}


def test_the_same_store_twice_is_refused_before_anything_is_read(tmp_path):
    seed(tmp_path / "a", {"x": ONE})
    with file_store(tmp_path / "a") as src, file_store(tmp_path / "a") as dst:
        with pytest.raises(ConfigurationError, match="same backend"):
            prepare(src, dst)
        with pytest.raises(ConfigurationError, match="same backend"):
            transfer(src, dst, [("x", "y")])


def test_a_store_inside_the_other_is_refused(tmp_path):
    seed(tmp_path / "a", {"x": ONE})
    with (file_store(tmp_path / "a") as src, file_store(tmp_path / "a" / "inner") as dst,
          pytest.raises(ConfigurationError, match="overlap")):
        prepare(src, dst, delete_source=True)
    assert tree(tmp_path / "a") == ["x", "x/state.json"]


def test_a_named_source_without_state_is_refused(tmp_path):
    with (file_store(tmp_path / "a") as src, file_store(tmp_path / "b") as dst,
          pytest.raises(InvalidInputError, match="No state found for state ID 'absent'")):
        prepare(src, dst, [("absent", "y")])
    assert not (tmp_path / "b").exists()


def test_within_one_store_a_pair_onto_itself_is_nothing_to_do(tmp_path):
    seed(tmp_path / "a", {"x": ONE})
    with file_store(tmp_path / "a") as store:
        job = prepare(store, store, [("x", "x")], delete_source=True)
        assert job.pairs == []
        report = run(job)
        assert report.ok and report.total == 0 and report.deleted_from_source == 0
        assert store.get("x") == Envelope(ONE, {})
        moved = transfer(store, store, [("x", "y")], delete_source=True)
        assert moved.ok and moved.copied == 1 and moved.deleted_from_source == 1
        assert store.list_ids() == ["y"]


def test_an_invalid_stored_id_refuses_the_whole_run_before_any_write(tmp_path):
    seed(tmp_path / "a", {"good": ONE, "bad\nid": ONE})
    with file_store(tmp_path / "a") as src, file_store(tmp_path / "b") as dst:
        job = prepare(src, dst)  # IDs by pattern: listed and checked when the job runs
        with pytest.raises(InvalidStateIdError, match="control character"):
            run(job)
    assert not (tmp_path / "b").exists() or tree(tmp_path / "b") == []


@pytest.mark.parametrize("on_conflict", ["skip", OnConflict.skip])
def test_on_conflict_is_one_enum_and_takes_its_words(tmp_path, on_conflict):
    seed(tmp_path / "a", {"x": ONE})
    seed(tmp_path / "b", {"x": {"singer_state": {}}})
    with file_store(tmp_path / "a") as src, file_store(tmp_path / "b") as dst:
        job = prepare(src, dst, on_conflict=on_conflict, verify="read-back")
        assert job.on_conflict is OnConflict.skip and job.verify is Verify.read_back
        report = run(job)
    assert report.ok and report.skipped_conflicts == ["x"]
    assert report.on_conflict is OnConflict.skip
    assert json.loads(json.dumps(report.to_dict()))["on_conflict"] == "skip"


def test_unknown_choices_name_the_valid_ones(tmp_path):
    with file_store(tmp_path / "a") as src, file_store(tmp_path / "b") as dst:
        with pytest.raises(ConfigurationError,
                           match="--on-conflict must be one of fail, skip, overwrite"):
            prepare(src, dst, on_conflict="replace")
        with pytest.raises(ConfigurationError, match="--verify must be one of checksum, "
                                                     "read-back"):
            prepare(src, dst, verify="twice")
