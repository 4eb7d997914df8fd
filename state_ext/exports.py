"""The document of ``meltano state export``: written to stdout, or atomically to a file.

One document, three layouts of the same JSON (each readable by ``meltano state import``):

* compact, on one line, byte-identical to ``meltano state export``: stdout to a
  terminal, a file or a pipe of the user's;
* one state per line, when ``meltano run`` reads stdout (it cannot carry a line over
  64 KiB, see ``under_meltano``). The whole document is first spooled to a temporary
  file, so a state too large for even that prints nothing and fails with a line
  pointing to ``--output``;
* a file (``--output FILE`` or a timestamped name in ``--output-dir DIR``), written to a
  temporary name in the same folder, fsynced and renamed: a reader never sees half a
  document, and a failed export leaves no file.

States are read and encoded a thousand at a time, in one call of the C encoder each,
which is what makes a big export fast. Nothing is written before the first thousand are
read, so a store that cannot be read leaves stdout empty.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO

from state_ext import posix_io
from state_ext.errors import InvalidInputError, OutputTooWideError
from state_ext.model import Envelope

_compact = json.JSONEncoder(separators=(",", ":")).encode


def write_compact(states: Iterator[tuple[str, Envelope]], out: IO[str]) -> int:
    """``meltano state export``'s exact bytes: compact JSON, one trailing newline."""
    states = iter(states)
    count = 0
    while True:
        batch = {i: e.to_dict() for i, e in itertools.islice(states, 1000)}
        if not batch:
            break
        out.write(("," if count else "{") + _compact(batch)[1:-1])
        count += len(batch)
    out.write(("}" if count else "{}") + "\n")
    return count


def write_lines(states: Iterator[tuple[str, Envelope]], out: IO[str], limit: int) -> int:
    """The same document with each state on a line of its own, each under ``limit`` bytes."""
    count = 0
    out.write("{\n")
    for state_id, envelope in states:
        line = ("," if count else "") + _compact({state_id: envelope.to_dict()})[1:-1]
        size = len(line.encode()) + 1
        if size >= limit:
            raise OutputTooWideError(size)
        out.write(line + "\n")
        count += 1
    out.write("}\n")
    return count


def write_for_meltano(states: Iterator[tuple[str, Envelope]], out: IO[str], limit: int) -> int:
    """One state per line, printed only once every line is known to fit."""
    with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
        count = write_lines(states, spool, limit)
        spool.seek(0)
        shutil.copyfileobj(spool, out)
    return count


def write_file(states: Iterator[tuple[str, Envelope]], path: Path) -> int:
    """Write the compact document to ``path`` atomically, replacing any file there."""
    temporary, count = _write_temporary(states, path.parent, path.name)
    try:
        os.replace(temporary, path)
    except OSError as exc:
        with suppress(OSError):
            os.unlink(temporary)
        raise _cannot_write(path, exc) from None
    return count


def write_in_folder(states: Iterator[tuple[str, Envelope]], folder: Path,
                    label: str = "state") -> tuple[Path, int]:
    """Write to ``<folder>/<label>-<UTC time>.json`` (``-2``, ``-3``... if taken); an
    existing export is never replaced."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    temporary, count = _write_temporary(states, folder, f"{label}-{stamp}.json")
    try:
        for attempt in range(1, 1000):
            path = folder / f"{label}-{stamp}{'' if attempt == 1 else f'-{attempt}'}.json"
            try:
                os.link(temporary, path)  # no-replace: fails if the name is taken
            except FileExistsError:
                continue
            except OSError as exc:
                raise _cannot_write(path, exc) from None
            return path, count
        raise InvalidInputError(f"Cannot find a free export file name in {str(folder)!r}")
    finally:
        with suppress(OSError):
            os.unlink(temporary)


def _write_temporary(states, folder: Path, name: str) -> tuple[str, int]:
    """The compact document in a fsynced temporary file of ``folder`` (created if missing)."""
    counted = {}

    def write(raw) -> None:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
        counted["states"] = write_compact(states, text)
        text.flush()
        text.detach()

    try:
        temporary = posix_io.write_temporary(folder, f".{name}.", write, suffix=".tmp")
    except OSError as exc:
        raise _cannot_write(folder / name, exc) from None
    return temporary, counted["states"]


def _cannot_write(path: Path, exc: OSError) -> InvalidInputError:
    return InvalidInputError(
        f"Cannot write the export to {str(path)!r}: {exc.strerror or exc}")
