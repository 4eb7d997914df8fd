"""``doctor``: can this backend be used at all, and what is the usual mistake if not?

It contacts the backend with the resolved settings and times one probe per capability
(list, read, write, read back, delete: a scratch state it removes); a failed probe skips
the probes that need it. ``hints`` then names the common mistakes the settings and the
probes show: a database URL as ``state_backend.uri``, an empty system database while the
state lives elsewhere, credentials the service refused, a snapshot store that cannot give
back what it loses. A failure ends the command through ``health.CheckFailed``, like
``check``.
"""

from __future__ import annotations

from dataclasses import dataclass

from state_ext.errors import StateExtError
from state_ext.model import Envelope

_UNSET = object()


@dataclass
class Step:
    """One probe of ``doctor``: ok True/False, or None when skipped."""

    name: str
    ok: bool | None
    millis: float | None
    detail: str

    def line(self) -> str:
        status = {True: "ok", False: "FAILED", None: "skipped"}[self.ok]
        took = "" if self.millis is None else f"{self.millis:.0f} ms"
        return f"{self.name:<10} {status:<8} {took:>8}  {self.detail}"

    def to_dict(self) -> dict:
        return {"step": self.name, "ok": self.ok, "millis": self.millis, "detail": self.detail}


def probe(backend) -> list[Step]:
    """List, read, write, read back and delete a scratch state, each timed; a failed step
    skips those that need it. The scratch ID cannot collide with a pipeline's."""
    import os
    from time import perf_counter

    steps: list[Step] = []

    def timed(name, action, detail):
        started = perf_counter()
        try:
            result = action()
        except StateExtError as exc:
            steps.append(Step(name, False, (perf_counter() - started) * 1000, exc.message))
            return _UNSET
        steps.append(Step(name, True, (perf_counter() - started) * 1000, detail(result)))
        return result

    ids = timed("list", backend.list_ids, lambda found: f"{len(found)} state(s)")
    if ids is _UNSET:
        return steps + [Step(n, None, None, "the store could not be listed")
                        for n in ("read", "write", "delete")]
    if ids:
        timed("read", lambda: backend.get(ids[0]), lambda _: f"state {ids[0]!r}")
    else:
        steps.append(Step("read", None, None, "no state to read"))
    scratch = f"state-ext-doctor:{os.getpid()}-{os.urandom(4).hex()}"
    written = Envelope.complete({"singer_state": {"bookmarks": {}}})
    if timed("write", lambda: backend.put(scratch, written),
             lambda _: f"scratch state {scratch!r} (under its lock)") is _UNSET:
        return steps + [Step("delete", None, None, "nothing was written")]
    back = timed("read back", lambda: backend.get(scratch), lambda _: "")
    if back is not _UNSET:
        same = back is not None and back.canonical() == written.canonical()
        steps[-1].ok, steps[-1].detail = same, "as written" if same else "differs"
    timed("delete", lambda: backend.delete(scratch), lambda _: f"scratch state {scratch!r}")
    return steps


def hints(project, settings, given_uri: str | None, steps: list[Step]) -> list[str]:
    """Common mistakes, judged from the settings and what the probes saw."""
    from state_ext.backends import is_database_url
    from state_ext.redact import redact_uri
    from state_ext.settings import uri_scheme

    found = []
    scheme = uri_scheme(settings.uri)
    if given_uri is None and is_database_url(scheme):
        found.append(
            "state_backend.uri is a database URL: Meltano does not accept one there (it "
            "looks for an add-on named after the scheme). Keep state_backend.uri systemdb and "
            "set database_uri (MELTANO_DATABASE_URI) to that database")
    listed = next((s for s in steps if s.name == "list"), None)
    if scheme == "systemdb" and listed is not None and listed.ok and \
            listed.detail.startswith("0 "):
        found.append(
            f"No state in the system database {redact_uri(settings.database_uri or '')}: "
            "database_uri only chooses Meltano's own database; if your state lives elsewhere "
            "set state_backend.uri (MELTANO_STATE_BACKEND_URI)")
    found += _credential_hints(settings, steps)
    found += snapshot_store_hints(project)
    return found


REJECTED = ("credentials were rejected", "authentication failed", "access denied")


def _credential_hints(settings, steps: list[Step]) -> list[str]:
    """Credentials that reached the service and were refused: say where they came from,
    and what usually is wrong, once (the failed step already quotes the service)."""
    refused = next((s for s in steps if s.ok is False and
                    any(word in s.detail.lower() for word in REJECTED)), None)
    if refused is None:
        return []
    from state_ext.settings import is_sensitive

    prefix = f"state_backend.{uri_namespace(settings)}."
    given = sorted(prefix + name for name, value in settings.options.items()
                   if value and (is_sensitive(prefix + name) or "credentials" in name))
    source = (f"from the settings {', '.join(given)}" if given else
              "from the SDK's own chain (environment variables, shared config or profile, "
              "workload or instance identity), as no credential setting is set")
    return [f"The store answered but refused the credentials state-ext sent ({source}). "
            "Check that they belong to this account and endpoint, that a key's secret is "
            "its pair, that the clock is right (signed requests expire), and that the "
            "identity may list, read, write and delete under the prefix"]


def uri_namespace(settings) -> str:
    return {"gs": "gcs"}.get(settings.scheme, settings.scheme)


def snapshot_store_hints(project) -> list[str]:
    """The snapshot store on S3 without bucket versioning: a snapshot deleted or overwritten
    there (a ``snapshots prune``, a mistaken lifecycle rule) is gone for good, and
    ``history`` finds no object versions of states kept in that bucket. GCS and Azure keep
    their versioning switch out of the data API state-ext uses: not judged there."""
    from state_ext.snapshot_object_store import ObjectSnapshotStore
    from state_ext.snapshot_stores import open_store

    if project.root is None:
        return []
    try:
        with open_store(project) as store:
            if not isinstance(store, ObjectSnapshotStore):
                return []
            keeps = store.keeps_versions()
            label = store.label
    except StateExtError as exc:
        return [f"The snapshot store could not be opened: {exc.message}"]
    if keeps is False:
        return [f"The snapshot store {label} is in a bucket without versioning: a snapshot "
                "deleted or overwritten there cannot be recovered, and history finds no "
                "earlier object versions in it. Turn bucket versioning on (with a lifecycle "
                "rule expiring noncurrent versions)"]
    return []
