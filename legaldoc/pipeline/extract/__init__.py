"""The extract stage: any supported file's bytes to an ExtractedDocument."""

from __future__ import annotations

import re
from collections.abc import Mapping

from legaldoc.config import Settings
from legaldoc.errors import DataError, DocumentTooLarge, UnsupportedFormat
from legaldoc.models import ExtractedDocument
from legaldoc.paths import MEMBER_SEPARATOR
from legaldoc.pipeline.extract.containers import ContainerLimits, list_entries
from legaldoc.pipeline.extract.formats import SUPPORTED_SUFFIXES, container_kind, is_archive_name
from legaldoc.pipeline.extract.html import html_to_text
from legaldoc.pipeline.extract.image import extract_image
from legaldoc.pipeline.extract.mail import extract_email, extract_outlook
from legaldoc.pipeline.extract.ocr import OcrProvider, TesseractOcr, ocr_provider_from_settings
from legaldoc.pipeline.extract.office import extract_docx, extract_legacy
from legaldoc.pipeline.extract.pacer import RECORD_KEY, court_record
from legaldoc.pipeline.extract.pdf import extract_pdf
from legaldoc.pipeline.extract.textutil import Deadline, assemble, clean_text, wide_encoding

__all__ = ["RECORD_KEY", "extract", "sniff_kind", "container_limits", "OcrProvider", "TesseractOcr", "ocr_provider_from_settings",
           "SUPPORTED_SUFFIXES"]

_OUTLOOK_STREAM = "__substg1.0_".encode("utf-16-le")  # the property streams of an Outlook message
_EMAIL_HEADER = re.compile(
    rb"^(Return-Path|Received|From|To|Subject|Date|Message-ID|MIME-Version|Delivered-To|X-[\w-]+):", re.I | re.M
)


def sniff_kind(data: bytes, name: str) -> str:
    """The document kind from its bytes first, its file name second."""
    head = data[:2048]
    lowered_name = name.lower()
    # Containers first: a zip, tar or Outlook file may hold a PDF within its first kilobyte.
    if head.startswith(b"PK\x03\x04"):
        return "archive" if is_archive_name(name) or not _is_office_zip(data) else "docx"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "msg" if lowered_name.endswith(".msg") or _OUTLOOK_STREAM in data else "doc"
    if head[257:262] == b"ustar":
        return "archive"
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if is_archive_name(name):
        return "archive"
    if head.startswith(b"\xffWPC"):
        return "wpd"
    if head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8\xff") or head[:4] in (b"II*\x00", b"MM\x00*"):
        return "image"
    if (wide := wide_encoding(data)) is not None:  # UTF-16/32 text: its NUL bytes do not make it binary
        shown = data[:2048].decode(wide, errors="ignore").lstrip("\ufeff \t\r\n").lower()
        html = shown.startswith(("<!doctype html", "<html")) or lowered_name.endswith((".html", ".htm"))
        return "html" if html else "text"
    stripped = head.lstrip().lower()
    if stripped.startswith((b"<!doctype html", b"<html")) or lowered_name.endswith((".html", ".htm")):
        return "html"
    if head.startswith(b"From ") and b"\n" in head:  # an mbox message: its "From sender date" separator line first
        head = head[head.index(b"\n") + 1 :]
    if lowered_name.endswith((".eml", ".msg")) or len(_EMAIL_HEADER.findall(head)) >= 2 and _EMAIL_HEADER.match(head):
        return "email"
    if lowered_name.endswith(".pdf"):
        return "pdf"
    return "text"


def _is_office_zip(data: bytes) -> bool:
    """A zip that is a Word document (or another OOXML file), not an archive of documents."""
    import io
    import zipfile

    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        return True  # damaged: the DOCX reader says what is wrong with it
    return "[Content_Types].xml" in names or "word/document.xml" in names


def container_limits(settings: Settings) -> ContainerLimits:
    return ContainerLimits(
        max_members=settings.archive_max_members,
        max_total_bytes=int(settings.archive_max_mb * 1024 * 1024),
        max_member_bytes=int(settings.max_file_mb * 1024 * 1024),
        max_depth=settings.archive_max_depth,
    )


