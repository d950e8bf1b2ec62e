"""Repository functions: every read and write of stage outputs, each taking a Session.

Writes are idempotent: a stage replaces its own outputs for a document in one transaction, and
canonical entities and aliases are inserted with ON CONFLICT DO NOTHING on their unique keys.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    Integer,
    String,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, undefer

from legaldoc.errors import UsageError
from legaldoc.lifecycle import IN_PROGRESS, AttemptOutcome, DocumentStatus, MirrorState
from legaldoc.models import (
    PERSON_TYPES,
    CanonicalEntity,
    Chunk,
    EntityLink,
    EntityRef,
    EntityType,
    ExtractedDocument,
    Mention,
    PageText,
    Relationship,
    RelationType,
    Stage,
)
from legaldoc.storage import claims
from legaldoc.storage.tables import (
    Base,
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


def _insert_ignore(session: Session, table: type[Base], rows: list[dict[str, Any]], conflict: Sequence[str]) -> None:
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(cast(Table, table.__table__)).on_conflict_do_nothing(index_elements=list(conflict))
    session.execute(statement, rows)  # executemany: compiled once, sent in batches


def _insert_all(session: Session, table: type[Base], rows: list[dict[str, Any]]) -> None:
    """Plain INSERT of many rows through Core: one executemany, where the ORM's add_all sends one
    INSERT per row (it fetches each new row's id, which no caller of this needs)."""
    if rows:
        session.execute(insert(cast(Table, table.__table__)), rows)


def get_or_create_project(session: Session, name: str) -> Project:
    _insert_ignore(session, Project, [{"name": name, "created_at": datetime.now(UTC)}], ["name"])
    return session.scalars(select(Project).where(Project.name == name)).one()


def find_project(session: Session, name: str) -> Project | None:
    return session.scalars(select(Project).where(Project.name == name)).one_or_none()


def require_project(session: Session, name: str) -> Project:
    """The project named `name`; a usage error naming it, and how to list projects, when there is none."""
    project = find_project(session, name)
    if project is None:
        raise UsageError(f"no project named {name!r}", hint="list projects with: legaldoc projects")
    return project


def register_document(session: Session, project_id: int, source: str, sha256: str, size: int) -> Document:
    """The document row for (project, source), created pending if new."""
    now = datetime.now(UTC)
    _insert_ignore(
        session,
        Document,
        [{"project_id": project_id, "source": source, "sha256": sha256, "size": size, "status": DocumentStatus.PENDING,
          "attempts": 0, "metadata": {}, "created_at": now, "updated_at": now}],  # fmt: skip
        ["project_id", "source"],
    )
    return session.scalars(select(Document).where(Document.project_id == project_id, Document.source == source)).one()


def busy_elsewhere(session: Session, document: Document) -> str | None:
    """Why the document cannot be taken now: a live claim or a running batch holds it; else None."""
    batch_status = session.scalar(select(Batch.status).where(Batch.id == document.batch_id)) if document.batch_id else None
    return claims.held_elsewhere(document, batch_running=batch_status in IN_PROGRESS)


def reset_for_run(session: Session, document_ids: Sequence[int], *, batch_id: str | None,
                  metadata: Mapping[int, dict[str, Any]] | None = None) -> None:  # fmt: skip
    """Put documents back at the first stage, owned by `batch_id` (None for in-process runs)."""
    now = datetime.now(UTC)
    values = dict(status=DocumentStatus.PENDING, stage=Stage.EXTRACT, attempts=1, batch_id=batch_id, claimed_by=None,
                  lease_expires_at=None, due_at=None, error_category=None, error_stage=None, error_message=None, error_digest=None,
                  duplicate_of=None, version=Document.version + 1, updated_at=now)  # fmt: skip
    ids = list(document_ids)
    for offset in range(0, len(ids), 500):
        session.execute(update(Document).where(Document.id.in_(ids[offset : offset + 500])).values(**values))


def start_run(session: Session, document_id: int, stage: Stage, attempt: int, worker: str | None) -> StageRun:
    """A stage_runs row for this attempt (the log of every attempt of every stage).

    The caller holds the document's claim, so any run of it still marked running was abandoned."""
    close_abandoned_runs(session, document_id)
    run = StageRun(document_id=document_id, stage=stage.value, attempt=attempt, worker=worker, started_at=datetime.now(UTC))
    session.add(run)
    session.flush()
    return run


def close_abandoned_runs(session: Session, document_id: int) -> None:
    """Runs of a document whose process died (its claim was taken over) end as lost."""
    session.execute(
        update(StageRun).where(StageRun.document_id == document_id, StageRun.outcome == AttemptOutcome.RUNNING)
        .values(outcome=AttemptOutcome.LOST, finished_at=datetime.now(UTC))
    )  # fmt: skip


def close_lost_run(session: Session, document_id: int, stage: Stage, attempt: int, category: str, message: str,
                   digest: str | None) -> None:  # fmt: skip
    """The run of an attempt whose process died ends as lost, with why."""
    now = datetime.now(UTC)
    for run in session.scalars(
        select(StageRun).where(StageRun.document_id == document_id, StageRun.stage == stage.value,
                               StageRun.attempt == attempt, StageRun.outcome == AttemptOutcome.RUNNING)
    ):  # fmt: skip
        run.finished_at, run.outcome = now, AttemptOutcome.LOST
        run.duration_ms = int((now - run.started_at).total_seconds() * 1000)
        run.error_category, run.error_message, run.traceback_digest = category, message, digest


def note_crash(session: Session, document_id: int, stage: Stage, attempt: int, worker: str, digest: str) -> None:
    """How the process of an attempt already counted as lost ended (its run's digest, if it has none)."""
    session.execute(
        update(StageRun).where(StageRun.document_id == document_id, StageRun.stage == stage.value,
                               StageRun.attempt == attempt, StageRun.worker == worker,
                               StageRun.outcome == AttemptOutcome.LOST, StageRun.traceback_digest.is_(None))
        .values(traceback_digest=digest)
    )  # fmt: skip


def earlier_attempts(session: Session, document_id: int, stage: Stage, before: int) -> dict[int, str | None]:
    """attempt -> traceback digest of the last run of each attempt of this stage before `before`, in
    the document's current series (since its newest first attempt: `recover` starts a new series)."""
    rows = session.execute(
        select(StageRun.attempt, StageRun.traceback_digest)
        .where(StageRun.document_id == document_id, StageRun.stage == stage.value, StageRun.attempt < before)
        .order_by(StageRun.id.desc())
    )  # fmt: skip
    digests: dict[int, str | None] = {}
    for attempt, digest in rows:
        digests.setdefault(attempt, digest)
        if attempt == 1:
            break
    return digests


def traceback_digest(traceback_text: str) -> str:
    """A short digest of a traceback's frames and exception type (not its message, which names the
    document), so failures with one cause share one digest."""
    lines = [line for line in traceback_text.splitlines() if line.startswith("  File ")]
    last = traceback_text.strip().splitlines()[-1:] or [""]
    kind = last[0].split(":", 1)[0]
    return hashlib.sha256("\n".join([*lines, kind]).encode()).hexdigest()[:16]


def finish_run(session: Session, run_id: int, outcome: AttemptOutcome, category: str | None = None,
               message: str | None = None, traceback_text: str | None = None) -> None:  # fmt: skip
    run = session.get(StageRun, run_id)
    if run is None:
        return
    run.finished_at = datetime.now(UTC)
    run.duration_ms = int((run.finished_at - run.started_at).total_seconds() * 1000)
    run.outcome = outcome
    run.error_category = category
    run.error_message = message
    if traceback_text:
        run.traceback_digest = traceback_digest(traceback_text)


def lock_project(session: Session, project_id: int) -> None:
    """Serialize writers of a project's canonical entities until this transaction ends.

    SQLite write transactions are already serial (BEGIN IMMEDIATE); PostgreSQL takes an advisory lock.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(0x1E6A1D0C, project_id)))


def entity_generation(session: Session, project_id: int) -> int:
    """The project's entity generation, read inside the transaction that holds its lock."""
    return session.scalar(select(Project.entity_generation).where(Project.id == project_id)) or 0


def bump_entity_generation(session: Session, project_id: int, current: int | None = None) -> int:
    """Give the project's canonical entities a new generation (call under `lock_project`).

    Generations are random, not counted: a cache entry written for a transaction that then rolled
    back carries a number the database never commits, so it can never be taken for current."""
    current = entity_generation(session, project_id) if current is None else current
    new = current
    while new == current:
        new = secrets.randbelow(2**31 - 2) + 1
    session.execute(update(Project).where(Project.id == project_id).values(entity_generation=new))
    return new


def find_extraction(session: Session, sha256: str, extract_key: str) -> int | None:
    """A document whose stored extraction came from these bytes under these settings."""
    return session.scalar(
        select(Document.id).where(Document.sha256 == sha256, Document.extract_key == extract_key).limit(1)
    )


def save_extraction(session: Session, document: Document, extracted: ExtractedDocument, pipeline_version: str) -> None:
    session.execute(delete(Page).where(Page.document_id == document.id))
    _insert_all(session, Page, [{"document_id": document.id, "number": p.number, "start": p.start, "end": p.end,
                                 "ocr": p.ocr, "method": p.method} for p in extracted.pages])  # fmt: skip
    document.kind = extracted.kind
    document.text = extracted.text
    document.pages = len(extracted.pages)
    document.ocr_pages = extracted.ocr_pages
    user = (document.doc_metadata or {}).get("user")
    document.doc_metadata = {**extracted.metadata, **({"user": user} if user else {})}
    document.pipeline_version = pipeline_version


def load_extracted(session: Session, document_id: int, *, user_metadata: bool = True) -> ExtractedDocument:
    document = session.scalars(select(Document).options(undefer(Document.text)).where(Document.id == document_id)).one()
    metadata = dict(document.doc_metadata or {})
    if not user_metadata:
        metadata.pop("user", None)
    pages = session.scalars(select(Page).where(Page.document_id == document_id).order_by(Page.number)).all()
    return ExtractedDocument(
        kind=document.kind or "text",
        text=document.text or "",
        pages=tuple(PageText(number=p.number, start=p.start, end=p.end, ocr=p.ocr, method=p.method) for p in pages),
        metadata=metadata,
    )


def save_chunks(session: Session, document_id: int, chunks: Sequence[Chunk], text: str) -> None:
    session.execute(delete(ChunkRow).where(ChunkRow.document_id == document_id))
    _insert_all(
        session, ChunkRow,
        [{"document_id": document_id, "idx": c.index, "start": c.start, "end": c.end, "page_start": c.page_start,
          "page_end": c.page_end, "kind": c.kind, "heading": c.heading, "text": text[c.start : c.end]} for c in chunks],
    )  # fmt: skip


def load_chunks(session: Session, document_id: int) -> list[Chunk]:
    rows = session.scalars(select(ChunkRow).where(ChunkRow.document_id == document_id).order_by(ChunkRow.idx)).all()
    return [Chunk(index=r.idx, start=r.start, end=r.end, page_start=r.page_start, page_end=r.page_end,
                  kind=r.kind, heading=r.heading) for r in rows]  # fmt: skip


def save_mentions(session: Session, document_id: int, mentions: Sequence[Mention], pages: Sequence[int],
                  chunk_indexes: Sequence[int]) -> bool:  # fmt: skip
    """Replace the document's mentions; canonical entities only its old mentions used are removed.
    True when the document had linked mentions before, so the project's entities may have changed."""
    previous = {entity_id for entity_id in session.scalars(select(MentionRow.entity_id).where(MentionRow.document_id == document_id))
                if entity_id is not None}  # fmt: skip
    session.execute(delete(MentionRow).where(MentionRow.document_id == document_id))
    _insert_all(
        session, MentionRow,
        [{"document_id": document_id, "chunk_idx": chunk, "type": m.type.value, "text": m.text, "start": m.start,
          "end": m.end, "page": page, "normalized": m.normalized, "extractor": m.extractor, "confidence": m.confidence,
          "attrs": m.attrs, "entity_id": None} for m, page, chunk in zip(mentions, pages, chunk_indexes, strict=True)],
    )  # fmt: skip
    if previous:
        delete_orphan_entities(session, previous)
    return bool(previous)


def load_mentions(session: Session, document_id: int) -> list[tuple[int, Mention]]:
    rows = session.execute(  # plain columns, not ORM objects: a docket report has hundreds of mentions
        select(MentionRow.id, MentionRow.type, MentionRow.text, MentionRow.start, MentionRow.end, MentionRow.normalized,
               MentionRow.extractor, MentionRow.confidence, MentionRow.attrs)
        .where(MentionRow.document_id == document_id).order_by(MentionRow.start, MentionRow.end, MentionRow.type)
    ).all()  # fmt: skip
    return [
        (r.id, Mention(type=EntityType(r.type), text=r.text, start=r.start, end=r.end, normalized=r.normalized,
                       extractor=r.extractor, confidence=r.confidence, attrs=r.attrs or {}))  # fmt: skip
        for r in rows
    ]


def load_entity_index(session: Session, project_id: int, types: Iterable[EntityType]) -> dict[EntityType, dict[str, CanonicalEntity]]:
    """The project's canonical entities of these types with their aliases, for resolution."""
    wanted = sorted({t.value for t in types})
    index: dict[EntityType, dict[str, CanonicalEntity]] = {}
    if not wanted:
        return index
    entities = session.execute(
        select(Entity.id, Entity.type, Entity.key, Entity.name).where(Entity.project_id == project_id, Entity.type.in_(wanted))
    ).all()
    by_id: dict[int, CanonicalEntity] = {}
    for entity_id, entity_type, key, name in entities:
        entity = CanonicalEntity(type=EntityType(entity_type), key=key, name=name)
        index.setdefault(entity.type, {})[key] = entity
        by_id[entity_id] = entity
    if by_id:
        for entity_id, alias, reason in session.execute(
            select(EntityAlias.entity_id, EntityAlias.alias, EntityAlias.reason).join(Entity).where(
                Entity.project_id == project_id, Entity.type.in_(wanted)
            )
        ):
            by_id[entity_id].aliases[alias] = reason
    return index


def save_entities(session: Session, project_id: int, entities: Iterable[CanonicalEntity]) -> dict[EntityRef, int]:
    """Upsert canonical entities and their aliases; return their ids.

    A fixed number of statements whatever the number of entities (chunks of 500 keys aside): one
    INSERT ... ON CONFLICT DO NOTHING of them all, one SELECT of the ids and stored names of the
    key set, one UPDATE (executemany) of those renamed with one DELETE of the aliases their new
    names replace, one INSERT ... ON CONFLICT DO NOTHING of every alias."""
    entities, now = list(entities), datetime.now(UTC)
    if not entities:
        return {}
    _insert_ignore(
        session, Entity,
        [{"project_id": project_id, "type": e.type.value, "key": e.key, "name": e.name, "created_at": now}
         for e in entities],
        ["project_id", "type", "key"],
    )  # fmt: skip
    wanted = {(e.type.value, e.key) for e in entities}
    types, keys = sorted({t for t, _ in wanted}), sorted({k for _, k in wanted})
    stored: dict[tuple[str, str], tuple[int, str]] = {}  # (type, key) -> (id, name)
    for offset in range(0, len(keys), 500):
        for entity_id, entity_type, key, name in session.execute(
            select(Entity.id, Entity.type, Entity.key, Entity.name).where(
                Entity.project_id == project_id, Entity.type.in_(types), Entity.key.in_(keys[offset : offset + 500])
            )
        ):  # fmt: skip
            if (entity_type, key) in wanted:
                stored[(entity_type, key)] = (entity_id, name)
    ids = {EntityRef(type=EntityType(t), key=k): entity_id for (t, k), (entity_id, _) in stored.items()}
    renamed = [{"entity_id": stored[(e.type.value, e.key)][0], "new_name": e.name, "alias_name": e.name[:1000]}
               for e in entities if stored[(e.type.value, e.key)][1] != e.name]  # fmt: skip
    if renamed:
        entity_table, alias_table = cast(Table, Entity.__table__), cast(Table, EntityAlias.__table__)
        session.execute(
            update(entity_table).where(entity_table.c.id == bindparam("entity_id")).values(name=bindparam("new_name")),
            renamed,
        )
        session.execute(
            delete(alias_table).where(alias_table.c.entity_id == bindparam("entity_id"),
                                      alias_table.c.alias == bindparam("alias_name")),
            renamed,
        )  # fmt: skip
    _insert_ignore(
        session, EntityAlias,
        [{"entity_id": ids[EntityRef(type=e.type, key=e.key)], "alias": alias[:1000], "reason": reason[:500]}
         for e in entities for alias, reason in e.aliases.items()],
        ["entity_id", "alias"],
    )  # fmt: skip
    return ids


def link_mentions(session: Session, mention_entity: Mapping[int, int]) -> None:
    """Point mentions at their canonical entities: one executemany, not a statement per mention."""
    if mention_entity:
        table = cast(Table, MentionRow.__table__)
        session.execute(
            update(table).where(table.c.id == bindparam("mention_id")).values(entity_id=bindparam("entity_id")),
            [{"mention_id": m, "entity_id": e} for m, e in mention_entity.items()],
        )


def delete_orphan_entities(session: Session, candidate_ids: Iterable[int]) -> None:
    """Of these canonical entities, remove those no mention points at any more."""
    candidates = sorted(candidate_ids)
    used = select(MentionRow.entity_id).where(MentionRow.entity_id == Entity.id).exists()
    for offset in range(0, len(candidates), 500):
        session.execute(delete(Entity).where(Entity.id.in_(candidates[offset : offset + 500]), ~used))


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def people_by_surname(session: Session, project_id: int, surnames: Iterable[str]) -> dict[EntityRef, tuple[int, CanonicalEntity]]:
    """The project's ATTORNEY, PERSON and JUDGE entities whose key ends with one of these words, by
    reference: their ids and names (aliases are not loaded)."""
    words = sorted({word for word in surnames if word})
    found: dict[EntityRef, tuple[int, CanonicalEntity]] = {}
    for offset in range(0, len(words), 100):
        part = words[offset : offset + 100]
        ends = [Entity.key.like(f"% {_like_literal(word)}", escape="\\") for word in part]
        rows = session.execute(
            select(Entity.id, Entity.type, Entity.key, Entity.name).where(
                Entity.project_id == project_id, Entity.type.in_([t.value for t in PERSON_TYPES]),
                or_(Entity.key.in_(part), *ends),
            )
        ).all()  # fmt: skip
        for entity_id, entity_type, key, name in rows:
            entity = CanonicalEntity(type=EntityType(entity_type), key=key, name=name)
            found[EntityRef(type=entity.type, key=key)] = (entity_id, entity)
    return found


def replace_links(session: Session, project_id: int, kind: RelationType, among: Iterable[int], links: Sequence[EntityLink],
                  entity_ids: Mapping[EntityRef, int]) -> None:  # fmt: skip
    """Make the project's `kind` links between the entities `among` exactly `links`: links that no
    longer hold are deleted, new ones inserted, changed reasons updated; links touching other
    entities stay. Running it twice with the same links changes nothing."""
    members = sorted(set(among))
    wanted = {(entity_ids[link.source], entity_ids[link.target]): link.reason for link in links}
    stored: dict[tuple[int, int], tuple[int, str]] = {}
    member_set = set(members)
    for offset in range(0, len(members), 500):
        part = members[offset : offset + 500]
        for link_id, source, target, reason in session.execute(
            select(EntityLinkRow.id, EntityLinkRow.source_entity_id, EntityLinkRow.target_entity_id, EntityLinkRow.reason)
            .where(EntityLinkRow.type == kind.value, EntityLinkRow.source_entity_id.in_(part))
        ):  # fmt: skip
            if target in member_set:
                stored[(source, target)] = (link_id, reason)
    gone = [link_id for pair, (link_id, _) in stored.items() if pair not in wanted]
    for offset in range(0, len(gone), 500):
        session.execute(delete(EntityLinkRow).where(EntityLinkRow.id.in_(gone[offset : offset + 500])))
    changed = [{"link_id": link_id, "new_reason": wanted[pair][:500]}
               for pair, (link_id, reason) in stored.items() if pair in wanted and wanted[pair] != reason]  # fmt: skip
    if changed:  # one executemany, not a statement per link
        table = cast(Table, EntityLinkRow.__table__)
        session.execute(update(table).where(table.c.id == bindparam("link_id")).values(reason=bindparam("new_reason")), changed)
    _insert_ignore(
        session, EntityLinkRow,
        [{"project_id": project_id, "type": kind.value, "source_entity_id": source, "target_entity_id": target,
          "reason": reason[:500]} for (source, target), reason in sorted(wanted.items()) if (source, target) not in stored],
        ["source_entity_id", "target_entity_id", "type"],
    )  # fmt: skip


def save_relationships(session: Session, project_id: int, document_id: int, relationships: Sequence[Relationship],
                       entity_ids: Mapping[EntityRef, int]) -> None:  # fmt: skip
    session.execute(delete(RelationshipRow).where(RelationshipRow.document_id == document_id))
    _insert_all(
        session, RelationshipRow,
        [{"project_id": project_id, "document_id": document_id, "type": r.type.value,
          "source_entity_id": entity_ids[r.source] if r.source else None, "target_entity_id": entity_ids[r.target],
          "weight": r.weight, "evidence": [e.model_dump() for e in r.evidence]} for r in relationships],
    )  # fmt: skip


def entity_refs_of_mentions(session: Session, document_id: int) -> dict[int, tuple[EntityRef, int]]:
    rows = session.execute(
        select(MentionRow.id, Entity.id, Entity.type, Entity.key).join(Entity, MentionRow.entity_id == Entity.id).where(
            MentionRow.document_id == document_id
        )
    ).all()
    return {mention_id: (EntityRef(type=EntityType(t), key=k), entity_id) for mention_id, entity_id, t, k in rows}


def count_rows(session: Session, document_id: int) -> dict[str, int]:
    def count(table: type[ChunkRow] | type[MentionRow] | type[RelationshipRow]) -> int:
        return session.scalar(select(func.count()).select_from(table).where(table.document_id == document_id)) or 0

    entities = session.scalar(
        select(func.count(func.distinct(MentionRow.entity_id))).where(MentionRow.document_id == document_id)
    )
    return {"chunks": count(ChunkRow), "mentions": count(MentionRow), "relationships": count(RelationshipRow),
            "entities": entities or 0}  # fmt: skip


PENDING, EXTRACT = DocumentStatus.PENDING.value, Stage.EXTRACT.value  # plain str: drivers bind them fastest


def _values(session: Session, values: Sequence[Any], value_type: Any) -> Any:
    """A one-column table (``value``) of these values, bound as one parameter: SQLite's json_each
    of a JSON array, PostgreSQL's unnest of an array. An INSERT … SELECT from it writes thousands
    of rows in one statement, with no per-row parameter processing."""
    if session.get_bind().dialect.name == "postgresql":
        return func.unnest(literal(list(values), postgresql.ARRAY(value_type))).table_valued("value").render_derived()
    return func.json_each(literal(json.dumps(list(values)))).table_valued("value")


def ensure_documents(session: Session, project_id: int, sources: Sequence[str], batch_id: str | None = None) -> list[Any]:
    """The document rows of these sources, in no particular order. New ones are created pending,
    owned by `batch_id` at version 1; existing ones are returned as they are."""
    now = datetime.now(UTC)
    table = cast(Table, Document.__table__)
    names = ("project_id", "source", "status", "stage", "attempts", "version", "batch_id", "metadata", "created_at", "updated_at")
    given = {"project_id": project_id, "status": PENDING, "stage": EXTRACT, "attempts": 1, "version": 1,
             "batch_id": batch_id, "metadata": {}, "created_at": now, "updated_at": now}  # fmt: skip
    for offset in range(0, len(sources), 50000):
        values = _values(session, sources[offset : offset + 50000], String())
        chosen = select(*(values.c.value if n == "source" else literal(given[n], table.c[n].type) for n in names))
        dialect = session.get_bind().dialect.name
        insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
        # WHERE true: SQLite reads ON CONFLICT after a bare SELECT as the SELECT's join constraint
        statement = insert_(table).from_select(list(names), chosen.select_from(values).where(true()))
        session.execute(statement.on_conflict_do_nothing(index_elements=["project_id", "source"]))
    columns = (Document.id, Document.source, Document.status, Document.batch_id, Document.version)
    rows: list[Any] = []  # (id, source, status, batch_id, version), with the claim of existing rows
    if batch_id is not None:  # the new rows in one query; only existing ones are looked up by source
        rows.extend(session.execute(select(*columns).where(Document.batch_id == batch_id)).all())
    found = {row.source for row in rows}
    others = [source for source in sources if source not in found]
    for offset in range(0, len(others), 500):
        rows.extend(session.execute(
            select(*columns, Document.lease_expires_at, Document.claimed_by)
            .where(Document.project_id == project_id, Document.source.in_(others[offset : offset + 500]))
        ).all())  # fmt: skip
    return rows


def release_from_other_batches(session: Session, document_ids: Sequence[int], batch_id: str) -> None:
    """Documents a new batch takes over leave the batches that still listed them as unfinished."""
    ids = list(document_ids)
    for offset in range(0, len(ids), 500):
        session.execute(
            update(BatchDocument)
            .where(BatchDocument.document_id.in_(ids[offset : offset + 500]), BatchDocument.outcome.is_(None),
                   BatchDocument.batch_id != batch_id)
            .values(outcome=MirrorState.CANCELLED, reason=f"taken over by batch {batch_id}")
        )  # fmt: skip


def set_user_metadata(session: Session, metadata: Mapping[int, dict[str, Any]]) -> None:
    for document_id, values in metadata.items():
        document = session.get_one(Document, document_id)
        document.doc_metadata = {**(document.doc_metadata or {}), "user": values}


def add_batch_documents(session: Session, batch_id: str, queued: Sequence[int], skipped: Mapping[int, str]) -> None:
    table = cast(Table, BatchDocument.__table__)
    for offset in range(0, len(queued), 50000):  # one INSERT … SELECT per 50,000 (see `_values`)
        ids = _values(session, queued[offset : offset + 50000], Integer())
        chosen = select(literal(batch_id, table.c.batch_id.type), ids.c.value).select_from(ids)
        session.execute(insert(table).from_select(["batch_id", "document_id"], chosen))
    rows = [{"batch_id": batch_id, "document_id": d, "outcome": MirrorState.SKIPPED, "reason": r[:500]} for d, r in skipped.items()]
    if rows:
        session.execute(insert(table), rows)  # Core: no ORM bulk bookkeeping
