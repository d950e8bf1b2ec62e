"""PDF text with pypdfium2, page by page; pages with too thin a text layer go through OCR."""

from __future__ import annotations

from collections.abc import Mapping

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from legaldoc.config import Settings
from legaldoc.errors import DataError, DocumentTooLarge
from legaldoc.models import ExtractedDocument
from legaldoc.pipeline.extract.lines import clearly_below
from legaldoc.pipeline.extract.ocr import RENDER_DPI_KEY, OcrProvider, PageOcr
from legaldoc.pipeline.extract.tesseract_api import PageRead
from legaldoc.pipeline.extract.textutil import Deadline, assemble, clean_text


def _open(data: bytes, source: str) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        reason = str(exc)
        if "password" in reason.lower():
            raise DataError(
                f"{source} is an encrypted PDF",
                hint="remove the password (e.g. qpdf --decrypt) and submit it again",
            ) from exc
        raise DataError(
            f"{source} is not a readable PDF ({reason})",
            hint="check the file is complete; re-save or re-export it as PDF",
        ) from exc


def _image_coverage(page: pdfium.PdfPage) -> float:
    width, height = page.get_size()
    if width <= 0 or height <= 0:
        return 0.0
    covered = 0.0
    for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=2):
        left, bottom, right, top = image.get_bounds()
        covered += max(0.0, right - left) * max(0.0, top - bottom)
    return min(1.0, covered / (width * height))


MIN_RENDER_DPI = 70
"""Below this tesseract reads nothing useful: a page that fits the pixel budget only lower fails as DATA."""


def render_dpi(width_pt: float, height_pt: float, settings: Settings, source: str, number: int, target: int | None = None) -> int:
    """The dpi a page of this size (in points) is rendered at for OCR: ``target`` (``ocr_dpi``), scaled
    down so the bitmap stays within ``ocr_max_pixels``; DATA when even MIN_RENDER_DPI does not fit."""
    area_in = max(width_pt, 1.0) * max(height_pt, 1.0) / (72 * 72)
    dpi = settings.ocr_dpi if target is None else target
    if area_in * dpi * dpi > settings.ocr_max_pixels:
        dpi = int((settings.ocr_max_pixels / area_in) ** 0.5)
    if dpi < MIN_RENDER_DPI:
        raise DocumentTooLarge(
            f"{source}: page {number} is {width_pt / 72:.0f} x {height_pt / 72:.0f} inches, too large to render for OCR "
            f"(at least {area_in * MIN_RENDER_DPI**2 / 1e6:.0f} megapixels at {MIN_RENDER_DPI} dpi, "
            f"over the budget of {settings.ocr_max_pixels / 1e6:.0f})",
            hint="raise LEGALDOC_OCR_MAX_PIXELS, or re-export the document at a normal page size",
        )
    return dpi


def needs_ocr(page: pdfium.PdfPage, text: str, settings: Settings) -> bool:
    """A page needs OCR when its text layer is too thin, or sparse text sits on a full-page scan."""
    chars = sum(1 for ch in text if not ch.isspace())
    if chars == 0:
        return True  # nothing in the text layer: a scan, or text drawn as outlines
    if chars >= 2 * settings.ocr_min_chars:
        return False
    coverage = _image_coverage(page)
    if coverage == 0.0:
        return False  # a short page of real text: there is nothing more for OCR to read
    return chars < settings.ocr_min_chars or coverage >= settings.ocr_image_coverage


def _read_at(page: pdfium.PdfPage, ocr: PageOcr, dpi: int, timeout: float, reread_below: float = 0.0) -> PageRead | None:
    """The engine's reading of the page rendered at ``dpi``; None, without asking the engine, when
    ``reread_below`` is set and the page's ink lines are clearly under it (`lines.clearly_below`)."""
    bitmap = page.render(scale=dpi / 72, grayscale=True)
    try:
        if reread_below > 0:
            image = bitmap.to_pil()
            if clearly_below(image if image.mode == "L" else image.convert("L"), dpi, reread_below):
                return None
        return ocr.read_pixels(bytes(bitmap.buffer), bitmap.width, bitmap.height, bitmap.stride, dpi, timeout=timeout,
                               reread_below=reread_below)  # fmt: skip
    finally:
        bitmap.close()


def ocr_page(page: pdfium.PdfPage, ocr: OcrProvider, settings: Settings, source: str, number: int, timeout: float) -> str:
    """The page's text by OCR. An engine that measures text lines lays the page out at ``ocr_dpi``
    and recognizes it there, unless its median line is under ``ocr_small_text_px`` (scaled to
    ``ocr_dpi``): then it is read at ``ocr_small_text_dpi`` instead. A page whose ink lines are
    clearly that small already in the ``ocr_dpi`` bitmap skips the engine's layout there and goes
    straight to ``ocr_small_text_dpi``. Any other provider gets one image at ``ocr_small_text_dpi``."""
    width, height = page.get_size()
    if isinstance(ocr, PageOcr):
        dpi = render_dpi(width, height, settings, source, number)
        finer = render_dpi(width, height, settings, source, number, settings.ocr_small_text_dpi)
        below = settings.ocr_small_text_px * dpi / settings.ocr_dpi if finer > dpi else 0.0
        first = _read_at(page, ocr, dpi, timeout, below)
        if first is not None and first.read:
            return first.text
        second = _read_at(page, ocr, finer, timeout)
        assert second is not None  # no threshold: always read
        return second.text
    dpi = render_dpi(width, height, settings, source, number, max(settings.ocr_dpi, settings.ocr_small_text_dpi))
    bitmap = page.render(scale=dpi / 72, grayscale=True)
    try:
        image = bitmap.to_pil()
        image.info[RENDER_DPI_KEY] = dpi
        return ocr.image_to_text(image, timeout=timeout)
    finally:
        bitmap.close()


def extract_pdf(
    data: bytes, source: str, settings: Settings, ocr: OcrProvider | None, deadline: Deadline,
    given: Mapping[int, tuple[str, str]] | None = None,
) -> ExtractedDocument:
    """Text of every page; OCR where the text layer is too thin and an OCR provider is given.
    `given` holds pages (0-based) already read by a remote OCR provider: (text, method)."""
    pdf = _open(data, source)
    try:
        page_count = len(pdf)
        if page_count == 0:
            raise DataError(f"{source} is a PDF with no pages")
        if page_count > settings.max_pages:
            raise DocumentTooLarge(
                f"{source} has {page_count} pages, more than the limit of {settings.max_pages}",
                hint="raise LEGALDOC_MAX_PAGES or split the PDF",
            )
        pages: list[tuple[str, bool, str]] = []
        for index in range(page_count):
            deadline.check()
            if given is not None and index in given:
                pages.append((clean_text(given[index][0]), True, given[index][1]))
                continue
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                text = clean_text(textpage.get_text_bounded())
                textpage.close()
                if ocr is not None and needs_ocr(page, text, settings):
                    timeout = max(1.0, min(settings.ocr_page_timeout, deadline.remaining()))
                    ocr_text = clean_text(ocr_page(page, ocr, settings, source, index + 1, timeout))
                    if len(ocr_text.strip()) >= len(text.strip()):
                        pages.append((ocr_text, True, ocr.name))
                        continue
                pages.append((text, False, "text-layer"))
            finally:
                page.close()
        metadata = {"page_count": page_count}
        return assemble("pdf", pages, metadata)
    finally:
        pdf.close()
