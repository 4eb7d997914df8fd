"""Put state back from a snapshot (or one version from history), through migrate's engine.

The snapshot's states become a read-only in-memory backend, so the write is
``transfer.transfer``'s: planned from one listing, written under each ID's lock and only
if the backend still holds what was planned over (a pipeline writing meanwhile is never
clobbered), read back and compared. ``--exact`` also clears IDs that match the pattern
but are absent from the snapshot, each under its lock and only if unchanged since the plan.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

from state_ext.backends.base import StateBackend, StateSlot, digest
from state_ext.errors import BackendError, StateExtError
from state_ext.model import Envelope
from state_ext.settings import BackendSettings
from state_ext.state_ids import matches


class MemoryBackend(StateBackend):
    """A snapshot's states as a source backend: reads only."""

    def __init__(self, name: str, states: dict[str, Envelope]):
        super().__init__(BackendSettings(uri=f"snapshot://{name}", lock_timeout_seconds=0,
                                         lock_retry_seconds=0))
        self.name, self.states = name, states
        self.scope: str | None = None  # the pattern the snapshot was taken with (--exact)

    @property
    def label(self) -> str:
        return f"snapshot {self.name}"

    @property
    def location(self):
        return ("snapshot", self.name, "")

    def list_ids(self, pattern: str | None = None) -> list[str]:
        return sorted(i for i in self.states if matches(i, pattern))

    def get(self, state_id: str) -> Envelope | None:
        return self.states.get(state_id)

    @contextmanager
    def transaction(self, state_id: str):
        raise BackendError(f"{self.label} is read-only")
        yield StateSlot  # pragma: no cover - never reached


@dataclass
class Plan:
    added: list[str] = field(default_factory=list)  # in the snapshot, absent now
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # absent from the snapshot: --exact
    kept: list[str] = field(default_factory=list)  # absent from the snapshot, left alone
    identical: int = 0
    current: dict[str, str] = field(default_factory=dict)  # ID -> digest now (for removals)

    @property
    def writes(self) -> list[str]:
        return self.added + self.changed

    @property
    def touched(self) -> list[str]:
        """What the restore overwrites or deletes: what its safety snapshot must hold."""
        return self.changed + self.removed

    def lines(self, limit: int = 50) -> list[str]:
        rows = ([f"+ {i}" for i in self.added] + [f"! {i}" for i in self.changed]
                + [f"- {i}" for i in self.removed])
        if len(rows) > limit:
            rows = rows[:limit] + [f"... and {len(rows) - limit} more"]
        return rows

    def to_dict(self) -> dict:
        return {"added": self.added, "changed": self.changed, "removed": self.removed,
                "kept": len(self.kept), "identical": self.identical}


def plan(source: MemoryBackend, backend: StateBackend, pattern: str | None,
         exact: bool) -> Plan:
    """Compare the snapshot with the backend (both sides read once)."""
    result = Plan()
    wanted = source.list_ids(pattern)
    present = dict(backend.iter_all(pattern))
    for state_id in wanted:
        now = present.get(state_id)
        if now is None:
            result.added.append(state_id)
        elif digest(now) == digest(source.states[state_id]):
            result.identical += 1
        else:
            result.changed.append(state_id)
            result.current[state_id] = digest(now)
    for state_id in sorted(set(present) - set(source.states)):
        if exact and matches(state_id, source.scope):
            result.removed.append(state_id)
            result.current[state_id] = digest(present[state_id])
        else:
            result.kept.append(state_id)
    return result


def apply(source: MemoryBackend, backend: StateBackend, the_plan: Plan, *,
          exact: bool) -> dict:
    """Write the plan: the snapshot's states through ``transfer``, then ``--exact``
    removals. Returns counts; any failure raises with the IDs, after what could be done."""
    from state_ext.transfer import transfer
    from state_ext.transfer_options import OnConflict

    report = None
    if the_plan.writes:
        report = transfer(source, backend, [(i, i) for i in the_plan.writes],
                          on_conflict=OnConflict.overwrite)
    failed = dict(report.failed) if report else {}
    failed.update({i: "did not read back as written" for i in (report.mismatched if report
                                                               else [])})
    removed = 0
    if exact and the_plan.removed:
        expected = {i: the_plan.current[i] for i in the_plan.removed}
        # no concurrency given: the backend's own default applies (StateBackend: 8 threads)
        failures = backend.delete_many_checked(expected)
        failed.update(failures)
        removed = len(expected) - len(failures)
    if failed:
        first = sorted(failed.items())[:5]
        more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
        raise StateExtError(
            f"Restore incomplete: {len(failed)} state(s) not restored: "
            + "; ".join(f"{i}: {why}" for i, why in first) + more)
    return {"written": report.written if report else 0, "removed": removed}


def exact_scope(store, info) -> str | None:
    """The pattern ``--exact`` may clear within: the snapshot's own. A snapshot of listed
    IDs (an automatic one) says nothing about the other IDs, so ``--exact`` is refused."""
    from state_ext.errors import InvalidInputError
    from state_ext.snapshots import read_meta

    meta = read_meta(store, info)
    if not meta or meta.get("ids") is not None:
        why = "its metadata is missing" if not meta else "it holds only listed state IDs"
        raise InvalidInputError(
            f"--exact cannot be used with snapshot {info.name}: {why}, so it does not say "
            "which other states should not exist; restore without --exact")
    return meta.get("pattern")


def one_version(state_id: str, state: dict) -> MemoryBackend:
    """A history version as a source: completed = that effective state, as ``set`` does."""
    return MemoryBackend(f"history of {state_id}", {state_id: Envelope.complete(state)})
