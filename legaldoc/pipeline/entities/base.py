"""Helpers shared by the rule extractors: building mentions with exact offsets, name clean-up."""

from __future__ import annotations

import re
from typing import Any

from nameparser import HumanName

from legaldoc.models import EntityType, Mention

_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """Collapse runs of whitespace (line breaks included) to one space."""
    return _SPACE.sub(" ", text).strip()


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
