"""Entity extraction: exact offsets on the whole corpus, citation density, and NEF recall against answer keys."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rapidfuzz import fuzz

from legaldoc.config import load_settings
from legaldoc.models import EntityType
from legaldoc.pipeline.entities import LocalEntityProvider
from legaldoc.pipeline.extract import extract
from legaldoc.services.process import process_paths
from legaldoc.storage.db import Database
from tests.conftest import DOCUMENTS, NEF


def test_offsets_slice_the_stored_text_for_every_mention_type(corpus_run):
    _, database, reports = corpus_run
    from legaldoc.services.queries import show_document

    seen_types: set[str] = set()
    for report in reports.values():
        if report.status != "done":
            continue
        detail = show_document(database, report.document_id, include_text=True)
        text = detail["text"]
        for mention in detail["mentions"]:
            assert text[mention["start"] : mention["end"]] == mention["text"], (report.source, mention)
            assert mention["normalized"]
            seen_types.add(mention["type"])
    expected = {t.value for t in EntityType} - {"MONEY"}  # no money amounts in these filings
    assert expected <= seen_types, expected - seen_types


def test_vector_pdf_has_at_least_120_citation_mentions(corpus_run):
    """Its 21 citations of the record's appendix ("1 App. 12" and the id citations after them) and the
    13 running headers "Cite as: 569 U.S. ___" (its own citation) are no case citations (test_cases.py),
    so 120 rather than the 150 counted when they were."""
    _, _, reports = corpus_run
    report = reports["vector-pdf.pdf"]
    assert report.pages == 30
    citations = [m for m in report.mentions if m["type"] in ("CASE", "STATUTE", "RULE")]
    assert len(citations) >= 120
    normalized = {m["normalized"] for m in citations}
    assert "200 U.S. 321" in normalized and "560 U.S. 330" in normalized


def test_short_and_id_citations_resolve_to_their_full_citation():
    text = ("See Bell Atl. Corp. v. Twombly, 550 U.S. 544, 555 (2007). Id. at 556. The rule is plain. "
            "Twombly, 550 U.S. at 570. Under 42 U.S.C. § 1983 and Fed. R. Civ. P. 12(b)(6), the claim fails.")  # fmt: skip
    mentions = LocalEntityProvider().extract(text)
    citations = [(m.text, m.normalized, m.attrs.get("form")) for m in mentions if m.type is EntityType.CASE]
    assert ("550 U.S. 544", "550 U.S. 544", "full") in citations
    assert any(form == "id" and normalized == "550 U.S. 544" for _, normalized, form in citations)
    assert any(form == "short" and normalized == "550 U.S. 544" for _, normalized, form in citations)
    by_type = {m.type: m for m in mentions}
    assert by_type[EntityType.STATUTE].normalized == "42 U.S.C. § 1983"
    assert by_type[EntityType.RULE].normalized == "Fed. R. Civ. P. 12(b)(6)"
    assert by_type[EntityType.CASE_NAME].normalized == "Bell Atl. Corp. v. Twombly"


def test_rules_generalize_to_a_filing_written_here():
    text = (
        "IN THE UNITED STATES DISTRICT COURT\nFOR THE WESTERN DISTRICT OF TEXAS\n\n"
        "ACME ROOFING, LLC,\nPlaintiff,\nv.\nJANE Q. PUBLIC,\nDefendant.\n\nCivil Action No. 5:23-cv-01234-XR\n\n"
        "The hearing is set before the Honorable Xavier Rodriguez on January 5, 2024. Plaintiff seeks $12,500.50.\n"
        "/s/ Maria L. Esposito\nMaria L. Esposito\nEsposito & Park PLLC\nAttorneys for Plaintiff\n"
    )
    mentions = LocalEntityProvider().extract(text)
    values = {(m.type.value, m.normalized) for m in mentions}
    assert ("COURT", "txwd") in values
    assert ("DOCKET_NUMBER", "5:23-cv-01234") in values
    assert ("CASE_NAME", "ACME ROOFING, LLC v. JANE Q. PUBLIC") in values
    assert ("PARTY", "JANE Q. PUBLIC") in values
    assert ("JUDGE", "Xavier Rodriguez") in values
    assert ("DATE", "2024-01-05") in values
    assert ("MONEY", "12500.50 USD") in values
    assert ("ATTORNEY", "Maria L. Esposito") in values
    assert ("LAW_FIRM", "Esposito & Park PLLC") in values
    for m in mentions:
        assert text[m.start : m.end] == m.text


def _fold(value: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", value.casefold()).split())


def _case_fold(value: str) -> str:
    return _fold(re.sub(r",?\s+et\s+al\.?", "", value, flags=re.I))


def test_nef_recall_against_answer_keys(tmp_path: Path, capsys):
    """Docket numbers, case names, court ids and recipients found as people, scored on the answer keys.

    A recipient counts as found when a person mention equals the key's name, or ends with it where the
    key holds only the surname part of the notice line (e.g. key 'Wiley' for 'Josh Wiley').
    """
    settings = load_settings(data_dir=tmp_path / ".legaldoc")
    database = Database(settings.resolved_database_url)
    reports = {Path(r.source).stem: r for r in process_paths(sorted(NEF.glob("*.txt")), "nef", settings, database)}
    found = {"docket": [0, 0], "case_name": [0, 0], "court": [0, 0], "recipient": [0, 0]}
    for key_path in sorted(NEF.glob("*.json")):
        key = json.loads(key_path.read_text())
        if "court_id" not in key:
            continue
        report = reports[key_path.stem]
        assert report.status == "done", report.error

        def of(*types: str, mentions=report.mentions) -> list[dict]:
            return [m for m in mentions if m["type"] in types]

        dockets = {m["normalized"] for m in of("DOCKET_NUMBER")}
        cases = [_case_fold(m["normalized"]) for m in of("CASE_NAME")]
        courts = {m["normalized"] for m in of("COURT")}
        people = [_fold(m["normalized"]) for m in of("PERSON", "ATTORNEY", "JUDGE")]
        for docket in key["dockets"]:
            found["docket"][1] += 1
            found["docket"][0] += docket["docket_number"] in dockets
            wanted = _case_fold(docket["case_name"])
            found["case_name"][1] += 1
            found["case_name"][0] += any(c == wanted or fuzz.ratio(c, wanted) >= 90 for c in cases)
        found["court"][1] += 1
        found["court"][0] += key["court_id"] in courts
        for recipient in key.get("email_recipients", []):
            if recipient["name"].strip():
                wanted = _fold(recipient["name"])
                found["recipient"][1] += 1
                found["recipient"][0] += any(p == wanted or p.endswith(" " + wanted) for p in people)
    recall = {name: hits / total for name, (hits, total) in found.items()}
    with capsys.disabled():
        print("\nNEF recall: " + ", ".join(f"{name} {value:.1%} ({found[name][0]}/{found[name][1]})" for name, value in recall.items()))
    assert recall["docket"] >= 0.98
    assert recall["case_name"] >= 0.90
    assert recall["court"] >= 0.90
    assert recall["recipient"] >= 0.85


def test_every_nef_mention_slices_its_text():
    settings = load_settings()
    provider = LocalEntityProvider()
    for path in sorted(NEF.glob("*.txt")):
        document = extract(path.read_bytes(), path.name, settings)
        for m in provider.extract(document.text):
            assert document.text[m.start : m.end] == m.text


def test_documents_corpus_citation_mentions_carry_normalized_reporters():
    settings = load_settings()
    document = extract((DOCUMENTS / "ca1_00117684624.pdf").read_bytes(), "ca1.pdf", settings, None)
    mentions = LocalEntityProvider().extract(document.text)
    courts = {m.normalized for m in mentions if m.type is EntityType.COURT}
    assert "ca1" in courts
    assert any(m.type is EntityType.DOCKET_NUMBER and m.normalized == "20-1507" for m in mentions)


@pytest.mark.parametrize(("text", "judges"), [
    ("Opinion of the Court delivered by Justice Scalia.", ["Scalia"]),
    ("CHIEF JUSTICE ROBERTS delivered the opinion of the Court.", ["Roberts"]),
    ("Before the Honorable Rebecca M. Kowalski, United States District Judge.", ["Rebecca M. Kowalski"]),
    ("The Speedy Trial Act and the Criminal Justice Act govern appointed counsel.", []),
    ("A report of the Justice Initiative and the Equal Justice Center.", []),
    ("Grants from the Office of Justice Programs.", []),
    ("Signed by Senior United States District Judge Alvin K. Hellerstein.", ["Alvin K. Hellerstein"]),
    ("Senior United States District Judge", []),
    ("Judge Active Service From 1990 to 2004.", []),
    ("Case #: 09-33251-HRT\n\nAssigned to: Mary F. Walrath\nChapter 7", ["Mary F. Walrath"]),
    ("Assigned to: Chief Judge J. Randal Hall\nReferred to: Magistrate Judge Brian K. Epps", ["J. Randal Hall", "Brian K. Epps"]),
    ("Assigned to: Chief Bkptcy Judge Ronald B. King\nChapter 11", ["Ronald B. King"]),
    ("Assigned to: Not Assigned\nDate Filed: 01/02/2020", []),
    ("The motion was assigned to: the duty clerk", []),
])  # fmt: skip
def test_judge_rules(text, judges):
    found = [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.JUDGE]
    assert found == judges


@pytest.mark.parametrize(("text", "firms"), [
    ("Application to Employ Troutman Sanders LLP as Special Counsel", ["Troutman Sanders LLP"]),
    ("Order Approving Retention of Kirkland & Ellis LLP", ["Kirkland & Ellis LLP"]),
    ("Counsel: Lane Powell P.C., 301 W. Northern Lights Blvd.", ["Lane Powell P.C."]),
    ("Whitfield Crane LLP appeared for the plaintiff.", ["Whitfield Crane LLP"]),
])  # fmt: skip
def test_law_firms_start_at_the_firm(text, firms):
    found = [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.LAW_FIRM]
    assert found == firms


@pytest.mark.parametrize(("text", "organizations"), [
    ("Before the United States District Judge. See Bell Atlantic Corp. v. Twombly", ["Bell Atlantic Corp."]),
    ("The motion is denied. Acme Widgets, Inc. shall answer.", ["Acme Widgets, Inc."]),
    ("Smith Bros. Holdings Co. filed the claim.", ["Smith Bros. Holdings Co."]),
])  # fmt: skip
def test_organizations_start_after_a_sentence_ends(text, organizations):
    found = [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.ORGANIZATION]
    assert found == organizations


@pytest.mark.parametrize(("text", "citation"), [
    ("See Shelby County v. Holder, 570\nU.S. 529 (2013).", "570 U.S. 529"),
    ("Bell Atlantic Corp. v. Twombly, 550 U.S.\n544, 570 (2007)", "550 U.S. 544"),
    ("Id. at 12; see also 42 U.S.C.\n§ 1983.", None),
])  # fmt: skip
def test_citations_broken_across_lines_are_found_with_exact_offsets(text, citation):
    mentions = LocalEntityProvider().extract(text)
    assert all(text[m.start : m.end] == m.text for m in mentions)
    if citation:
        assert citation in {m.normalized for m in mentions if m.type is EntityType.CASE}
    else:
        assert any(m.type is EntityType.STATUTE and "1983" in m.normalized for m in mentions)


BANKRUPTCY_BLOCK = """Debtor
Jane Q. Example
12 Any Street
Springfield, IL 62701
SSN / ITIN: xxx-xx-0000

