"""How figures look on the dashboard: bars, sparklines, sizes and durations (pure functions)."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from legaldoc.lifecycle import BatchStatus, MirrorState
from legaldoc.paths import display_name

SPARKS = "▁▂▃▄▅▆▇█"
CATEGORY_STYLE = {
    "TRANSIENT": "yellow", "RATE_LIMIT": "magenta", "RESOURCE": "bright_red", "CONFIGURATION": "cyan",
    "DATA": "red", "PERMANENT": "bold red",
}  # fmt: skip
STATUS_STYLE: dict[str, str] = {  # batch statuses and document states (some share a name)
    BatchStatus.RUNNING: "bold green", BatchStatus.CANCELLING: "yellow", BatchStatus.FINISHED: "",
    BatchStatus.CANCELLED: "dim", MirrorState.PENDING: "dim", MirrorState.SUCCEEDED: "green", MirrorState.FAILED: "red",
    MirrorState.SKIPPED: "cyan",
}  # fmt: skip


def size(count: int | float) -> str:
    """Bytes as B, kB, MB, GB (powers of 1024)."""
    value = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"


def duration(seconds: float | None) -> str:
    """Seconds as '45s', '3m 20s', '2h 05m', '3d 04h'; '-' when unknown."""
    if seconds is None:
        return "-"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


def milliseconds(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value} ms" if value < 1000 else f"{value / 1000:.1f} s"


def rate(per_minute: float | None) -> str:
    if not per_minute:
        return "-"
    return f"{per_minute:.1f}" if per_minute < 100 else f"{per_minute:.0f}"


def progress(parts: Sequence[tuple[int, str]], total: int, width: int = 20,
             in_flight: tuple[int, str] | None = None, processed: int | None = None) -> Text:  # fmt: skip
    """A bar of `width` cells: each finished (count, style) part in turn, then the in-flight part
    (drawn lighter), the rest empty, then the percentage processed (`processed`, else every finished
    part). A part that is not zero always gets a cell, so one failure in a thousand still shows."""
    drawn = [(count, style, "█") for count, style in parts]
    if in_flight:
        drawn.append((in_flight[0], in_flight[1], "▒"))
    cells = allot([count for count, _, _ in drawn], total, width)
    text = Text()
    for (_, style, mark), n in zip(drawn, cells, strict=True):
        if n:
            text.append(mark * n, style=style)
    text.append("░" * (width - sum(cells)), style="grey37")
    done = sum(c for c, _ in parts) if processed is None else processed
    text.append(f" {done / total * 100:3.0f}%" if total else "    -")
    return text


def allot(counts: Sequence[int], total: int, width: int) -> list[int]:
    """Cells for each count out of `total` in `width`: proportional (largest remainders), at least
    one for any count above zero, never more than `width` in all."""
    if not total or not width:
        return [0] * len(counts)
    exact = [count / total * width for count in counts]
    cells = [max(int(x), 1 if count else 0) for x, count in zip(exact, counts, strict=True)]
    target = min(width, max(round(sum(counts) / total * width), sum(cells)))
    for i in sorted(range(len(counts)), key=lambda i: exact[i] - int(exact[i]), reverse=True):
        if sum(cells) >= target:
            break
        if counts[i] and cells[i] < exact[i]:
            cells[i] += 1
    while sum(cells) > width:
        cells[max(range(len(cells)), key=lambda i: cells[i])] -= 1
    return cells


def sparkline(values: Sequence[int]) -> Text:
    """One character per value, scaled to the largest; zeros show as the lowest mark, dimmed."""
    top = max(values, default=0)
    text = Text()
    for value in values:
        if not value:
            text.append(SPARKS[0], style="grey37")
        else:
            text.append(SPARKS[min(len(SPARKS) - 1, (value * (len(SPARKS) - 1) + top - 1) // top)], style="green")
    return text


def count_bar(value: int, largest: int, width: int = 20, style: str = "red") -> Text:
    cells = 0 if not largest else max(1 if value else 0, round(value / largest * width))
    return Text.assemble(("█" * cells, style), ("░" * (width - cells), "grey23"))


def category(name: str | None) -> Text:
    return Text(name or "", style=CATEGORY_STYLE.get(name or "", ""))


def status(name: str | None) -> Text:
    return Text(name or "", style=STATUS_STYLE.get(name or "", ""))


def clip(message: str | None, width: int = 80) -> str:
    text = " ".join((message or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


def clip_path(path: str | None, width: int = 60) -> str:
    """A path shortened from the left, so the file name stays visible."""
    text = path or ""
    return text if len(text) <= width else "…" + text[-(width - 1) :]


def reason(message: str | None, source: str) -> str:
    """A failure message with its document's path cut to the file name: the reason reads first."""
    text = message or ""
    if source and source in text:
        text = text.replace(source, display_name(source))
    return text
