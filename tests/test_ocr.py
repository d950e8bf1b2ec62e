"""The in-process OCR engine (tesserocr): one engine per process and language reused across pages,
one thread, a second reading at a higher dpi only for small text, the CLI as the fallback, and
bad images as classified errors. Pages come from the real corpus."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pypdfium2 as pdfium
import pytest
from PIL import Image
from rapidfuzz import fuzz

from legaldoc.config import load_settings
from legaldoc.errors import ConfigurationError, DataError
from legaldoc.pipeline.extract import extract, lines, ocr_provider_from_settings, tesseract_api
from legaldoc.pipeline.extract.ocr import InProcessTesseract, TesseractOcr, resolved_engine
from legaldoc.pipeline.extract.tesseract_api import PageRead
from legaldoc.services.caching import extraction_fingerprint
from tests.conftest import DOCUMENTS

SCAN = DOCUMENTS / "image-pdf.pdf"  # two scanned pages of a slip opinion
ROOT = Path(__file__).resolve().parents[1]


class RecordingEngine(InProcessTesseract):
    """The real in-process engine, recording the dpi of every reading."""

    def __init__(self) -> None:
        super().__init__()
        self.dpis: list[int] = []

    def read_pixels(self, pixels: bytes, width: int, height: int, stride: int, dpi: int, *, timeout: float,
                    reread_below: float = 0.0) -> PageRead:  # fmt: skip
        self.dpis.append(dpi)
        return super().read_pixels(pixels, width, height, stride, dpi, timeout=timeout, reread_below=reread_below)


def _image_pdf(pages: list[tuple[int, float]]) -> bytes:
    """A PDF of image-only pages: page ``index`` of the slip opinion rendered to an image and drawn
    at ``scale`` of its size (0.6: its 11-12 pt type becomes about 7 pt), so OCR must read it."""
    source = pdfium.PdfDocument(DOCUMENTS / "vector-pdf.pdf")
    target = pdfium.PdfDocument.new()
    for index, scale in pages:
        width, height = source[index].get_size()
        bitmap = source[index].render(scale=300 / 72, grayscale=True)
        image = pdfium.PdfImage.new(target)
        image.set_bitmap(bitmap)
        page = target.new_page(width, height)
        image.set_matrix(pdfium.PdfMatrix().scale(width * scale, height * scale)
                         .translate(width * (1 - scale) / 2, height * (1 - scale) / 2))  # fmt: skip
        page.insert_obj(image)
        page.gen_content()
    buffer = io.BytesIO()
    target.save(buffer)
    return buffer.getvalue()


def test_auto_picks_the_in_process_engine_and_pages_reuse_one_engine():
    settings = load_settings()
    assert resolved_engine(settings) == "tesserocr"
    ocr = ocr_provider_from_settings(settings)
    assert isinstance(ocr, InProcessTesseract)
    tesseract_api.close_all()
    before = tesseract_api.created
    first = extract(SCAN.read_bytes(), "image-pdf.pdf", settings, ocr)
    second = extract((DOCUMENTS / "image-pdf-2.pdf").read_bytes(), "image-pdf-2.pdf", settings, ocr_provider_from_settings(settings))
    assert first.ocr_pages == 2 and second.ocr_pages == 1
    assert tesseract_api.created - before == 1  # three pages, two providers, one model load
    made = tesseract_api._engine(ocr.lang, ocr.tessdata())
    assert {name: made.GetVariableAsString(name) for name in tesseract_api.ENGINE_VARIABLES} == tesseract_api.ENGINE_VARIABLES
    assert {page.method for page in first.pages} == {"tesseract"}


def test_in_process_engine_reads_the_scan_as_well_as_the_cli():
    settings = load_settings()
    data = (DOCUMENTS / "image-pdf-2.pdf").read_bytes()
    engine = extract(data, "image-pdf-2.pdf", settings, ocr_provider_from_settings(settings))
    cli_settings = load_settings(ocr_engine="cli")
    cli = extract(data, "image-pdf-2.pdf", cli_settings, ocr_provider_from_settings(cli_settings))
    assert fuzz.token_set_ratio(engine.text, cli.text) > 90 and len(engine.text) > 1000


def test_ocr_runs_on_one_thread_in_a_worker_process(tmp_path):
    """No thread pool is left behind by a page: the process has as many threads after OCR as before."""
    code = (
        "import json, os, psutil, pypdfium2 as pdfium\n"
        "from legaldoc.config import load_settings\n"
        "from legaldoc.pipeline.extract import extract, ocr_provider_from_settings\n"
        "s = load_settings(); ocr = ocr_provider_from_settings(s)\n"
        "before = psutil.Process().num_threads()\n"
        f"doc = extract(open({str(DOCUMENTS / 'image-pdf-2.pdf')!r}, 'rb').read(), 'scan.pdf', s, ocr)\n"
        "print(json.dumps({'before': before, 'after': psutil.Process().num_threads(),"
        " 'omp': os.environ.get('OMP_THREAD_LIMIT'), 'ocr': doc.ocr_pages, 'kind': type(ocr).__name__}))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["kind"] == "InProcessTesseract" and seen["ocr"] == 1
    assert seen["omp"] == "1" and seen["after"] == seen["before"], seen


def test_small_text_is_read_again_at_the_small_text_dpi_and_normal_text_is_not(monkeypatch):
    settings = load_settings()
    assert (settings.ocr_dpi, settings.ocr_small_text_dpi) == (200, 300)
    pdf = _image_pdf([(5, 1.0), (5, 0.6), (6, 1.0)])
    engine = RecordingEngine()
    document = extract(pdf, "mixed-sizes.pdf", settings, engine)
    assert document.ocr_pages == 3
    assert engine.dpis == [200, 300, 200]  # the 60% page's ink lines are clearly small: straight to 300
    small = document.text[document.pages[1].start : document.pages[1].end]
    assert "Arkansas" in small and "Louisiana" in small
    monkeypatch.setattr(lines, "RUN_TO_TESSERACT", 0.0)  # no shortcut: tesseract's layout at 200 decides
    engine = RecordingEngine()
    again = extract(pdf, "mixed-sizes.pdf", settings, engine)
    assert engine.dpis == [200, 200, 300, 200]  # only the 60% page is read twice
    assert again.text == document.text


def test_ink_runs_tell_small_text_from_normal_text():
    source = pdfium.PdfDocument(DOCUMENTS / "vector-pdf.pdf")
    normal = source[5].render(scale=200 / 72, grayscale=True).to_pil()
    small = normal.resize((normal.width // 2, normal.height // 2), Image.Resampling.LANCZOS)
    run, count = lines.ink_run_height(normal, 200)
    assert run is not None and count >= lines.MIN_RUNS and 15 < run < 30
    small_run, _ = lines.ink_run_height(small, 200)
    assert small_run is not None and small_run < 0.7 * run
    assert lines.clearly_below(small, 200, 22) and not lines.clearly_below(normal, 200, 22)
    assert not lines.clearly_below(Image.new("L", (1700, 2200), 255), 200, 22)  # nothing inked: not clear
    assert not lines.clearly_below(small, 200, 0)


def test_the_second_reading_is_off_at_zero_and_the_threshold_is_a_setting():
    engine = RecordingEngine()
    extract(_image_pdf([(5, 0.6)]), "small.pdf", load_settings(ocr_small_text_px=0), engine)
    assert engine.dpis == [200]
    engine = RecordingEngine()
    extract(_image_pdf([(5, 1.0)]), "normal.pdf", load_settings(ocr_small_text_px=1000, ocr_small_text_dpi=250), engine)
    assert engine.dpis == [250]  # lines clearly under 1000 px: not laid out at 200 first
    engine = RecordingEngine()
    extract(_image_pdf([(5, 1.0)]), "normal.pdf", load_settings(ocr_small_text_px=33, ocr_small_text_dpi=250), engine)
    assert engine.dpis == [200, 250]  # under 33 px by tesseract's layout, not clearly by its ink


def test_forced_cli_reads_pages_at_the_small_text_dpi_through_the_tesseract_program():
    settings = load_settings(ocr_engine="cli")
    ocr = ocr_provider_from_settings(settings)
    assert isinstance(ocr, TesseractOcr) and ocr.dpi == settings.ocr_small_text_dpi
    document = extract((DOCUMENTS / "image-pdf-2.pdf").read_bytes(), "image-pdf-2.pdf", settings, ocr)
    assert document.ocr_pages == 1 and len(document.text) > 1000
    missing = load_settings(ocr_engine="cli", tesseract_cmd="/nonexistent/tesseract")
    with pytest.raises(ConfigurationError, match="apt-get install tesseract-ocr"):
        extract((DOCUMENTS / "image-pdf-2.pdf").read_bytes(), "scan.pdf", missing, ocr_provider_from_settings(missing))


def test_without_tesserocr_auto_falls_back_to_the_cli(tmp_path):
    code = (
        "import sys; sys.modules['tesserocr'] = None\n"  # as if the package were not installed
        "from legaldoc.config import load_settings\n"
        "from legaldoc.pipeline.extract import extract, ocr_provider_from_settings\n"
        "from legaldoc.pipeline.extract.ocr import resolved_engine\n"
        "s = load_settings(); ocr = ocr_provider_from_settings(s)\n"
        f"doc = extract(open({str(DOCUMENTS / 'image-pdf-2.pdf')!r}, 'rb').read(), 'scan.pdf', s, ocr)\n"
        "print(resolved_engine(s), type(ocr).__name__, doc.ocr_pages)\n"
    )
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["cli", "TesseractOcr", "1"]


def test_a_tessdata_folder_without_the_language_is_a_configuration_error_naming_the_setting(tmp_path):
    settings = load_settings(ocr_engine="tesserocr", tessdata_dir=str(tmp_path))
    with pytest.raises(ConfigurationError) as caught:
        extract((DOCUMENTS / "image-pdf-2.pdf").read_bytes(), "scan.pdf", settings, ocr_provider_from_settings(settings))
    assert "eng" in str(caught.value) and "LEGALDOC_TESSDATA_DIR" in str(caught.value)
    assert resolved_engine(load_settings(tessdata_dir=str(tmp_path))) == "cli"  # auto: the CLI still may read


def test_a_bad_image_is_a_data_error():
    ocr = InProcessTesseract()
    with pytest.raises(DataError):
        ocr.image_to_text(Image.new("L", (0, 0)), timeout=10)
    with pytest.raises(DataError):
        ocr.read_pixels(b"\x00" * 10, 100, 100, 100, 200, timeout=10)  # fewer bytes than the size says
    blank = ocr.image_to_text(Image.new("RGB", (800, 600), "white"), timeout=10)
    assert blank.strip() == ""


def test_the_extraction_cache_key_names_the_engine_and_the_small_text_rule():
    base = extraction_fingerprint(load_settings())
    assert base != extraction_fingerprint(load_settings(ocr_engine="cli"))
    assert base != extraction_fingerprint(load_settings(ocr_small_text_px=30))
    assert json.loads(base)["engine"] == "tesserocr"
    assert json.loads(base)["tesserocr"] == {**tesseract_api.ENGINE_VARIABLES, "ink_runs": lines.RUN_TO_TESSERACT}
    assert "tesserocr" not in json.loads(extraction_fingerprint(load_settings(ocr_engine="cli")))
