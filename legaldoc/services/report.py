"""Use case: a batch's report, for the lead who asks "how did last night go?".

Built from the batch's own records (`batch_documents`: each document's outcome, stage, category,
message and attempts in that batch) and stored in the batch row when the batch settles, so a later
batch reprocessing the same files never rewrites it. A running batch's report is computed live.
Rendered as JSON, Markdown, or one self-contained HTML file (no network).
"""

from __future__ import annotations

import html
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from legaldoc.errors import ADVICE, ErrorCategory
from legaldoc.lifecycle import IN_PROGRESS, BatchStatus, MirrorState
from legaldoc.moments import iso
from legaldoc.services.summary import message_pattern, usage_line
from legaldoc.storage.tables import (
    Batch,
    BatchDocument,
    Document,
    Entity,
    MentionRow,
    Project,
    RelationshipRow,
)
from legaldoc.storage.textract import batch_usage

FAILED_LISTED = 1000
"""Failed documents kept in a stored report (the count is always exact)."""
NEW_ENTITIES_LISTED = 200


def build_report(session: Session, batch: Batch) -> dict[str, Any]:
    """The report of `batch` as it stands (see the module docstring for when it is stored)."""
    project = session.scalar(select(Project.name).where(Project.id == batch.project_id)) or ""
    in_batch = select(BatchDocument.document_id).where(BatchDocument.batch_id == batch.id)
    counts = Counter({str(outcome): n for outcome, n in session.execute(
        select(BatchDocument.outcome, func.count()).where(BatchDocument.batch_id == batch.id).group_by(BatchDocument.outcome))})  # fmt: skip
    finished = batch.finished_at or datetime.now(UTC)
    duration = max((finished - batch.created_at).total_seconds(), 0.0)
    done = sum(counts[s] for s in ("succeeded", "failed", "skipped"))
    failures = session.execute(
        select(BatchDocument.document_id, Document.source,
               func.coalesce(BatchDocument.error_category, Document.error_category),
               func.coalesce(BatchDocument.stage, Document.error_stage), BatchDocument.reason, BatchDocument.attempts)
        .join(Document, Document.id == BatchDocument.document_id)
        .where(BatchDocument.batch_id == batch.id, BatchDocument.outcome == MirrorState.FAILED)
        .order_by(BatchDocument.document_id)
    ).all()  # fmt: skip
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    by_category: Counter[str] = Counter()
    for document_id, source, category, stage, message, _attempts in failures:
        category = category or ErrorCategory.PERMANENT.value
        by_category[category] += 1
        key = (category, stage or "", message_pattern(message or "", source))
        group = groups.setdefault(key, {"category": category, "stage": stage, "message": key[2], "count": 0,
                                        "advice": ADVICE[ErrorCategory(category)], "documents": []})  # fmt: skip
        group["count"] += 1
        if len(group["documents"]) < 5:
            group["documents"].append(document_id)
    succeeded = select(BatchDocument.document_id).where(BatchDocument.batch_id == batch.id,
                                                        BatchDocument.outcome == MirrorState.SUCCEEDED)  # fmt: skip
    mentioned = select(MentionRow.entity_id).where(MentionRow.document_id.in_(succeeded), MentionRow.entity_id.is_not(None))
    new_entities = (
        select(Entity.id, Entity.type, Entity.name)
        .where(Entity.id.in_(mentioned), Entity.created_at >= batch.created_at, Entity.created_at <= finished)
        .order_by(Entity.type, Entity.name)
    )  # fmt: skip
    new_total = session.scalar(select(func.count()).select_from(new_entities.subquery())) or 0
    return {
        "batch_id": batch.id, "name": batch.name, "project": project, "priority": batch.priority,
        "status": batch.status, "manifest": batch.manifest,
        "created_at": iso(batch.created_at), "finished_at": iso(batch.finished_at),
        "duration_seconds": round(duration, 1),
        "documents_per_minute": round(done / duration * 60, 2) if duration > 0 and done else None,
        "counts": {"total": sum(counts.values()), **{s.value: counts[s.value] for s in
                   (MirrorState.SUCCEEDED, MirrorState.FAILED, MirrorState.SKIPPED, MirrorState.CANCELLED)},
                   "unfinished": counts["None"]},  # fmt: skip
        "errors_by_category": dict(sorted(by_category.items())),
        "failure_groups": sorted(groups.values(), key=lambda g: (-g["count"], g["category"], g["message"])),
        "failed_documents": [{"document_id": d, "source": s, "category": c or ErrorCategory.PERMANENT.value,
                              "stage": st, "message": m, "attempts": a} for d, s, c, st, m, a in failures[:FAILED_LISTED]],  # fmt: skip
        "failed_total": len(failures),
        "entities": session.scalar(select(func.count(func.distinct(MentionRow.entity_id))).where(MentionRow.document_id.in_(succeeded))) or 0,
        "mentions": session.scalar(select(func.count()).select_from(MentionRow).where(MentionRow.document_id.in_(succeeded))) or 0,
        "relationships": session.scalar(select(func.count()).select_from(RelationshipRow).where(RelationshipRow.document_id.in_(succeeded))) or 0,
        "new_entities": [{"id": i, "type": t, "name": n} for i, t, n in session.execute(new_entities.limit(NEW_ENTITIES_LISTED))],
        "new_entities_total": new_total,
        "documents_in_batch": session.scalar(select(func.count()).select_from(in_batch.subquery())) or 0,
        "textract": batch_usage(session, batch.id).as_json(),
        "generated_at": iso(datetime.now(UTC)),
    }  # fmt: skip


