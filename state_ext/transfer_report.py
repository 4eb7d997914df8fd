"""What a transfer did (or, planned only, would do): counts, the IDs that need a person's
eye, and the one verdict ``ok``.

Kept apart from the engine (``state_ext.transfer``) so that reading the counts does not
mean reading the phases that fill them. ``copied`` and ``overwritten`` count states written
*and verified*, never merely planned (those are ``would_copy``/``would_overwrite``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state_ext.transfer_options import OnConflict


@dataclass
class TransferReport:
    source: str
    destination: str
    dry_run: bool = False
    on_conflict: OnConflict = OnConflict.fail
    total: int = 0
    would_copy: int = 0  # planned: absent at the destination
    would_overwrite: int = 0  # planned: different at the destination, --on-conflict overwrite
    copied: int = 0  # written and verified, never merely planned
    overwritten: int = 0
    identical: int = 0
    conflicts: list[str] = field(default_factory=list)
    skipped_conflicts: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    mismatched: list[str] = field(default_factory=list)
    deleted_from_source: int = 0
    elapsed_seconds: float = 0.0
    raced: list[str] = field(default_factory=list)  # created by someone between plan and write
    created_unlocked: int = 0  # new states written by one conditional create each
    write_path: str | None = None  # why new states took the locked path, if they did
    stale_locks_removed: int = 0

    def __post_init__(self) -> None:
        self.on_conflict = OnConflict(self.on_conflict)

    @property
    def ok(self) -> bool:
        blocked = bool(self.conflicts or self.raced) and self.on_conflict is OnConflict.fail
        return not (blocked or self.failed or self.mismatched)

    @property
    def written(self) -> int:
        return self.copied + self.overwritten

    @property
    def states_per_second(self) -> float | None:
        """States planned per second of the whole run; None for a run that wrote nothing."""
        if not self.written or not self.elapsed_seconds:
            return None
        return round(self.total / self.elapsed_seconds, 1)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "destination": self.destination, "dry_run": self.dry_run,
            "on_conflict": self.on_conflict.value, "total": self.total,
            "would_copy": self.would_copy, "would_overwrite": self.would_overwrite,
            "copied": self.copied, "overwritten": self.overwritten, "identical": self.identical,
            "conflicts": self.conflicts, "skipped_conflicts": self.skipped_conflicts,
            "failed": self.failed, "mismatched": self.mismatched,
            "deleted_from_source": self.deleted_from_source, "raced": self.raced,
            "created_unlocked": self.created_unlocked, "write_path": self.write_path,
            "stale_locks_removed": self.stale_locks_removed,
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "states_per_second": self.states_per_second, "ok": self.ok,
        }
