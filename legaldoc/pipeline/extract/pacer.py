"""Court records: PACER docket reports (district, bankruptcy, appellate) and CM/ECF notices of
electronic filing, parsed with juriscraper (Free Law Project's PACER parsers) into a court record.

The record is plain JSON kept in the extraction's metadata (`court_record`): the entities stage
turns each of its fields into mentions by finding their spans in the rendered text, and keeps a
field it cannot find as a document fact. juriscraper is a default dependency but optional: without
it, or when it cannot parse a page, there is no record and the rules do all the work.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)

RECORD_KEY = "court_record"
"""Where an extraction's metadata holds the court record."""

_HEAD = 6000
"""Characters of rendered text (from the start) in which a page announces what it is."""
_APPELLATE = re.compile(r"General\s+Docket\b", re.I)
_APPELLATE_COURT = re.compile(r"Court\s+of\s+Appeals|Bankruptcy\s+Appellate\s+Panel", re.I)
_TRIAL_DOCKET = re.compile(
    r"DOCKET\s+FOR\s+CASE\s*#|Bankruptcy\s+Petition\s*#|Adversary\s+Proceeding\s*#|\bDocket\s+Report\b", re.I
)
_NOTICE = re.compile(r"Notice\s+of\s+Electronic\s+Filing|Activity\s+in\s+Case\b|\bNEF\b", re.I)
_ECF_URL = re.compile(r"https?://ecf\.(?P<court>[a-z]{2,5}\d{0,2})\.uscourts\.gov", re.I)
_PACER_TO_COURTLISTENER = {"cofc": "uscfc"}


class ReportKind:
    DOCKET = "docket"
    BANKRUPTCY_DOCKET = "bankruptcy_docket"
    APPELLATE_DOCKET = "appellate_docket"
    NOTICE = "notice"


def _quiet_juriscraper() -> None:
    """juriscraper's logger writes to /var/log or warns on stderr at import; route it nowhere."""
    logger = logging.getLogger("juriscraper.lib.log_tools")
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    logger.propagate = False


def _available() -> bool:
    _quiet_juriscraper()
    try:
        import juriscraper.pacer  # noqa: F401
    except ImportError:
        return False
    return True


def court_hint(rendered: str, raw: str) -> str | None:
    """The court a PACER page or notice comes from: the court named in its header (courts-db id),
    else the CM/ECF host its links point to (`https://ecf.almd.uscourts.gov/...`)."""
    from legaldoc.pipeline.entities.base import MentionSink
    from legaldoc.pipeline.entities.courts import court_mentions

    sink = MentionSink(rendered[:_HEAD])
    court_mentions(sink)
    named = [m for m in sink.mentions if m.extractor == "courts-db"]
    if named:
        return min(named, key=lambda m: m.start).normalized
    hosts = Counter(match["court"].lower() for match in _ECF_URL.finditer(raw))
    if hosts:
        code = hosts.most_common(1)[0][0]
        return _PACER_TO_COURTLISTENER.get(code, code)
    return None


def report_kind(kind: str, rendered: str) -> str | None:
    """Which PACER report a document is, from its rendered text's head; None for anything else."""
    head = rendered[:_HEAD]
    if kind == "email":
        return ReportKind.NOTICE if _NOTICE.search(head) else None
    if kind != "html":
        return None
    if _APPELLATE.search(head) and _APPELLATE_COURT.search(head):
        return ReportKind.APPELLATE_DOCKET
    if _TRIAL_DOCKET.search(head):
        return ReportKind.DOCKET
    return None