represented by Damon Q. Smith
Smith & Associates LLC
126 East Main Street
Florence, AL 35630
Email: damon@example.com

Mary Lou Jones
(See above for address)

Pending Counts
None

Trustee
Acme Trust Company
PO Box 19045

Filing Date # Docket Text
"""

DISTRICT_ROW = """Plaintiff

West Example Insurance Company represented by Brewster H. Jamieson
Lane Powell LLC
Anchorage, AK 99503
LEAD ATTORNEY

V.

Defendant

Matthew Brent Example
"""


def test_party_blocks_of_docket_sheets():
    mentions = LocalEntityProvider().extract(BANKRUPTCY_BLOCK)
    assert all(BANKRUPTCY_BLOCK[m.start : m.end] == m.text for m in mentions)
    parties = {(m.normalized, m.attrs.get("role")) for m in mentions if m.type is EntityType.PARTY}
    assert parties == {("Jane Q. Example", "debtor"), ("Acme Trust Company", "trustee")}
    attorneys = {(m.normalized, m.attrs.get("represents")) for m in mentions if m.type is EntityType.ATTORNEY}
    assert attorneys == {("Damon Q. Smith", "Jane Q. Example"), ("Mary Lou Jones", "Jane Q. Example")}  # not "Pending Counts"
    assert {m.normalized for m in mentions if m.type is EntityType.LAW_FIRM} == {"Smith & Associates LLC"}

    row = LocalEntityProvider().extract(DISTRICT_ROW)
    assert {(m.normalized, m.attrs.get("role")) for m in row if m.type is EntityType.PARTY} == {
        ("West Example Insurance Company", "plaintiff"), ("Matthew Brent Example", "defendant")}  # fmt: skip
    assert [m.normalized for m in row if m.type is EntityType.ATTORNEY] == ["Brewster H. Jamieson"]


@pytest.mark.parametrize("text", [
    "HARBOR LIGHT FOODS, INC.,\nPlaintiff\nv.\nMERIDIAN FREIGHT SYSTEMS LLC,\nDefendant\nCOMPLAINT FOR BREACH OF CONTRACT\n",
    "The Plaintiff\nfiled a motion. (Davidson, Adam) (Washington, DC)\n",
])  # fmt: skip
def test_no_party_blocks_or_filer_attorneys_outside_docket_sheets(text):
    mentions = LocalEntityProvider().extract(text)
    assert not [m for m in mentions if m.type is EntityType.ATTORNEY]
    assert "COMPLAINT FOR BREACH OF CONTRACT" not in {m.normalized for m in mentions if m.type is EntityType.PARTY}
    assert "DC Washington" not in {m.normalized for m in mentions}


@pytest.mark.parametrize(("text", "dockets"), [
    ("Court of Appeals Docket #: 10-1095 Docketed: 04/25/2018", ["10-1095"]),
    ("Case No.: 22-5459", ["22-5459"]),
    ("Appeal No. 17-15589", ["17-15589"]),
    ("Number of pages: 12-14 total", []),
    ("Call 335-6182 for the clerk", []),
])  # fmt: skip
def test_appellate_docket_numbers(text, dockets):
    assert [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.DOCKET_NUMBER] == dockets


APPELLATE_BLOCK = """Court of Appeals Docket #: 17-15589 Docketed: 03/30/2017

