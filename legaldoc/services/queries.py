"""Read-side use cases: documents, their mentions and relationships, entities, projects."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import aliased, undefer

from legaldoc.errors import UsageError
from legaldoc.lifecycle import DocumentStatus
from legaldoc.models import EntityType, RelationType
from legaldoc.moments import iso
from legaldoc.paths import MEMBER_SEPARATOR, is_remote, source_text
from legaldoc.services.export import snippet
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import (
    Batch,
    BatchDocument,
    ChunkRow,
    Document,
    Entity,
    EntityAlias,
    EntityLinkRow,
    MentionRow,
    Page,
    Project,
    RelationshipRow,
    StageRun,
)


def same_as(session: Any, entity_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """For each of these entities, the entities of the same human (SAME_AS links, either direction):
    id, type, name and why they are one person."""
    wanted = sorted(set(entity_ids))
    other = aliased(Entity)
    found: dict[int, list[dict[str, Any]]] = {}
    for offset in range(0, len(wanted), 500):
        part = wanted[offset : offset + 500]
        for near, far in ((EntityLinkRow.source_entity_id, EntityLinkRow.target_entity_id),
                          (EntityLinkRow.target_entity_id, EntityLinkRow.source_entity_id)):  # fmt: skip
            rows = session.execute(
                select(near, other.id, other.type, other.name, EntityLinkRow.reason).join(other, other.id == far)
                .where(EntityLinkRow.type == RelationType.SAME_AS.value, near.in_(part))
            ).all()  # fmt: skip
            for entity_id, other_id, other_type, other_name, reason in rows:
                found.setdefault(entity_id, []).append({"id": other_id, "type": other_type, "name": other_name, "reason": reason})
    for links in found.values():
        links.sort(key=lambda link: (link["type"], link["name"], link["id"]))
    return found


def show_document(database: Database, document_id: int, include_text: bool = False) -> dict[str, Any]:
    with database.session() as session:
        query = select(Document).where(Document.id == document_id)
        if include_text:
            query = query.options(undefer(Document.text))
        document = session.scalars(query).one_or_none()
        if document is None:
            raise UsageError(f"no document with id {document_id}", hint="list documents with: legaldoc documents --project P")
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
        linked = same_as(session, [m.entity_id for m in mentions if m.entity_id is not None])
        named = {e.id: e for e in session.scalars(select(Entity).where(Entity.id.in_(sorted(linked))))} if linked else {}
        result["same_as"] = [
            {"entity": {"id": entity_id, "type": named[entity_id].type, "name": named[entity_id].name}, "same_as": links}
            for entity_id, links in sorted(linked.items())
        ]  # the document's people the project also knows in another role
        if include_text:
            result["text"] = document.text
            result["chunk_texts"] = [
                {"index": c.idx, "kind": c.kind, "heading": c.heading, "pages": [c.page_start, c.page_end], "text": c.text}
                for c in session.scalars(select(ChunkRow).where(ChunkRow.document_id == document_id).order_by(ChunkRow.idx))
            ]
        return result


def list_entities(database: Database, project: str, entity_type: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    with database.session() as session:
        project_row = repo.require_project(session, project)
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
        links = same_as(session, ids)
        return [
            {"id": entity.id, "type": entity.type, "key": entity.key, "name": entity.name, "mentions": mentions,
             "documents": documents, "aliases": sorted(aliases.get(entity.id, []), key=lambda a: a["alias"]),
             "same_as": links.get(entity.id, [])}  # fmt: skip
            for entity, mentions, documents in rows
        ]


@dataclass(frozen=True)
class CitedCase:
    """A case the project's documents cite: its citations, how often and where (pin cites), in what forms."""

    id: int
    key: str
    name: str  # its first reporter citation
    case_name: str | None  # 'Bell Atlantic Corp. v. Twombly', as its full citations name it most often
    year: str | None
    mentions: int  # citations of it in every form: full, parallel, short, supra, id
    documents: int  # documents citing it
    forms: dict[str, int]  # mentions by form
    pin_cites: list[str]  # the pages cited, in page order
    aliases: list[dict[str, str]]  # its other reporter citations ({alias, reason})

    def as_json(self) -> dict[str, Any]:
        return {"type": EntityType.CASE.value, **asdict(self)}


