"""The ``state_extension`` command line: parse, call the operations, render, exit.

Only typer is imported at module level: structlog, SQLAlchemy and the cloud SDKs are
imported inside the commands that need them, so ``--help`` stays fast. stdout carries
data only; logs and prompts go to stderr; errors are one line and a non-zero exit.
"""

from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from state_ext import APP_NAME

app = typer.Typer(
    name=APP_NAME,
    help="Read, write, copy and migrate Meltano state on every state backend.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=False,
)


class DescribeFormat(str, Enum):
    text = "text"
    json = "json"
    yaml = "yaml"


class GetFormat(str, Enum):
    json = "json"
    pretty = "pretty"


class ListFormat(str, Enum):
    text = "text"
    json = "json"


UriOption = Annotated[
    str | None,
    typer.Option(
        "--uri", help="Use this state backend instead of the project's state_backend.uri."
    ),
]
ProjectRootOption = Annotated[
    Path | None,
    typer.Option("--project-root", help="Meltano project root (default: MELTANO_PROJECT_ROOT, "
                 "else the nearest meltano.yml upward)."),
]
ForceOption = Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")]


_LOGGING: dict = {}  # the callback's options; applied on first use (keeps --help fast)


def _log():
    import structlog

    if _LOGGING.get("pending"):
        from meltano.edk.logging import default_logging_config, parse_log_level

        _LOGGING["pending"] = False
        default_logging_config(
            level=parse_log_level(_LOGGING["level"]),
            timestamps=_LOGGING["timestamps"],
            levels=_LOGGING["levels"],
            json_format=_LOGGING["json"],
        )
    return structlog.get_logger(APP_NAME)


class UsageError(Exception):
    """Wrong combination of arguments: exit 2, like click."""


@contextmanager
def _handled():
    """Turn expected failures into one stderr line and the right exit code."""
    from state_ext.errors import StateExtError

    try:
        yield
    except StateExtError as exc:
        _log().error(exc.message)
        raise typer.Exit(exc.exit_code) from None
    except UsageError as exc:
        _log().error(str(exc))
        raise typer.Exit(2) from None
    except (typer.Abort, EOFError):
        _log().error("Aborted!")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        _log().error("Interrupted")
        raise typer.Exit(130) from None


@contextmanager
def _backend(uri: str | None, project_root: Path | None):
    from state_ext.backends import open_backend
    from state_ext.settings import ProjectSettings

    settings = ProjectSettings(project_root).backend_settings(uri)
    backend = open_backend(settings, warn=lambda message: _log().warning(message))
    _log().debug("using state backend", backend=backend.label)
    try:
        yield backend
    finally:
        backend.close()


