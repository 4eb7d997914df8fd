"""Stream-level commands: see (``streams``), reset and rewind (``bookmark``) one stream's
bookmark without touching the others, and ``check`` a whole store's health.

``meltano run --full-refresh`` clears every stream of a state ID and moving ``start_date``
back does not rewind a bookmark, so users edit state JSON by hand; these commands do it
under the ID's lock, after showing the change and a safety snapshot. What the layout is
and how both halves are changed is in ``state_ext.streams``; the check rules in
``state_ext.health``.
"""

import json
from typing import Annotated

import typer

from state_ext.cli.common import (
    ForceOption,
    ListFormat,
    NoSnapshotOption,
    PatternOption,
    ProjectRootOption,
    UriOption,
    UsageError,
    confirm,
    log,
    out,
    safety_snapshot,
    state_backend,
    validate_ids,
)

commands = typer.Typer()

StateIdArgument = Annotated[str, typer.Argument(help="State ID, e.g. dev:tap-x-to-target-y.")]
PartitionOption = Annotated[str | None, typer.Option(
    "--partition", help="Only the partition whose context is this JSON object, "
    "e.g. '{\"account_id\": 1}'.")]
DryRunOption = Annotated[bool, typer.Option(
    "--dry-run", help="Only show the change; write nothing.")]
FormatOption = Annotated[ListFormat, typer.Option("--format")]


