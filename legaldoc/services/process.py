"""Use case: run the pipeline stages for documents, storing each stage's output in the database.

`StageRunner.run_stage` is the unit the queue workers call (ids in, outputs stored); `process_paths`
runs every stage in this process for the `process` command.
"""

from __future__ import annotations

import hashlib
import os
import socket
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from legaldoc import PIPELINE_VERSION
from legaldoc.config import Settings
from legaldoc.errors import ErrorCategory, LegaldocError, categorize
from legaldoc.models import STAGES, EntityRef, Stage, StageError
from legaldoc.pipeline.chunk import chunk_document
from legaldoc.pipeline.entities import entity_provider_from_settings
from legaldoc.pipeline.extract import SUPPORTED_SUFFIXES, extract, ocr_provider_from_settings
from legaldoc.pipeline.relate import chunk_of, relate
from legaldoc.pipeline.resolve import resolve_mentions
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Document, MentionRow


@dataclass
class DocumentReport:
    """What happened to one document, as `process --json` prints it."""

    document_id: int | None
    source: str
    status: str
    error: StageError | None = None
    pages: int = 0
    ocr_pages: int = 0
    chunks: int = 0
    mentions: list[dict[str, Any]] = field(default_factory=list)
    entities: int = 0
    relationships: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "document_id": self.document_id, "source": self.source, "status": self.status,
            "error": self.error.model_dump(mode="json") if self.error else None, "pages": self.pages,
            "ocr_pages": self.ocr_pages, "chunks": self.chunks, "mentions": self.mentions,
            "entities": self.entities, "relationships": self.relationships,
        }  # fmt: skip


