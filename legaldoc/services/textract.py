"""Use case: OCR through AWS Textract without blocking a worker, resumable after a crash.

The extract stage calls `RemoteOcr.extract`. For a PDF it sends only the pages that fail the local
text check (cut into one PDF, uploaded under the sha256 of its bytes, skipped when already there),
starts `StartDocumentTextDetection` with that sha256 as the ClientRequestToken and stores the job id
in `textract_jobs` before it returns a `Defer`: the stage runner releases the claim (the document
waits at the same attempt) and publishes a poll task with a countdown. `poll` asks Textract once; a
running job gets the next poll with a longer countdown, a finished one gets the extract stage
published again, which reads every result page through NextToken and assembles the document text
with its page map. A killed worker loses nothing: the stage that runs again finds the job row and
polls the same job. Each job has a deadline per attempt: past it, the stage fails as TRANSIENT
(retried), and at the last attempt as RESOURCE.

One-page PNG/JPEG images under 10 MB use the synchronous `DetectDocumentText`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import redis

from legaldoc.config import Settings
from legaldoc.errors import (
    RETRY_POLICIES,
    ConfigurationError,
    DataError,
    ErrorCategory,
    PreflightError,
    StageTimeout,
    TransientError,
)
from legaldoc.lifecycle import JOB_FINISHED, WAITING, RemoteJobStatus
from legaldoc.models import ExtractedDocument, Stage
from legaldoc.paths import is_remote, split_container
from legaldoc.pipeline.extract import extract, sniff_kind
from legaldoc.pipeline.extract.ocr import OcrProvider
from legaldoc.pipeline.extract.textract import (
    METHOD,
    SYNC_MAX_BYTES,
    OcrMode,
    TextractClient,
    aws_session,
    check_job_limits,
    cut_pdf,
    ocr_mode,
    page_results,
    plan_pdf,
)
from legaldoc.pipeline.extract.textutil import assemble
from legaldoc.queues import DEFAULT_PRIORITY, TEXTRACT_POLL_TASK, Queue
from legaldoc.state.broker import Broker, Message
from legaldoc.storage import claims
from legaldoc.storage import textract as jobs
from legaldoc.storage.db import Database
from legaldoc.storage.tables import Batch, Document

log = logging.getLogger("legaldoc.textract")

_GUARDS: dict[tuple[int, str, str], Any] = {}


def guarded_call(settings: Settings, name: str = "textract") -> Any:
    """The call of every request to AWS (``textract``, ``s3``): through that provider's shared rate
    limit and circuit breaker (one guard per process)."""
    from legaldoc.services.guard import ProviderGuard

    key = (os.getpid(), name, settings.ratelimit_url or settings.redis_url)

    def call(function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            guard = _GUARDS.get(key)
            if guard is None:
                limit = settings.textract_rate_limit if name == "textract" else settings.provider_rate_limit
                guard = _GUARDS[key] = ProviderGuard(name, settings, limit=limit)
            return guard.call(function, *args, **kwargs)
        except redis.ConnectionError:  # a lone `legaldoc process` without Redis: nobody to share limits with
            log.debug("%s: no Redis for the shared limits; calling directly", name)
            return function(*args, **kwargs)

    return call


def poll_delay(settings: Settings, poll: int) -> float:
    """Seconds before poll number `poll` (1, 2, ...): longer each time, never more than a lease, so
    the sweeper does not take a polled document for one whose message was lost."""
    delay = settings.textract_poll_interval * 1.5 ** max(0, poll - 1)
    return min(delay, settings.textract_poll_max_interval, settings.claim_lease)


@dataclass(frozen=True)
class Defer:
    """A remote job runs: the stage gives its worker back; poll number `poll` follows after `delay`."""

    poll: int
    delay: float

    def publish(self, broker: Broker, document_id: int, attempt: int, priority: int) -> None:
        publish_poll(broker, document_id, attempt, self.poll, priority, self.delay)


def publish_poll(broker: Broker, document_id: int, attempt: int, poll: int, priority: int, delay: float) -> None:
    stamp = (broker.database(),) if broker.database else ()
    eta = datetime.now(UTC) + timedelta(seconds=delay)
    broker.publish([Message(TEXTRACT_POLL_TASK, (document_id, attempt, poll, *stamp), Queue.OCR, priority, eta)])


@dataclass(frozen=True)
class _Job:
    row: int
    job_id: str
    status: RemoteJobStatus
    pages: list[int]
    deadline_at: datetime


class RemoteOcr:
    """Textract for the pages (or images) that need OCR; the local provider for the rest."""

    def __init__(self, settings: Settings, database: Database, local: OcrProvider | None,
                 on_pages: Callable[[str | None, int, float], None] | None = None) -> None:  # fmt: skip
        self.settings = settings
        self.database = database
        self.local = local
        self.client = TextractClient(settings, call=self._call)
        self.on_pages = on_pages
        """Told (batch id, pages, estimated cost) each time pages are sent: the batch's live usage."""

    def _sent(self, batch_id: str | None, pages: int) -> None:
        if self.on_pages is not None:
            self.on_pages(batch_id, pages, pages * self.settings.textract_price_per_page)

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        return guarded_call(self.settings)(function, *args, **kwargs)

    def extract(self, document_id: int, batch_id: str | None, attempt: int, data: bytes, source: str,
                mode: OcrMode) -> ExtractedDocument | Defer:  # fmt: skip
        kind = sniff_kind(data, source)
        if kind == "image":
            return self._image(document_id, batch_id, attempt, data, source)
        if kind != "pdf":
            return extract(data, source, self.settings, self.local)
        try:
            pages, count = plan_pdf(data, self.settings, mode)
        except Exception:  # not a readable PDF: extraction says why
            return extract(data, source, self.settings, self.local)
        if not pages:
            return extract(data, source, self.settings, self.local)
        if count > self.settings.max_pages:
            return extract(data, source, self.settings, self.local)  # raises DocumentTooLarge
        # More pages than one job takes go as several jobs, one after the other: each is started when
        # the one before it has finished (a document waits on one job at a time).
        size = self.settings.textract_pages_per_job
        groups = [pages[i : i + size] for i in range(0, len(pages), size)]
        source_digest = hashlib.sha256(data).hexdigest().encode()
        given: dict[int, tuple[str, str]] = {}
        confidences: list[float | None] = []
        done: list[_Job] = []
        for group in groups:
            whole = len(group) == count
            body = data if whole else cut_pdf(data, group)
            check_job_limits(len(body), len(group), source)
            in_place = source if whole and is_remote(source) and split_container(source) is None else None
            sha256 = hashlib.sha256(b"%s:%s" % (source_digest, repr(group).encode())).hexdigest()
            result = self._job(document_id, batch_id, attempt, body, sha256, group, source, in_place, "application/pdf")
            if isinstance(result, Defer):
                return result
            job, blocks = result
            read = page_results(blocks, len(job.pages))
            given.update({page: (r.text, METHOD) for page, r in zip(job.pages, read, strict=True)})
            confidences += [r.confidence for r in read]
            done.append(job)
        document = extract(data, source, self.settings, self.local, given=given)
        return _with_confidence(document, done, confidences)

    def _image(self, document_id: int, batch_id: str | None, attempt: int, data: bytes,
               source: str) -> ExtractedDocument | Defer:  # fmt: skip
        from PIL import Image, ImageSequence

        try:
            image = Image.open(io.BytesIO(data))
            frames, image_format = sum(1 for _ in ImageSequence.Iterator(image)), image.format
        except Exception:  # not a readable image: extraction says why
            return extract(data, source, self.settings, self.local)
        metadata = {"format": image_format, "frames": frames}
        if frames == 1 and image_format in ("PNG", "JPEG") and len(data) <= SYNC_MAX_BYTES:
            blocks = self.client.detect(data, source)
            read = page_results(blocks, 1)
            sha256 = hashlib.sha256(data).hexdigest()
            with self.database.session() as session:
                if jobs.find_job(session, document_id, sha256) is None:  # counted like a job's pages
                    row = jobs.record_job(session, document_id, batch_id, sha256, "", "", "sync", [0], 0,
                                          self.settings.textract_price_per_page)  # fmt: skip
                    jobs.finish_job(session, row.id, RemoteJobStatus.SUCCEEDED)
                    self._sent(batch_id, 1)
            document = assemble("image", [(read[0].text, True, METHOD)], metadata)
            job = _Job(0, "sync", RemoteJobStatus.SUCCEEDED, [0], datetime.now(UTC))
        else:
            content_type = "image/tiff" if image_format == "TIFF" else "application/octet-stream"
            check_job_limits(len(data), frames, source)
            in_place = source if is_remote(source) and split_container(source) is None else None
            sha256 = hashlib.sha256(data).hexdigest()
            result = self._job(document_id, batch_id, attempt, data, sha256, list(range(frames)), source, in_place,
                               content_type)  # fmt: skip
            if isinstance(result, Defer):
                return result
            job, blocks = result
            read = page_results(blocks, frames)
            document = assemble("image", [(r.text, True, METHOD) for r in read], metadata)
        if not document.text.strip():
            raise DataError(f"{source} has no text (not even after OCR)", hint="check that the file is not blank")
        return _with_confidence(document, [job], [r.confidence for r in read])

    def _job(self, document_id: int, batch_id: str | None, attempt: int, body: bytes, sha256: str, pages: list[int],
             source: str, in_place: str | None, content_type: str,
             expired: str | None = None) -> tuple[_Job, list[dict[str, Any]]] | Defer:  # fmt: skip
        """The job for these bytes, named by `sha256` (of the source's bytes and the pages sent: a cut
        PDF's own bytes differ each time it is cut): uploaded under it, started with it as the
        ClientRequestToken, its id kept; then polled until it is done; its blocks once it is."""
        with self.database.read() as session:
            row = jobs.find_job(session, document_id, sha256)
            job = _Job(row.id, row.job_id, RemoteJobStatus(row.status), list(row.pages), row.deadline_at) if row else None
        if job is None:
            bucket, key = self._location(sha256, in_place)
            if in_place is None:
                uploaded = self.client.upload(bucket, key, body, content_type)
                log.info("%s: %d page(s) %s s3://%s/%s", source, len(pages), "uploaded to" if uploaded else "already at",
                         bucket, key)  # fmt: skip
            token = sha256 if expired is None else hashlib.sha256(f"{sha256}:{expired}".encode()).hexdigest()
            job_id = self.client.start(bucket, key, token)  # the same token returns the same job
            with self.database.session() as session:
                row = jobs.record_job(session, document_id, batch_id, sha256, bucket, key, job_id, pages,
                                      self.settings.textract_job_timeout, self.settings.textract_price_per_page)  # fmt: skip
                poll = jobs.bump_polls(session, row.id)
            log.info("%s: Textract job %s started for %d page(s)", source, job_id, len(pages))
            self._sent(batch_id, len(pages))
            return Defer(poll, poll_delay(self.settings, poll))
        status = job.status
        if status not in JOB_FINISHED:
            status, message = self.client.status(job.job_id)
            if status is RemoteJobStatus.FAILED:
                with self.database.session() as session:
                    jobs.finish_job(session, job.row, status)
                raise DataError(f"{source}: Textract job {job.job_id} failed ({message or 'no reason given'})",
                                hint="check the file opens; or process it with ocr: local")  # fmt: skip
            if status is RemoteJobStatus.IN_PROGRESS:
                return self._still_running(job, attempt, source)
        try:
            blocks = self.client.blocks(job.job_id)
        except Exception as exc:
            if _error_code(exc) != "InvalidJobIdException" or expired is not None:
                raise
            # Textract keeps a job's results for days, not for ever: a later run starts a new job
            log.info("%s: Textract job %s is gone; starting a new one", source, job.job_id)
            with self.database.session() as session:
                jobs.forget_job(session, job.row)
            return self._job(document_id, batch_id, attempt, body, sha256, pages, source, in_place, content_type,
                             expired=job.job_id)  # fmt: skip
        with self.database.session() as session:
            jobs.finish_job(session, job.row, status)
        return job, blocks

    def _still_running(self, job: _Job, attempt: int, source: str) -> Defer:
        if datetime.now(UTC) > job.deadline_at:
            with self.database.session() as session:
                jobs.extend_deadline(session, job.row, self.settings.textract_job_timeout)  # the next attempt's
            what = f"{source}: Textract job {job.job_id} still runs after {self.settings.textract_job_timeout:.0f}s"
            last = attempt >= RETRY_POLICIES[ErrorCategory.TRANSIENT].max_attempts(self.settings.max_attempts)
            if last:
                raise StageTimeout(what, hint="raise LEGALDOC_TEXTRACT_JOB_TIMEOUT, or `legaldoc recover` to wait again")
            raise TransientError(what)
        with self.database.session() as session:
            poll = jobs.bump_polls(session, job.row)
        return Defer(poll, poll_delay(self.settings, poll))

    def _location(self, sha256: str, in_place: str | None) -> tuple[str, str]:
        if in_place is not None:
            bucket, _, key = in_place.removeprefix("s3://").partition("/")
            return bucket, key
        if not self.settings.textract_bucket:
            raise ConfigurationError("Textract is selected but no bucket is set for the pages it reads",
                                     hint="set LEGALDOC_TEXTRACT_BUCKET (a bucket in AWS_REGION)")  # fmt: skip
        return self.settings.textract_bucket, f"{self.settings.textract_prefix}{sha256}"


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