def batch_report(session: Session, batch: Batch) -> dict[str, Any]:
    """The stored report of a settled batch; a live one for a batch still running (or settled
    before reports were stored)."""
    if BatchStatus(batch.status) not in IN_PROGRESS and batch.report:
        return batch.report
    return build_report(session, batch)


# -- rendering -----------------------------------------------------------------------------------


def render_markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    lines = [
        f"# Batch {report['batch_id']}: {report['name']}",
        "",
        f"Project **{report['project']}**, priority {report['priority']}, status **{report['status']}**.",
        f"Started {report['created_at']}, finished {report['finished_at'] or '-'} "
        f"({report['duration_seconds']:,.0f} s; {report['documents_per_minute'] or '-'} documents/min).",
        "",
        "| documents | succeeded | failed | skipped | cancelled |",
        "|--:|--:|--:|--:|--:|",
        f"| {c['total']} | {c['succeeded']} | {c['failed']} | {c['skipped']} | {c['cancelled']} |",
        "",
        f"Entities mentioned: {report['entities']:,} ({report['mentions']:,} mentions), relationships: "
        f"{report['relationships']:,}; new in this batch: {report['new_entities_total']:,}.",
    ]  # fmt: skip
    for provider, used in (report.get("usage") or {}).items():  # remote providers: calls, tokens, cost
        if provider == "textract" and report.get("textract"):
            continue  # its pages are counted from the stored jobs, below
        lines += ["", f"Remote provider {usage_line(provider, used)}."]
    if (textract := report.get("textract")) and textract["pages"]:
        lines += ["", f"Pages sent to AWS Textract: {textract['pages']:,} in {textract['jobs']:,} jobs, "
                      f"estimated cost ${textract['estimated_cost_usd']:,.2f}."]  # fmt: skip
    if report["failure_groups"]:
        lines += ["", "## Failures", "", "| category | stage | count | message | what to do |", "|---|---|--:|---|---|"]
        for g in report["failure_groups"]:
            lines.append(f"| {g['category']} | {g['stage'] or '-'} | {g['count']} | {_md(g['message'])} | {_md(g['advice'])} |")
        lines += ["", "## Failed documents", "", "| id | source | category | stage | attempts | message |", "|--:|---|---|---|--:|---|"]
        for d in report["failed_documents"]:
            lines.append(f"| {d['document_id']} | {_md(d['source'])} | {d['category']} | {d['stage'] or '-'} | "
                         f"{d['attempts']} | {_md(d['message'] or '')} |")  # fmt: skip
        if report["failed_total"] > len(report["failed_documents"]):
            lines.append(f"\n({report['failed_total'] - len(report['failed_documents'])} more failed documents not listed)")
    if report["new_entities"]:
        lines += ["", "## New entities", ""]
        lines += [f"- {e['type']}: {_md(e['name'])}" for e in report["new_entities"]]
        if report["new_entities_total"] > len(report["new_entities"]):
            lines.append(f"- ... and {report['new_entities_total'] - len(report['new_entities'])} more")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


