"""Phase 2 of a transfer (``state_ext.transfer``): write what was planned, and verify it.

Each source state is read once, the next chunk while this one is written. A state new to
the destination (absent from the planning listing, with no lock object there either) is
written by one conditional create where the store offers one (``create_new_many``: S3,
GCS and Azure create only if absent; file:// links a complete file into place, a link
that never replaces): it fails if someone created the ID after the listing, and that ID is
then a conflict (``raced``), handled by ``on_conflict``, never overwritten. Every other
state is written under the destination's lock and only if the destination still holds
what was planned over, so a pipeline writing meanwhile is never clobbered.

A created state is verified by the store's own checksum of what it received (see
backends/fast_create.py; on file:// by the write's byte count and the ``flush`` barrier, see
backends/file_create.py); every other written state (and, with ``verify="read-back"``,
created ones too) is read back at once and compared, value for value, with what the
source held. Then one durability barrier (``flush``), before anything may leave the source,
and the stale lock objects a killed run left on the plan's IDs are removed
(backends/debris.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from state_ext.backends.base import CHANGED, StateBackend, digest
from state_ext.errors import BackendError
from state_ext.model import Envelope
from state_ext.transfer_options import OnConflict, Verify
from state_ext.transfer_plan import (
    CHUNK,
    GONE,
    Job,
    Pairs,
    Plan,
    Progress,
    chunks,
    read_states,
)
from state_ext.transfer_report import TransferReport


def write_verified(job: Job, planned: Plan, report: TransferReport, progress: Progress) -> None:
    """Write each chunk (created new, or under the lock if the destination still holds
    what was planned over), verify it at once, then make it all durable."""
    src, dst, to_write = job.src, job.dst, planned.to_write
    if to_write:
        dst.check_writable()  # one clear line, not one failure per state
    try:
        for done, (chunk, source) in enumerate(_prefetched(src, chunks(to_write))):
            _write_chunk(job, planned, chunk, source, report)
            progress("write", min((done + 1) * CHUNK, len(to_write)), len(to_write))
        dst.flush()  # what was written is durable before anything leaves the source
        if planned.locked and hasattr(dst, "read_lock"):  # a killed run's locks on the plan's IDs
            from state_ext.backends.debris import sweep_stale_locks

            ours = {d for _, d in planned.pairs}
            report.stale_locks_removed = sweep_stale_locks(dst, sorted(planned.locked & ours))
    except BackendError as exc:  # the store failed: say how far the run got
        raise type(exc)(f"{exc.message}; {report.written} of {len(to_write)} state(s) were "
                        "written and verified before the failure; running the same command "
                        "again completes it") from None


def _write_chunk(job: Job, planned: Plan, chunk: Pairs, source: dict,
                 report: TransferReport) -> None:
    """One chunk: checked against the plan, written, races sorted, verified, counted."""
    dst, planned_dst = job.dst, planned.planned_dst
    states: dict[str, Envelope] = {}
    origin: dict[str, str] = {}
    for src_id, dst_id in chunk:
        envelope = source[src_id]
        if envelope is None:
            report.failed[src_id] = GONE
            continue
        expected = planned.copied_digest.get(src_id)  # set only for IDs planned from a read
        if expected is not None and digest(envelope) != expected:
            report.failed[dst_id] = "the source changed during the migration; run it again"
            continue
        states[dst_id], origin[dst_id] = envelope, src_id
    fresh = {d: e for d, e in states.items()
             if planned.create and planned_dst[d] is None and d not in planned.locked}
    created = _create_new(dst, fresh, report, job.concurrency)
    rest = {d: e for d, e in states.items() if d not in fresh or d in created.redo}
    failures = dst.put_many_checked(rest, {d: planned_dst[d] for d in rest},
                                    concurrency=job.concurrency)
    failures.update(created.failed)
    # what was written: decided before races leave ``failures`` (a raced ID is someone
    # else's state, never ours to read back, count or delete the source of)
    ok = [d for d in states if d in created.checked or (d in rest and d not in failures)]
    _sort_races(failures, planned_dst, report, job.on_conflict)
    report.failed.update(failures)
    check = [d for d in ok if d not in created.checked or job.verify is Verify.read_back]
    back = read_states(dst, check)
    for dst_id in ok:
        if dst_id in back and back[dst_id] != states[dst_id]:  # value for value
            report.mismatched.append(dst_id)
            continue
        if planned_dst[dst_id] is None:
            report.copied += 1
        else:
            report.overwritten += 1
        if job.delete_source:  # remember what was copied, to delete only that
            planned.copied_digest.setdefault(origin[dst_id], digest(states[dst_id]))


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
                on_conflict: OnConflict) -> None:
    """A state planned as absent that someone created before our write (a refused
    conditional create, or the locked path's check) is a conflict: with ``fail`` it is
    reported as one, with ``skip`` skipped; with ``overwrite`` it stays a failure, because
    overwrite replaces what the plan saw, not a state written after it."""
    for dst_id in [d for d, why in failures.items() if why == CHANGED and planned_dst[d] is None]:
        if on_conflict is OnConflict.fail:
            report.raced.append(dst_id)
        elif on_conflict is OnConflict.skip:
            report.skipped_conflicts.append(dst_id)
        else:
            continue
        del failures[dst_id]


def _prefetched(src: StateBackend, chunks: Iterator[list]) -> Iterator[tuple[list, dict]]:
    """Yield (chunk, its source states), reading the next chunk while the caller writes
    this one: the source and the destination are busy at the same time (two chunks in
    memory at most)."""
    from concurrent.futures import ThreadPoolExecutor

    def read(chunk):
        return chunk, read_states(src, (s for s, _ in chunk))

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = None
        for chunk in chunks:
            ahead = pool.submit(read, chunk)
            if pending is not None:
                yield pending.result()
            pending = ahead
        if pending is not None:
            yield pending.result()
