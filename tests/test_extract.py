"""Extraction of the real corpus: text layers, OCR, DOCX, legacy formats and bad input."""

from __future__ import annotations

import re

import pytest
from rapidfuzz import fuzz

from legaldoc.config import load_settings
from legaldoc.errors import ConfigurationError, DataError, ErrorCategory
from legaldoc.pipeline.extract import extract, ocr_provider_from_settings, sniff_kind
from legaldoc.pipeline.extract.html import html_to_text
from tests.conftest import DOCUMENTS


def words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{4,}", text)}


def test_every_pdf_and_the_docx_is_done_and_empty_fails_as_data(corpus_run):
    _, _, reports = corpus_run
    for path in DOCUMENTS.iterdir():
        report = reports[path.name]
        if path.name == "empty.pdf":
            assert report.status == "failed"
            assert report.error.category is ErrorCategory.DATA
            assert "empty.pdf" in report.error.message
        elif path.suffix in (".pdf", ".docx"):
            assert report.status == "done", (path.name, report.error)
            assert report.pages >= 1 and report.chunks >= 1


def test_legacy_formats_are_converted_with_libreoffice(corpus_run):
    _, _, reports = corpus_run
    for name in ("word-doc.doc", "word-perfect.wpd"):
        report = reports[name]
        assert report.status == "done", report.error
        assert any(m["type"] == "CASE" for m in report.mentions)


@pytest.mark.parametrize("name, kind", [("word-doc.doc", "a legacy Word (.doc)"), ("word-perfect.wpd", "a WordPerfect (.wpd)")])
def test_legacy_formats_without_libreoffice_fail_as_data_saying_how_to_convert(name, kind):
    settings = load_settings(soffice_cmd="/nonexistent/soffice")
    with pytest.raises(DataError) as caught:
        extract((DOCUMENTS / name).read_bytes(), name, settings)
    message = str(caught.value)
    assert name in message and kind in message and "--convert-to docx" in message


def test_scanned_pdfs_come_out_through_ocr_with_readable_text(corpus_run):
    settings, _, reports = corpus_run
    ocr = ocr_provider_from_settings(settings)
    vector = extract((DOCUMENTS / "vector-pdf.pdf").read_bytes(), "vector-pdf.pdf", settings, ocr)
    scan = extract((DOCUMENTS / "image-pdf.pdf").read_bytes(), "image-pdf.pdf", settings, ocr)
    assert scan.ocr_pages == 2 and all(page.ocr for page in scan.pages)
    # The scan is of the same opinion's first pages: OCR must recover its words.
    first_vector_page = vector.text[vector.pages[0].start : vector.pages[0].end]
    first_scan_page = scan.text[scan.pages[0].start : scan.pages[0].end]
    assert fuzz.token_set_ratio(first_vector_page, first_scan_page) > 80
    assert {"tarrant", "regional", "water", "district", "herrmann"} <= words(scan.text)

    second = extract((DOCUMENTS / "image-pdf-2.pdf").read_bytes(), "image-pdf-2.pdf", settings, ocr)
    assert second.ocr_pages == 1 and len(words(second.text)) > 100

    variation = extract((DOCUMENTS / "ocr_pdf_variation.pdf").read_bytes(), "ocr_pdf_variation.pdf", settings, ocr)
    assert variation.pages[0].ocr and "UNITED" in variation.text  # only in the image, not the thin text layer

    cand = extract((DOCUMENTS / "gov.uscourts.cand.203070.27.0.pdf").read_bytes(), "cand.pdf", settings, ocr)
    assert cand.ocr_pages == 2
    layer_only = extract((DOCUMENTS / "gov.uscourts.cand.203070.27.0.pdf").read_bytes(), "cand.pdf", settings, None)
    assert len(words(cand.text) - words(layer_only.text)) > 100  # the image body, not just the header stamp
    assert reports["gov.uscourts.cand.203070.27.0.pdf"].ocr_pages == 2


def test_vector_pdf_keeps_its_text_layer_and_30_pages():
    settings = load_settings()
    document = extract((DOCUMENTS / "vector-pdf.pdf").read_bytes(), "vector-pdf.pdf", settings, None)
    assert len(document.pages) == 30
    assert document.pages[0].start == 0 and document.pages[-1].end == len(document.text)
    assert "\r" not in document.text


def test_junk_before_the_pdf_header_and_wrong_mime_are_read():
    settings = load_settings()
    missouri = extract((DOCUMENTS / "missouri.pdf").read_bytes(), "missouri.pdf", settings, None)
    assert len(missouri.pages) == 5 and "Missouri Court of Appeals" in missouri.text
    assert sniff_kind((DOCUMENTS / "broken-mime.pdf").read_bytes(), "broken-mime.bin") == "pdf"


@pytest.mark.parametrize(
    "data, name, expected",
    [
        (b"", "a.pdf", "is empty"),
        (b"%PDF-1.7\n garbage that is not a pdf", "broken.pdf", "not a readable PDF"),
        (b"PK\x03\x04 not really a zip", "broken.docx", "not a valid DOCX"),
        (b"\x00\x01\x02\x03" * 100, "blob.bin", "binary file"),
        (b"\x89PNG\r\n\x1a\n truncated", "scan.png", "not a readable image"),
    ],
)
def test_bad_input_is_a_data_error_naming_the_file(data, name, expected):
    settings = load_settings()
    with pytest.raises(DataError) as caught:
        extract(data, name, settings, ocr_provider_from_settings(settings))
    assert name in str(caught.value) and expected in str(caught.value)
    assert caught.value.category is ErrorCategory.DATA


