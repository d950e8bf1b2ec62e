"""Mentions from a court record (a PACER docket report or CM/ECF notice parsed by juriscraper).

Every field of the record becomes a mention where its value can be found in the rendered text:
the exact words first, then the same words ignoring case and line breaks. The mention's text is
always the slice of the document it was found at; a value that is nowhere in the text stays in the
record (the document's metadata) as a fact and is never given an offset.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Mapping
from functools import lru_cache
from typing import Any

from legaldoc.models import EntityType
from legaldoc.pipeline.entities.base import MentionSink, normalize_person, squash
from legaldoc.pipeline.entities.names import firm_line_name

EXTRACTOR = "juriscraper"
MAX_OCCURRENCES = 50
"""Occurrences of one value marked per document: a party named in every docket entry of a
10,000-entry docket is still one entity, with enough evidence."""

_PLAINTIFF_SIDE = frozenset({"plaintiff", "petitioner", "appellant", "movant", "claimant", "relator", "complainant"})
_DEFENDANT_SIDE = frozenset({"defendant", "respondent", "appellee"})
_ROLE_WORD = re.compile(r"[a-z]+")


@lru_cache(maxsize=4096)
def _words_pattern(value: str, ignore_case: bool) -> re.Pattern[str] | None:
    """Compiled once per value: a docket report's record names the same people entry after entry."""
    words = value.split()
    if not words:
        return None
    body = r"\s+".join(re.escape(word) for word in words)
    return re.compile(rf"(?<![\w]){body}(?![\w])", re.I if ignore_case else 0)


@lru_cache(maxsize=4)
def _ascii_lower(text: str) -> str | None:
    """The text in lower case when it is all ASCII, else None (see `find_spans`)."""
    return text.lower() if text.isascii() else None


def find_spans(text: str, value: str, start: int = 0, limit: int = MAX_OCCURRENCES) -> list[tuple[int, int]]:
    """Where a value stands in the text: its exact words (line breaks count as spaces), else the
    same words in any case. Empty when it is not there.

    Each pass runs only when the value's longest word could be there: as is in the text for the
    exact pass; in lower case in the lower-cased text for the pass in any case, when both are ASCII
    (where ignoring case means only A-Z against a-z). A substring test is far cheaper than a regex
    scan of the whole text, and a value absent from the text is the common case."""
    words = value.split()
    if not words:
        return []
    probe = max(words, key=len)
    for ignore_case in (False, True):
        if not ignore_case:
            if probe not in text:
                continue
        elif probe.isascii() and (lowered := _ascii_lower(text)) is not None and probe.lower() not in lowered:
            continue
        pattern = _words_pattern(value, ignore_case)
        if pattern is None:
            return []
        spans = []
        for match in pattern.finditer(text, start):
            spans.append((match.start(), match.end()))
            if len(spans) >= limit:
                break
        if spans:
            return spans
    return []


_VERSUS = re.compile(r"\s+v(?:s)?\.?\s+", re.I)
_UNITED_STATES = r"(?:United\s+States(?:\s+of\s+America)?|USA|U\.\s?S\.(?:\s?A\.)?)"
_ET_AL = r"(?:,?\s+et\s+al\.?)?"


def _side_pattern(side: str) -> str:
    if re.fullmatch(r"(?:United States(?: of America)?|USA|U\.S\.A?\.?)", side, re.I):
        return _UNITED_STATES
    return r"\s+".join(re.escape(word) for word in side.split())


def case_name_spans(text: str, name: str, limit: int = MAX_OCCURRENCES) -> list[tuple[int, int]]:
    """Where a case name stands: its exact words, else as dockets print it, with "et al" after either
    side, "vs." for "v." and "USA" for "United States" ("USA v. Beale et al" for "United States v.
    Beale"); the span is the title as printed."""
    spans = find_spans(text, name, limit=limit)
    if spans:
        return spans
    sides = _VERSUS.split(name)
    if len(sides) != 2 or not all(side.strip() for side in sides):
        return []
    plaintiff, defendant = (_side_pattern(side.strip()) for side in sides)
    pattern = re.compile(rf"(?<![\w]){plaintiff}{_ET_AL}\s+v(?:s)?\.?\s+{defendant}{_ET_AL}(?![\w])", re.I)
    return [(m.start(), m.end()) for m in pattern.finditer(text)][:limit]


def side_of(party_type: str) -> str | None:
    """'plaintiff' or 'defendant' for a party type such as "Plaintiff - Appellant" (the last role
    word decides: on appeal the posture is the appellate one); None for debtors, trustees, counter-
    and third-party roles, whose side the type alone does not tell."""
    lowered = party_type.lower()
    if "counter" in lowered or "third" in lowered or "cross" in lowered:
        return None
    side = None
    for word in _ROLE_WORD.findall(lowered):
        singular = word.rstrip("s") if word.endswith("s") and word[:-1] in _PLAINTIFF_SIDE | _DEFENDANT_SIDE else word
        if singular in _PLAINTIFF_SIDE:
            side = "plaintiff"
        elif singular in _DEFENDANT_SIDE:
            side = "defendant"
    return side


