"""``check``: is every state of a store one that Meltano can hand to its tap, and sane?

Wired as the plugin's ``test`` command (``meltano test state-ext``), so it runs in CI or
before a pipeline. Each rule gives findings of one severity; errors fail the check,
warnings only with ``--strict``:

======================  ========  =============================================================
rule                    severity  finding
======================  ========  =============================================================
``unreadable``          error     the state cannot be read (corrupt JSON, a half that is no object)
``null-half``           error     a half is ``null``: Meltano crashes reading it
``no-singer-state``     error     the effective state has no top-level ``singer_state``
``singer-state-type``   error     ``singer_state`` is not an object
``bookmark-shape``      error     ``bookmarks``, a stream's bookmark or a partition is not of
                                  the SDK's shape (objects; ``partitions`` a list of objects
                                  with a ``context``)
``value-type``          error     ``replication_key_value`` is an object or an array
``future``              error     a timestamp bookmark is later than now (plus a minute of skew):
                                  the tap would skip every record until then
``empty``               warning   no bookmarks at all: the next run extracts everything
``in-flight``           warning   ``progress_markers``, ``replication_key_signpost`` or
                                  ``starting_replication_value`` in the completed half: a run
                                  was interrupted or its tap did not finalise its state
``no-replication-key``  warning   a ``replication_key_value`` without its ``replication_key``
``stale``               warning   with ``--max-age``: a timestamp bookmark older than that
``stale-lock``          warning   (file:// and object stores) a lock object older than
                                  ``lock_timeout_seconds``: a writer crashed holding it
``interrupted-partial`` warning   (system database) a partial half whose last run, one that
                                  writes partial state (``--state-strategy merge``,
                                  ``--full-refresh``), ended FAIL or DEAD: the next run
                                  resumes from it, merged over the completed half
======================  ========  =============================================================

"A partial half older than the completed one" is not a rule: through Meltano it cannot
happen (a complete write empties the partial half, so a partial half is always newer), and
where it could (``import``, a hand edit) no store keeps a time per half to tell. What the
system database does keep, the ``runs`` table, tells whether the run that left a partial
half was interrupted.

Other layouts (legacy taps' ``currently_syncing``, ``version``, log positions, bookmarks
of their own keys) are never findings. A state that cannot be read is one finding, never
the end of the check: reads go in batches, and a failed batch is split until the bad
state is read alone (``read_all``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from state_ext.errors import StateExtError
from state_ext.guard import order_key, where
from state_ext.model import Envelope
from state_ext.streams import IN_FLIGHT, shown

ERROR, WARNING = "error", "warning"
SKEW = timedelta(minutes=1)
_UNSET = object()


@dataclass
class Finding:
    state_id: str
    severity: str
    rule: str
    message: str
    stream: str | None = None
    partition: Any = None
    value: Any = _UNSET

    def line(self) -> str:
        place = where(self.state_id, self.stream, self.partition)
        text = f"{self.severity}: {place}: {self.rule}: {self.message}"
        return text if self.value is _UNSET else f"{text}: {shown(self.value)}"

    def to_dict(self) -> dict:
        return {"state_id": self.state_id, "stream": self.stream, "partition": self.partition,
                "severity": self.severity, "rule": self.rule, "message": self.message,
                "value": None if self.value is _UNSET else self.value}


class CheckFailed(StateExtError):
    """The check found errors (or warnings, with --strict): exit 1, after the findings."""


# -- reading the whole store -------------------------------------------------------------
def read_all(backend, ids: list[str]) -> Iterator[tuple[str, Envelope | None, str | None,
                                                       list[str]]]:
    """Every state as ``(id, envelope, error, notes)``: ``error`` when it cannot be read,
    ``notes`` the warnings the backend gave while reading it (a null half).

    ``iter_states`` in slices (each one query, or concurrent requests).
    When a state breaks a slice, the state where it stopped is read alone (the stores
    parse in order, so that is usually the bad one) and the rest of the slice goes on in
    slices a sixteenth the size: a bad state costs a few dozen reads again, not a slice.
    """
    notes: list[str] = []
    saved, backend.warn = backend.warn, notes.append
    try:
        yield from _read_ids(backend, ids, notes, SLICE)
    finally:
        backend.warn = saved


SLICE = 1000


def _read_ids(backend, ids: list[str], notes: list[str], size: int):
    for start in range(0, len(ids), size):
        yield from _read_slice(backend, ids[start:start + size], notes)


def _read_slice(backend, ids: list[str], notes: list[str]):
    done = 0
    try:
        for state_id, envelope in backend.iter_states(ids):
            done += 1
            if envelope is not None:
                yield state_id, envelope, None, _take(notes)
        return
    except StateExtError:
        notes.clear()
    suspect, rest = ids[done], ids[done + 1:]
    try:
        envelope = backend.get(suspect)
    except StateExtError as exc:
        yield suspect, None, exc.message, []
    else:
        if envelope is not None:
            yield suspect, envelope, None, _take(notes)
    yield from _read_ids(backend, rest, notes, max(1, len(ids) // 16))


def _take(notes: list[str]) -> list[str]:
    taken = notes[:]
    notes.clear()
    return taken


# -- the rules ---------------------------------------------------------------------------
def check_state(state_id: str, envelope: Envelope | None, error: str | None, notes: list[str],
                now: datetime, max_age: timedelta | None) -> list[Finding]:
    found: list[Finding] = []
    if error is not None:
        return [Finding(state_id, ERROR, "unreadable", error)]
    for note in notes:
        if "is null" in note:
            found.append(Finding(state_id, ERROR, "null-half", note))
    if envelope.is_empty():
        return [*found, Finding(state_id, WARNING, "empty", "no state at all")]
    state = envelope.effective()
    if "singer_state" not in state:
        keys = ", ".join(sorted(state)) or "none"
        return [*found, Finding(state_id, ERROR, "no-singer-state",
                                f"no top-level singer_state (keys: {keys})")]
    singer = state["singer_state"]
    if singer is not None and not isinstance(singer, dict):
        return [*found, Finding(state_id, ERROR, "singer-state-type",
                                "singer_state is not an object", value=singer)]
    marks = (singer or {}).get("bookmarks")
    if not singer or (isinstance(marks, dict) and not marks and len(singer) == 1):
        return [*found, Finding(state_id, WARNING, "empty",
                                "no bookmarks: the next run extracts every stream from its start")]
    if marks is None:
        return found  # another layout (currently_syncing, log positions...): opaque
    if not isinstance(marks, dict):
        return [*found, Finding(state_id, ERROR, "bookmark-shape", "bookmarks is not an object",
                                value=marks)]
    completed_singer = envelope.completed.get("singer_state")
    completed = completed_singer.get("bookmarks") if isinstance(completed_singer, dict) else None
    for stream, mark in marks.items():
        if not isinstance(mark, dict):
            found.append(Finding(state_id, ERROR, "bookmark-shape",
                                 "the stream's bookmark is not an object", stream, value=mark))
            continue
        done = completed.get(stream) if isinstance(completed, dict) else None
        _check_mark(found, state_id, stream, None, mark, done, now, max_age)
        parts = mark.get("partitions")
        if parts is None:
            continue
        if not isinstance(parts, list):
            found.append(Finding(state_id, ERROR, "bookmark-shape", "partitions is not a list",
                                 stream, value=parts))
            continue
        done_parts = done.get("partitions") if isinstance(done, dict) else None
        for index, part in enumerate(parts):
            if not isinstance(part, dict) or "context" not in part:
                found.append(Finding(state_id, ERROR, "bookmark-shape",
                                     f"partition #{index} is not an object with a context",
                                     stream, value=part))
                continue
            done_part = _same_context(done_parts, part["context"])
            _check_mark(found, state_id, stream, part["context"], part, done_part, now, max_age)
    return found


def _same_context(parts: Any, context: Any) -> dict | None:
    for part in parts if isinstance(parts, list) else ():
        if isinstance(part, dict) and part.get("context") == context:
            return part
    return None


def _check_mark(found, state_id, stream, context, mark: dict, completed_mark: dict | None,
                now: datetime, max_age: timedelta | None) -> None:
    if isinstance(completed_mark, dict):
        for marker in IN_FLIGHT:
            if marker in completed_mark:
                found.append(Finding(state_id, WARNING, "in-flight",
                                     f"{marker} in the completed state (an interrupted run?)",
                                     stream, context, completed_mark[marker]))
    if "replication_key_value" not in mark:
        return
    value = mark["replication_key_value"]
    if isinstance(value, (dict, list)):
        found.append(Finding(state_id, ERROR, "value-type",
                             "replication_key_value is not a timestamp, number or string",
                             stream, context, value))
        return
    if "replication_key" not in mark:
        found.append(Finding(state_id, WARNING, "no-replication-key",
                             "replication_key_value without replication_key", stream, context,
                             value))
    key = order_key(value)
    if key is None or key[0] != "time":
        return
    if key[1] > now + SKEW:
        found.append(Finding(state_id, ERROR, "future", "bookmark is in the future",
                             stream, context, value))
    elif max_age is not None and key[1] < now - max_age:
        found.append(Finding(state_id, WARNING, "stale",
                             f"bookmark is older than --max-age ({_age(now - key[1])} old)",
                             stream, context, value))


def _age(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f}h" if hours < 48 else f"{hours / 24:.0f}d"


def run_check(backend, pattern: str | None, max_age: timedelta | None,
              now: datetime | None = None) -> tuple[int, list[Finding]]:
    """Check every state matching ``pattern``: (states checked, findings in store order)."""
    from state_ext import lock_tools

    now = now or datetime.now(timezone.utc)
    if lock_tools.supported(backend):
        ids, locked = lock_tools.listing(backend, pattern)
    else:
        ids, locked = backend.list_ids(pattern), []
    count, findings, partial = 0, [], []
    for state_id, envelope, error, notes in read_all(backend, ids):
        count += 1
        findings.extend(check_state(state_id, envelope, error, notes, now, max_age))
        if envelope is not None and envelope.partial:
            partial.append(state_id)
    findings.extend(_lock_findings(backend, locked))
    findings.extend(_interrupted_partials(backend, partial))
    findings.sort(key=lambda f: f.state_id)  # stable: each state's own order is kept
    return count, findings


def _lock_findings(backend, locked: list[str]) -> list[Finding]:
    """Locks older than their timeout (file:// and object stores keep lock objects)."""
    from state_ext import lock_tools

    timeout = backend.settings.lock_timeout_seconds
    found = (lock_tools.read_lock(backend, state_id) for state_id in locked)
    return [Finding(info.state_id, WARNING, "stale-lock",
                    f"lock older than lock_timeout_seconds ({timeout:g} s), left by a writer "
                    f"that crashed? ({info.location})", value=info.describe())
            for info in found if info is not None and info.stale]


INTERRUPTED = ("FAIL", "DEAD")


def _interrupted_partials(backend, state_ids: list[str]) -> list[Finding]:
    """Partial halves whose latest ``runs`` row (the system database only) is a run that
    wrote partial state (``payload_flags`` 2) and ended FAIL or DEAD."""
    if not state_ids or backend.settings.scheme != "systemdb":
        return []
    from state_ext.backends.systemdb.runs import last_runs

    return [Finding(state_id, WARNING, "interrupted-partial",
                    f"the partial half was left by run {run_id}, which ended {state} "
                    f"at {ended or 'an unknown time'}: the next run resumes from it, "
                    "merged over the completed half")
            for state_id, run_id, state, ended, flags in last_runs(backend, state_ids)
            if state in INTERRUPTED and (flags or 0) & 2]
