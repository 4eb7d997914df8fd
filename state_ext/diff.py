"""Compare two backends (the ``diff`` command): IDs on one side only, and IDs whose
envelopes differ.

It reads as the transfer engine plans (``state_ext.transfer_plan``): both listings once, then
only the IDs present on both sides, a chunk at a time from each, compared by digest, so
memory stays flat whatever the number of states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from state_ext.backends.base import StateBackend, digest
from state_ext.transfer_plan import chunks, read_states


@dataclass
class DiffReport:
    source: str
    destination: str
    only_in_source: list[str] = field(default_factory=list)
    only_in_destination: list[str] = field(default_factory=list)
    different: list[str] = field(default_factory=list)
    identical: int = 0

    @property
    def same(self) -> bool:
        return not (self.only_in_source or self.only_in_destination or self.different)

    def to_dict(self) -> dict:
        return {
            "source": self.source, "destination": self.destination,
            "only_in_source": self.only_in_source,
            "only_in_destination": self.only_in_destination,
            "different": self.different, "identical": self.identical, "same": self.same,
        }


def diff(src: StateBackend, dst: StateBackend, pattern: str | None = None) -> DiffReport:
    """Which IDs exist on one side only, and which hold different envelopes."""
    report = DiffReport(src.label, dst.label)
    source_ids, target_ids = set(src.list_ids(pattern)), set(dst.list_ids(pattern))
    report.only_in_source = sorted(source_ids - target_ids)
    report.only_in_destination = sorted(target_ids - source_ids)
    for chunk in chunks(sorted(source_ids & target_ids)):
        source, target = read_states(src, chunk), read_states(dst, chunk)
        for state_id in chunk:
            if digest(source[state_id]) == digest(target[state_id]):
                report.identical += 1
            else:
                report.different.append(state_id)
    return report