@lru_cache(maxsize=4096)
def _date_shown(day: dt.date) -> re.Pattern[str]:
    """A filing date as a docket prints it (MM/DD/YYYY or MM/DD/YY), compiled once per day."""
    return re.compile(rf"(?<![\d/]){day.month:02d}/{day.day:02d}/(?:{day.year}|{day.year % 100:02d})(?![\d/])")


def _entry_dates(text: str, entries: list[Mapping[str, Any]]) -> Iterator[tuple[int, int, str, str | None]]:
    """Each docket entry's filing date where it stands, in order: entries are listed as the page
    shows them, so each date is searched after the previous one."""
    cursor = 0
    for entry in entries:
        value = entry.get("date_filed")
        if not value:
            continue
        try:
            day = dt.date.fromisoformat(str(value))
        except ValueError:
            continue
        match = _date_shown(day).search(text, cursor)
        if match is None:
            continue
        cursor = match.end()
        yield match.start(), match.end(), day.isoformat(), entry.get("document_number")


def record_mentions(sink: MentionSink, record: Mapping[str, Any]) -> None:
    """Mentions of every field of a court record that can be found in the text."""
    text = sink.text
    report = str(record.get("report") or "")
    for docket in record.get("dockets") or []:
        number = squash(str(docket.get("docket_number") or ""))
        for start, end in find_spans(text, number) if number else []:
            sink.add(EntityType.DOCKET_NUMBER, start, end, number, EXTRACTOR, 0.98, report=report)
        name = squash(str(docket.get("case_name") or ""))
        for start, end in case_name_spans(text, name) if name else []:
            sink.add(EntityType.CASE_NAME, start, end, name, EXTRACTOR, 0.97, cited=False,
                     docket_number=number or None)  # fmt: skip
    judges = [(squash(str(j.get("name") or "")), str(j.get("role") or "")) for j in record.get("judges") or []]
    origin = record.get("originating_court") or {}
    judges += [(squash(str(name)), "originating") for name in origin.get("judges") or []]
    for name, role in judges:
        # a panel may be listed by initials ("SLL, KVL, RT"): kept when they stand in the text as words
        if len(name) < (2 if role == "panel" else 4):
            continue
        for start, end in find_spans(text, name):
            sink.add(EntityType.JUDGE, start, end, normalize_person(name), EXTRACTOR, 0.97, role=role)
    origin_number = squash(str(origin.get("docket_number") or ""))
    for start, end in find_spans(text, origin_number) if origin_number else []:
        sink.add(EntityType.DOCKET_NUMBER, start, end, origin_number, EXTRACTOR, 0.95, originating=True,
                 court=origin.get("court_id"))  # fmt: skip
    for party in record.get("parties") or []:
        _party(sink, party)
    for recipient in record.get("recipients") or []:
        name = squash(str(recipient.get("name") or ""))
        for start, end in find_spans(text, name) if name else []:
            sink.add(EntityType.PERSON, start, end, normalize_person(name), EXTRACTOR, 0.95, role="notice recipient")
    for start, end, day, entry_number in _entry_dates(text, list(record.get("entries") or [])):
        sink.add(EntityType.DATE, start, end, day, EXTRACTOR, 0.97, docket_entry=entry_number)


def _party(sink: MentionSink, party: Mapping[str, Any]) -> None:
    text = sink.text
    name = squash(str(party.get("name") or ""))
    party_type = squash(str(party.get("type") or ""))
    spans = find_spans(text, name) if name else []
    for start, end in spans:
        sink.add(EntityType.PARTY, start, end, name, EXTRACTOR, 0.97, role=party_type.lower() or None,
                 side=side_of(party_type), terminated=party.get("date_terminated"))  # fmt: skip
    block_start = spans[0][0] if spans else 0
    for attorney in party.get("attorneys") or []:
        lawyer = squash(str(attorney.get("name") or ""))
        if not lawyer:
            continue
        found = find_spans(text, lawyer)
        roles = [str(role) for role in attorney.get("roles") or []]
        for start, end in found:
            sink.add(EntityType.ATTORNEY, start, end, normalize_person(lawyer), EXTRACTOR, 0.97,
                     represents=name or None, role="counsel", roles=roles or None)  # fmt: skip
        contact = str(attorney.get("contact") or "").strip()
        firm = firm_line_name(contact.splitlines()[0]) if contact else None
        if not firm:
            continue
        # the firm as listed under this attorney in this party's block, else anywhere
        after = next((start for start, _ in found if start >= block_start), found[0][0] if found else 0)
        located = find_spans(text, firm, after, limit=1) or find_spans(text, firm, limit=1)
        for start, end in located:
            sink.add(EntityType.LAW_FIRM, start, end, squash(firm), EXTRACTOR, 0.95, represents=name or None)
