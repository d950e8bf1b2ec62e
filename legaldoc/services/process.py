"""Use case: the `process` command, every stage of every file in this process (no Redis needed)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from legaldoc import PIPELINE_VERSION
from legaldoc.config import Settings
from legaldoc.errors import ErrorCategory, LegaldocError
from legaldoc.lifecycle import AttemptOutcome, DocumentStatus
from legaldoc.manifest import DocumentSpec
from legaldoc.models import STAGES, Stage, StageError
from legaldoc.paths import is_remote, source_path, source_text, split_container
from legaldoc.pipeline.extract.formats import is_supported_name
from legaldoc.services.sources import Expanded, expand_documents, read_source
from legaldoc.services.stages import StageRunner
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Document, MentionRow


@dataclass
class DocumentReport:
    """What happened to one document, as `process --json` prints it."""

    document_id: int | None
    source: str
    status: DocumentStatus  # done, failed or skipped
    error: StageError | None = None
    pages: int = 0
    ocr_pages: int = 0
    chunks: int = 0
    mentions: list[dict[str, Any]] = field(default_factory=list)
    entities: int = 0
    relationships: int = 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"error": self.error.model_dump(mode="json") if self.error else None}


def iter_files(paths: Iterable[Path]) -> Iterator[Path]:
    """Files named, and supported files under folders named, in a stable order."""
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and not child.name.startswith(".") and is_supported_name(child.name):
                    yield child
        else:
            yield path


def expand_paths(paths: Iterable[Path], settings: Settings) -> Expanded:
    """The documents of files and folders: archives replaced by their members, e-mails followed by
    their attachments; names that are not UTF-8 escaped (see `legaldoc.paths`)."""
    specs = [DocumentSpec(source=source_text(path.resolve())) for path in iter_files(paths)]
    return expand_documents(specs, settings)


def sha256_file(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def report_for(database: Database, document_id: int, status: DocumentStatus, error: StageError | None = None) -> DocumentReport:
    with database.session() as session:
        document = session.get_one(Document, document_id)
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


def _fingerprint(source: str, settings: Settings) -> tuple[str, int]:
    if split_container(source) is None and not is_remote(source):
        return sha256_file(source_path(source))
    data = read_source(source, settings)
    return hashlib.sha256(data).hexdigest(), len(data)


def process_sources(
    sources: Iterable[str], project: str, settings: Settings, database: Database, *, force: bool = False
) -> Iterator[DocumentReport]:
    """Every stage for every document, in this process. Unchanged documents already done are skipped."""
    runner = StageRunner(settings, database, retries=False, use_cache=not force, time_limits=True)
    with database.session() as session:
        project_id = repo.get_or_create_project(session, project).id
    for source in sources:
        try:
            sha256, size = _fingerprint(source, settings)
        except OSError as exc:
            yield DocumentReport(None, source, DocumentStatus.FAILED, StageError(
                category=ErrorCategory.DATA, stage=Stage.EXTRACT, message=f"{source} cannot be read: {exc.strerror}"))  # fmt: skip
            continue
        except LegaldocError as exc:  # a member whose container is damaged or hostile
            yield DocumentReport(None, source, DocumentStatus.FAILED, StageError(
                category=exc.category, stage=Stage.EXTRACT, message=str(exc)))  # fmt: skip
            continue
        with database.session() as session:
            document = repo.register_document(session, project_id, source, sha256, size)
            document_id = document.id
            same_content = document.sha256 == sha256 and document.pipeline_version == PIPELINE_VERSION
            unchanged = same_content and document.status == DocumentStatus.DONE
            # The same bytes fail the same way on DATA errors: report the stored failure, do not re-run.
            known_bad = same_content and document.status == DocumentStatus.FAILED and document.error_category == ErrorCategory.DATA
            stored_error = (
                StageError(category=ErrorCategory.DATA, stage=Stage(document.error_stage or Stage.EXTRACT),
                           message=document.error_message or "")  # fmt: skip
                if known_bad else None
            )
            if not same_content:
                document.sha256, document.size = sha256, size
            busy = repo.busy_elsewhere(session, document)
            if not busy and not ((unchanged or known_bad) and not force):
                repo.reset_for_run(session, [document_id], batch_id=None)
        if busy:
            yield report_for(database, document_id, DocumentStatus.SKIPPED, StageError(
                category=ErrorCategory.RESOURCE, stage=Stage.EXTRACT, message=busy))  # fmt: skip
            continue
        if unchanged and not force:
            yield report_for(database, document_id, DocumentStatus.SKIPPED)
            continue
        if known_bad and not force:
            yield report_for(database, document_id, DocumentStatus.FAILED, stored_error)
            continue
        error: StageError | None = None
        for stage in STAGES:
            outcome = runner.execute(document_id, stage, 1)
            if outcome.status is not AttemptOutcome.DONE:
                error = outcome.error or StageError(
                    category=ErrorCategory.RESOURCE, stage=stage,
                    message=f"another process took over the {stage.value} stage ({outcome.status})")  # fmt: skip
                break
        yield report_for(database, document_id, DocumentStatus.FAILED if error else DocumentStatus.DONE, error)


def process_paths(
    paths: Iterable[Path], project: str, settings: Settings, database: Database, *, force: bool = False
) -> Iterator[DocumentReport]:
    """`process_sources` of the documents in files and folders (archives and e-mails expanded)."""
    sources = [spec.source for spec in expand_paths(paths, settings).documents]
    return process_sources(sources, project, settings, database, force=force)
