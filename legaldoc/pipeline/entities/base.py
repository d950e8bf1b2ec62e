"""Helpers shared by the rule extractors: building mentions with exact offsets, name clean-up."""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from nameparser import HumanName

from legaldoc.models import EntityType, Mention

_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """Collapse runs of whitespace (line breaks included) to one space."""
    return _SPACE.sub(" ", text).strip()


_BLANKS = re.compile(r"\s+")


def finditer_near(
    pattern: re.Pattern[str],
    text: str,
    anchor: re.Pattern[str],
    starts: re.Pattern[str],
    gaps: int,
    one_line: bool = True,
) -> Iterator[re.Match[str]]:
    """`pattern.finditer(text)`, trying the pattern only at the few places before where `anchor` matches.

    For a pattern whose every match begins with a character `starts` matches and holds a match of
    `anchor` with at most `gaps` runs of whitespace between the match's start and that anchor's start
    (and, with `one_line`, never spans a line break): the matches are the same, with the same spans, as
    `pattern.finditer(text)`, leftmost first and not overlapping. Each try is made in place (pos/endpos
    on the whole text), so look-behinds and word boundaries still see the characters around it."""
    position, size = 0, len(text)
    while True:
        hit = anchor.search(text, position)
        if hit is None:
            return
        at = hit.start()
        low, end = position, size
        if one_line:
            low = max(low, text.rfind("\n", 0, at) + 1)
            end = text.find("\n", at)
            end = size if end < 0 else end
        # A match starting at s >= position holds an anchor at or after `at` (the first one from
        # `position`), so text[s:at] has at most `gaps` whitespace runs: no match starts before `low`.
        window = max(low, at - 40 * (gaps + 1))
        runs = [run.end() for run in _BLANKS.finditer(text, window, at)]
        if len(runs) <= gaps and window > low:
            runs = [run.end() for run in _BLANKS.finditer(text, low, at)]
        if len(runs) > gaps:
            low = max(low, runs[-gaps - 1])
        found = None
        for start in starts.finditer(text, low, at + 1):
            found = pattern.match(text, start.start(), end)
            if found is not None:
                break
        if found is None:
            position = at + 1
            continue
        yield found
        position = found.end()


class Spans:
    """Spans [start, end) of which no two overlap, kept in order: `overlaps` answers in log time what
    `any(s < end and start < e for s, e in spans)` answers by reading them all."""

    def __init__(self) -> None:
        self._spans: list[tuple[int, int]] = []
        self._ends: list[int] = []  # in the same order: no two spans overlap, so ends never decrease

    def overlaps(self, start: int, end: int) -> bool:
        index = bisect_right(self._ends, start)  # the first span ending after `start`
        return index < len(self._spans) and self._spans[index][0] < end

    def add(self, start: int, end: int) -> None:
        """Add a span that overlaps none of them."""
        index = bisect_left(self._spans, (start, end))
        self._spans.insert(index, (start, end))
        self._ends.insert(index, end)


class MentionSink:
    """Collects mentions for one text, trimming spans to their non-blank core."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.mentions: list[Mention] = []

    def add(
        self,
        type_: EntityType,
        start: int,
        end: int,
        normalized: str,
        extractor: str,
        confidence: float,
        **attrs: Any,
    ) -> Mention | None:
        text = self.text
        while start < end and (text[start].isspace() or text[start] in ",;:"):
            start += 1
        while end > start and (text[end - 1].isspace() or text[end - 1] in ",;:"):
            end -= 1
        if end <= start or not normalized:
            return None
        mention = Mention(
            type=type_,
            text=text[start:end],
            start=start,
            end=end,
            normalized=normalized,
            extractor=extractor,
            confidence=round(confidence, 3),
            attrs={key: value for key, value in attrs.items() if value is not None},
        )
        self.mentions.append(mention)
        return mention


NAME_SUFFIXES = ("Jr.", "Jr", "Sr.", "Sr", "II", "III", "IV", "V", "Esq.", "Esq")
_SUFFIX_COMMA = re.compile(r"\s*,\s*(Jr\.?|Sr\.?|II|III|IV|V|Esq\.?)\b")


def _words(text: str) -> list[str]:
    return sorted(word.strip(",") for word in text.split() if word.strip(","))


def _title_case(word: str) -> str:
    return word if len(word) <= 2 and word.endswith(".") else word.title()


@lru_cache(maxsize=16384)  # nameparser is slow, and a docket names the same people entry after entry
def _name_case(name: str) -> str:
    """An all-capitals name in its usual case, word by word in place: nameparser knows 'McDonald',
    'O'Neil', 'de la Cruz', 'III'; a word it does not place gets title case."""
    parsed = HumanName(name)
    parsed.capitalize(force=True)
    cased: dict[str, str] = {}
    for part in (parsed.title, parsed.first, parsed.middle, parsed.last, parsed.suffix):
        for word in part.split():
            cased.setdefault(word.upper(), word)
    out = []
    for word in name.split():
        core = word.rstrip(",;")
        known = cased.get(core.upper())
        out.append((known if known and known.upper() == core.upper() else _title_case(core)) + word[len(core):])
    return " ".join(out)[:1].upper() + " ".join(out)[1:]


def normalize_person(name: str) -> str:
    """'HERON , IV John' stays as written but tidied: single spaces, suffix without comma, usual case if all caps."""
    name = squash(name)
    name = _SUFFIX_COMMA.sub(r" \1", name)
    name = name.strip(" ,;")
    if name.isupper() and len(name) > 3:
        name = _name_case(name)
    return name


@lru_cache(maxsize=16384)  # as _name_case
def last_first_to_first_last(name: str) -> str:
    """'Geisler, Kimberly' -> 'Kimberly Geisler'; 'Smith, John A., Jr.' -> 'John A. Smith Jr.' (nameparser
    splits the parts). Only the order changes: when nameparser would drop or add a word, the one
    comma rule applies ('Last, First' becomes 'First Last'), else the name stays as it is."""
    if "," not in name:
        return name
    parsed = HumanName(name)
    if parsed.first and parsed.last:
        ordered = " ".join(part for part in (parsed.title, parsed.first, parsed.middle, parsed.last, parsed.suffix) if part)
        if _words(ordered) == _words(name):
            return ordered
    if name.count(",") == 1:
        last, first = (part.strip() for part in name.split(","))
        if first and last and first not in NAME_SUFFIXES:
            return f"{first} {last}"
    return name
