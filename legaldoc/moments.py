"""The one way moments are shown: ISO 8601 in UTC with milliseconds (`2026-12-02T14:05:09.123Z`),
in every `--json` output, export and report. Fixed width, so the strings sort as the moments do."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(value: datetime | float | None) -> str | None:
    """A datetime (naive ones are UTC) or seconds since the epoch as ISO 8601 UTC; None stays None."""
    if value is None:
        return None
    if isinstance(value, int | float):
        if value <= 0:
            return None
        value = datetime.fromtimestamp(value, UTC)
    elif value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