def test_encrypted_pdf_is_a_data_error(tmp_path):
    import pypdfium2 as pdfium  # noqa: F401  (reportlab writes the encrypted file)
    from reportlab.lib import pdfencrypt
    from reportlab.pdfgen import canvas

    path = tmp_path / "locked.pdf"
    pdf = canvas.Canvas(str(path), encrypt=pdfencrypt.StandardEncryption("secret", canPrint=0))
    pdf.drawString(72, 720, "Sealed exhibit")
    pdf.save()
    with pytest.raises(DataError, match="encrypted"):
        extract(path.read_bytes(), "locked.pdf", load_settings(), None)


def test_docx_zip_bomb_guard(tmp_path):
    import zipfile

    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", b"\x00" * (3 * 1024 * 1024))
    with pytest.raises(DataError, match="inflate"):
        extract(path.read_bytes(), "bomb.docx", load_settings(max_unzipped_mb=1))


def test_too_many_pages_and_too_large_fail_as_data():
    data = (DOCUMENTS / "vector-pdf.pdf").read_bytes()
    with pytest.raises(DataError, match="30 pages"):
        extract(data, "vector-pdf.pdf", load_settings(max_pages=10))
    with pytest.raises(DataError, match="over the"):
        extract(data, "vector-pdf.pdf", load_settings(max_file_mb=0.5))


def test_missing_tesseract_is_a_configuration_error():
    settings = load_settings(ocr_engine="cli", tesseract_cmd="/nonexistent/tesseract")
    with pytest.raises(ConfigurationError, match="apt-get install tesseract-ocr"):
        extract((DOCUMENTS / "image-pdf-2.pdf").read_bytes(), "image-pdf-2.pdf", settings, ocr_provider_from_settings(settings))


def test_html_to_text_keeps_blocks_and_collapses_inline_whitespace():
    text = html_to_text("<html><head><style>p{}</style></head><body><p>Case Name:</p><td>Stapler v.\n  Automatic</td>"
                        "<br>Second&nbsp;line<script>x()</script></body></html>")  # fmt: skip
    assert text.splitlines() == ["Case Name:", "Stapler v. Automatic", "Second line"]


def test_latin1_text_is_decoded():
    document = extract("Défendeur: Société Générale, Plaintiff".encode("latin-1") * 5, "notes.txt", load_settings())
    assert "Société Générale" in document.text


@pytest.mark.parametrize(("markup", "expected"), [
    ("<html><head><title>Docket</title><body><p>Case No. 1:21-cv-1</p>", "Case No. 1:21-cv-1"),  # no </head>
    ("<head><meta charset=utf-8><table><tr><td>Plaintiff</td><td>ACME</td></tr></table>", "Plaintiff ACME"),
    ("<head><title>T</title><style>p{}</style></head><body><p>A</p><script>var x = 1</script><p>B</p>", "A\n\nB"),
    ("<p>keep</p><noscript>gone</noscript><p>also</p>", "keep\n\nalso"),
])  # fmt: skip
def test_html_without_a_closed_head_keeps_its_body(markup, expected):
    assert html_to_text(markup) == expected


def test_escaped_markup_in_a_page_reads_as_text():
    from legaldoc.pipeline.extract.html import html_to_text

    page = ("<html><body><p>Cases</p><p>&lt;td align=left&gt;&lt;br&gt;Pursley v. Williams et al&lt;br&gt;&lt;/td&gt;"
            "&lt;td&gt;04/01/20&lt;/td&gt;</p></body></html>")  # fmt: skip
    text = html_to_text(page)
    assert "<" not in text and "Pursley v. Williams et al\n" in text and "04/01/20" in text
    assert html_to_text("<p>if a &lt;br&gt; b</p>") == "if a <br> b"  # one tag written about is left alone


def test_sparse_text_on_a_full_page_scan_needs_ocr_and_on_a_blank_page_does_not():
    """needs_ocr measures the images of a page (pypdfium2's get_bounds, 5.0 on)."""
    import io

    import pypdfium2 as pdfium
    from PIL import Image
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    from legaldoc.pipeline.extract.pdf import needs_ocr

    settings = load_settings()
    scan = io.BytesIO()
    Image.new("L", (200, 260), 200).save(scan, format="PNG")
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=(612, 792))
    pdf.drawImage(ImageReader(io.BytesIO(scan.getvalue())), 0, 0, width=612, height=792)
    pdf.drawString(72, 720, "Exhibit A")
    pdf.showPage()
    pdf.drawString(72, 720, "Exhibit A")
    pdf.showPage()
    pdf.save()
    document = pdfium.PdfDocument(out.getvalue())
    scanned, plain = document[0], document[1]
    assert needs_ocr(scanned, "Exhibit A", settings)
    assert not needs_ocr(plain, "Exhibit A", settings)
