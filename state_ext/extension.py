"""The EDK extension: describe, initialize, invoke; built on the CLI (``state_ext.cli``).

It is built per command (never at import time) so that ``--help`` and ``describe``
need no project, settings or database.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from meltano.edk import models
from meltano.edk.extension import ExtensionBase

from state_ext import APP_NAME
from state_ext.errors import ConfigurationError
from state_ext.logs import get_logger


def state_command_names() -> list[str]:
    from state_ext.cli import state_command_names

    return state_command_names()

BUNDLE = "bundle"
# Files in the bundle whose deployed name differs (dotfiles do not travel well in wheels).
RENAMES = {"gitignore": ".gitignore"}


class StateExtension(ExtensionBase):
    """state-ext as Meltano sees it."""

    def __init__(self, project_root: Path | None = None) -> None:
        self.project_root = project_root

    def describe(self) -> models.Describe:
        return models.Describe(
            commands=[
                models.ExtensionCommand(
                    name=APP_NAME,
                    description="Read, write, copy and migrate Meltano state on every backend",
                    commands=["describe", "initialize", "invoke", *state_command_names()],
                )
            ]
        )

    def invoke(self, command_name: str | None, *command_args) -> None:
        """Run one of our own commands, as ``state_extension <command> ...`` would."""
        from typer.main import get_command

        from state_ext.cli import app

        names = state_command_names()
        if command_name not in names:
            raise ConfigurationError(f"invoke needs a state command, one of: {', '.join(names)}")
        command = get_command(app).commands[command_name]
        args = [a.decode() if isinstance(a, bytes) else str(a) for a in command_args]
        # The command alone, not the whole app: logging stays as the caller configured it.
        command.main(args=args, prog_name=f"{APP_NAME} {command_name}")

    def describe_formatted(self, output_format=None) -> str:
        """EDK's text format prints nothing useful for slotted dataclasses: write our own."""
        from meltano.edk.extension import DescribeFormat

        if output_format not in (None, DescribeFormat.text):
            return super().describe_formatted(output_format)
        lines = []
        for command in self.describe().commands:
            lines.append(f"{command.name}: {command.description}")
            lines.append(f"  commands: {', '.join(command.commands)}")
        return "\n".join(lines)

    def initialize(self, force: bool = False) -> None:
        """Deploy ``files_state_ext/bundle`` into the project; idempotent.

        Existing files are kept unless ``force``: they may hold the user's edits.
        """
        if self.project_root is None:
            raise ConfigurationError(
                "No Meltano project found (no meltano.yml here or above); use --project-root"
            )
        bundle = resources.files("files_state_ext").joinpath(BUNDLE)
        created, kept = [], []
        for source, relative in _walk(bundle, Path()):
            target = self.project_root / relative
            if target.exists() and not force:
                kept.append(str(relative))
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
            created.append(str(relative))
        exports = self.project_root / "state-ext" / "exports"
        exports.mkdir(parents=True, exist_ok=True)
        log = get_logger()
        log.info("initialized", project_root=str(self.project_root), written=created, kept=kept)
        if kept and not force:
            log.info(f"kept {len(kept)} existing file(s); use --force to overwrite them")


def _walk(node, relative: Path):
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        name = RENAMES.get(child.name, child.name)
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            yield from _walk(child, relative / name)
        else:
            yield child, relative / name
