"""Move state between two backends exactly, safely and resumably: the one engine behind
copy, move (within one backend or onto another), migrate and restore.

A transfer is first *prepared* (``prepare``): its options and the storage rules (distinct
stores, named sources that hold a state) are checked before anything is listed, read or
written, so that a command can ask its question and take its safety snapshot in between.
It then *runs* (``run``), walking the IDs in chunks, so memory stays flat whatever the
number of states (only IDs and short digests are kept), in up to three phases:

1. ``plan`` (transfer_plan.py): one listing of the destination; only IDs present on both
   sides are read and classified, so conflicts are decided by ``on_conflict`` before
   anything is written, and ``--dry-run`` stops here;
2. ``write_verified`` (transfer_write.py): each state written by a conditional create
   (new at the destination) or under the destination's lock, only if the destination
   still holds what was planned over, so a pipeline writing meanwhile is never
   clobbered; each verified at once, then one durability barrier;
3. ``delete_source`` (``--delete-source``, a move): ID by ID, only once verified and only
   if the source still holds what was copied.

Envelopes travel whole (completed and partial halves, never flattened). A re-run skips
what is already identical, so an interrupted migration completes by running it again.
"""

from __future__ import annotations

import time

from state_ext.backends.base import StateBackend
from state_ext.errors import ConfigurationError, InvalidInputError
from state_ext.state_ids import validate_state_id
from state_ext.transfer_options import CONCURRENCY, OnConflict, Verify
from state_ext.transfer_plan import Job, Pairs, Plan, Progress, plan
from state_ext.transfer_report import TransferReport
from state_ext.transfer_write import write_verified


def transfer(src: StateBackend, dst: StateBackend, pairs: Pairs | None = None, *,
             progress: Progress | None = None, **options) -> TransferReport:
    """Copy ``pairs`` (source ID, destination ID), or every ID matching ``pattern``:
    ``prepare`` and ``run`` in one call (the options are ``prepare``'s)."""
    job = prepare(src, dst, pairs, **options)
    return run(job, progress)


def run(job: Job, progress: Progress | None = None) -> TransferReport:
    """Plan, then (unless a dry run, or conflicts stop it) write, verify and delete the
    source: what the job asked, in that order."""
    started = time.monotonic()
    progress = progress or (lambda phase, done, total: None)
    report = TransferReport(job.src.label, job.dst.label, dry_run=job.dry_run,
                            on_conflict=job.on_conflict)
    pairs = job.pairs
    if pairs is None:
        pairs = _valid([(i, i) for i in job.src.list_ids(job.pattern)])
    report.total = len(pairs)
    planned = plan(job, pairs, report, progress)
    if not job.dry_run and report.ok:
        write_verified(job, planned, report, progress)
        if job.delete_source:
            delete_source(job, planned, report)
    report.elapsed_seconds = time.monotonic() - started
    return report


# -- the storage rules, before anything is listed or written -------------------------------
def ensure_distinct(src: StateBackend, dst: StateBackend) -> None:
    """Refuse a store copied onto itself or into itself: identical states would look
    migrated, and ``--delete-source`` would delete the only copy."""
    if src.location == dst.location:
        raise ConfigurationError(f"Source and destination are the same backend: {src.label}")
    if src.overlaps(dst):
        raise ConfigurationError(
            f"Source {src.label} and destination {dst.label} overlap (one lies inside the other)"
        )


def _choice(kind, value, option: str):
    try:
        return kind(value)
    except ValueError:
        raise ConfigurationError(
            f"{option} must be one of {', '.join(o.value for o in kind)}") from None


def _valid(pairs: Pairs) -> Pairs:
    """Every ID of the plan checked before the first write: one bad ID (a stored one the
    store accepted, e.g. in a system database) refuses the whole run, whereas a backend
    checks an ID only when its turn comes, after earlier chunks were written."""
    for src_id, dst_id in pairs:
        validate_state_id(src_id), validate_state_id(dst_id)
    return pairs


def prepare(src: StateBackend, dst: StateBackend, pairs: Pairs | None = None, *,
            pattern: str | None = None, on_conflict: OnConflict | str = OnConflict.fail,
            dry_run: bool = False, delete_source: bool = False,
            concurrency: int = CONCURRENCY, verify: Verify | str = Verify.checksum) -> Job:
    """Check a transfer before anything is listed, read from the destination or written.

    The storage rules: two backends must be distinct and must not overlap; the same
    backend object may copy between IDs, where a pair onto itself is nothing to copy (and
    its source is never deleted), so it leaves the job. Named pairs are checked whole
    (``_valid``) and each source must hold a state: one named source without a state
    refuses the whole job (a copy or move names one; restore's pairs come from a snapshot
    and always hold one), so a transfer of named pairs is all asked-for IDs or nothing
    planned. Raises the first rule broken.
    """
    on_conflict = _choice(OnConflict, on_conflict, "--on-conflict")
    verify = _choice(Verify, verify, "--verify")
    if dst is not src:
        ensure_distinct(src, dst)
    if pairs is not None:
        _valid(pairs)
        for src_id in dict.fromkeys(s for s, _ in pairs):
            if src.get(src_id) is None:
                raise InvalidInputError(f"No state found for state ID {src_id!r}")
        if dst is src:
            pairs = [(s, d) for s, d in pairs if s != d]
    return Job(src, dst, pairs, pattern, on_conflict, dry_run, delete_source, concurrency,
               verify)


# -- 3. delete the source ------------------------------------------------------------------
def delete_source(job: Job, planned: Plan, report: TransferReport) -> None:
    """Delete, ID by ID, each source state whose copy verified, only if the source still
    holds what was copied (a pipeline that wrote it meanwhile keeps its state)."""
    bad = set(report.mismatched) | set(report.failed)
    verified = {
        s: planned.copied_digest[s] for s, d in planned.pairs
        if s in planned.copied_digest and d not in bad and s not in bad
    }
    failures = job.src.delete_many_checked(verified, concurrency=job.concurrency)
    report.failed.update({s: f"not deleted from the source: {r}" for s, r in failures.items()})
    report.deleted_from_source = len(verified) - len(failures)