def _page_order(pin: str) -> tuple[int, str]:
    found = re.search(r"\d+", pin)
    return (int(found.group(0)) if found else 1 << 30, pin)


def cited_cases(database: Database, project: str, limit: int | None = None) -> list[CitedCase]:
    """The project's cases, most cited first (by documents citing them, then by mentions)."""
    with database.read() as session:
        project_row = repo.require_project(session, project)
        counts = (
            select(MentionRow.entity_id, func.count().label("mentions"), func.count(func.distinct(MentionRow.document_id)).label("documents"))
            .group_by(MentionRow.entity_id)
            .subquery()
        )
        rows = session.execute(
            select(Entity, counts.c.mentions, counts.c.documents).join(counts, counts.c.entity_id == Entity.id)
            .where(Entity.project_id == project_row.id, Entity.type == EntityType.CASE.value)
            .order_by(counts.c.documents.desc(), counts.c.mentions.desc(), Entity.key).limit(limit)
        ).all()  # fmt: skip
        ids = [entity.id for entity, _, _ in rows]
        aliases: dict[int, list[dict[str, str]]] = {}
        attrs: dict[int, list[dict[str, Any]]] = {}
        for offset in range(0, len(ids), 500):
            part = ids[offset : offset + 500]
            for alias in session.scalars(select(EntityAlias).where(EntityAlias.entity_id.in_(part))):
                aliases.setdefault(alias.entity_id, []).append({"alias": alias.alias, "reason": alias.reason})
            for entity_id, mention_attrs in session.execute(select(MentionRow.entity_id, MentionRow.attrs).where(MentionRow.entity_id.in_(part))):
                attrs.setdefault(entity_id, []).append(mention_attrs or {})
    result = []
    for entity, mentions, documents in rows:
        found = attrs.get(entity.id, [])
        names = Counter(str(a["case_name"]) for a in found if a.get("case_name"))
        years = Counter(str(a["year"]) for a in found if a.get("year"))  # on a tie the earliest: a later one is often the citing text's
        pins = {str(a["pin_cite"]) for a in found if a.get("pin_cite")}
        result.append(CitedCase(
            id=entity.id, key=entity.key, name=entity.name, case_name=names.most_common(1)[0][0] if names else None,
            year=min(years, key=lambda y: (-years[y], y)) if years else None, mentions=mentions, documents=documents,
            forms=dict(Counter(str(a.get("form") or "unknown") for a in found).most_common()),
            pin_cites=sorted(pins, key=_page_order), aliases=sorted(aliases.get(entity.id, []), key=lambda a: a["alias"]),
        ))  # fmt: skip
    return result


# -- finding things by what users know ------------------------------------------------------------


def find_document(database: Database, reference: str, project: str | None = None) -> int:
    """The id of a document named by its id, or by its path as in the manifest or absolute (also a
    member's `archive.zip!/a.pdf`); UsageError naming the reference when none or several match."""
    reference = reference.strip()
    if reference.isdigit():
        return int(reference)
    candidates = [reference]
    if not is_remote(reference):
        local, _, member = reference.partition(MEMBER_SEPARATOR)
        resolved = source_text(Path(local).expanduser().resolve())
        candidates.append(resolved + (MEMBER_SEPARATOR + member if member else ""))
    with database.read() as session:
        query = select(Document.id, Project.name).join(Project, Project.id == Document.project_id).where(Document.source.in_(candidates))
        if project:
            query = query.where(Project.name == project)
        found = session.execute(query.order_by(Document.id)).all()
    if not found:
        raise UsageError(f"no document {reference!r}" + (f" in project {project!r}" if project else ""),
                         hint="list documents with: legaldoc documents --project P")  # fmt: skip
    if len({name for _, name in found}) > 1:
        raise UsageError(f"{reference!r} is a document of several projects: {', '.join(sorted({n for _, n in found}))}",
                         hint="name one with --project")  # fmt: skip
    return int(found[0][0])


