"""Safe runs: snapshot, snapshots (prune), restore, history and guard.

``meltano run state-ext:snapshot tap-x target-y state-ext:guard`` takes a copy of state
before the run and fails the chain when the run moved a bookmark backwards, emptied a
state or lost a stream; ``restore`` puts a snapshot (or one version from ``history``)
back through migrate's exact, locked, verified engine, after its own safety snapshot.
"""

import json
from pathlib import Path
from typing import Annotated

import typer

from state_ext.cli.common import (
    ForceOption,
    ListFormat,
    PatternOption,
    ProjectRootOption,
    UriOption,
    UsageError,
    confirm,
    log,
    out,
    state_backend,
    validate_ids,
)

commands = typer.Typer()

SnapshotUriOption = Annotated[str | None, typer.Option(
    "--snapshot-uri", help="Snapshot store (a folder, file://, s3://, gs://, azure://); "
    "default: the snapshot_uri setting (STATE_EXT_SNAPSHOT_URI), else "
    "<project>/.meltano/state-ext/snapshots.")]


def _settings(project_root: Path | None):
    from state_ext.settings import ProjectSettings

    return ProjectSettings(project_root)


def _store(settings, snapshot_uri: str | None):
    from state_ext.snapshot_stores import open_store

    return open_store(settings, snapshot_uri)


def _size(size) -> str:
    if size is None:
        return "?"
    for unit in ("B", "KiB", "MiB"):
        if size < 1024 or unit == "MiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)  # pragma: no cover


@commands.command()
def snapshot(
    pattern: PatternOption = None,
    label: Annotated[str, typer.Option(help="Label in the snapshot's name, e.g. pre-run.")
                     ] = "manual",
    keep: Annotated[int | None, typer.Option(
        min=1, help="Then delete the oldest snapshots beyond this many.")] = None,
    snapshot_uri: SnapshotUriOption = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Copy every state (or those matching --pattern) into a new snapshot; print its name."""
    from state_ext.snapshot_taking import take_snapshot
    from state_ext.snapshots import check_label

    check_label(label)
    settings = _settings(project_root)
    with _store(settings, snapshot_uri) as store, state_backend(uri, project_root) as backend:
        info = take_snapshot(backend, settings, label=label, pattern=pattern,
                             store=store, keep=keep)
    out(info.name)
    log().info(f"Snapshot {info.name}: {info.states} state(s), {_size(info.size)}, "
               f"in {store.label}")


snapshots_app = typer.Typer(help="List snapshots, newest first; `snapshots prune` deletes old "
                            "ones.", no_args_is_help=False)
commands.add_typer(snapshots_app, name="snapshots")


@snapshots_app.callback(invoke_without_command=True)
def snapshots_list(
    ctx: typer.Context,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    snapshot_uri: SnapshotUriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """List snapshots, newest first: time, label, states, size, source (secrets redacted)."""
    if ctx.invoked_subcommand is not None:
        return
    from state_ext.snapshots import list_snapshots
    from state_ext.times import iso

    with _store(_settings(project_root), snapshot_uri) as store:
        found = list_snapshots(store)
    if output_format is ListFormat.json:
        out(json.dumps({"store": store.label, "snapshots": [i.to_dict() for i in found]}))
        return
    if not found:
        log().info(f"No snapshots in {store.label}")
        return
    rows = [f"{iso(i.time)}  {i.label:<14} {'?' if i.states is None else i.states:>7} "
            f"states  {_size(i.size):>10}  {i.source or '?'}  {i.name}" for i in found]
    out("\n".join(rows))


@snapshots_app.command("prune")
def snapshots_prune(
    keep: Annotated[int | None, typer.Option(min=0, help="Keep this many newest.")] = None,
    older_than: Annotated[str | None, typer.Option(
        "--older-than", help="Delete snapshots older than this, e.g. 7d, 12h, 30m.")] = None,
    snapshot_uri: SnapshotUriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Delete old snapshots: beyond the --keep newest and/or older than --older-than."""
    from state_ext.snapshots import prune
    from state_ext.times import parse_duration

    if keep is None and older_than is None:
        raise UsageError("Give --keep N and/or --older-than DURATION")
    age = parse_duration(older_than, "--older-than") if older_than is not None else None
    with _store(_settings(project_root), snapshot_uri) as store:
        deleted = prune(store, keep=keep, older_than=age)
    log().info(f"Deleted {len(deleted)} snapshot(s) from {store.label}")


@commands.command()
def restore(
    target: Annotated[str | None, typer.Argument(
        metavar="[SNAPSHOT|STATE_ID]",
        help="Snapshot name; with --run or --version, the state ID to restore.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The newest snapshot.")] = False,
    before: Annotated[str | None, typer.Option(
        help="The newest snapshot taken before this UTC time (ISO 8601).")] = None,
    run: Annotated[int | None, typer.Option(
        "--run", help="The state as the system database's runs row RUN_ID left it (history).")
    ] = None,
    version: Annotated[str | None, typer.Option(
        "--version", help="A version REF from `history` (run:ID, s3:VERSION, snapshot name).")
    ] = None,
    pattern: PatternOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the changes only.")] = False,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Also clear matching IDs that the snapshot does not hold.")] = False,
    force: ForceOption = False,
    no_snapshot: Annotated[bool, typer.Option(
        "--no-snapshot", help="Do not take the pre-restore safety snapshot.")] = False,
    snapshot_uri: SnapshotUriOption = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Put state back from a snapshot (or one history version): shows the changes, asks,
    snapshots what it overwrites (label pre-restore), then writes exactly and verifies."""
    from state_ext import history as histories
    from state_ext import restore as restoring
    from state_ext.snapshot_taking import auto_snapshot
    from state_ext.snapshots import find, load_states
    from state_ext.times import parse_time

    if run is not None:
        version = f"run:{run}" if version is None else version
    chosen = [x for x in (target if version is None else None, latest or None, before,
                          version) if x is not None]
    if len(chosen) != 1:
        raise UsageError("Give exactly one of: SNAPSHOT, --latest, --before TIME, "
                         "--run RUN_ID STATE_ID, --version REF STATE_ID")
    if version is not None and target is None:
        raise UsageError("--run and --version need the STATE_ID to restore")
    if version is not None and (exact or pattern is not None):
        raise UsageError("--exact and --pattern apply to snapshots, not to --run/--version")
    settings = _settings(project_root)
    with _store(settings, snapshot_uri) as store, state_backend(uri, project_root) as backend:
        if version is not None:
            validate_ids(target)  # after the stores opened (their errors come first), as ever
            source = restoring.one_version(target, histories.version_state(
                target, version, backend=backend, project_settings=settings, store=store,
                warn=log().warning))
        else:
            info = find(store, target, latest=latest,
                        before=parse_time(before) if before else None)
            source = restoring.MemoryBackend(
                info.name, load_states(store, info, warn=log().warning))
            if exact:
                source.scope = restoring.exact_scope(store, info)
        the_plan = restoring.plan(source, backend, pattern, exact)
        _show_plan(source, backend, the_plan)
        if not the_plan.writes and not the_plan.removed:
            log().info("Nothing to restore: the state already matches.")
            return
        if dry_run:
            log().info("Dry run: nothing was written.")
            return
        confirm(f"This will overwrite {len(the_plan.changed)}, add "
                f"{len(the_plan.added)} and clear {len(the_plan.removed)} state(s). "
                "Continue?", force, what=f"restore from {source.label}")
        safety = auto_snapshot(backend, settings, label="pre-restore",
                               ids=the_plan.touched, no_snapshot=no_snapshot, store=store)
        done = restoring.apply(source, backend, the_plan, exact=exact)
    undo = f"; to undo: restore {safety.name}" if safety else ""
    log().info(f"Restored {done['written']} state(s) from {source.label}"
               + (f", cleared {done['removed']}" if done["removed"] else "") + undo)


def _show_plan(source, backend, the_plan) -> None:
    lines = the_plan.lines()
    log().info(f"Restore from {source.label} onto {backend.label}: {len(the_plan.added)} to "
               f"add, {len(the_plan.changed)} to overwrite, {len(the_plan.removed)} to clear, "
               f"{the_plan.identical} identical, {len(the_plan.kept)} not in the snapshot "
               "(left alone)")
    if lines:
        out("\n".join(lines))


@commands.command()
def history(
    state_id: Annotated[str, typer.Argument(help="State ID.")],
    stream: Annotated[str | None, typer.Option(help="Only versions where this stream's "
                                               "bookmark changed.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many versions.")] = 20,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    snapshot_uri: SnapshotUriOption = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Versions of one state, newest first, from snapshots, the runs table and S3 versions."""
    from state_ext import history as histories
    from state_ext.times import iso

    validate_ids(state_id)
    settings = _settings(project_root)
    with _store(settings, snapshot_uri) as store, state_backend(uri, project_root) as backend:
        found = histories.collect(state_id, backend=backend, project_settings=settings,
                                  store=store, stream=stream, limit=limit,
                                  warn=log().warning)
    if output_format is ListFormat.json:
        out(json.dumps(found.to_dict()))
        return
    for name, status in found.sources.items():
        log().info(f"source {name}: {status}")
    if not found.versions:
        log().info(f"No versions of {state_id} found")
        return
    out("\n".join(f"{iso(v.time)}  {v.ref:<34} {v.summary}" for v in found.versions))