def _plain(value: Any) -> Any:
    """juriscraper's values as JSON: dates as ISO strings, containers recursively."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _text(value: Any) -> str:
    return " ".join(str(value).split()) if value else ""


def _parties(parties: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    result = []
    for party in parties or []:
        attorneys = [
            {"name": _text(a.get("name")), "contact": str(a.get("contact") or "").strip(),
             "roles": [_text(r) for r in a.get("roles") or [] if r]}
            for a in party.get("attorneys") or [] if _text(a.get("name"))
        ]  # fmt: skip
        result.append({
            "name": _text(party.get("name")), "type": _text(party.get("type")),
            "date_terminated": _plain(party.get("date_terminated")), "attorneys": attorneys,
        })  # fmt: skip
    return [party for party in result if party["name"]]


def _entries(entries: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"date_filed": _plain(e.get("date_filed")), "document_number": _text(e.get("document_number")) or None}
        for e in entries or []
    ]


def _docket_record(report_kind_: str, court_id: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
    judges = []
    for role, field in (("assigned", "assigned_to_str"), ("referred", "referred_to_str")):
        if _text(data.get(field)):
            judges.append({"name": _text(data.get(field)), "role": role})
    for name in data.get("panel") or []:
        if _text(name):
            judges.append({"name": _text(name), "role": "panel"})
    origin = data.get("originating_court_information") or {}
    record: dict[str, Any] = {
        "report": report_kind_,
        "court_id": court_id,
        "dockets": [{"docket_number": _text(data.get("docket_number")), "case_name": _text(data.get("case_name"))}],
        "judges": judges,
        "parties": _parties(data.get("parties") or []),
        "entries": _entries(data.get("docket_entries") or []),
        "date_filed": _plain(data.get("date_filed")),
        "date_terminated": _plain(data.get("date_terminated")),
        "cause": _text(data.get("cause")) or None,
        "nature_of_suit": _text(data.get("nature_of_suit")) or None,
    }
    if origin:
        record["originating_court"] = {
            "docket_number": _text(origin.get("docket_number")) or None,
            "court_id": _text(origin.get("court_id")) or None,
            "judges": [j for j in (_text(origin.get("assigned_to")), _text(origin.get("ordering_judge"))) if j],
        }
    return record


def _notice_record(court_id: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
    dockets, entries = [], []
    for docket in data.get("dockets") or []:
        dockets.append({"docket_number": _text(docket.get("docket_number")), "case_name": _text(docket.get("case_name"))})
        entries.extend(_entries(docket.get("docket_entries") or []))
    recipients = [
        {"name": _text(r.get("name")), "email_addresses": list(r.get("email_addresses") or [])}
        for r in data.get("email_recipients") or [] if _text(r.get("name"))
    ]  # fmt: skip
    return {"report": ReportKind.NOTICE, "court_id": court_id, "dockets": dockets, "judges": [], "parties": [],
            "entries": entries, "recipients": recipients}  # fmt: skip


def court_record(kind: str, raw: str, rendered: str, source: str) -> dict[str, Any] | None:
    """The court record of a PACER docket report or CM/ECF notice; None for other documents, when
    juriscraper is not installed, or when it cannot parse this one (the rules then do the work)."""
    report = report_kind(kind, rendered)
    if report is None or not _available():
        return None
    court_id = court_hint(rendered, raw)
    try:
        if report == ReportKind.NOTICE:
            from juriscraper.pacer.email import S3NotificationEmail

            notice = S3NotificationEmail(court_id or "unknown")
            notice._parse_text(raw)
            return _notice_record(court_id, notice.data)
        if report == ReportKind.APPELLATE_DOCKET:
            from juriscraper.pacer import AppellateDocketReport

            appellate = AppellateDocketReport(court_id or "unknown")
            appellate._parse_text(raw)
            return _docket_record(report, court_id, appellate.data)
        from juriscraper.pacer import DocketReport

        docket = DocketReport(court_id or "unknown")
        docket._parse_text(raw)
        data = docket.data
        if docket.is_bankruptcy:
            report = ReportKind.BANKRUPTCY_DOCKET
        return _docket_record(report, court_id, data) if data else None
    except Exception as exc:  # a parser failing on one page must not fail the document: the rules remain
        log.info("%s: juriscraper could not parse this %s (%s); using the rules", source, report, type(exc).__name__)
        return None
