"""Render and decompression bombs: a page or image is never decoded past the pixel budget
(``ocr_max_pixels``); a huge page is rendered at a lower dpi, or fails as DATA when even the floor
dpi does not fit. The PDFs and images are real files, built here."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image

from legaldoc.config import load_settings
from legaldoc.errors import DocumentTooLarge, ErrorCategory
from legaldoc.pipeline.extract import extract
from legaldoc.pipeline.extract.pdf import MIN_RENDER_DPI
from tests.conftest import settings_env


class RecordingOcr:
    """An OCR provider that records the size of every image it is given and reads a fixed line."""

    name = "recording"

    def __init__(self) -> None:
        self.sizes: list[tuple[int, int]] = []
        self.dpis: list[object] = []

    def image_to_text(self, image: Image.Image, *, timeout: float) -> str:
        self.sizes.append(image.size)
        self.dpis.append(image.info.get("legaldoc_render_dpi"))
        return "Smith v. Jones, 123 F.3d 456 (9th Cir. 1999). " * 10


def _blank_pdf(side_pt: float) -> bytes:
    document = pdfium.PdfDocument.new()
    document.new_page(side_pt, side_pt)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (width, height), 1).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_huge_page_is_rendered_at_a_lower_dpi_within_the_pixel_budget(tmp_path):
    settings = load_settings(data_dir=tmp_path / ".legaldoc")
    ocr = RecordingOcr()
    document = extract(_blank_pdf(3000), "big-page.pdf", settings, ocr)
    assert document.pages[0].ocr
    ((width, height),) = ocr.sizes
    assert width * height <= settings.ocr_max_pixels
    assert width * height >= settings.ocr_max_pixels * 0.9  # scaled down to the budget, not further
    (dpi,) = ocr.dpis
    assert isinstance(dpi, int) and MIN_RENDER_DPI <= dpi < settings.ocr_dpi
    assert abs(width - 3000 / 72 * dpi) <= 2


def test_a_normal_page_keeps_the_configured_dpi(tmp_path):
    settings = load_settings(data_dir=tmp_path / ".legaldoc")
    ocr = RecordingOcr()
    extract(_blank_pdf(612), "letter.pdf", settings, ocr)
    assert ocr.sizes == [(round(612 / 72 * 300), round(612 / 72 * 300))] and ocr.dpis == [300]


def test_a_page_too_large_even_at_the_floor_dpi_is_data_before_rendering(tmp_path):
    settings = load_settings(data_dir=tmp_path / ".legaldoc")
    ocr = RecordingOcr()
    with pytest.raises(DocumentTooLarge) as caught:
        extract(_blank_pdf(14400), "poster.pdf", settings, ocr)
    assert ocr.sizes == []  # refused before anything was rendered
    error = caught.value
    assert error.category is ErrorCategory.DATA
    assert "poster.pdf" in error.message and "page 1" in error.message and "too large to render" in error.message
    assert error.hint and "LEGALDOC_OCR_MAX_PIXELS" in error.hint


def test_an_image_over_the_pixel_budget_is_data_before_decoding(tmp_path):
    settings = load_settings(data_dir=tmp_path / ".legaldoc")
    ocr = RecordingOcr()
    data = _png(8000, 7500)  # 60 megapixels: under PIL's own default limit, over ocr_max_pixels
    with pytest.raises(DocumentTooLarge) as caught:
        extract(data, "scan.png", settings, ocr)
    assert ocr.sizes == []
    assert "scan.png" in caught.value.message and "too large to decode safely" in caught.value.message
    assert caught.value.hint and "LEGALDOC_OCR_MAX_PIXELS" in caught.value.hint
    assert settings.ocr_max_pixels == Image.MAX_IMAGE_PIXELS  # set explicitly, not PIL's default


def test_a_later_tiff_frame_over_the_budget_is_data(tmp_path):
    settings = load_settings(data_dir=tmp_path / ".legaldoc", ocr_max_pixels=4_000_000)
    buffer = io.BytesIO()
    small, large = Image.new("1", (1000, 1000), 1), Image.new("1", (3000, 2000), 1)
    small.save(buffer, format="TIFF", save_all=True, append_images=[large])
    ocr = RecordingOcr()
    with pytest.raises(DocumentTooLarge, match="frame 2"):
        extract(buffer.getvalue(), "two-frames.tiff", settings, ocr)
    assert ocr.sizes == [(1000, 1000)]


# Runs `legaldoc process` as a child and prints its outcome with the peak RSS of every descendant
# (the CLI and tesseract): RUSAGE_CHILDREN counts the largest process waited for.
_PEAK = textwrap.dedent("""
    import json, resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps({"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "peak_mb": peak_mb}))
""")


def _process_with_peak(path: Path, tmp_path: Path) -> tuple[dict, list[dict]]:
    env = settings_env(load_settings(data_dir=tmp_path / ".legaldoc"))
    command = [sys.executable, "-c", _PEAK, sys.executable, "-m", "legaldoc", "process", str(path), "--json"]
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=True)
    outcome = json.loads(completed.stdout)
    return outcome, [json.loads(line) for line in outcome["stdout"].splitlines()]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("side_pt", "expected"), [(14400, "too large to render"), (3000, "has no text")])
def test_process_of_a_render_bomb_stays_within_memory_and_fails_as_data(tmp_path, side_pt, expected):
    path = tmp_path / f"bomb-{side_pt}.pdf"
    path.write_bytes(_blank_pdf(side_pt))
    outcome, reports = _process_with_peak(path, tmp_path)
    print(f"{side_pt}-pt page: peak RSS {outcome['peak_mb']:.0f} MB")
    assert "Traceback" not in outcome["stderr"]
    (report,) = reports
    assert report["status"] == "failed" and report["error"]["category"] == "DATA", report
    assert path.name in report["error"]["message"] and expected in report["error"]["message"]
    assert outcome["peak_mb"] < 500  # before the cap: 3.6 GB (or MemoryError), and 740 MB; after: 105 and 235


def test_the_pixel_budget_is_part_of_the_extraction_cache_key_only_when_changed(tmp_path):
    from legaldoc.services.caching import extract_key

    default = load_settings(data_dir=tmp_path / ".legaldoc")
    assert extract_key(default, "0" * 64) == extract_key(default.model_copy(update={"ocr_max_pixels": 45_000_000}), "0" * 64)
    assert extract_key(default, "0" * 64) != extract_key(default.model_copy(update={"ocr_max_pixels": 90_000_000}), "0" * 64)
