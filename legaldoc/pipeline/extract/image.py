"""PNG, JPEG and TIFF: every frame is a page, read by OCR."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageSequence, UnidentifiedImageError

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, DataError, DocumentTooLarge
from legaldoc.models import ExtractedDocument
from legaldoc.pipeline.extract.ocr import OcrProvider
from legaldoc.pipeline.extract.textutil import Deadline, assemble, clean_text


def extract_image(
    data: bytes, source: str, settings: Settings, ocr: OcrProvider | None, deadline: Deadline
) -> ExtractedDocument:
    if ocr is None:
        raise ConfigurationError(f"{source} is an image and needs OCR, but no OCR provider is set")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DocumentTooLarge(f"{source} is an image too large to decode safely ({exc})") from exc
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{source} is not a readable image ({exc})", hint="re-export it as PNG, TIFF or PDF") from exc
    pages = []
    for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
        if number > settings.max_pages:
            raise DocumentTooLarge(f"{source} has more than {settings.max_pages} frames")
        deadline.check()
        timeout = max(1.0, min(settings.ocr_page_timeout, deadline.remaining()))
        pages.append((clean_text(ocr.image_to_text(frame.copy(), timeout=timeout)), True, ocr.name))
    return assemble("image", pages, {"format": image.format, "frames": len(pages)})
