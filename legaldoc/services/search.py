"""Use case: find the documents and pages that say something, or that mention an entity."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import func, or_, select

from legaldoc.errors import UsageError
from legaldoc.models import EntityType
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.search import HIGHLIGHT, ChunkHit, parse_query, search_chunks
from legaldoc.storage.tables import Document, Entity, EntityAlias, MentionRow, Page


@dataclass
class SearchHit:
    rank: int
    document_id: int
    source: str
    page: int
    snippet: str  # matched words between ** **
    score: float

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class EntityDocument:
    document_id: int
    source: str
    pages: list[int]
    mentions: int


@dataclass
class EntityHit:
    entity_id: int
    type: str
    key: str
    name: str
    aliases: list[str]
    documents: list[EntityDocument] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _project_id(database: Database, project: str) -> int:
    with database.read() as session:
        return repo.require_project(session, project).id


def check_entity_type(entity_type: str | None) -> str | None:
    """An entity type as given by a user, upper-cased; a usage error listing the types when unknown."""
    if entity_type is None:
        return None
    if entity_type.upper() not in EntityType.__members__:
        raise UsageError(f"unknown entity type {entity_type!r}", hint=f"one of: {', '.join(EntityType.__members__)}")
    return entity_type.upper()


def _page_of(hit: ChunkHit, pages: list[tuple[int, int, int]]) -> int:
    """The page of the first highlighted word of the snippet inside the chunk (else the chunk's first)."""
    marked = re.search(re.escape(HIGHLIGHT) + r"(.+?)" + re.escape(HIGHLIGHT), hit.snippet)
    if marked:
        found = hit.chunk_text.lower().find(marked.group(1).lower())
        if found >= 0:
            offset = hit.chunk_start + found
            for number, start, end in pages:
                if start <= offset < end:
                    return number
    return hit.page_start


def search_text(database: Database, project: str, query: str, *, limit: int = 20, entity_type: str | None = None) -> list[SearchHit]:
    """Chunks of the project matching `query` (see `storage.search` for the syntax), best first."""
    if limit < 1:
        raise UsageError("--limit must be at least 1")
    parse_query(query)  # a bad query is named before anything else
    project_id = _project_id(database, project)
    with database.read() as session:
        hits = search_chunks(session, project_id, query, limit, check_entity_type(entity_type))
        results = []
        for rank, hit in enumerate(hits, start=1):
            pages = [tuple(p) for p in session.execute(
                select(Page.number, Page.start, Page.end).where(Page.document_id == hit.document_id,
                                                                Page.number.between(hit.page_start, hit.page_end))
            )]  # fmt: skip
            results.append(SearchHit(rank, hit.document_id, hit.source, _page_of(hit, pages), hit.snippet,  # type: ignore[arg-type]
                                     round(abs(hit.score), 4)))  # fmt: skip
        return results


def search_entity(database: Database, project: str, name: str, *, entity_type: str | None = None, limit: int = 100) -> list[EntityHit]:
    """Entities of the project named `name` (their name, key, an alias, or their id), each with the
    documents and pages whose mentions resolve to it."""
    project_id = _project_id(database, project)
    wanted = name.strip().lower()
    with database.read() as session:
        by_alias = select(EntityAlias.entity_id).where(func.lower(EntityAlias.alias) == wanted)
        by_mention = select(MentionRow.entity_id).join(Document, Document.id == MentionRow.document_id).where(
            Document.project_id == project_id, func.lower(MentionRow.text) == wanted)  # fmt: skip
        matches = or_(func.lower(Entity.name) == wanted, func.lower(Entity.key) == wanted, Entity.id.in_(by_alias),
                      Entity.id.in_(by_mention))  # fmt: skip
        if name.strip().isdigit():
            matches = or_(matches, Entity.id == int(name.strip()))
        query = select(Entity).where(Entity.project_id == project_id, matches).order_by(Entity.type, Entity.id)
        if entity_type:
            query = query.where(Entity.type == check_entity_type(entity_type))
        hits = []
        for entity in session.scalars(query):
            aliases = session.scalars(select(EntityAlias.alias).where(EntityAlias.entity_id == entity.id).order_by(EntityAlias.alias)).all()
            hit = EntityHit(entity.id, entity.type, entity.key, entity.name, list(aliases))
            rows = session.execute(
                select(MentionRow.document_id, Document.source, MentionRow.page, func.count())
                .join(Document, Document.id == MentionRow.document_id)
                .where(MentionRow.entity_id == entity.id)
                .group_by(MentionRow.document_id, Document.source, MentionRow.page)
                .order_by(MentionRow.document_id, MentionRow.page)
            ).all()
            for document_id, source, page, count in rows:
                if not hit.documents or hit.documents[-1].document_id != document_id:
                    if len(hit.documents) >= limit:
                        break
                    hit.documents.append(EntityDocument(document_id, source, [], 0))
                hit.documents[-1].pages.append(page)
                hit.documents[-1].mentions += count
            hits.append(hit)
        if not hits:
            raise UsageError(f"no entity named {name!r} in project {project!r}",
                             hint=f"list entities with: legaldoc entities --project {project}")  # fmt: skip
        return hits