def _with_confidence(document: ExtractedDocument, done: list[_Job], confidences: list[float | None]) -> ExtractedDocument:
    """The document with Textract's jobs and each page's mean line confidence in its metadata."""
    numbers = [page + 1 for job in done for page in job.pages]
    ids: dict[str, Any] = {"job_id": done[0].job_id} if len(done) == 1 else {"job_ids": [job.job_id for job in done]}
    metadata = {**document.metadata, "textract": {**ids, "pages": numbers},
                "ocr_confidence": {str(n): c for n, c in zip(numbers, confidences, strict=True) if c is not None}}  # fmt: skip
    return document.model_copy(update={"metadata": metadata})


def batch_usage(database: Database, batch_id: str) -> jobs.Usage:
    """Pages a batch sent to Textract and their estimated cost (`status`, the report)."""
    with database.read() as session:
        return jobs.batch_usage(session, batch_id)


def preflight(settings: Settings, option: str | None) -> None:
    """At submit: Textract selected (by the settings or the manifest) without a bucket, the SDK,
    credentials or a region is refused with the fix. Local OCR checks and says nothing, whatever
    AWS keys are set: nothing leaves the machine unless asked."""
    mode = ocr_mode(option, settings)
    if mode is OcrMode.LOCAL:
        return
    what = f"ocr: {mode.value} sends scanned pages to AWS Textract"
    if not settings.textract_bucket:
        raise PreflightError(f"{what} but no bucket is set for them",
                             hint="set LEGALDOC_TEXTRACT_BUCKET to an S3 bucket in AWS_REGION, or use ocr: local")  # fmt: skip
    try:
        session = aws_session()
        credentials = session.get_credentials()
    except ImportError:
        raise PreflightError(f"{what} but boto3 is not installed", hint="pip install 'legaldoc[aws]'") from None
    except Exception as exc:  # a profile that does not exist, a config file that does not parse
        raise PreflightError(f"{what} but the AWS settings cannot be read: {exc}",
                             hint="check AWS_PROFILE and the files in ~/.aws") from None  # fmt: skip
    if credentials is None:
        raise PreflightError(f"{what} but no AWS credentials were found",
                             hint="set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use ocr: local")  # fmt: skip
    if not session.region_name:
        raise PreflightError(f"{what} but no AWS region is set", hint="set AWS_REGION to the region of the bucket")


