"""Textract jobs in the database: found by document and content, started once, polled by number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from legaldoc.lifecycle import RemoteJobStatus
from legaldoc.storage.tables import TextractJob


def find_job(session: Session, document_id: int, sha256: str) -> TextractJob | None:
    return session.scalars(
        select(TextractJob).where(TextractJob.document_id == document_id, TextractJob.sha256 == sha256)
    ).one_or_none()


def latest_job(session: Session, document_id: int) -> TextractJob | None:
    return session.scalars(
        select(TextractJob).where(TextractJob.document_id == document_id).order_by(TextractJob.id.desc()).limit(1)
    ).one_or_none()


def record_job(session: Session, document_id: int, batch_id: str | None, sha256: str, bucket: str, key: str,
               job_id: str, pages: list[int], timeout: float, price_per_page: float) -> TextractJob:  # fmt: skip
    job = TextractJob(document_id=document_id, batch_id=batch_id, sha256=sha256, bucket=bucket, key=key, job_id=job_id,
                      pages=pages, status=RemoteJobStatus.IN_PROGRESS, polls=0, cost_usd=len(pages) * price_per_page,
                      deadline_at=datetime.now(UTC) + timedelta(seconds=timeout))  # fmt: skip
    session.add(job)
    session.flush()
    return job


def bump_polls(session: Session, job_id: int) -> int:
    """A new poll chain (a stage run deferred): earlier poll messages become stale. Its number."""
    session.execute(update(TextractJob).where(TextractJob.id == job_id).values(polls=TextractJob.polls + 1))
    return int(session.scalar(select(TextractJob.polls).where(TextractJob.id == job_id)) or 0)


def next_poll(session: Session, job_id: int, polls: int) -> bool:
    """Take poll number `polls + 1`; False when another poll (or stage run) already moved on."""
    result = session.execute(
        update(TextractJob).where(TextractJob.id == job_id, TextractJob.polls == polls).values(polls=polls + 1)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]


def extend_deadline(session: Session, job_id: int, timeout: float) -> None:
    session.execute(update(TextractJob).where(TextractJob.id == job_id)
                    .values(deadline_at=datetime.now(UTC) + timedelta(seconds=timeout)))  # fmt: skip


def forget_job(session: Session, job_id: int) -> None:
    """A job whose results Textract no longer keeps: a new one replaces it."""
    session.execute(delete(TextractJob).where(TextractJob.id == job_id))


def finish_job(session: Session, job_id: int, status: RemoteJobStatus) -> None:
    session.execute(update(TextractJob).where(TextractJob.id == job_id)
                    .values(status=status, finished_at=datetime.now(UTC)))  # fmt: skip


@dataclass(frozen=True)
class Usage:
    """What a batch sent to Textract: jobs started, pages sent, and their estimated cost."""

    jobs: int = 0
    pages: int = 0
    cost: float = 0.0

    def as_json(self) -> dict[str, float | int]:
        return {"jobs": self.jobs, "pages": self.pages, "estimated_cost_usd": round(self.cost, 4)}


def batch_usage(session: Session, batch_id: str) -> Usage:
    """What the batch sent to Textract (the jobs it started; a resumed job is not counted twice)."""
    rows = session.execute(select(TextractJob.pages, TextractJob.cost_usd).where(TextractJob.batch_id == batch_id)).all()
    return Usage(len(rows), sum(len(pages or []) for pages, _ in rows), sum(cost or 0.0 for _, cost in rows))

