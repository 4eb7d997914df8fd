"""Move state between two backends exactly, safely and resumably (migrate, copy --to, diff).

The engine walks the source's IDs in chunks, so memory stays flat whatever the number of
states (only IDs and short digests are kept), in up to four passes:

1. plan: one listing of the destination; only IDs present on both sides are read and
   classified (identical, conflict, overwrite), so conflicts are decided by
   ``on_conflict`` before anything is written, and ``--dry-run`` stops here. IDs absent
   from the destination need no read: they are planned as "absent" and the checked
   write below refuses them if a pipeline creates them meanwhile;
2. write: each source state is read once. A state new to the destination (absent from the
   planning listing, with no lock object there either) is written by one conditional
   create where the store offers one (``create_new_many`` on S3, GCS and Azure; on
   file:// ``put_many_checked`` itself links a complete file into place without the
   lock): it fails if someone created the ID after the listing, and that ID is then a
   conflict (``raced``), handled by ``on_conflict``, never overwritten. Every
   other state is written under the destination's lock and only if the destination still
   holds what was planned over (so a pipeline writing meanwhile is never clobbered);
3. verify: a created state is checked by the store's own checksum of what it received
   (see backends/fast_create.py); every other written state (and, with
   ``verify="read-back"``, created ones too) is read back at once and compared, value for
   value, with what the source held; then one durability barrier (``flush``). Stale lock
   objects on the plan's IDs (a killed run's) are then removed (backends/debris.py);
4. delete the source (``--delete-source``) ID by ID, only once verified and only if the
   source still holds what was copied.

Envelopes travel whole (completed and partial halves, never flattened). A re-run skips
what is already identical, so an interrupted migration completes by running it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from state_ext.backends.base import CHANGED, StateBackend, digest
from state_ext.errors import BackendError, ConfigurationError
from state_ext.model import Envelope
from state_ext.state_ids import validate_state_id

CHUNK = 500
ON_CONFLICT = ("fail", "skip", "overwrite")
VERIFY = ("checksum", "read-back")
Progress = Callable[[str, int, int], None]  # phase, done, total


@dataclass
class TransferReport:
    source: str
    destination: str
    dry_run: bool = False
    on_conflict: str = "fail"
    total: int = 0
    would_copy: int = 0  # planned: absent at the destination
    would_overwrite: int = 0  # planned: different at the destination, --on-conflict overwrite
    copied: int = 0  # written and verified, never merely planned
    overwritten: int = 0
    identical: int = 0
    conflicts: list[str] = field(default_factory=list)
    skipped_conflicts: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)
    deleted_from_source: int = 0
    elapsed_seconds: float = 0.0
    raced: list[str] = field(default_factory=list)  # created by someone between plan and write
    created_unlocked: int = 0  # object stores: new states written by one create each
    write_path: str | None = None  # why new states took the locked path, if they did
    stale_locks_removed: int = 0

    @property
    def ok(self) -> bool:
        blocked = bool(self.conflicts or self.raced) and self.on_conflict == "fail"
        return not (blocked or self.failed or self.mismatched)

    @property
    def written(self) -> int:
        return self.copied + self.overwritten

    @property
    def states_per_second(self) -> float | None:
        """States planned per second of the whole run; None for a run that wrote nothing."""
        if not self.written or not self.elapsed_seconds:
            return None
        return round(self.total / self.elapsed_seconds, 1)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "destination": self.destination, "dry_run": self.dry_run,
            "on_conflict": self.on_conflict, "total": self.total,
            "would_copy": self.would_copy, "would_overwrite": self.would_overwrite,
            "copied": self.copied, "overwritten": self.overwritten, "identical": self.identical,
            "conflicts": self.conflicts, "skipped_conflicts": self.skipped_conflicts,
            "failed": self.failed, "mismatched": self.mismatched,
            "deleted_from_source": self.deleted_from_source, "raced": self.raced,
            "created_unlocked": self.created_unlocked, "write_path": self.write_path,
            "stale_locks_removed": self.stale_locks_removed,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "states_per_second": self.states_per_second, "ok": self.ok,
        }


def _chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _read(backend: StateBackend, ids: Iterable[str]) -> dict:
    return dict(backend.iter_states(list(ids)))


def _prefetched(src: StateBackend, chunks: Iterator[list]) -> Iterator[tuple[list, dict]]:
    """Yield (chunk, its source states), reading the next chunk while the caller writes
    this one: the source and the destination are busy at the same time (two chunks in
    memory at most)."""
    from concurrent.futures import ThreadPoolExecutor

    def read(chunk):
        return chunk, _read(src, (s for s, _ in chunk))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for chunk in chunks:
            ahead = pool.submit(read, chunk)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()


def ensure_distinct(src: StateBackend, dst: StateBackend) -> None:
    """Refuse a store copied onto itself or into itself: identical states would look
    migrated, and ``--delete-source`` would delete the only copy."""
    if src.location == dst.location:
        raise ConfigurationError(f"Source and destination are the same backend: {src.label}")
    if src.overlaps(dst):
        raise ConfigurationError(
            f"Source {src.label} and destination {dst.label} overlap (one lies inside the other)"
        )


def transfer(
    src: StateBackend,
    dst: StateBackend,
    pairs: list[tuple[str, str]] | None = None,
    *,
    pattern: str | None = None,
    on_conflict: str = "fail",
    dry_run: bool = False,
    delete_source: bool = False,
    concurrency: int = 64,
    progress: Progress | None = None,
    verify: str = "checksum",
) -> TransferReport:
    """Copy ``pairs`` (source ID, destination ID), or every ID matching ``pattern``."""
    if on_conflict not in ON_CONFLICT:
        raise ConfigurationError(f"--on-conflict must be one of {', '.join(ON_CONFLICT)}")
    if verify not in VERIFY:
        raise ConfigurationError(f"--verify must be one of {', '.join(VERIFY)}")
    started = time.monotonic()
    progress = progress or (lambda phase, done, total: None)
    report = TransferReport(src.label, dst.label, dry_run=dry_run, on_conflict=on_conflict)
    if pairs is None:
        pairs = [(i, i) for i in src.list_ids(pattern)]
    for src_id, dst_id in pairs:
        validate_state_id(src_id), validate_state_id(dst_id)
    report.total = len(pairs)

    # 1. plan: read only what both sides hold
    present, locked = _listing(dst)
    fast = getattr(dst, "create_new_many", None)
    report.write_path = getattr(dst, "fast_create_problem", None) if fast else None
    if report.write_path is not None:
        fast = None
    to_write: list[tuple[str, str]] = []
    planned_dst: dict[str, str | None] = {}
    copied_digest: dict[str, str] = {}  # source ID -> digest of what it held (or holds)
    both = [(s, d) for s, d in pairs if d in present]
    absent = len(pairs) - len(both)  # planned without a read
    for src_id, dst_id in pairs:
        if dst_id not in present:
            to_write.append((src_id, dst_id))
            planned_dst[dst_id] = None
    for done, chunk in enumerate(_chunks(both)):
        source = _read(src, (s for s, _ in chunk))
        target = _read(dst, (d for _, d in chunk))
        for src_id, dst_id in chunk:
            src_digest, dst_digest = digest(source[src_id]), digest(target[dst_id])
            if src_digest is None:
                report.failed[src_id] = "no state at the source (deleted meanwhile?)"
                continue
            copied_digest[src_id] = src_digest
            if dst_digest == src_digest:
                report.identical += 1
                continue
            if dst_digest is not None:
                if on_conflict == "fail":
                    report.conflicts.append(dst_id)
                    continue
                if on_conflict == "skip":
                    report.skipped_conflicts.append(dst_id)
                    del copied_digest[src_id]
                    continue
            to_write.append((src_id, dst_id))
            planned_dst[dst_id] = dst_digest
        progress("plan", absent + min((done + 1) * CHUNK, len(both)), len(pairs))
    if not both:
        progress("plan", len(pairs), len(pairs))
    report.would_overwrite = sum(1 for _, d in to_write if planned_dst[d] is not None)
    report.would_copy = len(to_write) - report.would_overwrite
    if dry_run or not report.ok:
        report.elapsed_seconds = time.monotonic() - started
        return report
    if to_write:
        dst.check_writable()  # one clear line, not one failure per state

    # 2. write each chunk under the destination's lock, if it still holds what we planned
    # over; 3. read the chunk back at once and compare it with what the source held
    try:
        for done, (chunk, source) in enumerate(_prefetched(src, _chunks(to_write))):
            states: dict[str, Envelope] = {}
            origin: dict[str, str] = {}
            for src_id, dst_id in chunk:
                envelope = source[src_id]
                if envelope is None:
                    report.failed[src_id] = "no state at the source (deleted meanwhile?)"
                    continue
                planned = copied_digest.get(src_id)  # set only for IDs planned from a read
                if planned is not None and digest(envelope) != planned:
                    report.failed[dst_id] = "the source changed during the migration; run it again"
                    continue
                states[dst_id], origin[dst_id] = envelope, src_id
            fresh = {d: e for d, e in states.items()
                     if fast and planned_dst[d] is None and d not in locked}
            created = _create_new(dst, fresh, report, concurrency)
            rest = {d: e for d, e in states.items() if d not in fresh or d in created.redo}
            failures = dst.put_many_checked(
                rest, {d: planned_dst[d] for d in rest}, concurrency=concurrency
            )
            failures.update(created.failed)
            # what was written: decided before races leave ``failures`` (a raced ID is
            # someone else's state, never ours to read back, count or delete the source of)
            ok = [d for d in states if d in created.checked or (d in rest and d not in failures)]
            _sort_races(failures, planned_dst, report, on_conflict)
            report.failed.update(failures)
            check = [d for d in ok if d not in created.checked or verify == "read-back"]
            back = _read(dst, check)
            for dst_id in ok:
                if dst_id in back and back[dst_id] != states[dst_id]:  # value for value
                    report.mismatched.append(dst_id)
                    continue
                if planned_dst[dst_id] is None:
                    report.copied += 1
                else:
                    report.overwritten += 1
                if delete_source:  # remember what was copied, to delete only that
                    copied_digest.setdefault(origin[dst_id], digest(states[dst_id]))
            progress("write", min((done + 1) * CHUNK, len(to_write)), len(to_write))
        dst.flush()  # what was written is durable before anything leaves the source
        if locked and hasattr(dst, "read_lock"):  # a killed run's locks on the plan's IDs
            from state_ext.backends.debris import sweep_stale_locks

            planned = {d for _, d in pairs}
            report.stale_locks_removed = sweep_stale_locks(dst, sorted(locked & planned))
    except BackendError as exc:  # the store failed: say how far the run got
        done = report.copied + report.overwritten
        raise type(exc)(f"{exc.message}; {done} of {len(to_write)} state(s) were written and "
                        "verified before the failure; running the same command again "
                        "completes it") from None

    # 4. delete the source, ID by ID, once verified
    if delete_source:
        bad = set(report.mismatched) | set(report.failed)
        verified = {
            s: copied_digest[s] for s, d in pairs
            if s in copied_digest and d not in bad and s not in bad
        }
        failures = src.delete_many_checked(verified, concurrency=concurrency)
        report.failed.update({s: f"not deleted from the source: {r}" for s, r in failures.items()})
        report.deleted_from_source = len(verified) - len(failures)
    report.elapsed_seconds = time.monotonic() - started
    return report


def _listing(dst: StateBackend) -> tuple[set[str], set[str]]:
    """(IDs with a state, IDs with a lock object) from one listing of the destination."""
    lister = getattr(dst, "plan_listing", None)
    if lister is None:
        return set(dst.list_ids()), set()
    seen = lister()
    return set(seen.ids), set(seen.locked)


@dataclass
class _Created:
    checked: set[str] = field(default_factory=set)  # created, checked by the store's checksum
    redo: set[str] = field(default_factory=set)  # to write under the lock after all
    failed: dict[str, str] = field(default_factory=dict)


def _create_new(dst, fresh: dict, report: TransferReport, concurrency: int) -> _Created:
    """One conditional create per new state. An ID someone created since the plan is never
    overwritten: it fails like the locked path's check (``_sort_races`` then decides); an
    ID whose lock appeared takes the locked path."""
    done = _Created()
    if not fresh:
        return done
    result = dst.create_new_many(fresh, concurrency=concurrency)
    done.checked.update(result.created)
    report.created_unlocked += len(result.created)
    done.failed.update(result.failed)
    done.redo.update(result.locked)
    done.failed.update(dict.fromkeys(result.exists, CHANGED))
    return done


def _sort_races(failures: dict, planned_dst: dict, report: TransferReport,
                on_conflict: str) -> None:
    """A state planned as absent that someone created before our write (a refused
    conditional create, or the locked path's check) is a conflict: with ``fail`` it is
    reported as one, with ``skip`` skipped; with ``overwrite`` it stays a failure, because
    overwrite replaces what the plan saw, not a state written after it."""
    for dst_id in [d for d, why in failures.items() if why == CHANGED and planned_dst[d] is None]:
        if on_conflict == "fail":
            report.raced.append(dst_id)
        elif on_conflict == "skip":
            report.skipped_conflicts.append(dst_id)
        else:
            continue
        del failures[dst_id]


@dataclass
class DiffReport:
    source: str
    destination: str
    only_in_source: list[str] = field(default_factory=list)
    only_in_destination: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    identical: int = 0

    @property
    def same(self) -> bool:
        return not (self.only_in_source or self.only_in_destination or self.different)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "destination": self.destination,
            "only_in_source": self.only_in_source,
            "only_in_destination": self.only_in_destination,
            "different": self.different, "identical": self.identical, "same": self.same,
        }


def diff(src: StateBackend, dst: StateBackend, pattern: str | None = None) -> DiffReport:
    """Which IDs exist on one side only, and which hold different envelopes."""
    report = DiffReport(src.label, dst.label)
    source_ids, target_ids = set(src.list_ids(pattern)), set(dst.list_ids(pattern))
    report.only_in_source = sorted(source_ids - target_ids)
    report.only_in_destination = sorted(target_ids - source_ids)
    for chunk in _chunks(sorted(source_ids & target_ids)):
        source, target = _read(src, chunk), _read(dst, chunk)
        for state_id in chunk:
            if digest(source[state_id]) == digest(target[state_id]):
                report.identical += 1
            else:
                report.different.append(state_id)
    return report