def _refuse_archive(data: bytes, source: str, settings: Settings) -> None:
    """An archive reached extraction whole: say why its members were not processed on their own."""
    import io

    limits = container_limits(settings)
    kind = container_kind(source) or ("zip" if data.startswith(b"PK") else "tar")
    if source.count(MEMBER_SEPARATOR) >= limits.max_depth:
        raise DataError(f"{source} is an archive nested more than {limits.max_depth} containers deep",
                        hint="unpack the inner archive, or raise LEGALDOC_ARCHIVE_MAX_DEPTH")  # fmt: skip
    entries, skipped = list_entries(io.BytesIO(data), source, limits, kind)  # a hostile one raises here
    if not entries:
        shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
        raise UnsupportedFormat(f"{source} is an archive with no document legaldoc reads"
                                + (f" (it holds {shown})" if skipped else " (it is empty)"),
                                hint=f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")  # fmt: skip
    raise DataError(f"{source} is an archive of {len(entries)} documents that reached extraction whole",
                    hint="submit it again: archives expand into one document per member")  # fmt: skip


def decode_text(data: bytes, source: str) -> str:
    """Bytes of a text file to str: UTF-16/32 by its byte-order mark (or the NUL pattern of ASCII in
    UTF-16), UTF-8 when valid, otherwise the detected charset."""
    if (wide := wide_encoding(data)) is not None:
        try:
            return data.decode(wide)
        except UnicodeDecodeError as exc:
            raise DataError(f"{source} is {wide.upper()} text that does not decode past byte {exc.start}",
                            hint="re-save it as UTF-8 (or UTF-16 in full)") from exc  # fmt: skip
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise DataError(f"{source} looks like binary data, not text", hint="convert it to PDF, DOCX or text")
    return str(best)


def _with_record(document: ExtractedDocument, raw: str, source: str) -> ExtractedDocument:
    """The document with its court record (PACER docket report, CM/ECF notice) when it is one."""
    record = court_record(document.kind, raw, document.text, source)
    if record is None:
        return document
    return document.model_copy(update={"metadata": {**document.metadata, RECORD_KEY: record}})


def extract(
    data: bytes, source: str, settings: Settings, ocr: OcrProvider | None = None,
    given: Mapping[int, tuple[str, str]] | None = None,
) -> ExtractedDocument:
    """Text, pages and metadata of one document. Raises a categorized LegaldocError on failure."""
    if not data:
        raise DataError(f"{source} is empty (0 bytes)", hint="re-download or re-export the file")
    if len(data) > settings.max_file_mb * 1024 * 1024:
        raise DocumentTooLarge(
            f"{source} is {len(data) / 1e6:.0f} MB, over the {settings.max_file_mb:.0f} MB limit",
            hint="raise LEGALDOC_MAX_FILE_MB or split the file",
        )
    deadline = Deadline(settings.document_timeout, f"extracting {source}")
    kind = sniff_kind(data, source)
    if kind == "pdf":
        document = extract_pdf(data, source, settings, ocr, deadline, given)
    elif kind == "docx":
        document = extract_docx(data, source, settings, deadline)
    elif kind in ("doc", "wpd"):
        document = extract_legacy(data, source, kind, settings, deadline)
    elif kind == "image":
        document = extract_image(data, source, settings, ocr, deadline)
    elif kind == "email":
        document = extract_email(data, source)
        document = _with_record(document, data.decode("utf-8", errors="replace"), source)
    elif kind == "msg":
        document = extract_outlook(data, source)
    elif kind == "archive":
        _refuse_archive(data, source, settings)
        raise AssertionError("unreachable: _refuse_archive always raises")
    elif kind == "html":
        markup = decode_text(data, source)
        document = _with_record(assemble("html", [(clean_text(html_to_text(markup)), False, "html")]), markup, source)
    elif kind == "text":
        if b"\x00" in data[:4096] and wide_encoding(data) is None:
            raise UnsupportedFormat(
                f"{source} is a binary file of a format legaldoc does not read",
                hint=f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}",
            )
        document = assemble("text", [(clean_text(decode_text(data, source)), False, "text")])
    else:  # pragma: no cover - sniff_kind returns only the kinds above
        raise UnsupportedFormat(f"{source}: unknown kind {kind}")
    if not document.text.strip():
        raise DataError(
            f"{source} has no text (not even after OCR)",
            hint="check that the file is not blank; scanned pages need tesseract",
        )
    return document
