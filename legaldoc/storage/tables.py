"""SQLAlchemy 2 tables: the source of truth for projects, documents and every stage's output."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, deferred, mapped_column

from legaldoc.lifecycle import AttemptOutcome, BatchStatus, DocumentStatus, RemoteJobStatus
from legaldoc.models import Stage


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A moment read back timezone-aware in UTC, as it was written (SQLite keeps no zone). Every
    moment legaldoc writes is `datetime.now(UTC)` or computed from one."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}


class Installation(Base):
    """The database's identity (one row, written at creation)."""

    __tablename__ = "installation"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    entity_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped by every write of the project's canonical entities; the entity-index cache compares it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Batch(Base):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_lock_status", "lock_name", "status"),)
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    lock_name: Mapped[str] = mapped_column(String(200))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    priority: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=BatchStatus.RUNNING)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    manifest: Mapped[str | None] = mapped_column(String(2000))
    total: Mapped[int] = mapped_column(Integer, default=0)
    succeeded: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    errors_by_category: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    report: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # as settled: later batches do not rewrite it
    runner: Mapped[str | None] = mapped_column(String(64))
    """The `legaldoc run` whose private Redis and workers own the batch (its sweeper alone sweeps
    it); NULL for a batch of the shared installation (migration 0011)."""


class BatchDocument(Base):
    """A document's outcome in one batch; NULL outcome while the batch still owns the document."""

    __tablename__ = "batch_documents"
    __table_args__ = (Index("ix_batch_documents_document", "document_id"),)
    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id", ondelete="CASCADE"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    outcome: Mapped[str | None] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(500))  # why it failed, was skipped or cancelled
    stage: Mapped[str | None] = mapped_column(String(20))  # where it failed in this batch
    error_category: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # the most any stage took
    finished_at: Mapped[datetime | None] = mapped_column()


