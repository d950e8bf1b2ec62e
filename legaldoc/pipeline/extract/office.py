"""DOCX with python-docx (zip-bomb guarded); .doc and .wpd converted by LibreOffice when present."""

from __future__ import annotations

import atexit
import io
import os
import shutil
import subprocess
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from legaldoc.config import Settings
from legaldoc.errors import DataError, DocumentTooLarge, StageTimeout
from legaldoc.models import ExtractedDocument
from legaldoc.pipeline.extract.textutil import Deadline, assemble, clean_text

if TYPE_CHECKING:
    from docx.document import Document as DocxDocument

_MAX_COMPRESSION_RATIO = 200

_profiles: dict[int, Path] = {}
_soffice_lock = threading.Lock()  # one conversion at a time per profile: a second soffice on it would hand over to the first


def _soffice_profile() -> Path:
    """This process's LibreOffice user profile, made by its first conversion and reused after (a
    fresh profile per document costs LibreOffice its first-start set-up every time); removed at exit."""
    pid = os.getpid()
    if pid not in _profiles:
        folder = Path(tempfile.mkdtemp(prefix="legaldoc-soffice-profile-"))
        _profiles[pid] = folder
        atexit.register(shutil.rmtree, folder, True)
    return _profiles[pid]


def _guard_zip(data: bytes, source: str, settings: Settings) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise DataError(f"{source} is not a valid DOCX (broken zip container)", hint="re-save it from Word") from exc
    inflated = sum(member.file_size for member in members)
    if inflated > settings.max_unzipped_mb * 1024 * 1024:
        raise DocumentTooLarge(
            f"{source} would inflate to {inflated / 1e6:.0f} MB, over the {settings.max_unzipped_mb:.0f} MB limit",
            hint="this looks like a zip bomb; raise LEGALDOC_MAX_UNZIPPED_MB if the file is genuine",
        )
    compressed = sum(member.compress_size for member in members) or 1
    if inflated / compressed > _MAX_COMPRESSION_RATIO and inflated > 50 * 1024 * 1024:
        raise DocumentTooLarge(f"{source} has a suspicious compression ratio ({inflated // compressed}:1)")
    if not any(member.filename == "word/document.xml" for member in members):
        raise DataError(f"{source} is a zip file without word/document.xml, not a DOCX")


def _docx_blocks(document: DocxDocument) -> list[str]:
    """Paragraphs and table rows of the body, in document order."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    blocks: list[str] = []
    body = document.element.body
    for child in body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            blocks.append(Paragraph(child, document).text)
        elif tag == "tbl":
            for row in Table(child, document).rows:
                cells: list[str] = []
                for cell in row.cells:
                    text = cell.text.strip()
                    if text and (not cells or cells[-1] != text):
                        cells.append(text)
                blocks.append("  ".join(cells))
    return blocks


def extract_docx(data: bytes, source: str, settings: Settings, deadline: Deadline) -> ExtractedDocument:
    import docx

    _guard_zip(data, source, settings)
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:  # python-docx raises many kinds for a broken part
        raise DataError(f"{source} is a damaged DOCX ({type(exc).__name__}: {exc})", hint="re-save it from Word") from exc
    deadline.check()
    text = clean_text("\n".join(_docx_blocks(document)))
    properties = document.core_properties
    metadata = {"title": properties.title or None, "author": properties.author or None}
    return assemble("docx", [(text, False, "docx")], {k: v for k, v in metadata.items() if v})


def extract_legacy(
    data: bytes, source: str, kind: str, settings: Settings, deadline: Deadline
) -> ExtractedDocument:
    """Convert .doc / .wpd to DOCX with LibreOffice, then read the DOCX."""
    label = {"doc": "a legacy Word (.doc)", "wpd": "a WordPerfect (.wpd)"}[kind]
    soffice = shutil.which(settings.soffice_cmd)
    if soffice is None:
        raise DataError(
            f"{source} is {label} file and LibreOffice is not installed to convert it",
            hint="install LibreOffice (sudo apt-get install libreoffice-writer-nogui) "
            "or convert it yourself: soffice --headless --convert-to docx FILE",
        )
    with tempfile.TemporaryDirectory(prefix="legaldoc-convert-") as workdir:
        work = Path(workdir)
        original = work / f"input.{kind}"
        original.write_bytes(data)
        timeout = max(5.0, min(settings.convert_timeout, deadline.remaining()))
        command = [
            soffice, "--headless", "--norestore", "--nolockcheck",
            f"-env:UserInstallation={_soffice_profile().as_uri()}",
            "--convert-to", "docx:MS Word 2007 XML", "--outdir", str(work / "out"), str(original),
        ]  # fmt: skip
        try:
            with _soffice_lock:
                subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise StageTimeout(f"LibreOffice took longer than {timeout:.0f}s converting {source}") from exc
        converted = work / "out" / "input.docx"
        if not converted.exists():
            raise DataError(
                f"LibreOffice could not convert {source} ({label} file)",
                hint="open it in a word processor and save it as DOCX or PDF",
            )
        document = extract_docx(converted.read_bytes(), source, settings, deadline)
    return document.model_copy(update={"kind": kind, "pages": tuple(p.model_copy(update={"method": "soffice+docx"}) for p in document.pages)})
