"""Text clean-up shared by every extractor, and assembly of pages into one document text."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from legaldoc.errors import StageTimeout
from legaldoc.models import ExtractedDocument, PageText

PAGE_SEPARATOR = "\n\f"
"""Between pages of the document text: ends the line, then a form feed."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f\ufeff\ufffe\uffff]")
_SOFT_HYPHEN_BREAK = re.compile(r"[\u00ad\x02]\n?")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")


def clean_text(text: str) -> str:
    """Normalise line ends, drop control characters and trailing blanks; keep everything else."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _SOFT_HYPHEN_BREAK.sub("", text)
    text = _CONTROL.sub("", text)
    text = text.replace("\u00a0", " ").replace("\f", "\n")
    return _TRAILING_SPACE.sub("\n", text).strip("\n ")


def assemble(
    kind: str,
    page_texts: Iterable[tuple[str, bool, str]],
    metadata: dict | None = None,
) -> ExtractedDocument:
    """Join (text, ocr, method) pages with PAGE_SEPARATOR and record each page's offsets."""
    parts: list[str] = []
    pages: list[PageText] = []
    position = 0
    for number, (text, ocr, method) in enumerate(page_texts, start=1):
        if parts:
            parts.append(PAGE_SEPARATOR)
            position += len(PAGE_SEPARATOR)
        parts.append(text)
        pages.append(PageText(number=number, start=position, end=position + len(text), ocr=ocr, method=method))
        position += len(text)
    return ExtractedDocument(kind=kind, text="".join(parts), pages=tuple(pages), metadata=metadata or {})


class Deadline:
    """A per-document time budget, checked between pages."""

    def __init__(self, seconds: float, what: str) -> None:
        self.at = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self) -> None:
        if time.monotonic() > self.at:
            raise StageTimeout(
                f"{self.what} took longer than {self.seconds:.0f}s",
                hint="raise LEGALDOC_DOCUMENT_TIMEOUT or split the document",
            )


_BOMS = (  # UTF-32 first: its little-endian mark begins with UTF-16's
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)


def wide_encoding(data: bytes) -> str | None:
    """The UTF-16 or UTF-32 codec of text bytes: from a byte-order mark, or for UTF-16 without one,
    from the NUL byte beside every ASCII character; None for anything else (UTF-8, binary).
    The codec returned strips the mark; the bytes are not checked past the first 4 KB."""
    for mark, codec in _BOMS:
        if data.startswith(mark):
            size = 4 if codec.startswith("utf-32") else 2
            return codec if _readable(data[len(mark) : 4096 - 4096 % size], codec) else None
    sample = data[: min(len(data), 4096) // 2 * 2]
    pairs = len(sample) // 2
    if pairs < 8:
        return None
    even_nuls = sample[0::2].count(0) / pairs
    odd_nuls = sample[1::2].count(0) / pairs
    if odd_nuls >= 0.6 and even_nuls <= 0.02:
        codec = "utf-16-le"
    elif even_nuls >= 0.6 and odd_nuls <= 0.02:
        codec = "utf-16-be"
    else:
        return None
    return codec if _readable(sample, codec) else None


def _readable(sample: bytes, codec: str) -> bool:
    """The sample decodes (a character cut at its end aside) to printable text, not to binary noise."""
    text = sample.decode(codec, errors="replace").rstrip("\ufffd")
    if "\ufffd" in text:
        return False
    readable = sum(1 for ch in text if ch.isprintable() or ch in "\t\n\r\f")
    return readable >= 0.95 * len(text)
