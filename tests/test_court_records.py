"""Court records: PACER docket reports and CM/ECF notices parsed with juriscraper, their fields as
mentions with exact offsets, the rules as the fallback, and the court, judge and mbox rules around them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from legaldoc.config import load_settings
from legaldoc.models import EntityType, RelationType
from legaldoc.pipeline.entities import LocalEntityProvider
from legaldoc.pipeline.entities.base import MentionSink
from legaldoc.pipeline.entities.records import case_name_spans, record_mentions, side_of
from legaldoc.pipeline.extract import RECORD_KEY, extract, sniff_kind
from legaldoc.pipeline.extract.pacer import report_kind
from tests.conftest import CORPUS, NEF, REPO

DOCKETS = CORPUS / "dockets"
PAGES = sorted(DOCKETS.glob("*/*.html"))


def _fold(text: str | None) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", (text or "").lower()).split())


def _visible(name: str, text: str) -> bool:
    return bool(name.strip()) and _fold(name) in _fold(text)


@pytest.fixture(scope="module")
def parsed() -> dict[Path, tuple]:
    settings = load_settings()
    result = {}
    for path in [*PAGES, *sorted(NEF.glob("*.txt"))]:
        document = extract(path.read_bytes(), path.name, settings)
        record = document.metadata.get(RECORD_KEY)
        result[path] = (document, record, LocalEntityProvider().extract(document.text, record))
    return result


def test_every_docket_report_has_a_record_and_every_mention_slices_its_text(parsed):
    for path, (document, record, mentions) in parsed.items():
        if path.suffix == ".html" and "Docket" in document.text[:3000]:
            assert record is not None, path.name
            assert record["report"] in ("docket", "bankruptcy_docket", "appellate_docket")
        json.dumps(record)  # the record is plain JSON: it is stored with the document
        for m in mentions:
            assert document.text[m.start : m.end] == m.text, (path.name, m)


def test_record_fields_that_stand_in_the_text_become_mentions(parsed):
    """Every party, attorney and docket number of the answer keys that the page shows is a mention
    (with its normalized value), and every attorney mention is one the key lists."""
    missing, wrong = [], []
    for path in PAGES:
        document, record, mentions = parsed[path]
        key = json.loads(path.with_suffix(".json").read_text())
        text = document.text
        parties = {_fold(m.normalized) for m in mentions if m.type is EntityType.PARTY}
        attorneys = {_fold(m.normalized) for m in mentions if m.type is EntityType.ATTORNEY}
        listed = set()
        for party in key.get("parties") or []:
            if _visible(party["name"], text) and _fold(party["name"]) not in parties:
                missing.append((path.name, "party", party["name"]))
            for attorney in party.get("attorneys") or []:
                listed.add(_fold(attorney["name"]))
                if _visible(attorney["name"], text) and _fold(attorney["name"]) not in attorneys:
                    missing.append((path.name, "attorney", attorney["name"]))
        wrong += [(path.name, a) for a in attorneys if a not in listed]
        if key.get("docket_number") and key["docket_number"] not in {
                m.normalized for m in mentions if m.type is EntityType.DOCKET_NUMBER}:  # fmt: skip
            missing.append((path.name, "docket", key["docket_number"]))
    assert not missing, missing[:10]
    assert not wrong, wrong[:10]


def test_notices_give_their_dockets_case_names_and_recipients(parsed):
    for path in sorted(NEF.glob("*.txt")):
        document, record, mentions = parsed[path]
        key = json.loads(path.with_suffix(".json").read_text())
        if not key.get("dockets"):
            continue
        assert record is not None and record["report"] == "notice", path.name
        numbers = {m.normalized for m in mentions if m.type is EntityType.DOCKET_NUMBER}
        names = {_fold(m.normalized) for m in mentions if m.type is EntityType.CASE_NAME}
        people = {_fold(m.normalized) for m in mentions if m.type is EntityType.PERSON}
        for docket in key["dockets"]:
            assert docket["docket_number"] in numbers, (path.name, docket["docket_number"])
            assert _fold(docket["case_name"]) in names, (path.name, docket["case_name"])
        for recipient in key.get("email_recipients") or []:
            if _visible(recipient["name"], document.text):
                assert _fold(recipient["name"]) in people, (path.name, recipient["name"])


def test_a_record_field_missing_from_the_text_is_a_fact_not_a_mention():
    text = "U.S. District Court\nCIVIL DOCKET FOR CASE #: 1:20-cv-00001\n\nUSA v. Beale et al\nAssigned to: Judge Ann Wright\n"
    record = {"report": "docket", "dockets": [{"docket_number": "1:20-cv-00001", "case_name": "United States v. Beale"}],
              "judges": [{"name": "Ann Wright", "role": "assigned"}, {"name": "Someone Elsewhere", "role": "referred"}],
              "parties": [{"name": "Nobody Here Inc.", "type": "Defendant", "attorneys": []}]}  # fmt: skip
    sink = MentionSink(text)
    record_mentions(sink, record)
    found = {(m.type, m.normalized, m.text) for m in sink.mentions}
    assert (EntityType.DOCKET_NUMBER, "1:20-cv-00001", "1:20-cv-00001") in found
    assert (EntityType.CASE_NAME, "United States v. Beale", "USA v. Beale et al") in found
    assert (EntityType.JUDGE, "Ann Wright", "Ann Wright") in found
    assert not any("Elsewhere" in m.normalized or "Nobody" in m.normalized for m in sink.mentions)
    for m in sink.mentions:
        assert text[m.start : m.end] == m.text


@pytest.mark.parametrize(("text", "name", "span"), [
    ("Brady et al v. Deloitte & Touche LLP et al\n", "Brady v. Deloitte & Touche LLP", "Brady et al v. Deloitte & Touche LLP et al"),
    ("Alford vs. Baylor et al\n", "Alford v. Baylor", "Alford vs. Baylor et al"),
    ("Tremsky, et al v. Laden, et al\n", "Tremsky v. Laden", "Tremsky, et al v. Laden, et al"),
    ("State of Hawaii, et al v. Donald\nTrump, et al", "State of Hawaii v. Donald Trump", "State of Hawaii, et al v. Donald\nTrump, et al"),
    ("Smith v. Jones, and Smithers v. Jonesboro", "Smith v. Jonesboro", None),
    ("United Statesian v. Beale", "United States v. Beale", None),
])  # fmt: skip
def test_case_names_are_found_as_dockets_print_them(text, name, span):
    spans = case_name_spans(text, name)
    assert [text[s:e] for s, e in spans] == ([span] if span else [])


@pytest.mark.parametrize(("party_type", "side"), [
    ("Plaintiff", "plaintiff"), ("Defendant", "defendant"), ("Petitioner", "plaintiff"), ("Respondents", "defendant"),
    ("Plaintiff - Appellee", "defendant"), ("Defendant - Appellant", "plaintiff"), ("Debtor", None),
    ("Counter Defendant", None), ("Third Party Plaintiff", None), ("Trustee", None), ("Interested Party", None),
])  # fmt: skip
def test_party_sides_from_their_types(party_type, side):
    assert side_of(party_type) == side


def test_entry_dates_are_found_in_order():
    text = "Date Filed # Docket Text\n01/09/2009 4 AFFIDAVIT\n01/09/2009 5 AFFIDAVIT\n02/10/09 6 ORDER\n"
    record = {"entries": [{"date_filed": "2009-01-09", "document_number": "4"},
                          {"date_filed": "2009-01-09", "document_number": "5"},
                          {"date_filed": "2009-02-10", "document_number": "6"},
                          {"date_filed": "2011-01-01", "document_number": "7"}]}  # fmt: skip
    sink = MentionSink(text)
    record_mentions(sink, record)
    dates = [(m.start, m.normalized, m.attrs["docket_entry"]) for m in sink.mentions if m.type is EntityType.DATE]
    assert dates == [(25, "2009-01-09", "4"), (48, "2009-01-09", "5"), (71, "2009-02-10", "6")]


def test_what_is_not_a_pacer_report_gets_no_record():
    assert report_kind("html", "<p>General Docket</p> of the parish council") is None
    assert report_kind("pdf", "CIVIL DOCKET FOR CASE #: 1:20-cv-1") is None
    assert report_kind("email", "Subject: lunch\n\nSee you at noon.") is None
    assert report_kind("html", "General Docket\nUnited States Court of Appeals for the First Circuit") == "appellate_docket"
    assert report_kind("email", "Subject: Activity in Case 1:20-cv-1 A v. B Order") == "notice"


def test_without_juriscraper_the_rules_read_the_party_blocks():
    """juriscraper is optional at run time: when it cannot be imported there is no record, no error,
    and the party-block rules still find the parties and attorneys."""
    page = DOCKETS / "district" / "akd.html"
    script = f"""
