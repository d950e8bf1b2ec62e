"""OCR providers: the interface, tesseract kept loaded in the process (tesserocr), and the tesseract
CLI run as a subprocess per page (the fallback)."""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
from pathlib import Path
from typing import Protocol, runtime_checkable

from PIL import Image

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, StageTimeout
from legaldoc.pipeline.extract import tesseract_api
from legaldoc.pipeline.extract.tesseract_api import PageRead

RENDER_DPI_KEY = "legaldoc_render_dpi"
"""In a rendered page image's ``info``: the dpi it was rendered at (a file's own dpi is not trusted)."""


class OcrProvider(Protocol):
    """Turns one page image into text."""

    name: str

    def image_to_text(self, image: Image.Image, *, timeout: float) -> str: ...


@runtime_checkable
class PageOcr(Protocol):
    """An OCR provider that reads raw gray pixels and measures the text lines it found, so a PDF
    page can be rendered at a low dpi first and again higher only when its text is small."""

    name: str

    def read_pixels(self, pixels: bytes, width: int, height: int, stride: int, dpi: int, *, timeout: float,
                    reread_below: float = 0.0) -> PageRead: ...  # fmt: skip


def _image_dpi(image: Image.Image, default: int) -> int:
    if RENDER_DPI_KEY in image.info:
        return int(image.info[RENDER_DPI_KEY])
    stated = image.info.get("dpi")
    if isinstance(stated, tuple) and stated and 70 <= float(stated[0]) <= 1200:
        return int(float(stated[0]))
    return default


class InProcessTesseract:
    """Tesseract loaded once per process through tesserocr (see `tesseract_api`)."""

    name = "tesseract"
    engine = "tesserocr"

    def __init__(self, lang: str = "eng", tessdata_dir: str | None = None, dpi: int = 300) -> None:
        self.lang = lang
        self.tessdata_dir = tessdata_dir
        self.dpi = dpi
        self._tessdata: Path | None = None

    def tessdata(self) -> Path:
        if self._tessdata is None:
            self._tessdata = tesseract_api.find_tessdata(self.tessdata_dir, self.lang)
        return self._tessdata

    def read_pixels(self, pixels: bytes, width: int, height: int, stride: int, dpi: int, *, timeout: float,
                    reread_below: float = 0.0) -> PageRead:  # fmt: skip
        return tesseract_api.read_pixels(pixels, width, height, stride, dpi, lang=self.lang, tessdata=self.tessdata(),
                                         timeout=timeout, reread_below=reread_below)  # fmt: skip

    def image_to_text(self, image: Image.Image, *, timeout: float) -> str:
        dpi = _image_dpi(image, self.dpi)
        return tesseract_api.read_image(image, dpi, lang=self.lang, tessdata=self.tessdata(), timeout=timeout).text


class TesseractOcr:
    """Local OCR with the tesseract binary (one thread per call: OMP_THREAD_LIMIT=1)."""

    name = "tesseract"
    engine = "cli"

    def __init__(self, command: str = "tesseract", lang: str = "eng", dpi: int = 300) -> None:
        self.command = command
        self.lang = lang
        self.dpi = dpi
        self._path: str | None = None

    def _executable(self) -> str:
        if self._path is None:
            path = shutil.which(self.command)
            if path is None:
                raise ConfigurationError(
                    f"tesseract is not installed (looked for {self.command!r})",
                    hint="install it with: sudo apt-get install tesseract-ocr, "
                    "or set LEGALDOC_TESSERACT_CMD",
                )
            self._path = path
        return self._path

    def image_to_text(self, image: Image.Image, *, timeout: float) -> str:
        buffer = io.BytesIO()
        image.convert("L").save(buffer, format="PPM")
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        dpi = int(image.info.get(RENDER_DPI_KEY, self.dpi))  # a PDF page rendered lower to fit the pixel budget
        try:
            completed = subprocess.run(
                [self._executable(), "stdin", "stdout", "-l", self.lang, "--dpi", str(dpi), "--psm", "3"],
                input=buffer.getvalue(),
                capture_output=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise StageTimeout(f"tesseract took longer than {timeout:.0f}s on one page") from exc
        if completed.returncode != 0:
            detail = completed.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or ["no output"]
            if b"Failed loading language" in completed.stderr:
                raise ConfigurationError(
                    f"tesseract has no language data for {self.lang!r}",
                    hint=f"install it with: sudo apt-get install tesseract-ocr-{self.lang.split('+')[0]}",
                )
            raise DataError(f"tesseract could not read the page image: {detail[0]}")
        return completed.stdout.decode("utf-8", "replace")


def resolved_engine(settings: Settings) -> str:
    """``tesserocr`` or ``cli``: ``auto`` is tesserocr when it imports and finds the language data."""
    if settings.ocr_engine != "auto":
        return settings.ocr_engine
    return _auto_engine(settings.tessdata_dir, settings.tesseract_lang)


@functools.lru_cache(maxsize=8)
def _auto_engine(tessdata_dir: str | None, lang: str) -> str:
    if tesseract_api.available():
        try:
            tesseract_api.find_tessdata(tessdata_dir, lang)
            return "tesserocr"
        except ConfigurationError:
            pass
    return "cli"


def ocr_provider_from_settings(settings: Settings) -> OcrProvider:
    """The local OCR provider; with ``textract`` or ``auto`` selected it reads what stays local (the
    pages Textract does not get), and `services.textract.RemoteOcr` sends the others."""
    if settings.ocr_provider not in ("local", "textract", "auto"):
        raise ConfigurationError(f"unknown OCR provider {settings.ocr_provider!r}")
    if resolved_engine(settings) == "tesserocr":
        return InProcessTesseract(settings.tesseract_lang, settings.tessdata_dir, settings.ocr_dpi)
    # The CLI measures no lines: PDF pages go to it at the small-text dpi, as before the engine existed.
    return TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_small_text_dpi)
