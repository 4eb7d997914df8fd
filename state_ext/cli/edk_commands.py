"""The EDK's commands: describe, initialize, invoke.

They act through the EDK extension object that the console script puts in the click
context (``ctx.obj``: a factory taking the project root), so this package never imports
``state_ext.extension``, which builds on it.
"""

from typing import Annotated

import typer

from state_ext.cli.common import DescribeFormat, ProjectRootOption, out

commands = typer.Typer()


def _extension(ctx: typer.Context, project_root=None):
    make = ctx.find_root().obj
    if make is None:
        from state_ext.errors import ConfigurationError

        raise ConfigurationError("The EDK commands run from the state_extension console script")
    return make(project_root)


@commands.command()
def describe(
    ctx: typer.Context,
    output_format: Annotated[DescribeFormat, typer.Option("--format")] = DescribeFormat.text,
) -> None:
    """Describe the extension's commands (EDK)."""
    from meltano.edk.extension import DescribeFormat as EdkFormat

    out(_extension(ctx).describe_formatted(EdkFormat(output_format.value)))


@commands.command()
def initialize(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Overwrite files that already exist.")] = False,
    project_root: ProjectRootOption = None,
) -> None:
    """Deploy the state-ext/ working folder into the Meltano project (EDK)."""
    _extension(ctx, project_root).initialize(force)


@commands.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def invoke(ctx: typer.Context, command_args: Annotated[list[str], typer.Argument()]) -> None:
    """Run one of the state commands by name (EDK pass-through)."""
    command_name, *rest = command_args
    _extension(ctx).invoke(command_name, *rest, *ctx.args)
