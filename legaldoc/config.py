"""Settings: the one place configuration is read (flags > LEGALDOC_* env > legaldoc.toml > defaults)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Settings(BaseSettings):
    """Every knob of legaldoc; each field is documented in the README."""

    model_config = SettingsConfigDict(
        env_prefix="LEGALDOC_", toml_file="legaldoc.toml", extra="ignore", frozen=True
    )

    data_dir: Path = Field(Path(".legaldoc"), description="Where the SQLite database and runtime files live.")
    """Where the SQLite database and runtime files live."""

    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite at DATA_DIR/legaldoc.db.")
    """SQLAlchemy URL; default SQLite at ``data_dir/legaldoc.db``. PostgreSQL: ``postgresql+psycopg://...``."""

    project: str = Field("default", description="Project used when a command names none.")
    """Project used when a command names none."""

    ocr_provider: Literal["local"] = "local"
    """OCR provider for pages without a usable text layer (``local`` = tesseract)."""

    entity_provider: Literal["local"] = "local"
    """Entity extraction provider (``local`` = eyecite, courts-db and rules)."""

    tesseract_cmd: str = "tesseract"
    """The tesseract executable."""

    tesseract_lang: str = "eng"
    """Tesseract language(s), e.g. ``eng+spa``."""

    ocr_dpi: int = Field(300, ge=72, le=600)
    """Resolution at which pages are rendered for OCR."""

    ocr_min_chars: int = Field(200, ge=0)
    """A PDF page whose text layer has fewer characters than this is OCR'd."""

    ocr_image_coverage: float = Field(0.5, ge=0.0, le=1.0)
    """A page whose images cover this share of its area and whose text is sparse is OCR'd too."""

    ocr_page_timeout: float = Field(120.0, gt=0)
    """Seconds tesseract may spend on one page."""

    soffice_cmd: str = "soffice"
    """LibreOffice executable used to convert .doc and .wpd files."""

    convert_timeout: float = Field(120.0, gt=0)
    """Seconds LibreOffice may spend converting one document."""

    max_file_mb: float = Field(200.0, gt=0)
    """Documents larger than this fail as DATA."""

    max_pages: int = Field(2000, gt=0)
    """Documents with more pages than this fail as DATA."""

    max_unzipped_mb: float = Field(500.0, gt=0)
    """DOCX files that would inflate beyond this (zip bombs) fail as DATA."""

    document_timeout: float = Field(900.0, gt=0)
    """Seconds one document may spend in extraction before it fails as RESOURCE."""

    chunk_target_chars: int = Field(1500, ge=200)
    """Chunks grow up to about this many characters before a paragraph boundary closes them."""

    chunk_max_chars: int = Field(4000, ge=400)
    """No chunk is longer than this; longer paragraphs are split at sentence or word boundaries."""

    fuzzy_threshold: float = Field(92.0, ge=50, le=100)
    """rapidfuzz score (0-100) above which two names of one key group are merged."""

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'legaldoc.db').as_posix()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(**overrides: object) -> Settings:
    """Build Settings once; command-line flags come in as overrides and win."""
    return Settings(**{key: value for key, value in overrides.items() if value is not None})
