"""The ``state_extension`` command line: one typer app built from its command modules.

Each command module holds a ``commands`` Typer of its own (EDK, everyday state commands,
commands across two backends, safe runs); ``app`` takes their commands, in that order,
under one callback (the EDK logging options and ``--version``) and one error path,
``Commands.invoke``: a ``StateExtError`` (anything a user can cause or fix) ends the
command as one log line and its exit code, wherever it was raised, and so does a wrong
combination of arguments (``UsageError``, exit 2, as click's own). Anything else is a bug
and keeps its traceback.

Only typer is imported here: structlog, SQLAlchemy and the cloud SDKs are imported inside
the commands that need them, so ``--help`` stays fast. The EDK extension
(``state_ext.extension``) builds on this package, never the reverse: the EDK commands reach
it through the click context (``ctx.obj``), which the console script (``state_ext.main``)
fills.
"""

from typing import Annotated

import typer
from typer.core import TyperGroup

from state_ext import APP_NAME, __version__
from state_ext.cli import (
    edk_commands,
    safety_commands,
    state_commands,
    stream_commands,
    transfer_commands,
)
from state_ext.cli.common import UsageError, log


class Commands(TyperGroup):
    """The app's click group: every command runs inside its one error path."""

    def invoke(self, ctx):
        from state_ext.errors import StateExtError

        try:
            return super().invoke(ctx)
        except StateExtError as exc:
            log().error(exc.message)
            raise typer.Exit(exc.exit_code) from None
        except UsageError as exc:
            log().error(str(exc))
            raise typer.Exit(2) from None
        except EOFError:
            log().error("Aborted!")
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            log().error("Interrupted")
            raise typer.Exit(130) from None

    def list_commands(self, ctx):
        return list(self.commands)  # the modules' order, not alphabetical


app = typer.Typer(
    name=APP_NAME,
    cls=Commands,
    help="Read, write, copy and migrate Meltano state on every state backend.",
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=False,
)
for _module in (edk_commands, state_commands, transfer_commands, stream_commands, safety_commands):
    app.registered_commands += _module.commands.registered_commands
    app.registered_groups += _module.commands.registered_groups


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
        typer.echo(f"{APP_NAME}, version {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    from state_ext.logs import configure

    configure(log_level, log_timestamps, log_levels, meltano_log_json, sdk_log_level)


def state_command_names() -> list[str]:
    """The commands ``invoke`` may run and ``describe`` lists: all but the EDK's own."""
    edk = {info.name or info.callback.__name__
           for info in edk_commands.commands.registered_commands}
    return [name for name in typer.main.get_command(app).commands if name not in edk]
