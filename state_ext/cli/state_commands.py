"""The everyday state commands, named and shaped like ``meltano state``'s."""

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from state_ext.cli.common import (
    ForceOption,
    GetFormat,
    ListFormat,
    NoSnapshotOption,
    ProjectRootOption,
    UriOption,
    UsageError,
    confirm,
    log,
    out,
    read_state_input,
    read_text,
    safety_snapshot,
    state_backend,
    validate_ids,
)

commands = typer.Typer()


# -- state commands --------------------------------------------------------------------
@commands.command(name="list")
def list_command(
    pattern: Annotated[str | None, typer.Option(
        help="fnmatch pattern (full match, case-sensitive), e.g. 'dev:*'.")] = None,
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """List state IDs, one per line (or a JSON array with --format json)."""
    from state_ext import operations

    with state_backend(uri, project_root) as backend:
        ids = operations.list_ids(backend, pattern)
        if output_format is ListFormat.json:
            out(json.dumps(ids))
        elif not ids:
            log().info("No state IDs found.")
        elif sys.stdout.isatty():
            _print_colored(backend, ids)
        else:
            out("\n".join(ids))


def _print_colored(backend, ids) -> None:
    """Meltano's colours on a terminal: green valid, red without singer_state, yellow empty."""
    for state_id, envelope in backend.iter_states(ids):
        state = envelope.effective() if envelope else {}
        colour = "yellow" if not state else ("green" if "singer_state" in state else "red")
        typer.secho(state_id, fg=colour)


@commands.command()
def get(
    state_id: Annotated[str, typer.Argument(help="State ID, e.g. dev:tap-x-to-target-y.")],
    output_format: Annotated[GetFormat, typer.Option("--format")] = GetFormat.json,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Print a state ID's effective state (partial merged onto completed); {} if none."""
    from state_ext import operations

    with state_backend(uri, project_root) as backend:
        state = operations.effective_state(backend, state_id)
        if output_format is GetFormat.pretty:
            out(json.dumps(state, indent=2))
        else:
            out(json.dumps(state, separators=(",", ":")))


@commands.command(name="set")
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

    validate_ids(state_id)
    text = read_state_input(state, input_file, "--input-file, STATE")
    value = parse_state_argument(text, validate=not no_validate)
    with state_backend(uri, project_root) as backend:
        confirm("This will overwrite the state's current value. Continue?", force,
                what=f"overwrite the state of {state_id}")
        operations.set_state(backend, state_id, value)
    log().info(f"State for {state_id} was successfully set")


@commands.command()
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

    validate_ids(state_id)
    given = [x for x in (state, input_file, from_state_id) if x is not None]
    if len(given) != 1:
        raise UsageError("Must provide exactly one of: --from-state-id, --input-file, STATE")
    with state_backend(uri, project_root) as backend:
        if from_state_id is not None:
            operations.merge_from_state_id(backend, from_state_id, state_id)
        else:
            text = read_state_input(state, input_file, "--input-file, STATE")
            operations.merge_state(backend, state_id, parse_state_argument(text, validate=True))
    log().info(f"State for {state_id} was successfully merged")


@commands.command()
def clear(
    state_id: Annotated[str | None, typer.Argument()] = None,
    all_states: Annotated[bool, typer.Option("--all", help="Clear every state ID.")] = False,
    force: ForceOption = False,
    no_snapshot: NoSnapshotOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Delete a state ID's state, or every state with --all (after a safety snapshot)."""
    if (state_id is None) == (not all_states):
        raise UsageError("Must provide exactly one of: --all, STATE_ID")
    if state_id is not None:
        validate_ids(state_id)
    with state_backend(uri, project_root) as backend:
        confirm("This will clear state for the job(s). Continue?", force,
                what="clear every state" if all_states else f"clear the state of {state_id}")
        ids = backend.list_ids() if all_states else [
            i for i in [state_id] if backend.get(i) is not None]
        if not ids and not all_states:
            log().warning(f"No state found for {state_id}; nothing to clear")
            return
        undo = safety_snapshot(backend, project_root, label="clear", ids=ids,
                               no_snapshot=no_snapshot)
        count = backend.delete_many(ids)
    if all_states:
        log().info(f"{count} state(s) were successfully cleared{undo}")
    else:
        log().info(f"State for {state_id} was successfully cleared{undo}")



@commands.command(name="export")
def export_command(
    pattern: Annotated[str | None, typer.Option(
        help="Only state IDs matching this fnmatch pattern.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write the document to this file (atomically, replacing it) "
        "instead of stdout.")] = None,
    output_dir: Annotated[Path | None, typer.Option(
        "--output-dir", help="Write the document to a new file named by the UTC time in "
        "this folder, e.g. state-ext/exports/state-20261201T061500Z.json.")] = None,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Print every state as the JSON document of `meltano state export` (or write a file)."""
    from state_ext import exports, operations
    from state_ext.under_meltano import MELTANO_LINE_LIMIT, stdout_read_by_meltano

    if output is not None and output_dir is not None:
        raise UsageError("Give at most one of --output, --output-dir")
    with state_backend(uri, project_root) as backend:
        states = operations.iter_export(backend, pattern)
        if output is not None:
            count = exports.write_file(states, output)
            where = f" to {output}"
        elif output_dir is not None:
            path, count = exports.write_in_folder(states, output_dir)
            where = f" to {path}"
        elif stdout_read_by_meltano():
            count = exports.write_for_meltano(states, sys.stdout, MELTANO_LINE_LIMIT)
            where = ""
        else:
            count = exports.write_compact(states, sys.stdout)
            where = ""
    log().info(f"Exported {count} state(s){where}.")


@commands.command(name="import")
def import_command(
    input_file: Annotated[Path | None, typer.Argument(
        help="Document of `meltano state export` ('-' for stdin, the default when piped)."
    )] = None,
    no_snapshot: NoSnapshotOption = False,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Overwrite the state of every state ID in an export document."""
    from state_ext import operations
    from state_ext.model import parse_export_document

    if input_file is None:
        if sys.stdin.isatty():
            raise UsageError(
                "Missing the document to import: give its file "
                "(state_extension import state.json) or pipe it on standard input "
                "(state_extension import - < state.json)")
        input_file = Path("-")
    text = read_text(input_file, "INPUT_FILE")
    states = parse_export_document(text, warn=lambda message: log().warning(message))
    with state_backend(uri, project_root) as backend:
        undo = ""
        if states:
            backend.check_writable()
            undo = safety_snapshot(backend, project_root, label="import", ids=list(states),
                                   no_snapshot=no_snapshot)
        count = operations.import_states(backend, states)
    log().info(f"Successfully imported {count} state(s){undo}.")


@commands.command()
def config(
    output_format: Annotated[ListFormat, typer.Option("--format")] = ListFormat.text,
    uri: UriOption = None,
    project_root: ProjectRootOption = None,
) -> None:
    """Show the resolved state backend settings and where each came from (secrets redacted)."""
    from state_ext.settings import ProjectSettings
    from state_ext.under_meltano import setting_origin

    settings = ProjectSettings(project_root)
    values = [(v, setting_origin(settings, v)) for v in settings.describe(uri)]
    if output_format is ListFormat.json:
        out(json.dumps({
            "project_root": None if settings.root is None else str(settings.root),
            "settings": {
                v.name: {"value": v.display_value(), "source": source, "env": v.env_var}
                for v, source in values
            },
        }, indent=2))
        return
    out(f"project_root: {settings.root if settings.root else '(none)'}")
    for v, source in values:
        shown = "(unset)" if v.value is None else v.display_value()
        out(f"{v.name}: {shown}  [{source}; env {v.env_var}]")