def document_mentions(database: Database, document_id: int) -> list[dict[str, Any]]:
    """Every mention of a document with its context line and the entity it resolved to."""
    with database.read() as session:
        text = session.scalar(select(Document.text).where(Document.id == document_id)) or ""
        rows = session.execute(
            select(MentionRow, Entity.name).outerjoin(Entity, Entity.id == MentionRow.entity_id)
            .where(MentionRow.document_id == document_id).order_by(MentionRow.start, MentionRow.type)
        ).all()  # fmt: skip
    return [{"type": m.type, "text": m.text, "normalized": m.normalized, "page": m.page, "start": m.start, "end": m.end,
             "entity_id": m.entity_id, "entity": name, "context": snippet(text, m.start, m.end)} for m, name in rows]  # fmt: skip


def _relations(session: Any, condition: Any) -> list[dict[str, Any]]:
    source, target = aliased(Entity), aliased(Entity)
    rows = session.execute(
        select(RelationshipRow, source.type, source.name, target.type, target.name, Document.source)
        .outerjoin(source, source.id == RelationshipRow.source_entity_id).join(target, target.id == RelationshipRow.target_entity_id)
        .join(Document, Document.id == RelationshipRow.document_id).where(condition)
        .order_by(RelationshipRow.document_id, RelationshipRow.type, RelationshipRow.id)
    ).all()  # fmt: skip
    texts: dict[int, str] = {}
    result = []
    for r, source_type, source_name, target_type, target_name, document_source in rows:
        if r.document_id not in texts:
            texts[r.document_id] = session.scalar(select(Document.text).where(Document.id == r.document_id)) or ""
        evidence = [{**e, "text": snippet(texts[r.document_id], e["start"], e["end"], 40)} for e in (r.evidence or [])]
        result.append({
            "id": r.id, "type": r.type, "document_id": r.document_id, "document": document_source, "weight": r.weight,
            "source": {"id": r.source_entity_id, "type": source_type, "name": source_name} if r.source_entity_id
            else {"id": None, "type": "DOCUMENT", "name": document_source},
            "target": {"id": r.target_entity_id, "type": target_type, "name": target_name}, "evidence": evidence,
        })  # fmt: skip
    return result


def document_relations(database: Database, document_id: int) -> list[dict[str, Any]]:
    """The relationships a document gave evidence for, with that evidence in context."""
    with database.read() as session:
        return _relations(session, RelationshipRow.document_id == document_id)


def list_documents(database: Database, project: str, *, batch_id: str | None = None, status: str | None = None,
                   limit: int | None = None) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """A project's documents (or one batch's) with status, pages, OCR pages, counts and last error;
    and how many there are in all."""
    with database.read() as session:
        project_row = repo.require_project(session, project)
        query = select(Document).where(Document.project_id == project_row.id)
        if batch_id:
            batch = session.get(Batch, batch_id)
            if batch is None or batch.project_id != project_row.id:
                raise UsageError(f"no batch {batch_id} in project {project!r}", hint="list batches with: legaldoc status")
            query = query.where(Document.id.in_(select(BatchDocument.document_id).where(BatchDocument.batch_id == batch_id)))
        if status:
            if status not in DocumentStatus.__members__.values():
                raise UsageError(f"unknown status {status!r}", hint=f"one of: {', '.join(s.value for s in DocumentStatus)}")
            query = query.where(Document.status == status)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        documents = session.scalars(query.order_by(Document.id).limit(limit)).all()
        ids = [d.id for d in documents]
        mentions: dict[int, tuple[int, int]] = {}
        relationships: dict[int, int] = {}
        for offset in range(0, len(ids), 500):
            part = ids[offset : offset + 500]
            for doc_id, count, entities in session.execute(
                select(MentionRow.document_id, func.count(), func.count(func.distinct(MentionRow.entity_id)))
                .where(MentionRow.document_id.in_(part)).group_by(MentionRow.document_id)):  # fmt: skip
                mentions[doc_id] = (count, entities)
            relationships.update(session.execute(
                select(RelationshipRow.document_id, func.count()).where(RelationshipRow.document_id.in_(part))
                .group_by(RelationshipRow.document_id)).tuples().all())  # fmt: skip
        rows = [{
            "document_id": d.id, "source": d.source, "status": d.status, "kind": d.kind, "pages": d.pages or 0,
            "ocr_pages": d.ocr_pages or 0, "mentions": mentions.get(d.id, (0, 0))[0], "entities": mentions.get(d.id, (0, 0))[1],
            "relationships": relationships.get(d.id, 0), "batch_id": d.batch_id, "updated_at": iso(d.updated_at),
            "error": {"category": d.error_category, "stage": d.error_stage, "message": d.error_message} if d.error_category else None,
        } for d in documents]  # fmt: skip
        return rows, total


