"""Use cases of the result cache: content-addressed extraction results, entity indexes, warm, clear.

Extraction results are keyed by the *extract key*: a hash of the file's sha256, the pipeline
version and every setting extraction depends on (OCR provider, language, resolution,
thresholds). The same bytes under the same settings give the same text, so any project may reuse
them: first from Redis (inline when small, else a reference to the document row holding them),
then from the database (any document stored with that extract key), and only then by running
extraction and OCR again.

The Redis side is optional: without it (``legaldoc process``) the database lookup still applies.
Every cache failure is logged and ignored; the database is the truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from legaldoc import PIPELINE_VERSION
from legaldoc.config import Settings
from legaldoc.errors import UsageError
from legaldoc.models import CanonicalEntity, EntityType, ExtractedDocument
from legaldoc.pipeline.extract.lines import RUN_TO_TESSERACT
from legaldoc.pipeline.extract.ocr import resolved_engine
from legaldoc.pipeline.extract.tesseract_api import ENGINE_VARIABLES
from legaldoc.services.wiring import Runtime
from legaldoc.state.cache import ENTITIES, EXTRACT, ResultCache
from legaldoc.state.roundtrip import RoundTrip
from legaldoc.storage import repository as repo
from legaldoc.storage.db import Database
from legaldoc.storage.tables import BatchDocument, Document

log = logging.getLogger("legaldoc.cache")

EntityIndex = dict[EntityType, dict[str, CanonicalEntity]]
HELD_PROJECTS = 8  # entity indexes a stage process keeps, most recently used


def extraction_fingerprint(settings: Settings) -> str:
    """Everything besides the bytes that the text of an extraction depends on. The pixel budget
    counts only when changed, so the keys of extractions made before it existed stay valid."""
    budget = {} if settings.ocr_max_pixels == Settings.model_fields["ocr_max_pixels"].default else {"max_pixels": settings.ocr_max_pixels}
    engine = resolved_engine(settings)
    # The in-process engine's own variables and the ink-run shortcut to the small-text dpi change what it reads.
    tuning = {"tesserocr": {**ENGINE_VARIABLES, "ink_runs": RUN_TO_TESSERACT}} if engine == "tesserocr" else {}
    return json.dumps({
        "pipeline": PIPELINE_VERSION, "ocr": settings.ocr_provider, "lang": settings.tesseract_lang,
        "dpi": settings.ocr_dpi, "min_chars": settings.ocr_min_chars, "coverage": settings.ocr_image_coverage, **budget,
        "engine": engine, "small_text": [settings.ocr_small_text_dpi, settings.ocr_small_text_px], **tuning,
    }, sort_keys=True)  # fmt: skip


def extract_key(settings: Settings, sha256: str) -> str:
    return hashlib.sha256(f"{extraction_fingerprint(settings)}\n{sha256}".encode()).hexdigest()


# -- encodings ------------------------------------------------------------------------------------


def encode_extraction(extracted: ExtractedDocument) -> bytes:
    return extracted.model_dump_json().encode()


def encode_index(entities: Mapping[str, CanonicalEntity]) -> bytes:
    return json.dumps({key: [e.name, e.aliases] for key, e in entities.items()}, ensure_ascii=False,
                      separators=(",", ":")).encode()  # fmt: skip


def decode_index(entity_type: EntityType, blob: bytes) -> dict[str, CanonicalEntity]:
    build = CanonicalEntity.model_construct  # the blob was written from validated entities
    return {key: build(type=entity_type, key=key, name=name, aliases=aliases)
            for key, (name, aliases) in json.loads(blob).items()}  # fmt: skip


# -- what the stages use --------------------------------------------------------------------------


@dataclass(frozen=True)
class CachedExtraction:
    extracted: ExtractedDocument
    source: str  # "redis" or "database"


class StageCache:
    """The cache as the stage runner sees it; `redis` None means database lookups only."""

    def __init__(self, settings: Settings, database: Database, redis_cache: ResultCache | None) -> None:
        self.settings = settings
        self.database = database
        self.redis = redis_cache
        # The stage's round trip (`state.roundtrip`), set by the stage runner: writes and counters
        # ride in it to the stage's end; a read sends what it holds. None: each goes on its own.
        self.trip: RoundTrip | None = None
        self._on_commit: list[Callable[[RoundTrip | None], None]] = []  # writes waiting for their transaction
        # The entity indexes this process last read or wrote, per project: (generation, type blobs).
        # Valid exactly when the database's generation, read under the project's lock, is the same
        # (generations are random, never reused); saves the Redis read and the database load.
        self._held: dict[int, tuple[int, dict[str, bytes]]] = {}

    def begin(self, trip: RoundTrip | None) -> None:
        """A new stage: its round trip; writes an earlier stage left uncommitted are dropped."""
        self.trip = trip
        self._on_commit.clear()

    def committed(self) -> None:
        """The stage's transaction committed: its index writes join the round trip."""
        waiting, self._on_commit = self._on_commit, []
        for write in waiting:
            write(self.trip)

    # extraction

    def extraction(self, key: str, sha256: str) -> CachedExtraction | None:
        if self.redis is not None:
            try:
                value = self.redis.get_extraction(key, self.trip)
            except Exception:
                log.warning("extraction cache unavailable", exc_info=True)
                value = None
            if value is not None:
                found = self._decode_extraction(value, key)
                if found is not None:
                    return CachedExtraction(found, "redis")
        with self.database.read() as session:
            document_id = repo.find_extraction(session, sha256, key)
            if document_id is None:
                return None
            extracted = repo.load_extracted(session, document_id, user_metadata=False)
        self._record(EXTRACT, database_hits=1)
        self.remember_extraction(document_id, key, extracted)
        return CachedExtraction(extracted, "database")

    def _decode_extraction(self, value: bytes, key: str) -> ExtractedDocument | None:
        data = json.loads(value)
        if "ref" not in data:
            return ExtractedDocument.model_validate(data)
        with self.database.read() as session:
            document = session.get(Document, int(data["ref"]))
            if document is None or document.extract_key != key:
                return None  # the row changed since; fall back to the database lookup
            return repo.load_extracted(session, document.id, user_metadata=False)

    def remember_extraction(self, document_id: int, key: str, extracted: ExtractedDocument) -> None:
        """After the extraction is committed: inline when small, else by reference to its row."""
        if self.redis is None:
            return
        value = encode_extraction(extracted)
        if len(value) > self.settings.cache_inline_max_kb * 1024:
            value = json.dumps({"ref": document_id}).encode()
        try:
            self.redis.put_extractions({key: value}, self.trip)
        except Exception:
            log.warning("could not cache the extraction of document %s", document_id, exc_info=True)

    def _record(self, namespace: str, **counts: int) -> None:
        if self.redis is not None:
            try:
                self.redis.record(namespace, self.trip, **counts)
            except Exception:
                log.debug("cache counters unavailable", exc_info=True)

    # entity indexes (called inside the transaction that holds the project's lock)

    def entity_index(self, session: Session, project_id: int, types: Iterable[EntityType]) -> tuple[EntityIndex, int]:
        """The project's index of these types, from the cache where it is current, and the
        generation it is at."""
        wanted = sorted(set(types), key=lambda t: t.value)
        generation = repo.entity_generation(session, project_id)
        index: EntityIndex = {}
        held = self._held.get(project_id)
        blobs = held[1] if held is not None and held[0] == generation else {}
        if wanted and all(t.value in blobs for t in wanted):  # this process holds it: no round trip
            self._record(ENTITIES, hits=1)
        elif self.redis is not None and wanted:
            try:
                blobs = self.redis.get_index(project_id, generation, [t.value for t in wanted], self.trip)
            except Exception:
                log.warning("entity-index cache unavailable", exc_info=True)
                blobs = {}
            self._hold(project_id, generation, blobs)
        for entity_type in wanted:
            if entity_type.value in blobs:
                index[entity_type] = decode_index(entity_type, blobs[entity_type.value])
        missing = [t for t in wanted if t not in index]
        if missing:
            loaded = repo.load_entity_index(session, project_id, missing)
            for entity_type in missing:
                index[entity_type] = loaded.get(entity_type, {})
            self._hold(project_id, generation, {t.value: encode_index(index[t]) for t in missing})
        return index, generation

    def _hold(self, project_id: int, generation: int, blobs: Mapping[str, bytes]) -> None:
        """Keep these blobs of the project's index at `generation` (joining what is held at it)."""
        if not blobs:
            return
        held = self._held.pop(project_id, None)
        kept = held[1] if held is not None and held[0] == generation else {}
        self._held[project_id] = (generation, {**kept, **blobs})  # most recent last
        while len(self._held) > HELD_PROJECTS:
            del self._held[next(iter(self._held))]

    def entity_index_changed(self, session: Session, project_id: int, base: int, index: EntityIndex) -> None:
        """Give the project a new generation (under the project's lock), and write the changed
        types' index through to the cache once the transaction commits (a rollback writes nothing);
        the other types stay valid in the cache when it was at `base`."""
        generation = repo.bump_entity_generation(session, project_id, base)
        blobs = {t.value: encode_index(entities) for t, entities in index.items()}

        def hold(_: RoundTrip | None) -> None:  # once committed: a rolled-back generation is never held
            held = self._held.pop(project_id, None)
            kept = held[1] if held is not None and held[0] == base else {}  # the other types, valid at base
            self._hold(project_id, generation, {**kept, **blobs})

        self._on_commit.append(hold)
        cache = self.redis
        if cache is None:
            return

        def write(trip: RoundTrip | None) -> None:
            if trip is not None:
                trip.prompt = True  # other processes resolving this project read it: not held for a chained stage
            try:
                cache.put_index(project_id, base, generation, blobs, trip=trip)
            except Exception:
                log.warning("could not cache the entity index of project %s", project_id, exc_info=True)

        if self.trip is None:
            write(None)  # no stage round trip: written at once, under the lock
        else:
            self._on_commit.append(write)