import sys, json
sys.modules["juriscraper"] = None
from legaldoc.config import load_settings
from legaldoc.pipeline.extract import extract, RECORD_KEY
from legaldoc.pipeline.entities import LocalEntityProvider
document = extract(open({str(page)!r}, "rb").read(), "akd.html", load_settings())
mentions = LocalEntityProvider().extract(document.text, document.metadata.get(RECORD_KEY))
print(json.dumps({{"record": RECORD_KEY in document.metadata,
                  "extractors": sorted({{m.extractor for m in mentions if m.type in ("PARTY", "ATTORNEY")}}),
                  "attorneys": sorted({{m.normalized for m in mentions if m.type == "ATTORNEY"}})}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True, timeout=120)
    result = json.loads(out.stdout)
    assert result["record"] is False
    assert result["extractors"] == ["rules"]
    assert "Brewster H. Jamieson" in result["attorneys"]
    assert "juriscraper" not in out.stderr.lower()


def test_a_docket_report_processed_end_to_end_has_structural_edges(tmp_path):
    from sqlalchemy import select

    from legaldoc.services.process import process_paths
    from legaldoc.storage.db import Database
    from legaldoc.storage.tables import Entity, RelationshipRow

    settings = load_settings(data_dir=tmp_path / ".legaldoc")
    database = Database(settings.resolved_database_url)
    [report] = process_paths([DOCKETS / "district" / "akd.html"], "dockets", settings, database)
    assert report.status == "done"
    with database.session() as session:
        names = {e.id: (e.type, e.name) for e in session.scalars(select(Entity))}
        edges = {(row.type, names[row.source_entity_id], names[row.target_entity_id])
                 for row in session.scalars(select(RelationshipRow)) if row.source_entity_id}  # fmt: skip
    assert (RelationType.REPRESENTS.value, ("ATTORNEY", "Brewster H. Jamieson"),
            ("PARTY", "West American Insurance Company")) in edges  # fmt: skip
    opposes = {(s[1], t[1]) for kind, s, t in edges if kind == RelationType.OPPOSES.value}
    assert any("West American Insurance Company" in pair and "Matthew Brent Gifford" in pair for pair in opposes)
    assert any(kind == RelationType.PRESIDES_OVER.value and s == ("JUDGE", "Timothy M. Burgess") for kind, s, _ in edges)


@pytest.mark.parametrize(("text", "court"), [
    ("U.S. Bankruptcy Court\nAlaska (Anchorage)\nBankruptcy Petition #: 95-00236", "akb"),
    ("U.S. Bankruptcy Court\nMaine (Portland)\n", "meb"),
    ("United States Judicial Panel on Multidistrict Litigation\nCIVIL DOCKET", "jpml"),
    ("General Docket\nU. S. Bankruptcy Appellate Panel for the Ninth Circuit\n", "bap9"),
    ("United States Court of Appeals for District of Columbia Circuit\n", "cadc"),
])  # fmt: skip
def test_court_headers_of_docket_reports(text, court):
    assert court in {m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.COURT}


@pytest.mark.parametrize("text", [
    "U.S. Bankruptcy Court\nCalifornia (Los Angeles)\n",  # a state with several districts: which one is unknown
    "We flew to Alaska (Anchorage) for the hearing.",
    "the Bankruptcy Appellate Panel decided",
])  # fmt: skip
def test_no_court_from_a_state_name_alone(text):
    assert not [m for m in LocalEntityProvider().extract(text) if m.type is EntityType.COURT]


@pytest.mark.parametrize(("text", "judges"), [
    ("# 2 Judge Woods Order 9.22.22, # 3 Certificate", ["Woods"]),
    ("correct filing date pursuant Judge Kopf's Order (GJG).", ["Kopf"]),
    ("17 ORDER Adopting Magistrate Judge Findings and Recommendation", []),
    ("MINUTES before Senior Judge Coyle RE: 3/15/04 Hrg status", ["Coyle"]),
    ("Assigned to: Judge James B. Haines Jr.\nChapter 7", ["James B. Haines Jr."]),
])  # fmt: skip
def test_judges_end_before_docket_words(text, judges):
    assert [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.JUDGE] == judges


def test_an_mbox_message_is_read_as_an_email():
    data = (b"From someone@example.com Fri Mar 15 09:54:26 2019\nDelivered-To: a@example.com\n"
            b"Subject: Activity in Case 1:17-cr-00201 USA v. Doe Order\nFrom: ecf@dcd.uscourts.gov\n\nbody\n")  # fmt: skip
    assert sniff_kind(data, "notice.txt") == "email"
