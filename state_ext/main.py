"""The ``state_extension`` command line: parse, call the operations, render, exit.

Only typer is imported at module level: structlog, SQLAlchemy and the cloud SDKs are
imported inside the commands that need them, so ``--help`` stays fast. stdout carries
data only; logs and prompts go to stderr; errors are one line and a non-zero exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from state_ext.cli.common import (
    DescribeFormat,
    ProjectRootOption,
    app,
    handled,
    out,
)


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
    from state_ext.logs import configure

    configure(log_level, log_timestamps, log_levels, meltano_log_json)


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

    out(StateExtension().describe_formatted(EdkFormat(output_format.value)))


@app.command()
def initialize(
    force: Annotated[bool, typer.Option(help="Overwrite files that already exist.")] = False,
    project_root: ProjectRootOption = None,
) -> None:
    """Deploy the state-ext/ working folder into the Meltano project (EDK)."""
    with handled():
        _extension(project_root).initialize(force)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def invoke(ctx: typer.Context, command_args: Annotated[list[str], typer.Argument()]) -> None:
    """Run one of the state commands by name (EDK pass-through)."""
    from state_ext.extension import StateExtension

    command_name, *rest = command_args
    with handled():
        StateExtension().invoke(command_name, *rest, *ctx.args)



# Registering the state and transfer commands on `app` (import for side effect).
from state_ext.cli import state_commands, transfer_commands  # noqa: E402, F401