@commands.command()
def guard(
    pattern: PatternOption = None,
    against: Annotated[str | None, typer.Option(
        help="Snapshot to compare with (default: the latest).")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="Compare with the latest snapshot "
                                         "(the default).")] = False,
    allow: Annotated[str | None, typer.Option(
        help="Problems to accept, comma-separated: regress, emptied, lost-stream.")] = None,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    snapshot_uri: SnapshotUriOption = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Fail (exit 1, one line per problem) if a bookmark moved backwards, a state was emptied
    or a stream's bookmark disappeared since the snapshot."""
    from state_ext import guard as guarding
    from state_ext.snapshots import find, load_states

    if against is not None and latest:
        raise UsageError("Give at most one of --against, --latest")
    allowed = guarding.parse_allow(allow)
    settings = _settings(project_root)
    with _store(settings, snapshot_uri) as store:
        info = find(store, against, latest=against is None)
        before = load_states(store, info, strict=False)
    if pattern is not None:
        from state_ext.state_ids import matches

        before = {i: e for i, e in before.items() if matches(i, pattern)}
    with state_backend(uri, project_root) as backend:
        problems = guarding.check(before, backend.iter_all(pattern), allowed)
    if output_format is ListFormat.json:
        out(json.dumps({"snapshot": info.name, "checked": len(before),
                        "problems": [p.to_dict() for p in problems], "ok": not problems}))
    for problem in problems:
        log().error(problem.line())
    if problems:
        log().error(f"guard: {len(problems)} problem(s) since snapshot {info.name}")
        raise typer.Exit(1)
    log().info(f"guard: {len(before)} state(s) checked against {info.name}: no problems")

