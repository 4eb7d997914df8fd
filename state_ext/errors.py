"""Errors that end a command with one clear line and a non-zero exit.

Every failure a user can cause or fix (bad input, bad settings, an unreachable or
locked store) is a ``StateExtError``. The CLI prints its message as a single log line
and exits with ``exit_code``; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class StateExtError(Exception):
    """A failure with a message meant for the user, never a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidInputError(StateExtError):
    """The state, document or argument given on the command line is not acceptable."""


class InvalidStateIdError(InvalidInputError):
    """A state ID that could escape or corrupt a store."""


class ConfigurationError(StateExtError):
    """Settings or URIs that cannot describe a usable backend."""


class BackendError(StateExtError):
    """The backend could not be read or written (missing, unreachable, corrupt, denied)."""


class LockTimeoutError(BackendError):
    """Another process held a state ID's lock for longer than we may wait."""


class MissingExtraError(ConfigurationError):
    """A backend needs an optional dependency that is not installed."""

    def __init__(self, what: str, extra: str) -> None:
        super().__init__(
            f"{what} needs the '{extra}' extra: pip install 'state-ext[{extra}]'"
        )


class AbortedError(StateExtError):
    """The user declined a confirmation prompt (Meltano prints 'Aborted!')."""

    def __init__(self) -> None:
        super().__init__("Aborted!")


class ConfirmationNeededError(StateExtError):
    """A destructive command without ``--force`` where nobody can answer a prompt."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"Refusing to {what} without confirmation: standard input is not a terminal, "
            "so nobody can answer; pass --force to confirm"
        )


class OutputTooWideError(StateExtError):
    """A stdout line longer than a ``meltano run`` step can carry (Meltano's 64 KiB)."""

    def __init__(self, length: int) -> None:
        super().__init__(
            f"An output line of {length} bytes is longer than the 64 KiB per line that "
            "Meltano reads from a `meltano run` step; nothing was printed. Write it to a "
            "file instead: export --output FILE (or --output-dir DIR)"
        )


def one_line(exc: BaseException, limit: int | None = 240, *, first_line: bool = False) -> str:
    """An exception as one line of a message: the driver's own text when a library wraps
    it (SQLAlchemy's ``orig``), whitespace collapsed, at most ``limit`` characters (None:
    unbounded), and the exception's type when it says nothing.

    ``first_line`` keeps only the first line, as written: a database driver's or the JSON
    decoder's first line names the problem, and what follows (SQL, hints, a caret under
    the text) would read as noise once folded into one line."""
    orig = getattr(exc, "orig", None) or exc
    if first_line:
        text = next(iter(str(orig).strip().splitlines()), "") or type(orig).__name__
    else:
        text = " ".join(str(orig).split()) or type(orig).__name__
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