STATE OF EXAMPLE
Plaintiff - Appellee, Donna H. Example, Attorney
Direct: 808-555-1180
[COR LD NTC Dep State Aty Gen]
Office of the Example Attorney General
425 Queen Street
Honolulu, HI 96813

Neal Kumar Sample
[COR LD NTC Retained]
Hogan Sample US LLP
555 Thirteenth Street, NW
Washington, DC 20004

JOSEPH DOE
Terminated: 04/21/2017
Intervenor - Pending,

FRIENDS OF THE COURT FOUNDATION
Amicus Curiae, Amir Sample
Direct: 202-555-3434
[COR LD NTC Retained]
Sample Law Center

01/06/2016 Petition for review filed by Respondent.
"""


def test_appellate_party_blocks():
    mentions = LocalEntityProvider().extract(APPELLATE_BLOCK)
    assert all(APPELLATE_BLOCK[m.start : m.end] == m.text for m in mentions)
    assert {(m.normalized, m.attrs.get("role")) for m in mentions if m.type is EntityType.PARTY} == {
        ("STATE OF EXAMPLE", "plaintiff - appellee"), ("JOSEPH DOE", "intervenor - pending"),
        ("FRIENDS OF THE COURT FOUNDATION", "amicus curiae")}  # fmt: skip
    assert {(m.normalized, m.attrs.get("represents")) for m in mentions if m.type is EntityType.ATTORNEY} == {
        ("Donna H. Example", "STATE OF EXAMPLE"), ("Neal Kumar Sample", "STATE OF EXAMPLE"),
        ("Amir Sample", "FRIENDS OF THE COURT FOUNDATION")}  # fmt: skip
    assert {m.normalized for m in mentions if m.type is EntityType.LAW_FIRM} >= {"Hogan Sample US LLP", "Sample Law Center"}


@pytest.mark.parametrize(("text", "dockets"), [
    ("Case Number: 24-04888-7", ["24-04888"]),
    ("In re: Roundup Products Liability Litigation, MDL No. 2741", ["MDL 2741"]),
    ("MDL 2804 (N.D. Ohio)", ["MDL 2804"]),
    ("Call 24-04888-7 times", []),
    ("SSN 123-45-6789", []),
])  # fmt: skip
def test_bankruptcy_chapter_suffixes_and_mdl_numbers(text, dockets):
    assert [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.DOCKET_NUMBER] == dockets


@pytest.mark.parametrize(("text", "dates"), [
    ("Filed 2024/02/29 in court", ["2024-02-29"]),
    ("entered 10/30/15 by the clerk", ["2015-10-30"]),
    ("hearing reset from 3/15/04", ["2004-03-15"]),
    ("born 7/4/76", ["1976-07-04"]),
    ("hearing on 04-27-2026 at 9:00", ["2026-04-27"]),
    ("Case 1:04-27-2026", []),  # a docket-like run after a colon is not a date
    ("the ratio 1/2/3 holds", []),
    ("version 10/30/155", []),
    ("on 02/30/21", []),  # no such day
    ("Bankruptcy No. 24-04888-7", []),
])  # fmt: skip
def test_numeric_date_formats(text, dates):
    assert [m.normalized for m in LocalEntityProvider().extract(text) if m.type is EntityType.DATE] == dates


def test_counsel_block_names_above_the_header_are_whole_names():
    """A name on a line above 'Counsel for ...' is the whole name, not the slice one character to its left."""
    text = "Respectfully submitted,\n/s/ Mary Jones\nMary Jones\nCounsel for Plaintiff\n"
    attorneys = [m for m in LocalEntityProvider().extract(text) if m.type is EntityType.ATTORNEY]
    assert len(attorneys) == 2
    assert all(m.text == m.normalized == "Mary Jones" == text[m.start : m.end] for m in attorneys)


def test_warm_up_builds_what_the_first_document_would():
    """`warm_up` (a worker calls it before forking its pool) leaves courts-db's expressions built,
    and the made-up caption it reads exercises the main rules."""
    import ast
    import subprocess
    import sys

    code = ("import courts_db\nfrom legaldoc.pipeline.entities import LocalEntityProvider, WARM_UP_TEXT, warm_up\n"
            "assert 'regexes' not in vars(courts_db)\nwarm_up()\nassert 'regexes' in vars(courts_db)\n"
            "print(sorted({m.type.value for m in LocalEntityProvider().extract(WARM_UP_TEXT)}))\n")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert {"CASE", "COURT", "DATE", "DOCKET_NUMBER", "JUDGE", "MONEY", "STATUTE"} <= set(ast.literal_eval(result.stdout))