class Document(Base):
    __tablename__ = "documents"
    __table_args__ = (
        UniqueConstraint("project_id", "source", name="uq_documents_project_source"),
        Index("ix_documents_project_sha", "project_id", "sha256"),
        Index("ix_documents_status", "status"),
        Index("ix_documents_waiting", "status", "stage", "updated_at", "due_at"),
        Index("ix_documents_batch_status", "batch_id", "status"),
        Index("ix_documents_project_processed", "project_id", "processed_sha256"),
        Index("ix_documents_sha_extract", "sha256", "extract_key"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(String(2000))
    sha256: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str | None] = mapped_column(String(20))
    size: Mapped[int | None] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer)
    ocr_pages: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=DocumentStatus.PENDING)
    stage: Mapped[str | None] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_category: Mapped[str | None] = mapped_column(String(20))
    error_stage: Mapped[str | None] = mapped_column(String(20))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_digest: Mapped[str | None] = mapped_column(String(16))
    """Digest of the final failure's traceback: failures with one digest share one cause."""
    pipeline_version: Mapped[str | None] = mapped_column(String(20))
    extract_key: Mapped[str | None] = mapped_column(String(64))
    """What extraction depended on besides the bytes (pipeline version, OCR settings); with sha256 the
    extraction cache's key."""
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by every state change; the Redis mirror applies a change only if it is newer."""
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    due_at: Mapped[datetime | None] = mapped_column()
    """When the waiting attempt may run: a retry's delay (backoff or Retry-After) from its failure; None
    when it may run at once. A message for it that arrives before runs nothing (EARLY), and the sweeper
    counts a message lost only two leases past it (migration 0010)."""
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("documents.id", ondelete="SET NULL"))
    processed_sha256: Mapped[str | None] = mapped_column(String(64))
    """The content whose every stage completed; `skip_processed` compares new content with it."""
    text: Mapped[str | None] = deferred(mapped_column(Text))

    @property
    def current_stage(self) -> Stage:
        """The stage running or next (only a document that has finished has none)."""
        if self.stage is None:
            raise ValueError(f"document {self.id} is at no stage")
        return Stage(self.stage)

    doc_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Page(Base):
    __tablename__ = "pages"
    __table_args__ = (UniqueConstraint("document_id", "number", name="uq_pages_document_number"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    ocr: Mapped[bool] = mapped_column(Boolean, default=False)
    method: Mapped[str] = mapped_column(String(40))


class ChunkRow(Base):
    __tablename__ = "chunks"
    __table_args__ = (UniqueConstraint("document_id", "idx", name="uq_chunks_document_idx"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    idx: Mapped[int] = mapped_column(Integer)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    page_start: Mapped[int] = mapped_column(Integer)
    page_end: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(20))
    heading: Mapped[str | None] = mapped_column(String(500))
    text: Mapped[str] = mapped_column(Text)


class Entity(Base):
    __tablename__ = "entities"
    __table_args__ = (UniqueConstraint("project_id", "type", "key", name="uq_entities_project_type_key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    key: Mapped[str] = mapped_column(String(500))
    name: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime | None] = mapped_column()  # NULL: before it was recorded


class EntityAlias(Base):
    __tablename__ = "entity_aliases"
    __table_args__ = (UniqueConstraint("entity_id", "alias", name="uq_entity_aliases_entity_alias"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(1000))
    reason: Mapped[str] = mapped_column(String(500))


class MentionRow(Base):
    __tablename__ = "mentions"
    __table_args__ = (
        UniqueConstraint("document_id", "type", "start", "end", name="uq_mentions_document_type_span"),
        Index("ix_mentions_entity", "entity_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    chunk_idx: Mapped[int | None] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(20))
    text: Mapped[str] = mapped_column(Text)
    start: Mapped[int] = mapped_column(Integer)
    end: Mapped[int] = mapped_column(Integer)
    page: Mapped[int] = mapped_column(Integer)
    normalized: Mapped[str] = mapped_column(String(1000))
    extractor: Mapped[str] = mapped_column(String(40))
    confidence: Mapped[float] = mapped_column(Float)
    attrs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    entity_id: Mapped[int | None] = mapped_column(ForeignKey("entities.id", ondelete="SET NULL"))


class RelationshipRow(Base):
    __tablename__ = "relationships"
    __table_args__ = (
        Index("ix_relationships_document", "document_id"),
        Index("ix_relationships_project_type", "project_id", "type"),
        Index("ix_relationships_source_entity", "source_entity_id"),  # the cascade when an entity goes (0012)
        Index("ix_relationships_target_entity", "target_entity_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    source_entity_id: Mapped[int | None] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    target_entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    evidence: Mapped[list[Any]] = mapped_column(JSON, default=list)


class EntityLinkRow(Base):
    """A project-wide edge that no document owns: two person entities of different types are one
    human (SAME_AS), with the reason. Resolve recomputes the links among the entities sharing a
    surname each time one of them is resolved, so a link that no longer holds goes away."""

    __tablename__ = "entity_links"
    __table_args__ = (
        UniqueConstraint("source_entity_id", "target_entity_id", "type", name="uq_entity_links_pair_type"),
        Index("ix_entity_links_target", "target_entity_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(20))
    source_entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    target_entity_id: Mapped[int] = mapped_column(ForeignKey("entities.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(500))


class StageRun(Base):
    __tablename__ = "stage_runs"
    __table_args__ = (Index("ix_stage_runs_document", "document_id", "stage"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    stage: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(20), default=AttemptOutcome.RUNNING)
    error_category: Mapped[str | None] = mapped_column(String(20))
    error_message: Mapped[str | None] = mapped_column(Text)
    traceback_digest: Mapped[str | None] = mapped_column(String(64))


class TextractJob(Base):
    """A Textract job started for a document's pages: a killed worker resumes it instead of paying
    again (migration 0009). One per document and uploaded content (sha256)."""

    __tablename__ = "textract_jobs"
    __table_args__ = (UniqueConstraint("document_id", "sha256", name="uq_textract_jobs_document_sha"),
                      Index("ix_textract_jobs_batch", "batch_id"))  # fmt: skip
    id: Mapped[int] = mapped_column(primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"))
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id", ondelete="SET NULL"))
    """The batch that started (and pays for) the job."""
    sha256: Mapped[str] = mapped_column(String(64))
    """Of the bytes sent: also the upload's key and the ClientRequestToken."""
    bucket: Mapped[str] = mapped_column(String(255))
    key: Mapped[str] = mapped_column(String(1024))
    job_id: Mapped[str] = mapped_column(String(255))
    pages: Mapped[list[int]] = mapped_column(JSON, default=list)
    """The document's pages (0-based) the job reads, in the order sent."""
    status: Mapped[str] = mapped_column(String(20), default=RemoteJobStatus.IN_PROGRESS)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    """Estimated when the job started: its pages at ``textract_price_per_page``."""
    polls: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by each scheduled poll: a poll message carrying an older number does nothing."""
    deadline_at: Mapped[datetime] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