@commands.command()
def streams(
    state_id: StateIdArgument,
    output_format: FormatOption = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """One row per stream of the effective state: bookmark, partitions, in-flight markers,
    and the half (completed or partial) its value comes from."""
    from state_ext import streams as layout

    validate_ids(state_id)
    with state_backend(uri, project_root) as backend:
        envelope = backend.get(state_id)
    layout.require_streams(state_id, envelope, [])  # "No state found" when there is none
    found, opaque = layout.rows(envelope)
    if output_format is ListFormat.json:
        out(json.dumps({"state_id": state_id, "streams": [r.to_dict() for r in found],
                        "other_keys": opaque}))
        return
    table = [("stream", "replication_key", "replication_key_value", "partitions",
              "in_flight", "from", "other_keys"), *(row.cells() for row in found)]
    lines = _aligned(table) if found else []
    lines += [f"{path}: {layout.compact(value)}" for path, value in opaque.items()]
    if not lines:
        log().info(f"No streams in the state of {state_id}")
        return
    out("\n".join(lines))


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    """Columns padded to their widest cell (the last one left as it is)."""
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    return ["  ".join([*(cell.ljust(width) for cell, width in zip(line, widths, strict=False)),
                       line[-1]]).rstrip() for line in table]


@commands.command()
def reset(
    state_id: StateIdArgument,
    stream_names: Annotated[list[str] | None, typer.Argument(
        metavar="STREAM...", help="The streams whose bookmarks to remove.")] = None,
    all_streams: Annotated[bool, typer.Option(
        "--all-streams", help="Every stream's bookmark (other singer_state keys are kept).")
    ] = False,
    partition: PartitionOption = None,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    no_snapshot: NoSnapshotOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Remove streams' (or one partition's) bookmarks from both halves, so the next run
    extracts them from start_date while the other streams continue incrementally."""
    from state_ext import streams as layout

    if bool(stream_names) == all_streams:
        raise UsageError("Give the streams to reset, or --all-streams (not both)")
    context = layout.parse_partition(partition)

    def plan(envelope):
        return layout.plan_reset(state_id, envelope, stream_names or [], all_streams, context)

    _surgery(state_id, plan, "reset", dry_run, force, no_snapshot, uri, project_root,
             lambda names: f"reset {len(names)} stream bookmark(s) of {state_id}: "
                           + ", ".join(names))


@commands.command()
def bookmark(
    state_id: StateIdArgument,
    stream: Annotated[str, typer.Argument(help="The stream whose bookmark to set.")],
    value: Annotated[str, typer.Option(
        "--value", help="The new replication_key_value (same type as the current one).")],
    key: Annotated[str | None, typer.Option(
        "--key", help="Also set replication_key (needed when the bookmark has none).")] = None,
    partition: PartitionOption = None,
    any_type: Annotated[bool, typer.Option(
        "--any-type", help="Allow a value of another type than the current one "
        "(a JSON number becomes a number, anything else a string).")] = False,
    dry_run: DryRunOption = False,
    force: ForceOption = False,
    no_snapshot: NoSnapshotOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Set a stream's (or one partition's) replication_key_value: rewind it for a backfill
    or move it ahead; the next run starts from that value."""
    from state_ext import streams as layout

    context = layout.parse_partition(partition)

    def plan(envelope):
        return [stream], layout.plan_bookmark(state_id, envelope, stream, value, key, context,
                                              any_type)

    _surgery(state_id, plan, "bookmark", dry_run, force, no_snapshot, uri, project_root,
             lambda names: f"set the bookmark of stream {stream!r} of {state_id}")


def _surgery(state_id, plan, label, dry_run, force, no_snapshot, uri, project_root,
             describe) -> None:
    """Show the change ``plan`` makes, ask, snapshot, then make it again under the lock
    (on what the store holds then, so a run that wrote meanwhile is not undone)."""
    from state_ext.streams import change_lines

    validate_ids(state_id)
    with state_backend(uri, project_root) as backend:
        before = backend.get(state_id)
        names, after = plan(before)
        lines = change_lines(state_id, before, after, names)
        if not lines:
            log().info(f"Nothing to change: {describe(names)} would leave it as it is")
            return
        out("\n".join(lines))
        if dry_run:
            log().info("Dry run: nothing was written.")
            return
        confirm(f"This will {describe(names)}. Continue?", force, what=describe(names))
        undo = safety_snapshot(backend, project_root, label=label, ids=[state_id],
                               no_snapshot=no_snapshot)
        backend.update(state_id, lambda current: plan(current)[1])
    log().info(f"Done: {describe(names)}{undo}")


@commands.command()
def check(
    pattern: PatternOption = None,
    max_age: Annotated[str | None, typer.Option(
        "--max-age", help="Warn about timestamp bookmarks older than this (36h, 7d, 1d12h): "
        "pipelines that stopped moving.")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Fail (exit 1) on warnings too.")] = False,
    output_format: FormatOption = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Check every state: readable, Meltano's envelope and singer_state, the Singer SDK's
    bookmark shape, no in-flight markers in completed state, no bookmark in the future
    (nor older than --max-age). Errors exit 1; warnings too with --strict."""
    from state_ext import health
    from state_ext.times import parse_duration

    age = None if max_age is None else parse_duration(max_age, "--max-age")
    with state_backend(uri, project_root) as backend:
        count, findings = health.run_check(backend, pattern, age)
    errors = sum(1 for f in findings if f.severity == health.ERROR)
    warnings = len(findings) - errors
    failed = errors > 0 or (strict and warnings > 0)
    if output_format is ListFormat.json:
        out(json.dumps({"checked": count, "errors": errors, "warnings": warnings,
                        "ok": not failed, "findings": [f.to_dict() for f in findings]}))
    elif findings:
        out("\n".join(f.line() for f in findings))
    summary = f"check: {count} state(s), {errors} error(s), {warnings} warning(s)"
    if failed:
        raise health.CheckFailed(summary)
    log().info(summary)


@commands.command()
def locks(
    pattern: PatternOption = None,
    output_format: FormatOption = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Every lock object (file:// and object stores): state ID, live or stale by
    lock_timeout_seconds, age, and its path or key; on the system database, Meltano's runs
    rows left RUNNING, stale by Meltano's heartbeat rule."""
    from state_ext import lock_tools

    with state_backend(uri, project_root) as backend:
        timeout = backend.settings.lock_timeout_seconds
        found, runs = lock_tools.locks_and_runs(backend, pattern)
    if output_format is ListFormat.json:
        out(json.dumps({"lock_timeout_seconds": timeout,
                        "locks": [info.to_dict() for info in found],
                        "running": [run.to_dict() for run in runs]}))
    elif found or runs:
        out("\n".join(_aligned([("state_id", "status", "age", "location"),
                                *[info.cells() for info in [*found, *runs]]])))
    else:
        log().info("No locks found.")


@commands.command()
def unlock(
    state_id: StateIdArgument,
    force: Annotated[bool, typer.Option(
        "--force", help="Remove a live lock too, without asking (only when no run holds "
        "it).")] = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Remove the lock a crashed writer left: a stale one at once, a live one only after
    a prompt naming its age (or --force); never a lock taken after it was shown."""
    from state_ext import lock_tools
    from state_ext.errors import BackendError, InvalidInputError

    validate_ids(state_id)
    with state_backend(uri, project_root) as backend:
        lock_tools.require_support(backend)
        shown = lock_tools.read_lock(backend, state_id)
        if shown is None:
            raise InvalidInputError(f"No lock for state ID {state_id!r} in {backend.label}")
        timeout = backend.settings.lock_timeout_seconds
        status = "stale" if shown.stale else "live"
        log().info(f"Lock of {state_id} ({shown.location}): {shown.describe()}; {status} "
                   f"(lock_timeout_seconds {timeout:g})")
        if not shown.stale:
            confirm(f"The lock of {state_id} is live ({shown.describe()}): a Meltano or "
                    "state-ext process may be writing this state. Remove it anyway?", force,
                    what=f"remove the live lock of {state_id}")
        now = lock_tools.remove(backend, shown)
    if lock_tools.same(now, shown):
        raise BackendError(f"The lock of {state_id} could not be removed ({shown.location})")
    if now is not None:
        log().warning(f"Removed the lock of {state_id} that was shown; another process has "
                      f"locked it since ({now.describe()}), and that lock was left alone")
        return
    log().info(f"Removed the {status} lock of {state_id}")


@commands.command()
def doctor(
    output_format: FormatOption = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Contact the backend with the resolved settings: can it list, read, write and delete
    (a scratch state it removes), how long each takes, and hints for common mistakes."""
    from state_ext import doctor as probes
    from state_ext.errors import StateExtError
    from state_ext.health import CheckFailed
    from state_ext.settings import ProjectSettings

    steps, settings = [], None
    try:
        project = ProjectSettings(project_root)
        settings = project.backend_settings(uri)
        with state_backend(uri, project_root) as backend:
            label = backend.label
            steps = probes.probe(backend)
    except StateExtError as exc:
        label = "(not opened)"
        steps.append(probes.Step("open", False, None, exc.message))
    advice = probes.hints(project, settings, uri, steps) if settings is not None else []
    failed = sum(1 for step in steps if step.ok is False)
    if output_format is ListFormat.json:
        out(json.dumps({"backend": label, "ok": not failed,
                        "steps": [step.to_dict() for step in steps], "hints": advice}))
    else:
        out("\n".join([f"backend    {label}", *(step.line() for step in steps),
                       *(f"hint: {text}" for text in advice)]))
    if failed:
        raise CheckFailed(f"doctor: {failed} step(s) failed on {label}")
    log().info(f"doctor: {label} can be listed, read, written and deleted")
