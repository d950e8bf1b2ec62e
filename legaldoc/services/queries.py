"""Read-side use cases: one document in full, a project's canonical entities."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from legaldoc.errors import UsageError
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import (
    ChunkRow,
    Document,
    Entity,
    EntityAlias,
    MentionRow,
    Page,
    Project,
    RelationshipRow,
    StageRun,
)


def show_document(database: Database, document_id: int, include_text: bool = False) -> dict[str, Any]:
    with database.session() as session:
        query = select(Document).where(Document.id == document_id)
        if include_text:
            query = query.options(undefer(Document.text))
        document = session.scalars(query).one_or_none()
        if document is None:
            raise UsageError(f"no document with id {document_id}", hint="list documents with: legaldoc entities --json")
        project = session.get(Project, document.project_id)
        counts = repo.count_rows(session, document_id)
        pages = session.scalars(select(Page).where(Page.document_id == document_id).order_by(Page.number)).all()
        runs = session.scalars(select(StageRun).where(StageRun.document_id == document_id).order_by(StageRun.id)).all()
        mentions = session.scalars(select(MentionRow).where(MentionRow.document_id == document_id).order_by(MentionRow.start)).all()
        by_type: dict[str, int] = {}
        for m in mentions:
            by_type[m.type] = by_type.get(m.type, 0) + 1
        relationship_types = dict(
            session.execute(
                select(RelationshipRow.type, func.count()).where(RelationshipRow.document_id == document_id).group_by(RelationshipRow.type)
            ).all()
        )
        result: dict[str, Any] = {
            "document_id": document.id, "project": project.name if project else None, "source": document.source,
            "sha256": document.sha256, "kind": document.kind, "size": document.size, "status": document.status,
            "stage": document.stage, "attempts": document.attempts,
            "error": {"category": document.error_category, "stage": document.error_stage, "message": document.error_message}
            if document.error_category else None,
            "pages": [{"number": p.number, "start": p.start, "end": p.end, "ocr": p.ocr, "method": p.method} for p in pages],
            "ocr_pages": document.ocr_pages or 0, "chunks": counts["chunks"], "entities": counts["entities"],
            "relationships": counts["relationships"], "relationships_by_type": relationship_types,
            "mentions_by_type": by_type,
            "mentions": [{"type": m.type, "text": m.text, "start": m.start, "end": m.end, "page": m.page,
                          "normalized": m.normalized, "confidence": m.confidence, "extractor": m.extractor} for m in mentions],
            "stage_runs": [{"stage": r.stage, "attempt": r.attempt, "outcome": r.outcome, "duration_ms": r.duration_ms,
                            "error_category": r.error_category} for r in runs],
            "metadata": document.doc_metadata,
        }  # fmt: skip
        if include_text:
            result["text"] = document.text
            result["chunk_texts"] = [
                {"index": c.idx, "kind": c.kind, "heading": c.heading, "pages": [c.page_start, c.page_end], "text": c.text}
                for c in session.scalars(select(ChunkRow).where(ChunkRow.document_id == document_id).order_by(ChunkRow.idx))
            ]
        return result


def list_entities(database: Database, project: str, entity_type: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    with database.session() as session:
        project_row = repo.find_project(session, project)
        if project_row is None:
            raise UsageError(f"no project named {project!r}", hint="process documents with --project first")
        mention_counts = (
            select(MentionRow.entity_id, func.count().label("mentions"), func.count(func.distinct(MentionRow.document_id)).label("documents"))
            .group_by(MentionRow.entity_id)
            .subquery()
        )
        query = (
            select(Entity, mention_counts.c.mentions, mention_counts.c.documents)
            .join(mention_counts, mention_counts.c.entity_id == Entity.id)
            .where(Entity.project_id == project_row.id)
            .order_by(Entity.type, mention_counts.c.mentions.desc(), Entity.key)
        )
        if entity_type:
            query = query.where(Entity.type == entity_type)
        if limit:
            query = query.limit(limit)
        rows = session.execute(query).all()
        aliases: dict[int, list[dict[str, str]]] = {}
        ids = [entity.id for entity, _, _ in rows]
        for offset in range(0, len(ids), 500):
            for alias in session.scalars(select(EntityAlias).where(EntityAlias.entity_id.in_(ids[offset : offset + 500]))):
                aliases.setdefault(alias.entity_id, []).append({"alias": alias.alias, "reason": alias.reason})
        return [
            {"id": entity.id, "type": entity.type, "key": entity.key, "name": entity.name, "mentions": mentions,
             "documents": documents, "aliases": sorted(aliases.get(entity.id, []), key=lambda a: a["alias"])}  # fmt: skip
            for entity, mentions, documents in rows
        ]