def find_entities(database: Database, project: str, reference: str) -> list[int]:
    """Ids of the project's entities named `reference`: id, key, name, an alias, or a mention's text."""
    from legaldoc.services.search import search_entity

    return [hit.entity_id for hit in search_entity(database, project, reference, limit=1)]


def entity_detail(database: Database, entity_id: int, mention_limit: int = 200) -> dict[str, Any]:
    """One entity: aliases with why they merged, its documents and mentions in context, its relationships."""
    with database.read() as session:
        entity = session.get(Entity, entity_id)
        if entity is None:
            raise UsageError(f"no entity with id {entity_id}", hint="list entities with: legaldoc entities --project P")
        aliases = session.execute(select(EntityAlias.alias, EntityAlias.reason).where(EntityAlias.entity_id == entity_id)
                                  .order_by(EntityAlias.alias)).all()  # fmt: skip
        rows = session.execute(
            select(MentionRow, Document.source).join(Document, Document.id == MentionRow.document_id)
            .where(MentionRow.entity_id == entity_id).order_by(MentionRow.document_id, MentionRow.start).limit(mention_limit)
        ).all()  # fmt: skip
        texts: dict[int, str] = {}
        documents: dict[int, dict[str, Any]] = {}
        for mention, source in rows:
            if mention.document_id not in texts:
                texts[mention.document_id] = session.scalar(select(Document.text).where(Document.id == mention.document_id)) or ""
            document = documents.setdefault(mention.document_id, {"document_id": mention.document_id, "source": source, "mentions": []})
            document["mentions"].append({"text": mention.text, "page": mention.page, "start": mention.start, "end": mention.end,
                                         "context": snippet(texts[mention.document_id], mention.start, mention.end)})  # fmt: skip
        total = session.scalar(select(func.count()).select_from(MentionRow).where(MentionRow.entity_id == entity_id)) or 0
        relations = _relations(session, (RelationshipRow.source_entity_id == entity_id) | (RelationshipRow.target_entity_id == entity_id))
        return {"id": entity.id, "type": entity.type, "key": entity.key, "name": entity.name,
                "aliases": [{"alias": a, "reason": r} for a, r in aliases], "mentions": total,
                "same_as": same_as(session, [entity_id]).get(entity_id, []),
                "documents": list(documents.values()), "relationships": relations}  # fmt: skip


def list_projects(database: Database) -> list[dict[str, Any]]:
    """Every project with its document, entity and batch counts and its last batch."""
    with database.read() as session:
        def counts(column: Any) -> dict[int, int]:
            return dict(session.execute(select(column, func.count()).group_by(column)).tuples().all())

        documents, entities, batches = counts(Document.project_id), counts(Entity.project_id), counts(Batch.project_id)
        last = dict(session.execute(select(Batch.project_id, func.max(Batch.created_at)).group_by(Batch.project_id)).tuples().all())
        return [{"project": p.name, "documents": documents.get(p.id, 0), "entities": entities.get(p.id, 0),
                 "batches": batches.get(p.id, 0), "created_at": iso(p.created_at), "last_batch_at": iso(last.get(p.id))}
                for p in session.scalars(select(Project).order_by(Project.name))]  # fmt: skip