def _message(exc: BaseException) -> str:
    if isinstance(exc, LegaldocError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class StageRunner:
    """Runs one stage for one document: reads inputs by id, calls the pure stage, stores its outputs."""

    def __init__(self, settings: Settings, database: Database, worker: str | None = None) -> None:
        self.settings = settings
        self.database = database
        self.worker = worker or f"{socket.gethostname()}:{os.getpid()}"
        self.ocr = ocr_provider_from_settings(settings)
        self.entities = entity_provider_from_settings(settings)

    def run_stage(self, document_id: int, stage: Stage) -> None:
        """Run `stage`; on failure mark the document failed with its category and re-raise."""
        with self.database.session() as session:
            document = session.get(Document, document_id)
            if document is None:
                raise LegaldocError(f"document {document_id} does not exist")
            run_id = repo.start_stage(session, document, stage, self.worker).id
            source = document.source
        try:
            getattr(self, f"_{stage.value}")(document_id)
        except Exception as exc:
            category = categorize(exc)
            message = f"{_message(exc)} [document {document_id}: {source}, stage {stage.value}]"
            with self.database.session() as session:
                repo.finish_stage(session, run_id, "failed", category.value, message, traceback.format_exc())
                document = session.get(Document, document_id)
                document.status = "failed"
                document.error_category = category.value
                document.error_stage = stage.value
                document.error_message = _message(exc)
                document.pipeline_version = PIPELINE_VERSION
            raise
        with self.database.session() as session:
            repo.finish_stage(session, run_id, "done")
            document = session.get(Document, document_id)
            if stage is STAGES[-1]:
                document.status = "done"
                document.stage = None
                document.error_category = document.error_stage = document.error_message = None

    def _extract(self, document_id: int) -> None:
        with self.database.session() as session:
            source = session.get(Document, document_id).source
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError as exc:
            raise LegaldocError(f"{source} does not exist any more", hint="restore the file or remove it from the batch") from exc
        extracted = extract(data, source, self.settings, self.ocr)
        with self.database.session() as session:
            repo.save_extraction(session, session.get(Document, document_id), extracted, PIPELINE_VERSION)

    def _chunk(self, document_id: int) -> None:
        with self.database.session() as session:
            extracted = repo.load_extracted(session, document_id)
        chunks = chunk_document(extracted, self.settings.chunk_target_chars, self.settings.chunk_max_chars)
        with self.database.session() as session:
            repo.save_chunks(session, document_id, chunks, extracted.text)

    def _entities(self, document_id: int) -> None:
        with self.database.session() as session:
            extracted = repo.load_extracted(session, document_id)
            chunks = repo.load_chunks(session, document_id)
        mentions = self.entities.extract(extracted.text)
        pages = [extracted.page_at(m.start) for m in mentions]
        chunk_indexes = [chunk_of(chunks, m.start) for m in mentions]
        with self.database.session() as session:
            repo.save_mentions(session, document_id, mentions, pages, chunk_indexes)

    def _resolve(self, document_id: int) -> None:
        with self.database.session() as session:
            document = session.get(Document, document_id)
            project_id = document.project_id
            stored = repo.load_mentions(session, document_id)
            index = repo.load_entity_index(session, project_id, {m.type for _, m in stored})
            resolution = resolve_mentions([m for _, m in stored], index, self.settings.fuzzy_threshold)
            ids = repo.save_entities(session, project_id, resolution.entities.values())
            repo.link_mentions(
                session,
                {mention_id: ids[EntityRef(type=t, key=k)] for (mention_id, _), (t, k) in zip(stored, resolution.entity_of_mention, strict=True)},
            )
            repo.delete_orphan_entities(session, project_id)

    def _relate(self, document_id: int) -> None:
        with self.database.session() as session:
            document = session.get(Document, document_id)
            stored = repo.load_mentions(session, document_id)
            refs = repo.entity_refs_of_mentions(session, document_id)
            chunks = repo.load_chunks(session, document_id)
            linked = [(m, refs[mention_id]) for mention_id, m in stored if mention_id in refs]
            relationships = relate([m for m, _ in linked], [ref for _, (ref, _) in linked], chunks)
            entity_ids = {ref: entity_id for ref, entity_id in refs.values()}
            repo.save_relationships(session, document.project_id, document_id, relationships, entity_ids)


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and supported files under folders named, in a stable order."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.name.startswith(".") and child.suffix.lower() in SUPPORTED_SUFFIXES:
                    yield child
        else:
            yield path


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def report_for(database: Database, document_id: int, status: str, error: StageError | None = None) -> DocumentReport:
    with database.session() as session:
        document = session.get(Document, document_id)
        counts = repo.count_rows(session, document_id)
        mentions = session.scalars(
            select(MentionRow).where(MentionRow.document_id == document_id).order_by(MentionRow.start, MentionRow.type)
        ).all()
        return DocumentReport(
            document_id=document_id, source=document.source, status=status, error=error, pages=document.pages or 0,
            ocr_pages=document.ocr_pages or 0, chunks=counts["chunks"],
            mentions=[{"type": m.type, "text": m.text, "start": m.start, "end": m.end, "page": m.page,
                       "normalized": m.normalized} for m in mentions],
            entities=counts["entities"], relationships=counts["relationships"],
        )  # fmt: skip


def process_paths(
    paths: Iterable[Path], project: str, settings: Settings, database: Database, *, force: bool = False
) -> Iterator[DocumentReport]:
    """Every stage for every file, in this process. Unchanged documents already done are skipped."""
    runner = StageRunner(settings, database)
    with database.session() as session:
        project_id = repo.get_or_create_project(session, project).id
    for path in iter_files(paths):
        source = str(path.resolve())
        try:
            sha256, size = sha256_file(path)
        except OSError as exc:
            yield DocumentReport(None, source, "failed", StageError(
                category=ErrorCategory.DATA, stage=Stage.EXTRACT, message=f"{source} cannot be read: {exc.strerror}"))  # fmt: skip
            continue
        with database.session() as session:
            document = repo.register_document(session, project_id, source, sha256, size)
            document_id = document.id
            same_content = document.sha256 == sha256 and document.pipeline_version == PIPELINE_VERSION
            unchanged = same_content and document.status == "done"
            # The same bytes fail the same way on DATA errors: report the stored failure, do not re-run.
            known_bad = same_content and document.status == "failed" and document.error_category == ErrorCategory.DATA
            stored_error = (
                StageError(category=ErrorCategory(document.error_category), stage=Stage(document.error_stage),
                           message=document.error_message or "")  # fmt: skip
                if known_bad else None
            )
            if not same_content:
                document.sha256, document.size = sha256, size
        if unchanged and not force:
            yield report_for(database, document_id, "skipped")
            continue
        if known_bad and not force:
            yield report_for(database, document_id, "failed", stored_error)
            continue
        error: StageError | None = None
        for stage in STAGES:
            try:
                runner.run_stage(document_id, stage)
            except Exception as exc:
                error = StageError(category=categorize(exc), stage=stage, message=_message(exc))
                break
        yield report_for(database, document_id, "failed" if error else "done", error)