class PollOutcome(StrEnum):
    """What one poll did."""

    WAITING = "waiting"  # the job still runs: the next poll is queued
    READY = "ready"  # the job ended (or could not be asked): the extract stage is queued again
    STALE = "stale"  # the document or job moved on (another poll, a new attempt, a cancel): nothing


def poll(settings: Settings, database: Database, broker: Broker, document_id: int, attempt: int,
         number: int) -> PollOutcome:  # fmt: skip
    """Poll number `number` of the Textract job of a document waiting at `attempt` of extraction."""
    with database.read() as session:
        document = session.get(Document, document_id)
        row = jobs.latest_job(session, document_id)
        if (document is None or row is None or document.status not in WAITING or document.stage != Stage.EXTRACT
                or document.attempts != attempt or row.polls != number):  # fmt: skip
            return PollOutcome.STALE
        batch = session.get(Batch, document.batch_id) if document.batch_id else None
        priority = batch.priority if batch else DEFAULT_PRIORITY
        job_id, deadline_at = row.job_id, row.deadline_at
        row_id = row.id
    status: RemoteJobStatus | None
    try:
        status, _ = TextractClient(settings, call=guarded_call(settings)).status(job_id)
    except Exception as exc:  # the stage asks again and reports what is wrong
        log.info("document %s: polling Textract job %s failed: %s", document_id, job_id, exc)
        status = None
    if status is RemoteJobStatus.IN_PROGRESS and datetime.now(UTC) <= deadline_at:
        with database.session() as session:
            if not jobs.next_poll(session, row_id, number):
                return PollOutcome.STALE
            claims.touch(session, [document_id])
        publish_poll(broker, document_id, attempt, number + 1, priority, poll_delay(settings, number + 1))
        return PollOutcome.WAITING
    broker.publish_stage([(document_id, Stage.EXTRACT, attempt)], priority)
    return PollOutcome.READY