def _confirm(prompt: str, force: bool) -> None:
    """Ask on stderr (stdout is data); no answer (EOF, as in CI) means no."""
    if force:
        return
    from state_ext.errors import AbortedError

    # Not click.confirm: it echoes the prompt to stderr but a space to stdout.
    sys.stderr.write(f"{prompt} [y/N]: ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        sys.stderr.write("\n")  # EOF left the prompt line open
    if answer.strip().lower() not in ("y", "yes"):
        raise AbortedError()


def _read_state_input(state: str | None, input_file: Path | None, names: str) -> str:
    if (state is None) == (input_file is None):
        raise UsageError(f"Must provide exactly one of: {names}")
    if input_file is None:
        return state
    return _read_text(input_file, "--input-file")


def _read_text(path: Path, what: str) -> str:
    if str(path) == "-":
        return sys.stdin.read()
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"Invalid value for {what}: file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"Invalid value for {what}: cannot read {str(path)!r}: {exc}") from None


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


# -- EDK commands ----------------------------------------------------------------------
@app.callback(invoke_without_command=True)
def main(
    ctx: typer.Context,
    log_level: Annotated[str, typer.Option(envvar="LOG_LEVEL", help="Log level.")] = "INFO",
    log_timestamps: Annotated[bool, typer.Option(
        envvar="LOG_TIMESTAMPS", help="Show timestamps in log lines.")] = False,
    log_levels: Annotated[bool, typer.Option(
        envvar="LOG_LEVELS", help="Show levels in log lines.")] = False,
    meltano_log_json: Annotated[bool, typer.Option(
        envvar="MELTANO_LOG_JSON", help="Log as JSON.")] = False,
) -> None:
    """Read, write, copy and migrate Meltano state on every state backend."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    _LOGGING.update(pending=True, level=log_level, timestamps=log_timestamps,
                    levels=log_levels, json=meltano_log_json)
    _log()


def _extension(project_root: Path | None = None):
    import os

    from state_ext.extension import StateExtension
    from state_ext.settings import find_project_root

    return StateExtension(project_root=find_project_root(project_root, dict(os.environ)))


@app.command()
def describe(
    output_format: Annotated[DescribeFormat, typer.Option("--format")] = DescribeFormat.text,
) -> None:
    """Describe the extension's commands (EDK)."""
    from meltano.edk.extension import DescribeFormat as EdkFormat

    from state_ext.extension import StateExtension

    _out(StateExtension().describe_formatted(EdkFormat(output_format.value)))


@app.command()
def initialize(
    force: Annotated[bool, typer.Option(help="Overwrite files that already exist.")] = False,
    project_root: ProjectRootOption = None,
) -> None:
    """Deploy the state-ext/ working folder into the Meltano project (EDK)."""
    with _handled():
        _extension(project_root).initialize(force)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def invoke(ctx: typer.Context, command_args: Annotated[list[str], typer.Argument()]) -> None:
    """Run one of the state commands by name (EDK pass-through)."""
    from state_ext.extension import StateExtension

    command_name, *rest = command_args
    with _handled():
        StateExtension().invoke(command_name, *rest, *ctx.args)


# -- state commands --------------------------------------------------------------------
@app.command(name="list")
def list_command(
    pattern: Annotated[str | None, typer.Option(
        help="fnmatch pattern (full match, case-sensitive), e.g. 'dev:*'.")] = None,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """List state IDs, one per line (or a JSON array with --format json)."""
    from state_ext import operations

    with _handled(), _backend(uri, project_root) as backend:
        ids = operations.list_ids(backend, pattern)
        if output_format is ListFormat.json:
            _out(json.dumps(ids))
        elif not ids:
            _log().info("No state IDs found.")
        elif sys.stdout.isatty():
            _print_colored(backend, ids)
        else:
            _out("\n".join(ids))


def _print_colored(backend, ids) -> None:
    """Meltano's colours on a terminal: green valid, red without singer_state, yellow empty."""
    for state_id, envelope in backend.iter_states(ids):
        state = envelope.effective() if envelope else {}
        colour = "yellow" if not state else ("green" if "singer_state" in state else "red")
        typer.secho(state_id, fg=colour)


@app.command()
def get(
    state_id: Annotated[str, typer.Argument(help="State ID, e.g. dev:tap-x-to-target-y.")],
    output_format: Annotated[GetFormat, typer.Option("--format")] = GetFormat.json,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Print a state ID's effective state (partial merged onto completed); {} if none."""
    from state_ext import operations

    with _handled(), _backend(uri, project_root) as backend:
        state = operations.effective_state(backend, state_id)
        if output_format is GetFormat.pretty:
            _out(json.dumps(state, indent=2))
        else:
            _out(json.dumps(state, separators=(",", ":")))


@app.command(name="set")
def set_command(
    state_id: Annotated[str, typer.Argument()],
    state: Annotated[str | None, typer.Argument(help="State as JSON.")] = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input-file", help="Read the state from this file ('-' for stdin).")] = None,
    force: ForceOption = False,
    no_validate: Annotated[bool, typer.Option(
        "--no-validate", help="Do not require a top-level singer_state key.")] = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Replace a state ID's state (completed = STATE, partial = {})."""
    from state_ext import operations
    from state_ext.model import parse_state_argument
    from state_ext.state_ids import validate_state_id

    with _handled():
        validate_state_id(state_id)
        text = _read_state_input(state, input_file, "--input-file, STATE")
        value = parse_state_argument(text, validate=not no_validate)
        with _backend(uri, project_root) as backend:
            _confirm("This will overwrite the state's current value. Continue?", force)
            operations.set_state(backend, state_id, value)
        _log().info(f"State for {state_id} was successfully set")


@app.command()
def merge(
    state_id: Annotated[str, typer.Argument()],
    state: Annotated[str | None, typer.Argument(help="State as JSON.")] = None,
    input_file: Annotated[Path | None, typer.Option(
        "--input-file", help="Read the state from this file ('-' for stdin).")] = None,
    from_state_id: Annotated[str | None, typer.Option(
        "--from-state-id", help="Merge the effective state of this state ID.")] = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Deep-merge a state into a state ID's partial state (as an interrupted run would)."""
    from state_ext import operations
    from state_ext.model import parse_state_argument
    from state_ext.state_ids import validate_state_id

    with _handled():
        validate_state_id(state_id)
        given = [x for x in (state, input_file, from_state_id) if x is not None]
        if len(given) != 1:
            raise UsageError("Must provide exactly one of: --from-state-id, --input-file, STATE")
        with _backend(uri, project_root) as backend:
            if from_state_id is not None:
                operations.merge_from_state_id(backend, from_state_id, state_id)
            else:
                text = _read_state_input(state, input_file, "--input-file, STATE")
                operations.merge_state(backend, state_id, parse_state_argument(text, validate=True))
        _log().info(f"State for {state_id} was successfully merged")


@app.command()
def clear(
    state_id: Annotated[str | None, typer.Argument()] = None,
    all_states: Annotated[bool, typer.Option("--all", help="Clear every state ID.")] = False,
    force: ForceOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Delete a state ID's state, or every state with --all."""
    from state_ext import operations
    from state_ext.state_ids import validate_state_id

    with _handled():
        if (state_id is None) == (not all_states):
            raise UsageError("Must provide exactly one of: --all, STATE_ID")
        if state_id is not None:
            validate_state_id(state_id)
        with _backend(uri, project_root) as backend:
            _confirm("This will clear state for the job(s). Continue?", force)
            if all_states:
                count = operations.clear_all(backend)
                _log().info(f"{count} state(s) were successfully cleared")
            elif operations.clear_state(backend, state_id):
                _log().info(f"State for {state_id} was successfully cleared")
            else:
                _log().warning(f"No state found for {state_id}; nothing to clear")


ToOption = Annotated[
    str | None,
    typer.Option("--to", help="Destination backend URI (default: the same backend)."),
]


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
    with _handled():
        dst_state_id = _destination_id(src_state_id, dst_state_id, to)
        _copy_or_move(src_state_id, dst_state_id, to, force, uri, project_root, move=False)
        _log().info(f"State for {dst_state_id} was successfully copied from {src_state_id}")


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
    with _handled():
        dst_state_id = _destination_id(src_state_id, dst_state_id, to)
        _copy_or_move(src_state_id, dst_state_id, to, force, uri, project_root, move=True)
        _log().info(f"State for {src_state_id} was successfully moved to {dst_state_id}")


def _destination_id(src_state_id: str, dst_state_id: str | None, to: str | None) -> str:
    if dst_state_id is None:
        if to is None:
            raise UsageError("Missing argument 'DST_STATE_ID' (or give --to URI)")
        dst_state_id = src_state_id
    _validate_ids(src_state_id, dst_state_id)
    return dst_state_id


def _copy_or_move(src_id, dst_id, to, force, uri, project_root, *, move: bool) -> None:
    from state_ext import operations
    from state_ext.errors import BackendError, InvalidInputError

    with _backend(uri, project_root) as source:
        if to is None:
            _confirm("This will overwrite state for the destination. Continue?", force)
            if move:
                operations.move_state(source, src_id, source, dst_id)
            else:
                operations.copy_state(source, src_id, source, dst_id)
            return
        from state_ext.transfer import ensure_distinct, transfer

        with _backend(to, project_root) as destination:
            ensure_distinct(source, destination)
            if source.get(src_id) is None:
                raise InvalidInputError(f"No state found for state ID {src_id!r}")
            _confirm("This will overwrite state for the destination. Continue?", force)
            report = transfer(source, destination, [(src_id, dst_id)],
                              on_conflict="overwrite", delete_source=move)
            problems = {**report.failed, **dict.fromkeys(report.mismatched, "did not verify")}
            if problems:
                state_id, reason = next(iter(problems.items()))
                raise BackendError(f"State {state_id!r}: {reason}")


def _validate_ids(*state_ids: str) -> None:
    from state_ext.state_ids import validate_state_id

    for state_id in state_ids:
        validate_state_id(state_id)


class OnConflict(str, Enum):
    fail = "fail"
    skip = "skip"
    overwrite = "overwrite"


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
        help="Parallel writes per batch.")] = 8,
    output_format: Annotated[ListFormat, typer.Option(
        "--format", help="json prints the report on stdout.")] = ListFormat.text,
    project_root: ProjectRootOption = None,
) -> None:
    """Move all state from one backend to another: exact, locked, verified, resumable."""
    from state_ext.transfer import ensure_distinct, transfer

    with _handled():
        if not to:
            raise UsageError("Missing --to URI (or the plugin setting migrate_to, "
                             "STATE_EXT_MIGRATE_TO)")
        with _backend(from_uri, project_root) as source, _backend(to, project_root) as dest:
            ensure_distinct(source, dest)
            _log().info("migrating state", source=source.label, destination=dest.label,
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
        _out(json.dumps(report.to_dict(), indent=2))
    verb = "would copy" if report.dry_run else "copied"
    log = _log()
    log.info(
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
        log.error(f"{len(report.conflicts)} state ID(s) hold different state at the destination "
                  f"(nothing was written; use --on-conflict skip|overwrite): {shown}")
    for state_id, reason in list(report.failed.items())[:20]:
        log.error(f"{state_id}: {reason}")
    if report.mismatched:
        log.error("did not read back as written: " + ", ".join(report.mismatched[:20]))


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

    with _handled():
        with _backend(uri, project_root) as source, _backend(to, project_root) as dest:
            report = compare(source, dest, pattern)
        if output_format is ListFormat.json:
            _out(json.dumps(report.to_dict(), indent=2))
        else:
            for marker, ids in (("<", report.only_in_source), (">", report.only_in_destination),
                                ("!", report.different)):
                for state_id in ids:
                    _out(f"{marker} {state_id}")
        _log().info(
            f"only in source {len(report.only_in_source)}, only in destination "
            f"{len(report.only_in_destination)}, different {len(report.different)}, "
            f"identical {report.identical}"
        )
        if not report.same:
            raise typer.Exit(1)


@app.command(name="export")
def export_command(
    pattern: Annotated[str | None, typer.Option(
        help="Only state IDs matching this fnmatch pattern.")] = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Print every state as the JSON document of `meltano state export`."""
    from state_ext import operations

    with _handled(), _backend(uri, project_root) as backend:
        count = operations.write_export(operations.iter_export(backend, pattern), sys.stdout)
        _log().info(f"Exported {count} state(s).")


@app.command(name="import")
def import_command(
    input_file: Annotated[Path, typer.Argument(
        help="Document of `meltano state export` ('-' or nothing for stdin).")] = Path("-"),
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Overwrite the state of every state ID in an export document."""
    from state_ext import operations
    from state_ext.model import parse_export_document

    with _handled():
        text = _read_text(input_file, "INPUT_FILE")
        states = parse_export_document(text, warn=lambda message: _log().warning(message))
        with _backend(uri, project_root) as backend:
            count = operations.import_states(backend, states)
        _log().info(f"Successfully imported {count} state(s).")


@app.command()
def config(
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Show the resolved state backend settings and where each came from (secrets redacted)."""
    from state_ext.settings import ProjectSettings

    with _handled():
        settings = ProjectSettings(project_root)
        values = settings.describe(uri)
        if output_format is ListFormat.json:
            _out(json.dumps({
                "project_root": None if settings.root is None else str(settings.root),
                "settings": {
                    v.name: {"value": v.display_value(), "source": v.source, "env": v.env_var}
                    for v in values
                },
            }, indent=2))
            return
        _out(f"project_root: {settings.root if settings.root else '(none)'}")
        for v in values:
            shown = "(unset)" if v.value is None else v.display_value()
            _out(f"{v.name}: {shown}  [{v.source}; env {v.env_var}]")