_COLORS = {"succeeded": "#2e7d32", "skipped": "#90a4ae", "failed": "#c62828", "cancelled": "#f9a825", "unfinished": "#5c6bc0"}


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page: no scripts, fonts or images from anywhere."""
    e = html.escape
    c = report["counts"]
    total = max(c["total"], 1)
    segments = "".join(
        f'<div class="seg" style="width:{c[k] / total * 100:.3f}%;background:{color}" title="{k}: {c[k]}"></div>'
        for k, color in _COLORS.items() if c.get(k)
    )  # fmt: skip
    legend = " ".join(f'<span><i style="background:{color}"></i>{k} {c.get(k, 0)}</span>' for k, color in _COLORS.items())
    rows = "".join(
        f"<tr><td>{e(g['category'])}</td><td>{e(g['stage'] or '-')}</td><td class=n>{g['count']}</td>"
        f"<td>{e(g['message'])}</td><td>{e(g['advice'])}</td></tr>" for g in report["failure_groups"]
    )  # fmt: skip
    failed = "".join(
        f"<tr><td class=n>{d['document_id']}</td><td>{e(d['source'])}</td><td>{e(d['category'])}</td>"
        f"<td>{e(d['stage'] or '-')}</td><td class=n>{d['attempts']}</td><td>{e(d['message'] or '')}</td></tr>"
        for d in report["failed_documents"]
    )  # fmt: skip
    new = "".join(f"<li>{e(n['type'])}: {e(n['name'])}</li>" for n in report["new_entities"])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Batch {e(report['batch_id'])}</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}} td.n{{text-align:right}}
.bar{{display:flex;height:22px;width:100%;max-width:900px;border:1px solid #999}} .seg{{height:100%}}
.legend span{{margin-right:1.2em}} .legend i{{display:inline-block;width:10px;height:10px;margin-right:4px}}
</style></head><body>
<h1>Batch {e(report['batch_id'])}: {e(report['name'])}</h1>
<p>Project <b>{e(report['project'])}</b>, priority {report['priority']}, status <b>{e(report['status'])}</b>.
Started {e(report['created_at'] or '-')}, finished {e(report['finished_at'] or '-')}
({report['duration_seconds']:,.0f} s; {report['documents_per_minute'] or '-'} documents/min).</p>
<div class="bar">{segments}</div><p class="legend">{legend} (of {c['total']})</p>
<p>Entities mentioned: {report['entities']:,} ({report['mentions']:,} mentions); relationships: {report['relationships']:,};
new in this batch: {report['new_entities_total']:,}.</p>
<h2>Failures</h2>
{f'<table><tr><th>category</th><th>stage</th><th>count</th><th>message</th><th>what to do</th></tr>{rows}</table>' if rows else '<p>None.</p>'}
{f'<h2>Failed documents</h2><table><tr><th>id</th><th>source</th><th>category</th><th>stage</th><th>attempts</th><th>message</th></tr>{failed}</table>' if failed else ''}
{f'<h2>New entities</h2><ul>{new}</ul>' if new else ''}
<p><small>legaldoc report, generated {e(report['generated_at'])}</small></p>
</body></html>
"""