# -- operator commands ----------------------------------------------------------------------------


@dataclass
class WarmReport:
    project: str
    entity_types: int = 0
    entities: int = 0
    documents: int = 0
    extractions_inline: int = 0
    extractions_by_reference: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        return asdict(self) | {"seconds": round(self.seconds, 3)}


def _project_id(session: Session, name: str) -> int:
    return repo.require_project(session, name).id


def _extracted_documents(session: Session, project_id: int, batch_id: str | None) -> list[tuple[int, str]]:
    query = select(Document.id, Document.extract_key).where(Document.project_id == project_id,
                                                             Document.extract_key.is_not(None))  # fmt: skip
    if batch_id is not None:
        query = query.join(BatchDocument, BatchDocument.document_id == Document.id).where(BatchDocument.batch_id == batch_id)
    return [(i, k) for i, k in session.execute(query.order_by(Document.id)).all() if k]


def warm_project(rt: Runtime, project: str, *, batch_id: str | None = None,
                 progress: Callable[[int, int], None] | None = None) -> WarmReport:  # fmt: skip
    """Preload what resolution and the next batch read: the project's entity index (every type,
    written under the project's lock at the current generation) and its documents' extraction
    results (with their page maps and document metadata; large ones by reference)."""
    started = time.monotonic()
    report = WarmReport(project)
    database, cache, inline_max = rt.database, rt.cache, rt.settings.cache_inline_max_kb * 1024
    with database.session() as session:
        project_id = _project_id(session, project)
        if batch_id is not None and not session.scalar(
            select(BatchDocument.document_id).where(BatchDocument.batch_id == batch_id).limit(1)
        ):
            raise UsageError(f"batch {batch_id} has no documents", hint="`legaldoc status` lists batches")
        repo.lock_project(session, project_id)
        generation = repo.entity_generation(session, project_id)
        index = repo.load_entity_index(session, project_id, list(EntityType))
        cache.put_index(project_id, None, generation,
                        {t.value: encode_index(index.get(t, {})) for t in EntityType}, replace=True)  # fmt: skip
        report.entity_types = len(EntityType)
        report.entities = sum(len(v) for v in index.values())
    with database.read() as session:
        documents = _extracted_documents(session, project_id, batch_id)
    report.documents = len(documents)
    seen: set[str] = set()
    for offset in range(0, len(documents), 100):
        values: dict[str, bytes] = {}
        with database.read() as session:
            for document_id, key in documents[offset : offset + 100]:
                if key in seen:
                    continue
                seen.add(key)
                value = encode_extraction(repo.load_extracted(session, document_id, user_metadata=False))
                if len(value) > inline_max:
                    value = json.dumps({"ref": document_id}).encode()
                    report.extractions_by_reference += 1
                else:
                    report.extractions_inline += 1
                values[key] = value
        cache.put_extractions(values)
        if progress:
            progress(min(offset + 100, len(documents)), len(documents))
    report.seconds = time.monotonic() - started
    return report


def clear_cache(rt: Runtime, project: str | None) -> int:
    """Remove every cache key, or only a project's entity index and its documents' extraction
    results (shared by content, so another project holding the same bytes loses them too)."""
    if project is None:
        return rt.cache.clear()
    with rt.database.read() as session:
        project_id = _project_id(session, project)
        keys = [k for _, k in _extracted_documents(session, project_id, None)]
    return rt.cache.forget_index(project_id) + rt.cache.forget_extractions(set(keys))
