"""The relate stage: typed edges between canonical entities, each with evidence (chunk and offsets)."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from itertools import combinations

from rapidfuzz import fuzz

from legaldoc.models import (
    Chunk,
    EntityRef,
    EntityType,
    Evidence,
    Mention,
    Relationship,
    RelationType,
)

CITATION_TYPES = frozenset({EntityType.CASE, EntityType.STATUTE, EntityType.RULE})
CO_OCCURRENCE_TYPES = frozenset(
    {
        EntityType.CASE, EntityType.STATUTE, EntityType.RULE, EntityType.COURT, EntityType.JUDGE,
        EntityType.PARTY, EntityType.CASE_NAME, EntityType.DOCKET_NUMBER, EntityType.ATTORNEY,
        EntityType.PERSON, EntityType.ORGANIZATION, EntityType.LAW_FIRM,
    }
)  # fmt: skip
MAX_ENTITIES_PER_CHUNK = 12
"""Co-occurrence pairs come from each chunk's most mentioned entities, never all pairs of a document."""
MAX_EVIDENCE = 5


def chunk_of(chunks: Sequence[Chunk], offset: int) -> int:
    """The index of the chunk holding a character offset (the nearest one for offsets between chunks)."""
    low, high = 0, len(chunks) - 1
    while low <= high:
        middle = (low + high) // 2
        chunk = chunks[middle]
        if offset < chunk.start:
            high = middle - 1
        elif offset >= chunk.end:
            low = middle + 1
        else:
            return chunk.index
    return chunks[max(0, min(low, len(chunks) - 1))].index if chunks else 0


class _Edges:
    def __init__(self) -> None:
        self.edges: dict[tuple[RelationType, EntityRef | None, EntityRef], Relationship] = {}

    def add(self, kind: RelationType, source: EntityRef | None, target: EntityRef, evidence: Evidence, weight: float = 1.0) -> None:
        if source == target:
            return
        if kind in (RelationType.OPPOSES, RelationType.CO_OCCURS_WITH) and source is not None and (source.type, source.key) > (target.type, target.key):
            source, target = target, source  # symmetric edges are stored once
        edge = self.edges.get((kind, source, target))
        if edge is None:
            self.edges[(kind, source, target)] = Relationship(type=kind, source=source, target=target, weight=weight, evidence=[evidence])
            return
        edge.weight += weight
        if len(edge.evidence) < MAX_EVIDENCE and evidence not in edge.evidence:
            edge.evidence.append(evidence)


def relate(mentions: Sequence[Mention], refs: Sequence[EntityRef], chunks: Sequence[Chunk]) -> list[Relationship]:
    """Edges of one document; `refs[i]` is the canonical entity of `mentions[i]`. Source None = the document."""
    edges = _Edges()
    chunk_index = [chunk_of(chunks, m.start) for m in mentions]
    evidence = [Evidence(chunk_index=c, start=m.start, end=m.end) for m, c in zip(mentions, chunk_index, strict=True)]

    for i, mention in enumerate(mentions):
        edges.add(RelationType.MENTIONS, None, refs[i], evidence[i])
        if mention.type in CITATION_TYPES:
            edges.add(RelationType.CITES, None, refs[i], evidence[i])

    own = [i for i, m in enumerate(mentions) if m.type is EntityType.CASE_NAME and not m.attrs.get("cited") and m.confidence >= 0.8]
    courts = [i for i, m in enumerate(mentions) if m.type is EntityType.COURT]
    dockets = [i for i, m in enumerate(mentions) if m.type is EntityType.DOCKET_NUMBER]
    home_court = max(courts, key=lambda i: (mentions[i].confidence, -mentions[i].start)) if courts else None
    if home_court is not None:
        for i in dockets + own:
            edges.add(RelationType.FILED_IN, refs[i], refs[home_court], evidence[i])
    presided = (own or dockets)[:1]
    for i, mention in enumerate(mentions):
        if mention.type is EntityType.JUDGE:
            for j in presided:
                edges.add(RelationType.PRESIDES_OVER, refs[i], refs[j], evidence[i])

    parties = [i for i, m in enumerate(mentions) if m.type is EntityType.PARTY]
    by_case: dict[int, list[int]] = defaultdict(list)
    for i in parties:
        for j in own:
            if mentions[j].start <= mentions[i].start < mentions[j].end:
                by_case[j].append(i)
    for members in by_case.values():
        plaintiffs = [i for i in members if mentions[i].attrs.get("role") == "plaintiff"]
        defendants = [i for i in members if mentions[i].attrs.get("role") == "defendant"]
        for p in plaintiffs:
            for d in defendants:
                edges.add(RelationType.OPPOSES, refs[p], refs[d], evidence[p])

    first_party: dict[EntityRef, int] = {}
    party_by_name: dict[str, int] = {}
    for i in parties:
        first_party.setdefault(refs[i], i)
        party_by_name.setdefault(mentions[i].normalized.lower(), i)
    # a court record names each party's side ("Plaintiff", "Defendant - Appellee"): the sides oppose
    sides: dict[str, dict[EntityRef, int]] = defaultdict(dict)
    for i in parties:
        side = mentions[i].attrs.get("side")
        if side in ("plaintiff", "defendant"):
            sides[side].setdefault(refs[i], i)
    for p in sides["plaintiff"].values():
        for d in sides["defendant"].values():
            edges.add(RelationType.OPPOSES, refs[p], refs[d], evidence[p])

    for i, mention in enumerate(mentions):
        represents = mention.attrs.get("represents")
        if mention.type is not EntityType.ATTORNEY or not represents:
            continue
        role_word = represents.lower()
        named = party_by_name.get(role_word)
        if named is not None:  # the party it represents by name (a court record, a party block)
            edges.add(RelationType.REPRESENTS, refs[i], refs[named], evidence[i])
            continue
        for p in first_party.values():
            party = mentions[p]
            same_role = party.attrs.get("role", "") and party.attrs["role"] in role_word
            if same_role or fuzz.partial_ratio(party.normalized.lower(), role_word) >= 90:
                edges.add(RelationType.REPRESENTS, refs[i], refs[p], evidence[i])

    by_chunk: dict[int, Counter[int]] = defaultdict(Counter)
    first_in_chunk: dict[tuple[int, EntityRef], int] = {}
    for i, mention in enumerate(mentions):
        if mention.type in CO_OCCURRENCE_TYPES:
            ref = refs[i]
            key = (chunk_index[i], ref)
            first_in_chunk.setdefault(key, i)
            by_chunk[chunk_index[i]][first_in_chunk[key]] += 1
    for chunk, counter in by_chunk.items():
        top = [i for i, _ in counter.most_common(MAX_ENTITIES_PER_CHUNK)]
        for a, b in combinations(sorted(top), 2):
            if refs[a] != refs[b]:
                span = Evidence(chunk_index=chunk, start=min(mentions[a].start, mentions[b].start), end=max(mentions[a].end, mentions[b].end))
                edges.add(RelationType.CO_OCCURS_WITH, refs[a], refs[b], span)
    return list(edges.edges.values())
