"""What every command shares: option types, prompts, safety snapshots, backends, I/O.

Only typer is imported here: structlog, SQLAlchemy and the cloud SDKs are imported inside
the functions that need them, so ``--help`` stays fast. stdout carries data only; logs
and prompts go to stderr; an expected error is one log line and a non-zero exit.
"""

import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


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
PatternOption = Annotated[str | None, typer.Option(
    help="Only state IDs matching this fnmatch pattern, e.g. 'prod:*'.")]
ForceOption = Annotated[bool, typer.Option("--force", help="Do not ask for confirmation.")]
NoSnapshotOption = Annotated[bool, typer.Option(
    "--no-snapshot", help="Do not take the safety snapshot of what this command overwrites or "
    "deletes (setting auto_snapshot: false turns it off everywhere).")]


def log():
    from state_ext.logs import get_logger

    return get_logger()


class UsageError(Exception):
    """Wrong combination of arguments: exit 2 as click's own usage errors, in one log line.

    (typer vendors its click, so click's UsageError is not public API to subclass.)"""


@contextmanager
def state_backend(uri: str | None, project_root: Path | None):
    from state_ext.backends import open_backend
    from state_ext.settings import ProjectSettings

    settings = ProjectSettings(project_root).backend_settings(uri)
    backend = open_backend(settings, warn=lambda message: log().warning(message))
    log().debug("using state backend", backend=backend.label)
    try:
        yield backend
    finally:
        backend.close()


def safety_snapshot(backend, project_root: Path | None, *, label: str,
                    ids: list[str] | None = None, pattern: str | None = None,
                    no_snapshot: bool = False) -> str:
    """Snapshot exactly what a command is about to overwrite or delete, before it writes.

    Returns the words a command's summary ends with (naming the snapshot and its undo), or
    "" when disabled. Outside a Meltano project, with no ``snapshot_uri``, there is nowhere
    to keep it: the command goes on and says so.
    """
    from state_ext.settings import ProjectSettings
    from state_ext.snapshot_stores import snapshot_uri
    from state_ext.snapshot_taking import auto_snapshot, auto_snapshot_enabled

    settings = ProjectSettings(project_root)
    if not auto_snapshot_enabled(settings, no_snapshot):
        return ""
    if snapshot_uri(settings)[0] is None:
        log().warning("No safety snapshot: no Meltano project and no snapshot_uri "
                      "(STATE_EXT_SNAPSHOT_URI) to keep it in")
        return ""
    info = auto_snapshot(backend, settings, label=label, ids=ids, pattern=pattern)
    if info is None:
        return ""
    return f"; safety snapshot {info.name} (undo: state_extension restore {info.name})"


def confirm(prompt: str, force: bool, *, what: str) -> None:
    """Ask on stderr (stdout is data) before a destructive change, unless ``force``.

    Only a person at a terminal can answer: when stdin is not a terminal (a pipe, a
    file, CI, a ``meltano run`` step) the command refuses at once instead of reading
    an answer nobody typed. Where stderr is not a terminal either (``meltano invoke``
    reads it line by line) the question ends its line, so it is shown before the answer.
    """
    if force:
        return
    from state_ext.errors import AbortedError, ConfirmationNeededError

    if not sys.stdin.isatty():
        raise ConfirmationNeededError(what)
    # Not click.confirm: it echoes the prompt to stderr but a space to stdout.
    sys.stderr.write(f"{prompt} [y/N]:" + (" " if sys.stderr.isatty() else "\n"))
    sys.stderr.flush()
    answer = sys.stdin.readline()
    if not answer.endswith("\n"):
        sys.stderr.write("\n")  # EOF left the prompt line open
    if answer.strip().lower() not in ("y", "yes"):
        raise AbortedError()


def read_state_input(state: str | None, input_file: Path | None, names: str) -> str:
    if (state is None) == (input_file is None):
        raise UsageError(f"Must provide exactly one of: {names}")
    if input_file is None:
        return state
    return read_text(input_file, "--input-file")


def read_text(path: Path, what: str) -> str:
    """A file's (or stdin's, for ``-``) text: UTF-8, strictly, as JSON requires."""
    if str(path) == "-":
        data = sys.stdin.buffer.read()
        name = "standard input"
    else:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UsageError(
                f"Invalid value for {what}: file {str(path)!r} does not exist") from None
        except OSError as exc:
            raise UsageError(
                f"Invalid value for {what}: cannot read {str(path)!r}: {exc}") from None
        name = repr(str(path))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"Invalid value for {what}: {name} is not UTF-8 text "
            f"(byte {exc.start}: {data[exc.start:exc.start + 1]!r})"
        ) from None


def out(text: str) -> None:
    """Write data to stdout, refusing a line that a ``meltano run`` step cannot carry."""
    from state_ext.under_meltano import MELTANO_LINE_LIMIT, stdout_read_by_meltano

    if stdout_read_by_meltano() and len(text) >= MELTANO_LINE_LIMIT // 4:
        longest = max(len(line.encode()) for line in text.split("\n"))
        if longest >= MELTANO_LINE_LIMIT:
            from state_ext.errors import OutputTooWideError

            raise OutputTooWideError(longest)
    sys.stdout.write(text + "\n")


ToOption = Annotated[
    str | None,
    typer.Option("--to", help="Destination backend URI (default: the same backend)."),
]


def validate_ids(*state_ids: str) -> None:
    """Refuse an invalid state ID given on the command line, before anything else.

    The backends' public methods refuse invalid IDs too, and they are what keeps a store
    safe; this check is only about which error a user sees first. A command validates
    its IDs before it opens a backend, reads its input or asks its question, so a bad ID
    is reported as such, not as an unreachable backend, a bad document or a refused
    prompt, and nothing is read or written.
    """
    from state_ext.state_ids import validate_state_id

    for state_id in state_ids:
        validate_state_id(state_id)
