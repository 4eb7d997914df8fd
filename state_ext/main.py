"""The ``state_extension`` command line: parse, call the operations, render, exit.

Only typer is imported at module level: structlog, SQLAlchemy and the cloud SDKs are
imported inside the commands that need them, so ``--help`` stays fast. stdout carries
data only; logs and prompts go to stderr; errors are one line and a non-zero exit.
"""

import gc
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from state_ext import APP_NAME
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
        envvar="MELTANO_LOG_JSON",
        help="Log as JSON lines with level, event and timestamp.")] = False,
    sdk_log_level: Annotated[str, typer.Option(
        envvar="STATE_EXT_SDK_LOG_LEVEL",
        help="Log level of the cloud and database SDKs (botocore, gcsfs, azure, "
             "SQLAlchemy...); never below --log-level.")] = "warning",
    version: Annotated[bool, typer.Option(
        "--version", is_eager=True, help="Show the version and exit.")] = False,
) -> None:
    """Read, write, copy and migrate Meltano state on every state backend."""
    if version:
        from state_ext import __version__

        typer.echo(f"{APP_NAME}, version {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from state_ext.logs import configure

    configure(log_level, log_timestamps, log_levels, meltano_log_json, sdk_log_level)


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
import state_ext.cli.safety_commands  # noqa: E402, F401
from state_ext.cli import state_commands, transfer_commands  # noqa: E402, F401


def cli() -> None:
    """The ``state_extension`` console script: ``app`` with a start-up and exit made cheap.

    A state command lives well under a second, and two costs that have nothing to do
    with state are about a fifth of it (measured by ``benchmarks/bench.py``):

    * the cyclic garbage collector runs full collections over and over while
      SQLAlchemy's thousands of module objects are imported. A bigger first-generation
      threshold lets it run rarely; it still runs, so a long migrate stays bounded;
    * interpreter finalisation tears those modules down one by one. Every command has
      closed its backends (connections, sessions, locks) and joined its worker threads
      before ``app`` returns, so once stdout and stderr are flushed the process can end
      at once with its code. If a thread is still at work (an unexpected error left it
      running), the ordinary exit waits for it.

    Tests and ``invoke`` call ``app`` itself and keep the ordinary behaviour.
    """
    gc.set_threshold(50_000, 20, 20)
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    code = _flushed(code)
    if "coverage" in sys.modules or _threads_still_working():
        sys.exit(code)  # finalisation saves coverage data and joins the threads
    os._exit(code)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # what Python prints for sys.exit("message")
    return 1


def _threads_still_working() -> bool:
    """Worker pools are joined before the commands return; after an unexpected error one
    may still be finishing a write, and Python's finalisation waits for it."""
    import threading

    return any(t is not threading.main_thread() and not t.daemon and t.is_alive()
               for t in threading.enumerate())


def _flushed(code: int) -> int:
    """Flush the standard streams; a reader that went away is exit 120, as in Python."""
    if "logging" in sys.modules:
        import logging

        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 120
    return code
