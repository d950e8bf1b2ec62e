"""OCR providers: the interface, and tesseract run as a subprocess."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from typing import Protocol

from PIL import Image

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, StageTimeout

RENDER_DPI_KEY = "legaldoc_render_dpi"
"""In a rendered page image's ``info``: the dpi it was rendered at (a file's own dpi is not trusted)."""


class OcrProvider(Protocol):
    """Turns one page image into text."""

    name: str

    def image_to_text(self, image: Image.Image, *, timeout: float) -> str: ...


class TesseractOcr:
    """Local OCR with the tesseract binary (one thread per call: OMP_THREAD_LIMIT=1)."""

    name = "tesseract"

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


def ocr_provider_from_settings(settings: Settings) -> OcrProvider:
    """The local OCR provider; with ``textract`` or ``auto`` selected it reads what stays local (the
    pages Textract does not get), and `services.textract.RemoteOcr` sends the others."""
    if settings.ocr_provider in ("local", "textract", "auto"):
        return TesseractOcr(settings.tesseract_cmd, settings.tesseract_lang, settings.ocr_dpi)
    raise ConfigurationError(f"unknown OCR provider {settings.ocr_provider!r}")
