"""The rows a project's results are exported from: one query per table, filtered by a scope, ordered
so that writers can stream them (and merge them per document) without holding a project in memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Text, cast, func, or_, select
from sqlalchemy.orm import Session

from legaldoc.storage.tables import (
    BatchDocument,
    ChunkRow,
    Document,
    Entity,
    EntityAlias,
    EntityLinkRow,
    MentionRow,
    RelationshipRow,
)

STREAM_ROWS = 2000
"""Rows fetched per round trip (server-side cursors on PostgreSQL)."""


@dataclass(frozen=True)
class Scope:
    """Which part of a project: all of it, one batch's documents, some entity types."""

    project_id: int
    batch_id: str | None = None
    types: tuple[str, ...] = ()

    def documents(self) -> Any:
        """The ids of the documents in scope, as a subquery."""
        query = select(Document.id).where(Document.project_id == self.project_id)
        if self.batch_id:
            query = query.where(Document.id.in_(select(BatchDocument.document_id).where(BatchDocument.batch_id == self.batch_id)))
        return query

    def entities(self) -> Any:
        """The ids of the entities in scope: of the project, of the types, mentioned by the batch."""
        query = select(Entity.id).where(Entity.project_id == self.project_id)
        if self.types:
            query = query.where(Entity.type.in_(self.types))
        if self.batch_id:
            query = query.where(Entity.id.in_(select(MentionRow.entity_id).where(MentionRow.document_id.in_(self.documents()))))
        return query


def stream(session: Session, query: Select) -> Iterator[Any]:
    """Rows of `query`, fetched a slice at a time (Core rows in the session's transaction: no ORM)."""
    yield from session.connection().execute(query.execution_options(yield_per=STREAM_ROWS))


DOCUMENT_COLUMNS = ("id", "source", "status", "kind", "pages", "ocr_pages", "size", "sha256", "batch_id",
                    "error_category", "error_stage", "error_message", "created_at", "updated_at", "metadata")  # fmt: skip


def documents(scope: Scope, json_as_text: bool = False) -> Select:
    """Documents by id; `json_as_text`: metadata as the JSON text the database holds (for CSV)."""
    metadata = cast(Document.doc_metadata, Text) if json_as_text else Document.doc_metadata
    return (
        select(Document.id, Document.source, Document.status, Document.kind, Document.pages, Document.ocr_pages,
               Document.size, Document.sha256, Document.batch_id, Document.error_category, Document.error_stage,
               Document.error_message, Document.created_at, Document.updated_at, metadata)  # fmt: skip
        .where(Document.id.in_(scope.documents()))
        .order_by(Document.id)
    )


MENTION_COLUMNS = ("id", "document_id", "page", "type", "text", "normalized", "start", "end", "entity_id",
                   "extractor", "confidence")  # fmt: skip


def mentions(scope: Scope) -> Select:
    """Mentions by document and position."""
    query = (
        select(MentionRow.id, MentionRow.document_id, MentionRow.page, MentionRow.type, MentionRow.text,
               MentionRow.normalized, MentionRow.start, MentionRow.end, MentionRow.entity_id, MentionRow.extractor,
               MentionRow.confidence)  # fmt: skip
        .where(MentionRow.document_id.in_(scope.documents()))
        .order_by(MentionRow.document_id, MentionRow.start, MentionRow.id)
    )
    if scope.types:
        query = query.where(MentionRow.type.in_(scope.types))
    return query


ENTITY_COLUMNS = ("id", "type", "key", "name", "mentions", "documents")


def entities(scope: Scope) -> Select:
    counts = (
        select(MentionRow.entity_id, func.count().label("mentions"), func.count(func.distinct(MentionRow.document_id)).label("documents"))
        .where(MentionRow.document_id.in_(scope.documents()))
        .group_by(MentionRow.entity_id)
        .subquery()
    )
    return (
        select(Entity.id, Entity.type, Entity.key, Entity.name, func.coalesce(counts.c.mentions, 0),
               func.coalesce(counts.c.documents, 0))  # fmt: skip
        .outerjoin(counts, counts.c.entity_id == Entity.id)
        .where(Entity.id.in_(scope.entities()))
        .order_by(Entity.id)
    )


ALIAS_COLUMNS = ("entity_id", "alias", "reason")


def aliases(scope: Scope) -> Select:
    return (
        select(EntityAlias.entity_id, EntityAlias.alias, EntityAlias.reason)
        .where(EntityAlias.entity_id.in_(scope.entities()))
        .order_by(EntityAlias.entity_id, EntityAlias.alias)
    )


RELATIONSHIP_COLUMNS = ("id", "type", "document_id", "source_entity_id", "target_entity_id", "weight", "evidence")


def relationships(scope: Scope, json_as_text: bool = False) -> Select:
    """Edges of documents in scope whose ends are in scope (source None: the document itself)."""
    in_scope = scope.entities()
    evidence = cast(RelationshipRow.evidence, Text).label("evidence") if json_as_text else RelationshipRow.evidence
    return (
        select(RelationshipRow.id, RelationshipRow.type, RelationshipRow.document_id, RelationshipRow.source_entity_id,
               RelationshipRow.target_entity_id, RelationshipRow.weight, evidence)  # fmt: skip
        .where(RelationshipRow.document_id.in_(scope.documents()), RelationshipRow.target_entity_id.in_(in_scope),
               or_(RelationshipRow.source_entity_id.is_(None), RelationshipRow.source_entity_id.in_(in_scope)))  # fmt: skip
        .order_by(RelationshipRow.document_id, RelationshipRow.id)
    )


LINK_COLUMNS = ("id", "type", "source_entity_id", "target_entity_id", "reason")


def links(scope: Scope) -> Select:
    """Project-wide links (SAME_AS) whose ends are both in scope."""
    in_scope = scope.entities()
    return (
        select(EntityLinkRow.id, EntityLinkRow.type, EntityLinkRow.source_entity_id, EntityLinkRow.target_entity_id,
               EntityLinkRow.reason)  # fmt: skip
        .where(EntityLinkRow.source_entity_id.in_(in_scope), EntityLinkRow.target_entity_id.in_(in_scope))
        .order_by(EntityLinkRow.id)
    )


def document_entities(scope: Scope) -> Select:
    """(document, entity) pairs: the canonical entities each document mentions."""
    return (
        select(MentionRow.document_id, Entity.id, Entity.type, Entity.key, Entity.name)
        .join(Entity, Entity.id == MentionRow.entity_id)
        .where(MentionRow.document_id.in_(scope.documents()), Entity.id.in_(scope.entities()))
        .distinct()
        .order_by(MentionRow.document_id, Entity.id)
    )


def chunk_counts(scope: Scope) -> Select:
    return (
        select(ChunkRow.document_id, func.count())
        .where(ChunkRow.document_id.in_(scope.documents()))
        .group_by(ChunkRow.document_id)
        .order_by(ChunkRow.document_id)
    )


def document_texts(scope: Scope) -> Select:
    """(id, text) of the documents in scope that have mentions, by id: the context of mentions."""
    return (
        select(Document.id, Document.text)
        .where(Document.id.in_(scope.documents()), Document.id.in_(select(MentionRow.document_id)))
        .order_by(Document.id)
    )


def count(session: Session, query: Select) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def entity_types(session: Session, project_id: int) -> Sequence[str]:
    return session.scalars(select(Entity.type).where(Entity.project_id == project_id).distinct().order_by(Entity.type)).all()

