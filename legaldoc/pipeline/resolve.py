"""The resolve stage: mentions to project-wide canonical entities, with a stored reason for every merge.

A canonical key per type comes first (citation, court id, docket, ISO date, normalized name; an
organization's without its legal form, by cleanco); guarded fuzzy matching (rapidfuzz) then joins
names inside one key group (same type, same surname or first word). Dates, money, dockets, citations
and courts are never merged fuzzily. A case (keyed by its first reporter citation) also joins the
entity that already has any of its parallel citations as its name or an alias, and every citation of
it is kept as an alias ("parallel citation"). People of different types who are one human are
linked, not merged (`pipeline.people`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from cleanco import basename
from rapidfuzz import fuzz

from legaldoc.models import PERSON_TYPES, CanonicalEntity, EntityType, Mention
from legaldoc.pipeline.people import conflicts, fold

EXACT_TYPES = frozenset(
    {
        EntityType.CASE,
        EntityType.STATUTE,
        EntityType.RULE,
        EntityType.COURT,
        EntityType.DOCKET_NUMBER,
        EntityType.DATE,
        EntityType.MONEY,
    }
)
_PERSON_NOISE = frozenset({"jr", "sr", "ii", "iii", "iv", "esq", "hon", "honorable", "judge", "mr", "ms", "mrs", "dr"})
ORG_TYPES = frozenset({EntityType.ORGANIZATION, EntityType.LAW_FIRM, EntityType.PARTY})
_ET_AL = re.compile(r"[\s,]*\bet\.?\s+al\b\.?\s*$", re.IGNORECASE)
_ORG_TAIL = re.compile(r"[\s,]*\b(?:N\.?\s?A|National\s+Association|P\.?\s?A)\b\.?\s*$", re.IGNORECASE)
"""Legal forms cleanco does not know: a bank's 'N.A.', a professional association's 'P.A.'."""


def canonical_key(mention_type: EntityType, normalized: str) -> str:
    """The exact key of a normalized value: equal keys are the same entity without any fuzzy step."""
    if mention_type in EXACT_TYPES:
        return " ".join(normalized.split()).casefold() if mention_type != EntityType.COURT else normalized
    words = fold(normalized).split()
    if mention_type is EntityType.CASE_NAME:
        words = [w for w in words if w not in ("et", "al")]
        return " ".join(words)
    if mention_type in PERSON_TYPES:
        kept = [w for w in words if w not in _PERSON_NOISE]
        return " ".join(kept or words)
    if mention_type in ORG_TYPES:
        return organization_key(normalized) or " ".join(words)
    return " ".join(words)


@lru_cache(maxsize=65536)
def organization_key(name: str) -> str:
    """An organization's name without its legal form, folded: cleanco strips trailing company
    suffixes ('Inc.', 'Incorporated', 'L.L.C.', 'GmbH', 'S.A.', several in a row); a leading 'The', a
    trailing 'et al.' and a bank's 'N.A.' go too. Words inside the name stay ('A Better Way LLC',
    'Acme Co Holdings'); a name that is nothing but a legal form keeps it ('Inc.' is 'inc')."""
    while True:
        shorter = str(basename(_ORG_TAIL.sub("", _ET_AL.sub("", name))))
        if shorter == name or not fold(shorter):
            break
        name = shorter
    words = fold(name).split()
    return " ".join(words[1:] if len(words) > 1 and words[0] == "the" else words)


def _group_key(mention_type: EntityType, key: str) -> str:
    words = key.split()
    if not words:
        return ""
    return words[-1] if mention_type in PERSON_TYPES else words[0]


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _person_compatible(a: str, b: str) -> str | None:
    """A reason when two person keys name the same person: same surname and compatible given names."""
    wa, wb = a.split(), b.split()
    if len(wa) < 2 or len(wb) < 2 or wa[-1] != wb[-1]:
        return None
    first_a, first_b = wa[0], wb[0]
    if first_a == first_b:
        middle_a, middle_b = wa[1:-1], wb[1:-1]
        if not middle_a or not middle_b:
            return "same first name and surname; one has a middle name"
        if all(x[0] == y[0] for x, y in zip(middle_a, middle_b, strict=False)):
            return "same first name and surname; middle names agree"
        return None
    if (len(first_a) == 1 or len(first_b) == 1) and first_a[0] == first_b[0]:
        return "same surname; first initial agrees"
    return None


def _fuzzy_reason(mention_type: EntityType, key: str, candidate: str, threshold: float) -> str | None:
    if mention_type in EXACT_TYPES or key == candidate:
        return None
    if _digits(key) != _digits(candidate):
        return None  # '1st Street LLC' is never '2nd Street LLC'
    if mention_type in PERSON_TYPES:
        reason = _person_compatible(key, candidate)
        if reason:
            return reason
        words_a, words_b = key.split(), candidate.split()
        if len(words_a) != len(words_b) or words_a[-1] != words_b[-1]:
            return None
    if min(len(key), len(candidate)) < 6:
        return None  # short names are never merged fuzzily ('John' vs 'Johnson', 'Ace' vs 'Acme')
    score = fuzz.ratio(key, candidate)
    if score >= threshold:
        return f"fuzzy match {score:.0f} >= {threshold:.0f} on '{candidate}'"
    return None


PARALLEL_CITATION = "parallel citation"


def _blank_page(citation: str) -> bool:
    """'603 U.S. ___': a citation without its page names no one case."""
    return "___" in citation


def _spelling(mention: Mention) -> str:
    """How a mention names its entity: its display name when the extractor gave one (a court's
    'N.D. Ill.' for the id 'ilnd'), else its normalized value."""
    display = mention.attrs.get("display_name")
    return str(display) if display else mention.normalized


def _name_rank(entity_type: EntityType, name: str) -> tuple:
    """Which spelling names an entity: the fullest, then not all capitals, then alphabetical.
    A total order, so an entity's name and aliases do not depend on the order documents arrive in."""
    return (-len(name), name.isupper(), name)


