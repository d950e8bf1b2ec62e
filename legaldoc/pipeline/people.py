"""One person per person: the ATTORNEY, PERSON and JUDGE entities that name one human, linked by SAME_AS.

Entities keep their type (an attorney's REPRESENTS edges and a judge's PRESIDES_OVER edges stay
on the typed entity); `link_people` says which of them are one human, each link with its reason.
Names are split by nameparser (title, given, middle, surname, suffix). Two names are one person
only when the surnames are equal and the given names are compatible: equal, or one is the other's
initial; middle names, when both have them, agree name by name or by initial; generational
suffixes (Jr., Sr., III) never disagree. A name without a given name ('Smith', 'Judge Smith')
links to nothing. A name compatible with two people who are not compatible with each other
('J. Smith' beside 'John Smith' and 'Jane Smith') is ambiguous and links to nobody.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import combinations

from nameparser import HumanName

from legaldoc.models import (
    PERSON_TYPES,
    CanonicalEntity,
    EntityLink,
    EntityRef,
    EntityType,
    RelationType,
)

GENERATIONS = frozenset({"jr", "sr", "ii", "iii", "iv"})


def fold(text: str) -> str:
    """Lower case without accents; punctuation becomes space, runs of space one."""
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = re.sub(r"[^\w§]+", " ", text)
    return " ".join(text.split())


@dataclass(frozen=True)
class PersonName:
    """A person's name split and folded (lower case, no accents or punctuation)."""

    given: str
    middles: tuple[str, ...]
    surname: str
    generation: str = ""


@lru_cache(maxsize=65536)
def parse_person(name: str) -> PersonName | None:
    """The parts of a person's name, or None when it has no given name or no surname."""
    parsed = HumanName(name)
    given, surname = fold(parsed.first), fold(parsed.last)
    if not given or not surname:
        return None
    suffixes = fold(parsed.suffix).split()
    generation = next((word for word in suffixes if word in GENERATIONS), "")
    return PersonName(given=given, middles=tuple(fold(parsed.middle).split()), surname=surname, generation=generation)


def _agree(a: str, b: str) -> bool:
    """Two given (or middle) names agree: equal, or one is a single initial of the other."""
    return a == b or ((len(a) == 1 or len(b) == 1) and a[0] == b[0])


def same_person(a: PersonName, b: PersonName) -> str | None:
    """Why two names are one person, or None when they may be two."""
    if a.surname != b.surname or (a.generation and b.generation and a.generation != b.generation):
        return None
    if not _agree(a.given, b.given):
        return None
    if a.middles and b.middles and not all(_agree(x, y) for x, y in zip(a.middles, b.middles, strict=False)):
        return None
    if a.given == b.given and a.middles == b.middles:
        return "same full name"
    given = "same given name and surname" if a.given == b.given else "same first initial and surname"
    if a.middles and b.middles:
        return f"{given}; middle names agree"
    if a.middles or b.middles:
        return f"{given}; middle name on one side only"
    return given


def conflicts(name: str, entity: CanonicalEntity) -> bool:
    """Whether a person's name is not the person an entity already names: some spelling of the entity
    (its name, an alias joined by name rules rather than by a fuzzy score) has the same surname
    and given or middle names that disagree."""
    parsed = parse_person(name)
    if parsed is None:
        return False
    spellings = [entity.name, *(alias for alias, reason in entity.aliases.items() if not reason.startswith("fuzzy"))]
    for spelling in spellings:
        other = parse_person(spelling)
        if other is not None and other.surname == parsed.surname and same_person(parsed, other) is None:
            return True
    return False


def _ref(entity: CanonicalEntity) -> EntityRef:
    return EntityRef(type=entity.type, key=entity.key)


def link_people(entities: Iterable[CanonicalEntity]) -> list[EntityLink]:
    """SAME_AS links between person entities of different types that name one human, each pair once
    (source before target by type and key), in a stable order: the same entities give the same links."""
    people = sorted(
        ((entity, name) for entity in entities if entity.type in PERSON_TYPES
         for name in [parse_person(entity.name)] if name is not None),
        key=lambda pair: (pair[0].type.value, pair[0].key),
    )  # fmt: skip
    partners: dict[int, dict[int, str]] = {i: {} for i in range(len(people))}
    for i, j in combinations(range(len(people)), 2):
        if people[i][0].type is people[j][0].type:
            continue  # one type's spellings of one person are merged by resolve, not linked
        reason = same_person(people[i][1], people[j][1])
        if reason:
            partners[i][j] = partners[j][i] = reason
    ambiguous = {
        i for i, found in partners.items()
        if any(same_person(people[j][1], people[k][1]) is None for j, k in combinations(sorted(found), 2))
    }  # fmt: skip
    return [
        EntityLink(type=RelationType.SAME_AS, source=_ref(people[i][0]), target=_ref(people[j][0]), reason=reason)
        for i, found in partners.items() if i not in ambiguous
        for j, reason in sorted(found.items()) if i < j and j not in ambiguous
    ]  # fmt: skip


def surname_word(entity_type: EntityType, key: str) -> str:
    """The last word of a person's canonical key: where to look for the other entities that may be the same person."""
    words = key.split()
    return words[-1] if entity_type in PERSON_TYPES and words else ""
