"""What reading a snapshot dropped, replaced or ignored, for the log and the summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from features.quarantine import Quarantine


@dataclass
class ReadReport:
    """What reading the snapshot dropped, replaced or ignored, for the log and the report."""

    leads: int = 0
    events_read: int = 0
    events_kept: int = 0
    events_unknown_lead: int = 0
    events_duplicate: int = 0
    unknown_event_types: dict[str, int] = field(default_factory=dict)
    ignored_columns: list[str] = field(default_factory=list)
    excluded_columns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantine: Quarantine = field(default_factory=Quarantine)

    def lines(self) -> list[str]:
        lines = [
            f"{self.leads:,} leads, {self.events_kept:,} events kept of {self.events_read:,} read"
        ]
        if self.events_unknown_lead:
            lines.append(f"{self.events_unknown_lead:,} events of unknown leads dropped")
        if self.events_duplicate:
            lines.append(f"{self.events_duplicate:,} duplicate events dropped")
        if self.unknown_event_types:
            top = sorted(self.unknown_event_types.items(), key=lambda kv: -kv[1])[:5]
            shown = ", ".join(f"{k!r}: {v:,}" for k, v in top)
            total = sum(self.unknown_event_types.values())
            lines.append(f"{total:,} events of unknown types kept as 'other' ({shown})")
        if self.excluded_columns:
            lines.append(f"excluded columns: {', '.join(self.excluded_columns)}")
        if self.ignored_columns:
            lines.append(f"columns not in the contract, ignored: {', '.join(self.ignored_columns)}")
        return lines + self.notes + self.quarantine.lines()
