"""Commands that work across two backends: copy/move --to, migrate, diff."""

import json
import sys
from contextlib import contextmanager
from typing import Annotated

import typer

from state_ext.cli.common import (
    ForceOption,
    ListFormat,
    OnConflict,
    ProjectRootOption,
    ToOption,
    UriOption,
    UsageError,
    app,
    confirm,
    handled,
    log,
    out,
    state_backend,
    validate_ids,
)


@app.command()
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
    with handled():
        dst_state_id = _destination_id(src_state_id, dst_state_id, to)
        _copy_or_move(src_state_id, dst_state_id, to, force, uri, project_root, move=False)
        log().info(f"State for {dst_state_id} was successfully copied from {src_state_id}")


@app.command()
def move(
    src_state_id: Annotated[str, typer.Argument()],
    dst_state_id: Annotated[str | None, typer.Argument(
        help="Destination state ID (default: SRC_STATE_ID, with --to).")] = None,
    to: ToOption = None,
    force: ForceOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Move a state ID's state to another state ID or backend (copy, verify, then clear)."""
    with handled():
        dst_state_id = _destination_id(src_state_id, dst_state_id, to)
        _copy_or_move(src_state_id, dst_state_id, to, force, uri, project_root, move=True)
        log().info(f"State for {src_state_id} was successfully moved to {dst_state_id}")


def _destination_id(src_state_id: str, dst_state_id: str | None, to: str | None) -> str:
    if dst_state_id is None:
        if to is None:
            raise UsageError("Missing argument 'DST_STATE_ID' (or give --to URI)")
        dst_state_id = src_state_id
    validate_ids(src_state_id, dst_state_id)
    return dst_state_id


def _copy_or_move(src_id, dst_id, to, force, uri, project_root, *, move: bool) -> None:
    from state_ext import operations
    from state_ext.errors import BackendError, InvalidInputError

    with state_backend(uri, project_root) as source:
        if to is None:
            confirm("This will overwrite state for the destination. Continue?", force)
            if move:
                operations.move_state(source, src_id, source, dst_id)
            else:
                operations.copy_state(source, src_id, source, dst_id)
            return
        from state_ext.transfer import ensure_distinct, transfer

        with state_backend(to, project_root) as destination:
            ensure_distinct(source, destination)
            if source.get(src_id) is None:
                raise InvalidInputError(f"No state found for state ID {src_id!r}")
            confirm("This will overwrite state for the destination. Continue?", force)
            report = transfer(source, destination, [(src_id, dst_id)],
                              on_conflict="overwrite", delete_source=move)
            problems = {**report.failed, **dict.fromkeys(report.mismatched, "did not verify")}
            if problems:
                state_id, reason = next(iter(problems.items()))
                raise BackendError(f"State {state_id!r}: {reason}")



@app.command()
def migrate(
    to: Annotated[str | None, typer.Option(
        "--to", envvar="STATE_EXT_MIGRATE_TO",
        help="Destination backend URI (plugin setting migrate_to).")] = None,
    from_uri: Annotated[str | None, typer.Option(
        "--from", envvar="STATE_EXT_MIGRATE_FROM",
        help="Source backend URI (default: the project's state_backend.uri).")] = None,
    pattern: Annotated[str | None, typer.Option(
        envvar="STATE_EXT_MIGRATE_PATTERN", help="Only state IDs matching this pattern.")] = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Report what would be copied, skipped or in conflict; write nothing.")
    ] = False,
    on_conflict: Annotated[OnConflict, typer.Option(
        "--on-conflict", envvar="STATE_EXT_MIGRATE_ON_CONFLICT",
        help="When the destination holds different state: fail (before writing anything), "
             "skip it, or overwrite it.")] = OnConflict.fail,
    delete_source: Annotated[bool, typer.Option(
        "--delete-source", envvar="STATE_EXT_MIGRATE_DELETE_SOURCE",
        help="Delete each migrated state from the source once verified.")] = False,
    concurrency: Annotated[int, typer.Option(
        min=1, max=64, envvar="STATE_EXT_MIGRATE_CONCURRENCY",
        help="Writes in flight at once (object stores; file:// uses at most 4 threads).")] = 64,
    output_format: Annotated[ListFormat, typer.Option(
        "--format", help="json prints the report on stdout.")] = ListFormat.text,
    project_root: ProjectRootOption = None,
) -> None:
    """Move all state from one backend to another: exact, locked, verified, resumable."""
    from state_ext.transfer import ensure_distinct, transfer

    with handled():
        if not to:
            raise UsageError("Missing --to URI (or the plugin setting migrate_to, "
                             "STATE_EXT_MIGRATE_TO)")
        with (
            state_backend(from_uri, project_root) as source,
            state_backend(to, project_root) as dest,
        ):
            ensure_distinct(source, dest)
            log().info("migrating state", source=source.label, destination=dest.label,
                        dry_run=dry_run)
            with _progress_bar() as progress:
                report = transfer(source, dest, pattern=pattern, on_conflict=on_conflict.value,
                                  dry_run=dry_run, delete_source=delete_source,
                                  concurrency=concurrency, progress=progress)
        _render_transfer(report, output_format)
        if not report.ok:
            raise typer.Exit(1)


@contextmanager
def _progress_bar():
    """A one-line progress display on stderr, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        yield None
        return

    def show(phase: str, done: int, total: int) -> None:
        width = 30
        filled = width * done // total if total else width
        sys.stderr.write(f"\r{phase:>6} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
        sys.stderr.flush()

    try:
        yield show
    finally:
        sys.stderr.write("\n")


def _render_transfer(report, output_format: ListFormat) -> None:
    if output_format is ListFormat.json:
        out(json.dumps(report.to_dict(), indent=2))
    verb = "would copy" if report.dry_run else "copied"
    logger = log()
    logger.info(
        f"{report.total} state(s): {verb} {report.copied}, "
        f"{'would overwrite' if report.dry_run else 'overwrote'} {report.overwritten}, "
        f"identical {report.identical}, conflicts {len(report.conflicts)}, "
        f"skipped conflicts {len(report.skipped_conflicts)}, failed {len(report.failed)}, "
        f"mismatched {len(report.mismatched)}, deleted from source "
        f"{report.deleted_from_source}; {report.elapsed_seconds:.2f} s, "
        f"{report.states_per_second} states/s"
    )
    if report.conflicts:
        shown = ", ".join(report.conflicts[:10]) + (" ..." if len(report.conflicts) > 10 else "")
        logger.error(
            f"{len(report.conflicts)} state ID(s) hold different state at the destination "
            f"(nothing was written; use --on-conflict skip|overwrite): {shown}"
        )
    for state_id, reason in list(report.failed.items())[:20]:
        logger.error(f"{state_id}: {reason}")
    if report.mismatched:
        logger.error("did not read back as written: " + ", ".join(report.mismatched[:20]))


@app.command()
def diff(
    to: Annotated[str, typer.Option("--to", help="The backend URI to compare with.")],
    pattern: Annotated[str | None, typer.Option(help="Only state IDs matching this.")] = None,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Compare two backends: IDs missing on either side, IDs whose state differs. Exit 1 if any."""
    from state_ext.transfer import diff as compare

    with handled():
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


