"""Commands that work across two backends: copy/move --to, migrate, diff."""

import json
import sys
from contextlib import contextmanager
from typing import Annotated

import typer

from state_ext.cli.common import (
    ForceOption,
    ListFormat,
    NoSnapshotOption,
    ProjectRootOption,
    ToOption,
    UriOption,
    UsageError,
    confirm,
    log,
    out,
    safety_snapshot,
    state_backend,
    validate_ids,
)
from state_ext.transfer_options import CONCURRENCY, OnConflict, Verify

commands = typer.Typer()


@commands.command()
def copy(
    src_state_id: Annotated[str, typer.Argument()],
    dst_state_id: Annotated[str | None, typer.Argument(
        help="Destination state ID (default: SRC_STATE_ID, with --to).")] = None,
    to: ToOption = None,
    force: ForceOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Copy a state ID's state (both halves, exactly) to another state ID or backend."""
    dst_state_id = _destination_id(src_state_id, dst_state_id, to)
    _copy_or_move(src_state_id, dst_state_id, to, force, uri, project_root, move=False)
    log().info(f"State for {dst_state_id} was successfully copied from {src_state_id}")


@commands.command()
def move(
    src_state_id: Annotated[str, typer.Argument()],
    dst_state_id: Annotated[str | None, typer.Argument(
        help="Destination state ID (default: SRC_STATE_ID, with --to).")] = None,
    to: ToOption = None,
    force: ForceOption = False,
    no_snapshot: NoSnapshotOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Move a state ID's state to another state ID or backend (copy, verify, then clear)."""
    dst_state_id = _destination_id(src_state_id, dst_state_id, to)
    undo = _copy_or_move(src_state_id, dst_state_id, to, force, uri, project_root, move=True,
                         no_snapshot=no_snapshot)
    log().info(f"State for {src_state_id} was successfully moved to {dst_state_id}{undo}")


def _destination_id(src_state_id: str, dst_state_id: str | None, to: str | None) -> str:
    if dst_state_id is None:
        if to is None:
            raise UsageError("Missing argument 'DST_STATE_ID' (or give --to URI)")
        dst_state_id = src_state_id
    validate_ids(src_state_id, dst_state_id)
    return dst_state_id


def _copy_or_move(src_id, dst_id, to, force, uri, project_root, *, move: bool,
                  no_snapshot: bool = False) -> str:
    """Both through migrate's engine (locked, verified writes; the source deleted only once
    its copy verified), within one backend or onto another (``--to``). The engine checks
    its storage rules (distinct stores, a source that holds a state) before the question;
    a move then takes a safety snapshot of what it deletes or overwrites; returns its
    summary words."""
    from state_ext.errors import BackendError
    from state_ext.transfer import prepare, run

    with state_backend(uri, project_root) as source, _other(to, project_root, source) as dest:
        job = prepare(source, dest, [(src_id, dst_id)], on_conflict=OnConflict.overwrite,
                      delete_source=move)
        confirm("This will overwrite state for the destination. Continue?", force,
                what=f"{'move' if move else 'copy'} state onto {dst_id}")
        if not job.pairs:
            return ""  # onto itself: nothing to copy, and the source must stay
        undo = ""
        if move:
            same = [dst_id] if dest is source else []
            undo = safety_snapshot(source, project_root, label="move", ids=[src_id, *same],
                                   no_snapshot=no_snapshot)
            if dest is not source and dest.get(dst_id) is not None:
                undo += safety_snapshot(dest, project_root, label="move", ids=[dst_id],
                                        no_snapshot=no_snapshot)
        report = run(job)
        problems = {**report.failed, **dict.fromkeys(report.mismatched, "did not verify")}
        if problems:
            state_id, reason = next(iter(problems.items()))
            raise BackendError(f"State {state_id!r}: {reason}")
    return undo


@contextmanager
def _other(to: str | None, project_root, source):
    """The destination backend: ``--to``'s, or the source itself."""
    if to is None:
        yield source
        return
    with state_backend(to, project_root) as dest:
        yield dest


@commands.command()
def migrate(
    to: Annotated[str | None, typer.Option(
        "--to", help="Destination backend URI (plugin setting migrate_to).")] = None,
    from_uri: Annotated[str | None, typer.Option(
        "--from", "--uri",
        help="Source backend URI (default: the project's state_backend.uri; plugin setting "
             "migrate_from).")] = None,
    pattern: Annotated[str | None, typer.Option(
        help="Only state IDs matching this pattern (plugin setting migrate_pattern).")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report what would be copied, skipped or in conflict; write nothing.")
    ] = False,
    on_conflict: Annotated[OnConflict | None, typer.Option(
        "--on-conflict",
        help="When the destination holds different state: fail (before writing anything), "
             "skip it, or overwrite it (plugin setting migrate_on_conflict; default fail)."
    )] = None,
    delete_source: Annotated[bool | None, typer.Option(
        "--delete-source/--keep-source",
        help="Delete each migrated state from the source once verified (plugin setting "
             "migrate_delete_source; default keep).")] = None,
    concurrency: Annotated[int | None, typer.Option(
        min=1, max=64,
        help="Requests in flight at once, 1-64 (plugin setting migrate_concurrency; default "
             "64; file:// uses at most 4 threads).")] = None,
    verify: Annotated[Verify | None, typer.Option(
        "--verify",
        help="How new states are verified: checksum (the store's own check of what it "
             "received; default) or read-back (read every written state back). States "
             "that existed are always read back.")] = None,
    output_format: Annotated[ListFormat, typer.Option(
        "--format", help="json prints the report on stdout.")] = ListFormat.text,
    no_snapshot: NoSnapshotOption = False,
    project_root: ProjectRootOption = None,
) -> None:
    """Move all state from one backend to another: exact, locked, verified, resumable.

    With --delete-source, a safety snapshot of the source's states is taken first."""
    from state_ext.cli.migrate_settings import boolean, concurrency_setting, setting
    from state_ext.transfer import prepare, run

    to = to or setting("to", str)
    from_uri = from_uri or setting("from_uri", str)
    pattern = pattern or setting("pattern", str)
    on_conflict = on_conflict or setting("on_conflict", OnConflict) or OnConflict.fail
    if delete_source is None:
        delete_source = bool(setting("delete_source", boolean))
    concurrency = concurrency or setting("concurrency", concurrency_setting) or CONCURRENCY
    if not to:
        raise UsageError("Missing --to URI (or the plugin setting migrate_to, "
                         "STATE_EXT_MIGRATE_TO)")
    with (
        state_backend(from_uri, project_root) as source,
        state_backend(to, project_root) as dest,
    ):
        job = prepare(source, dest, pattern=pattern, on_conflict=on_conflict, dry_run=dry_run,
                      delete_source=delete_source, concurrency=concurrency,
                      verify=verify or Verify.checksum)
        log().info("migrating state", source=source.label, destination=dest.label,
                    dry_run=dry_run)
        undo = ""
        if delete_source and not dry_run:
            undo = safety_snapshot(source, project_root, label="migrate",
                                   pattern=pattern, no_snapshot=no_snapshot)
        with _progress_bar() as progress:
            report = run(job, progress)
    _render_transfer(report, output_format, undo)
    if not report.ok:
        raise typer.Exit(1)


@contextmanager
def _progress_bar():
    """A progress bar per phase (plan, write) on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return
    bars: dict[str, object] = {}
    shown: dict[str, int] = {}

    def show(phase: str, done: int, total: int) -> None:
        if phase not in bars:
            for bar in bars.values():
                bar.render_finish()
            bars[phase] = typer.progressbar(
                length=total, label=phase, file=sys.stderr, show_pos=True, show_eta=False,
                bar_template="%(label)s [%(bar)s] %(info)s")
        bars[phase].update(done - shown.get(phase, 0))
        shown[phase] = done

    try:
        yield show
    finally:
        for bar in bars.values():
            bar.render_finish()


SHOWN = 20  # failures listed one per line; the rest are counted


def _render_transfer(report, output_format: ListFormat, undo: str = "") -> None:
    if output_format is ListFormat.json:
        out(json.dumps(report.to_dict(), indent=2))
    logger = log()
    counts = (f"identical {report.identical}, conflicts {len(report.conflicts)}, "
              f"skipped conflicts {len(report.skipped_conflicts)}")
    blocked = bool(report.conflicts) and report.on_conflict is OnConflict.fail
    if report.dry_run or blocked:
        why = "dry run" if report.dry_run else "stopped by conflicts before any write"
        logger.info(
            f"{report.total} state(s): would copy {report.would_copy}, would overwrite "
            f"{report.would_overwrite}, {counts}; nothing was written ({why})")
    else:
        rate = report.states_per_second
        logger.info(
            f"{report.total} state(s): copied {report.copied}, overwrote {report.overwritten}, "
            f"{counts}, failed {len(report.failed)}, mismatched {len(report.mismatched)}, "
            f"deleted from source {report.deleted_from_source}; "
            f"{report.elapsed_seconds:.2f} s" + (f", {rate} states/s" if rate else "") + undo
        )
    if report.write_path and report.would_copy and not report.dry_run:
        logger.info(f"new states took the locked path: {report.write_path}")
    if report.stale_locks_removed:
        logger.info(f"removed {report.stale_locks_removed} stale lock object(s) that a "
                    "stopped run had left on the migrated state IDs")
    if report.raced:
        action = ("were left as they are" if report.on_conflict is OnConflict.fail
                  else "were skipped")
        logger.error(
            f"{len(report.raced)} state ID(s) were created at the destination by another "
            f"process after the plan and {action} (never overwritten; run again with "
            f"--on-conflict skip|overwrite to decide): {_some(report.raced, 10)}")
    if report.conflicts:
        logger.error(
            f"{len(report.conflicts)} state ID(s) hold different state at the destination "
            f"(nothing was written; use --on-conflict skip|overwrite): "
            f"{_some(report.conflicts, 10)}"
        )
    for state_id, reason in list(report.failed.items())[:SHOWN]:
        logger.error(f"{state_id}: {reason}")
    if len(report.failed) > SHOWN:
        logger.error(f"... and {len(report.failed) - SHOWN} more failed state(s)")
    if report.mismatched:
        logger.error("did not read back as written: " + _some(report.mismatched, SHOWN))


def _some(ids: list[str], limit: int) -> str:
    """The first ``limit`` IDs, comma-separated, and how many more there are."""
    more = len(ids) - limit
    return ", ".join(ids[:limit]) + (f" and {more} more" if more > 0 else "")


@commands.command()
def diff(
    to: Annotated[str, typer.Option("--to", help="The backend URI to compare with.")],
    pattern: Annotated[str | None, typer.Option(help="Only state IDs matching this.")] = None,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Compare two backends: IDs missing on either side, IDs whose state differs. Exit 1 if any."""
    from state_ext.diff import diff as compare

    with state_backend(uri, project_root) as source, state_backend(to, project_root) as dest:
        report = compare(source, dest, pattern)
    if output_format is ListFormat.json:
        out(json.dumps(report.to_dict(), indent=2))
    else:
        for marker, ids in (("<", report.only_in_source), (">", report.only_in_destination),
                            ("!", report.different)):
            for state_id in ids:
                out(f"{marker} {state_id}")
    log().info(
        f"only in source {len(report.only_in_source)}, only in destination "
        f"{len(report.only_in_destination)}, different {len(report.different)}, "
        f"identical {report.identical}"
    )
    if not report.same:
        raise typer.Exit(1)


