"""The chunk stage: legal-structure aware slices of the document text, never splitting a word."""

from __future__ import annotations

import re
from dataclasses import dataclass

from legaldoc.models import Chunk, ExtractedDocument

_HEADING = re.compile(
    r"^(?:"
    r"(?:[IVXLC]+|[A-Z]|\d{1,3})[.)]\s+\S.{0,70}"  # I. Background / A. Standard / 1. Parties
    r"|(?:ARTICLE|SECTION|COUNT|PART|CHAPTER|RULE)\b.{0,70}"
    r"|§+\s*\d.{0,70}"
    r")$"
)
_SENTENCE_END = re.compile(r"[.!?:;)\]\"”]$")
_CAPTION_CUES = re.compile(r"\bv\.|\bvs\.|\bPlaintiffs?\b|\bDefendants?\b|\bCase No\b|\bIn re\b", re.I)
_SIGNATURE_CUES = re.compile(r"/s/|Respectfully submitted|Counsel for|Attorneys? for", re.I)


@dataclass(slots=True)
class _Line:
    start: int
    end: int
    text: str
    blank_before: bool
    page_break_before: bool


def _lines(text: str) -> list[_Line]:
    lines: list[_Line] = []
    blank = False
    page_break = False
    position = 0
    for raw in text.split("\n"):
        start, end = position, position + len(raw)
        position = end + 1
        stripped = raw.strip()
        if stripped in ("", "\f"):
            blank = True
            page_break = page_break or "\f" in raw
            continue
        lead = len(raw) - len(raw.lstrip())
        trail = len(raw) - len(raw.rstrip())
        if raw.startswith("\f"):
            page_break = True
            lead = len(raw) - len(raw.lstrip("\f").lstrip())
        lines.append(_Line(start + lead, end - trail, stripped.lstrip("\f").strip(), blank, page_break))
        blank = page_break = False
    return lines


def is_heading(line: str) -> bool:
    """Short all-capital lines, numbered headings, ARTICLE/SECTION/COUNT lines, § headings."""
    if len(line) > 80 or len(line) < 3:
        return False
    letters = [ch for ch in line if ch.isalpha()]
    if len(letters) >= 4 and all(ch.isupper() for ch in letters) and not line.endswith(","):
        return True
    if not _HEADING.match(line) or "," in line:
        return False
    last_word = line.rstrip(".").rsplit(" ", 1)[-1]
    return not last_word[:1].islower() or len(line) < 40


def _split_long(text: str, start: int, end: int, limit: int) -> list[tuple[int, int]]:
    """Split [start, end) into pieces of at most `limit` characters at sentence ends or spaces."""
    pieces: list[tuple[int, int]] = []
    while end - start > limit:
        window = text[start : start + limit]
        cut = max(window.rfind(". "), window.rfind("? "), window.rfind("! "))
        cut = cut + 1 if cut > limit // 3 else window.rfind(" ")
        if cut <= 0:
            cut = limit  # one unbroken token longer than the limit: nothing better to do
        pieces.append((start, start + cut))
        start += cut
        while start < end and text[start].isspace():
            start += 1
    if start < end:
        pieces.append((start, end))
    return pieces


def chunk_document(document: ExtractedDocument, target_chars: int = 1500, max_chars: int = 4000) -> list[Chunk]:
    """Group lines into chunks: headings open chunks, paragraphs close them near the target size."""
    text = document.text
    spans: list[tuple[int, int, str | None]] = []
    current_start: int | None = None
    current_end = 0
    heading: str | None = None
    previous: _Line | None = None

    def close() -> None:
        nonlocal current_start
        if current_start is not None:
            for piece_start, piece_end in _split_long(text, current_start, current_end, max_chars):
                spans.append((piece_start, piece_end, heading))
            current_start = None

    for line in _lines(text):
        size = 0 if current_start is None else current_end - current_start
        line_heading = is_heading(line.text)
        paragraph_break = line.blank_before or line.page_break_before or (
            previous is not None and _SENTENCE_END.search(previous.text) is not None and line.text[:1].isupper()
        )
        if current_start is not None and (
            (line_heading and size >= target_chars // 5 and not is_heading(previous.text if previous else ""))
            or (size >= target_chars and paragraph_break)
            or size + len(line.text) + 1 > max_chars
        ):
            close()
            heading = None
        if line_heading and current_start is None:
            heading = line.text
        if current_start is None:
            current_start = line.start
        current_end = line.end
        previous = line
    close()

    chunks: list[Chunk] = []
    for index, (start, end, chunk_heading) in enumerate(spans):
        body = text[start:end]
        kind = "body"
        if index == 0 and _CAPTION_CUES.search(body):
            kind = "caption"
        elif _SIGNATURE_CUES.search(body) and index >= len(spans) - 2:
            kind = "signature"
        elif chunk_heading:
            kind = "section"
        chunks.append(
            Chunk(
                index=index,
                start=start,
                end=end,
                page_start=document.page_at(start),
                page_end=document.page_at(max(start, end - 1)),
                kind=kind,
                heading=chunk_heading,
            )
        )
    return chunks
