"""Phase 1 of a transfer (``state_ext.transfer``): what was asked (``Job``) and what the
write phase will do about it (``Plan``), decided from one listing of the destination.

Only IDs present on both sides are read (a chunk at a time, both sides at once) and
classified: identical, a conflict (decided by ``on_conflict`` before anything is
written), or an overwrite. IDs absent from the destination need no read: they are planned
as "absent", and the checked write refuses them if a pipeline creates them meanwhile.
The chunked readers live here too, for the write phase and ``diff``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from state_ext.backends.base import StateBackend, digest
from state_ext.transfer_options import CONCURRENCY, OnConflict, Verify
from state_ext.transfer_report import TransferReport

CHUNK = 500
Progress = Callable[[str, int, int], None]  # phase, done, total
Pairs = list[tuple[str, str]]  # (source ID, destination ID)
GONE = "no state at the source (deleted meanwhile?)"


@dataclass
class Job:
    """A transfer checked against the storage rules, ready to run. ``pairs`` is None when
    the IDs are the source's that match ``pattern``, listed when the job runs."""

    src: StateBackend
    dst: StateBackend
    pairs: Pairs | None
    pattern: str | None = None
    on_conflict: OnConflict = OnConflict.fail
    dry_run: bool = False
    delete_source: bool = False
    concurrency: int = CONCURRENCY
    verify: Verify = Verify.checksum


@dataclass
class Plan:
    """What the write phase does, decided from one listing of the destination."""

    pairs: Pairs
    to_write: Pairs = field(default_factory=list)
    planned_dst: dict[str, str | None] = field(default_factory=dict)  # digest there, or None
    copied_digest: dict[str, str] = field(default_factory=dict)  # source ID -> what it held
    locked: set[str] = field(default_factory=set)  # destination IDs with a lock object
    create: Callable | None = None  # the destination's conditional create, when usable


def plan(job: Job, pairs: Pairs, report: TransferReport, progress: Progress) -> Plan:
    """Read only what both sides hold; decide conflicts before anything is written."""
    src, dst = job.src, job.dst
    present, locked = _listing(dst)
    planned = Plan(pairs, locked=locked)
    planned.create = getattr(dst, "create_new_many", None)
    report.write_path = getattr(dst, "fast_create_problem", None) if planned.create else None
    if report.write_path is not None:
        planned.create = None
    both = [(s, d) for s, d in pairs if d in present]
    absent = len(pairs) - len(both)  # planned without a read
    for src_id, dst_id in pairs:
        if dst_id not in present:
            planned.to_write.append((src_id, dst_id))
            planned.planned_dst[dst_id] = None
    for done, chunk in enumerate(chunks(both)):
        source = read_states(src, (s for s, _ in chunk))
        target = read_states(dst, (d for _, d in chunk))
        for src_id, dst_id in chunk:
            src_digest, dst_digest = digest(source[src_id]), digest(target[dst_id])
            if src_digest is None:
                report.failed[src_id] = GONE
                continue
            planned.copied_digest[src_id] = src_digest
            if dst_digest == src_digest:
                report.identical += 1
                continue
            if dst_digest is not None:
                if job.on_conflict is OnConflict.fail:
                    report.conflicts.append(dst_id)
                    continue
                if job.on_conflict is OnConflict.skip:
                    report.skipped_conflicts.append(dst_id)
                    del planned.copied_digest[src_id]
                    continue
            planned.to_write.append((src_id, dst_id))
            planned.planned_dst[dst_id] = dst_digest
        progress("plan", absent + min((done + 1) * CHUNK, len(both)), len(pairs))
    if not both:
        progress("plan", len(pairs), len(pairs))
    report.would_overwrite = sum(1 for _, d in planned.to_write
                                 if planned.planned_dst[d] is not None)
    report.would_copy = len(planned.to_write) - report.would_overwrite
    return planned


def _listing(dst: StateBackend) -> tuple[set[str], set[str]]:
    """(IDs with a state, IDs with a lock object) from one listing of the destination."""
    lister = getattr(dst, "plan_listing", None)
    if lister is None:
        return set(dst.list_ids()), set()
    seen = lister()
    return set(seen.ids), set(seen.locked)


def chunks(items: list, size: int = CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def read_states(backend: StateBackend, ids: Iterable[str]) -> dict:
    """ID -> envelope (None when absent), in one bulk read."""
    return dict(backend.iter_states(list(ids)))