@dataclass
class Resolution:
    """What resolve decided for one document: each mention's entity, and every entity touched."""

    entity_of_mention: list[tuple[EntityType, str]] = field(default_factory=list)
    entities: dict[tuple[EntityType, str], CanonicalEntity] = field(default_factory=dict)


def resolve_mentions(
    mentions: Iterable[Mention],
    existing: Mapping[EntityType, Mapping[str, CanonicalEntity]],
    threshold: float = 92.0,
) -> Resolution:
    """Map each mention to a canonical entity, reusing the project's entities where they match."""
    resolution = Resolution()
    known: dict[EntityType, dict[str, CanonicalEntity]] = {t: dict(v) for t, v in existing.items()}
    groups: dict[tuple[EntityType, str], list[str]] = {}
    for entity_type, entities in known.items():
        for key in entities:
            groups.setdefault((entity_type, _group_key(entity_type, key)), []).append(key)

    cited_as: dict[str, str] = {}  # a case's every reporter citation (key form) -> the key of its CASE entity
    for key, entity in known.get(EntityType.CASE, {}).items():
        for alias in entity.aliases:
            if not _blank_page(alias):
                cited_as.setdefault(canonical_key(EntityType.CASE, alias), key)
        cited_as.setdefault(key, key)

    for mention in mentions:
        key = canonical_key(mention.type, mention.normalized)
        if not key:
            key = mention.normalized.casefold()
        by_type = known.setdefault(mention.type, {})
        target = key if key in by_type else None
        reason = "same canonical key"
        parallel = [str(c) for c in mention.attrs.get("parallel") or ()] if mention.type is EntityType.CASE else []
        if target is None and mention.type is EntityType.CASE:
            for citation in [mention.normalized, *parallel]:
                found = cited_as.get(canonical_key(EntityType.CASE, citation))
                if found and not _blank_page(citation):
                    target, reason = found, PARALLEL_CITATION
                    break
        if target is None:
            for candidate in groups.get((mention.type, _group_key(mention.type, key)), []):
                fuzzy = _fuzzy_reason(mention.type, key, candidate, threshold)
                if fuzzy and mention.type in PERSON_TYPES and conflicts(mention.normalized, by_type[candidate]):
                    continue  # 'Jane Smith' never joins the 'J. Smith' that 'John Smith' already joined
                if fuzzy:
                    target, reason = candidate, fuzzy
                    break
        if target is None:
            entity = CanonicalEntity(type=mention.type, key=key, name=_spelling(mention))
            by_type[key] = entity
            groups.setdefault((mention.type, _group_key(mention.type, key)), []).append(key)
            target = key
            reason = "first mention"
        entity = by_type[target]
        if mention.type is EntityType.CASE:  # a case is named by its first citation; the others are aliases
            for citation in [mention.normalized, *parallel]:
                if citation != entity.name:
                    entity.aliases.setdefault(citation, PARALLEL_CITATION)
                if not _blank_page(citation):
                    cited_as.setdefault(canonical_key(EntityType.CASE, citation), target)
        elif (spelling := _spelling(mention)) != entity.name:
            if _name_rank(mention.type, spelling) < _name_rank(mention.type, entity.name):
                entity.aliases.setdefault(entity.name, reason)
                entity.aliases.pop(spelling, None)
                entity.name = spelling
            else:
                entity.aliases.setdefault(spelling, reason)
        resolution.entity_of_mention.append((mention.type, target))
        resolution.entities[(mention.type, target)] = entity
    return resolution
