"""Archives and e-mails hold documents: a zip, tar or tar.gz expands into one document per member,
an e-mail (.eml, .msg) into itself and its attachments; hostile archives fail as DATA with the
reason; file names that are not UTF-8 are processed and shown escaped."""

from __future__ import annotations

import io
import json
import os
import tarfile
import zipfile
from email.message import EmailMessage
from pathlib import Path

import pytest

from legaldoc.config import Settings
from legaldoc.errors import DataError, DocumentTooLarge
from legaldoc.paths import source_path, source_text, split_container
from legaldoc.pipeline.extract import extract, sniff_kind
from legaldoc.pipeline.extract.containers import ContainerLimits, expand, read_member
from legaldoc.services.sources import read_source
from tests.batchkit import write_manifest
from tests.conftest import DOCUMENTS, NEF, settings_env
from tests.msgkit import outlook_message
from tests.test_cli import legaldoc

PDF_A, PDF_B, PDF_C = DOCUMENTS / "ca4_17.pdf", DOCUMENTS / "ca7_3.pdf", DOCUMENTS / "ca9_19.pdf"
NOTICE, OTHER_NOTICE = NEF / "almd_1.txt", sorted(NEF.glob("*.txt"))[-1]


def _zip(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def _email_with_attachments(path: Path) -> Path:
    message = EmailMessage()
    message["Subject"], message["From"], message["To"] = "Order entered", "ecf@almd.uscourts.gov", "counsel@example.com"
    message.set_content("An order was entered. The order is attached.")
    message.add_attachment(PDF_C.read_bytes(), maintype="application", subtype="pdf", filename="order.pdf")
    message.add_attachment(b"GIF89a", maintype="image", subtype="gif", filename="logo.gif")
    forwarded = EmailMessage()
    forwarded["Subject"], forwarded["From"] = "Fwd: hearing", "clerk@example.com"
    forwarded.set_content("The hearing is set for March 3, 2021.")
    message.add_attachment(forwarded)
    path.write_bytes(bytes(message))
    return path


def test_a_zip_of_two_pdfs_is_two_documents_and_members_read_back_exactly(tmp_path):
    archive = _zip(tmp_path / "production.zip", {"vol1/a.pdf": PDF_A.read_bytes(), "b.pdf": PDF_B.read_bytes(),
                                                 "sheet.xlsx": b"not a document", "__MACOSX/._b.pdf": b"fork",
                                                 "vol1/": b""})  # fmt: skip
    with archive.open("rb") as stream:
        expansion = expand(stream, str(archive), ContainerLimits())
    assert expansion.sources == [f"{archive}!/vol1/a.pdf", f"{archive}!/b.pdf"]
    assert expansion.skipped == [f"{archive}!/sheet.xlsx"]
    assert read_source(f"{archive}!/vol1/a.pdf", Settings()) == PDF_A.read_bytes()
    assert read_source(f"{archive}!/b.pdf", Settings()) == PDF_B.read_bytes()
    # A stored (uncompressed) PDF sits in the zip's first kilobyte: the zip is still a zip.
    assert sniff_kind(archive.read_bytes(), str(archive)) == "archive"


def test_nested_archives_expand_to_the_depth_limit(tmp_path):
    inner = _zip(tmp_path / "inner.zip", {"a.pdf": PDF_A.read_bytes()}, zipfile.ZIP_DEFLATED)
    outer = _tar(tmp_path / "outer.tar.gz", {"x/inner.zip": inner.read_bytes(), "b.pdf": PDF_B.read_bytes()})
    with outer.open("rb") as stream:
        deep = expand(stream, str(outer), ContainerLimits(max_depth=3))
        shallow = expand(stream, str(outer), ContainerLimits(max_depth=1))
    assert deep.sources == [f"{outer}!/x/inner.zip!/a.pdf", f"{outer}!/b.pdf"]
    assert read_source(deep.sources[0], Settings()) == PDF_A.read_bytes()
    # One level only: the inner archive stays a document, and its extraction says why.
    assert shallow.sources == [f"{outer}!/x/inner.zip", f"{outer}!/b.pdf"]
    settings = Settings(archive_max_depth=1)
    with pytest.raises(DataError, match="nested more than 1"):
        extract(read_source(shallow.sources[0], settings), shallow.sources[0], settings)


@pytest.mark.parametrize(
    ("members", "limits", "reason"),
    [
        ({"../../etc/cron.d/x.txt": b"owned"}, ContainerLimits(), "points outside the archive"),
        ({"/etc/passwd.txt": b"owned"}, ContainerLimits(), "points outside the archive"),
        ({f"{n}.txt": b"\0" * 1_000_000 for n in range(5)}, ContainerLimits(max_total_bytes=3_000_000), "zip bomb"),
        ({f"{n}.txt": b"x" for n in range(5)}, ContainerLimits(max_members=4), "more than 4 files"),
    ],
    ids=["zip slip", "absolute member", "inflates past the total limit", "too many members"],
)
def test_hostile_archives_stay_one_document_that_fails_as_data(tmp_path, members, limits, reason):
    archive = _zip(tmp_path / "hostile.zip", members, zipfile.ZIP_DEFLATED)
    with archive.open("rb") as stream:
        expansion = expand(stream, str(archive), limits)
    assert expansion.sources == [str(archive)] and reason in expansion.problems[0]
    settings = Settings(archive_max_mb=limits.max_total_bytes / 1048576, archive_max_members=limits.max_members)
    with pytest.raises(DataError, match=reason):
        extract(archive.read_bytes(), str(archive), settings)


def test_a_member_is_read_no_further_than_the_size_limit(tmp_path):
    """A deflated 300 MB of zeros is 300 KB on disk: refused from its declared size, never inflated."""
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle, handle.open("zeros.txt", "w", force_zip64=True) as member:
        for _ in range(300):
            member.write(b"\0" * (1 << 20))
    assert archive.stat().st_size < 1_000_000
    with pytest.raises(DocumentTooLarge, match="over the 200 MB limit"):
        read_source(f"{archive}!/zeros.txt", Settings())
    with archive.open("rb") as stream, pytest.raises(DocumentTooLarge):
        read_member(stream, str(archive), "zeros.txt", ContainerLimits(max_member_bytes=10 << 20))


def test_emails_are_documents_and_so_are_their_attachments(tmp_path):
    mail = _email_with_attachments(tmp_path / "notice.eml")
    with mail.open("rb") as stream:
        expansion = expand(stream, str(mail), ContainerLimits())
    assert expansion.sources == [str(mail), f"{mail}!/order.pdf", f"{mail}!/forwarded-3.eml"]
    assert expansion.skipped == [f"{mail}!/logo.gif"]
    assert read_source(f"{mail}!/order.pdf", Settings()) == PDF_C.read_bytes()
    forwarded = extract(read_source(expansion.sources[2], Settings()), expansion.sources[2], Settings())
    assert "March 3, 2021" in forwarded.text


def test_outlook_msg_body_and_attachments(tmp_path):
    msg = tmp_path / "order.msg"
    msg.write_bytes(outlook_message("Order in 2:20-cv-00123", "The court entered the attached order on May 4, 2021.",
                                    "clerk@example.com", "counsel@example.com",
                                    [("order.pdf", PDF_A.read_bytes()), ("notes.txt", NOTICE.read_bytes())]))  # fmt: skip
    with msg.open("rb") as stream:
        expansion = expand(stream, str(msg), ContainerLimits())
    assert expansion.sources == [str(msg), f"{msg}!/order.pdf", f"{msg}!/notes.txt"]
    body = extract(msg.read_bytes(), str(msg), Settings())
    assert body.kind == "email" and "Subject: Order in 2:20-cv-00123" in body.text and "May 4, 2021" in body.text
    assert "%PDF" not in body.text  # the body, not the attachment the file happens to start with
    assert read_source(f"{msg}!/order.pdf", Settings()) == PDF_A.read_bytes()


def test_names_that_are_not_utf8_round_trip(tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9 notice.txt"
    with open(raw, "wb") as handle:
        handle.write(NOTICE.read_bytes())
    text = source_text(os.fsdecode(raw))
    assert text.endswith("caf\\xe9 notice.txt") and text.encode("utf-8")
    assert os.fsencode(source_path(text)) == raw
    assert read_source(text, Settings()) == NOTICE.read_bytes()
    folder = tmp_path / "drafts!"  # a folder whose name holds the member separator is still a folder
    folder.mkdir()
    (folder / "a.txt").write_text("x")
    assert split_container(f"{folder}/a.txt") is None


def test_process_expands_archives_and_escapes_names(tmp_path):
    (tmp_path / "in").mkdir()
    archive = _zip(tmp_path / "in" / "two.zip", {"a.pdf": PDF_A.read_bytes(), "b.pdf": PDF_B.read_bytes()})
    with open(os.fsencode(tmp_path / "in") + b"/r\xe9sum\xe9.txt", "wb") as handle:
        handle.write(NOTICE.read_bytes())
    bomb = tmp_path / "in" / "bomb.zip"
    _zip(bomb, {f"{n}.txt": b"\0" * 1_000_000 for n in range(5)}, zipfile.ZIP_DEFLATED)
    result = legaldoc("process", str(tmp_path / "in"), "--json", cwd=tmp_path, env={"LEGALDOC_ARCHIVE_MAX_MB": "3"})
    assert "Traceback" not in result.stderr and result.returncode == 1, result.stderr  # the bomb failed
    reports = {r["source"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert {s: r["status"] for s, r in reports.items()} == {
        f"{bomb}": "failed", f"{archive}!/a.pdf": "done", f"{archive}!/b.pdf": "done",
        f"{tmp_path}/in/r\\xe9sum\\xe9.txt": "done",
    }  # fmt: skip
    assert reports[str(bomb)]["error"]["category"] == "DATA" and "zip bomb" in reports[str(bomb)]["error"]["message"]
    assert reports[f"{archive}!/a.pdf"]["pages"] == 1 and reports[f"{archive}!/b.pdf"]["mentions"]


@pytest.mark.any_database  # archive expansion is the database kind's business nowhere
def test_a_batch_of_archives_and_emails_through_real_workers(batch_settings, start_worker, tmp_path):
    """The issue's case: a zip of two PDFs is two documents, both done; an e-mail and its attachment
    are two more; a tar.gz inside the zip is opened too; names that are not UTF-8 travel through
    Redis and the database escaped."""
    env = settings_env(batch_settings)
    folder = tmp_path / "matter"
    folder.mkdir()
    inner = _tar(tmp_path / "inner.tar.gz", {"c.txt": OTHER_NOTICE.read_bytes()})
    _zip(folder / "two.zip", {"a.pdf": PDF_A.read_bytes(), "sub/b.pdf": PDF_B.read_bytes(), "inner.tar.gz": inner.read_bytes()})
    _email_with_attachments(folder / "notice.eml")
    with open(os.fsencode(folder) + b"/\xff\xfe.txt", "wb") as handle:
        handle.write(NOTICE.read_bytes())
    manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}])
    start_worker(concurrency=2)
    result = legaldoc("submit", str(manifest), "--wait", "--timeout", "4m", "--json", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["total"], summary["succeeded"]) == (7, 7), summary  # seven different contents: none skipped
    assert "logo.gif" in result.stderr  # left out, and said so
    listed = legaldoc("status", summary["batch_id"], "--docs", "--json", cwd=tmp_path, env=env)
    sources = sorted(d["source"] for d in json.loads(listed.stdout)["documents"])
    assert sources == sorted([
        f"{folder}/two.zip!/a.pdf", f"{folder}/two.zip!/sub/b.pdf", f"{folder}/two.zip!/inner.tar.gz!/c.txt",
        f"{folder}/notice.eml", f"{folder}/notice.eml!/order.pdf", f"{folder}/notice.eml!/forwarded-3.eml",
        f"{folder}/\\xff\\xfe.txt",
    ])  # fmt: skip
