"""Settings: the one place configuration is read (flags > LEGALDOC_* env > legaldoc.toml > defaults).

Reading is strict: an unknown key in the file or an unknown ``LEGALDOC_*`` variable is an error that
names the closest real one, and every URL is checked where it is read, so a typo never falls back to
a default silently.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from legaldoc.logs import LogFormat


def time_limit_setting(queue: str) -> str:
    """The setting that holds the hard time limit of a queue's tasks."""
    name = {"ocr": "ocr", "text": "text", "entity": "entity", "graph": "graph"}.get(queue, "control")
    return f"{name}_time_limit"


class Settings(BaseSettings):
    """Every knob of legaldoc; each field is documented in the README."""

    model_config = SettingsConfigDict(env_prefix="LEGALDOC_", extra="forbid", frozen=True)

    data_dir: Path = Field(default_factory=lambda: default_data_dir(), description="Where the SQLite database and runtime files live.")
    """Where the SQLite database and runtime files live: LEGALDOC_HOME, else the user's data folder
    (``~/.local/share/legaldoc`` on Linux), the same for every process of a user wherever it starts.
    A relative path given as a flag or variable is made absolute where it is read."""

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite at DATA_DIR/legaldoc.db.")
    """SQLAlchemy URL; default SQLite at ``data_dir/legaldoc.db``. PostgreSQL: ``postgresql+psycopg://...``."""

    documents_root: Annotated[list[Path] | None, NoDecode] = None
    """Folders every local document of a manifest must lie in, after symlinks and ``..`` are resolved
    (several separated by ``:`` in a variable or flag, a list in the file); a manifest naming a file
    elsewhere is refused before anything is submitted. Unset (the default): anywhere. ``s3://``
    sources are not affected."""

    @field_validator("documents_root", mode="before")
    @classmethod
    def _roots_text(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part for part in value.split(os.pathsep) if part.strip()] or None  # empty: unset
        return value

    @field_validator("documents_root")
    @classmethod
    def _roots_resolved(cls, value: list[Path] | None) -> list[Path] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("names no folder; unset it to allow documents anywhere")
        return [root.expanduser().resolve() for root in value]

    project: str = Field("default", description="Project used when a command names none.")
    """Project used when a command names none."""

    ocr_provider: Literal["local", "textract", "auto"] = "local"
    """OCR provider for pages without a usable text layer: ``local`` = tesseract; ``textract`` = AWS
    Textract for every page that fails the local text check; ``auto`` = Textract only for pages with
    no text layer at all (scans), tesseract for thin ones. A manifest's ``options: {ocr: ...}`` wins."""

    entity_provider: Literal["local", "failing", "openai", "hybrid"] = "local"
    """Entity extraction provider (``local`` = eyecite, courts-db and rules; ``openai`` = a model
    through the OpenAI API for every type; ``hybrid`` = the rules plus the model for people,
    parties and organizations; ``failing`` is for tests)."""

    failing_category: Literal["TRANSIENT", "RATE_LIMIT", "RESOURCE", "CONFIGURATION", "DATA", "PERMANENT"] = "TRANSIENT"
    """Test-only ``failing`` provider: the kind of error it raises."""

    failing_attempts: int = Field(1, ge=0)
    """Test-only ``failing`` provider: how many first attempts per document fail before it answers."""

    failing_retry_after: float = Field(1.0, ge=0)
    """Test-only ``failing`` provider: the Retry-After its RATE_LIMIT errors carry."""

    failing_match: str | None = None
    """Test-only ``failing`` provider: fail only texts containing this string (default: every text)."""

    failing_signal: Literal["SIGKILL", "SIGSEGV"] | None = None
    """Test-only ``failing`` provider: instead of raising, kill its own process (SIGKILL, or a real
    segfault for SIGSEGV), as a native library that crashes on a document would."""

    tesseract_cmd: str = "tesseract"
    """The tesseract executable."""

    tesseract_lang: str = "eng"
    """Tesseract language(s), e.g. ``eng+spa``."""

    ocr_engine: Literal["auto", "tesserocr", "cli"] = "auto"
    """How tesseract runs: ``tesserocr`` = loaded once per worker process and reused for every page
    (the tesserocr wheel carries libtesseract); ``cli`` = the ``tesseract_cmd`` program started per
    page; ``auto`` = tesserocr when it is installed and finds the language data, else the CLI."""

    tessdata_dir: str | None = None
    """Folder of tesseract's ``.traineddata`` files for the in-process engine (default: the first of
    tesserocr's own, ``$TESSDATA_PREFIX`` and the system's that holds the languages)."""

    ocr_dpi: int = Field(200, ge=72, le=600)
    """Resolution at which PDF pages are first rendered for OCR by the in-process engine."""

    ocr_small_text_dpi: int = Field(300, ge=72, le=600)
    """Resolution at which a page whose text is small is read again (and every page, with the CLI)."""

    ocr_small_text_px: float = Field(22.0, ge=0)
    """A page read at ``ocr_dpi`` whose median text-line height is below this many pixels (of that
    dpi) is read again at ``ocr_small_text_dpi``; 0 turns the second reading off."""

    ocr_max_pixels: int = Field(45_000_000, ge=1_000_000)
    """Most pixels a page or image may have when read by OCR: a PDF page is rendered at a dpi
    scaled down to fit (never below 70 dpi, else it fails as DATA); a larger image fails as DATA."""

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

    archive_max_members: int = Field(10_000, gt=0)
    """Archives (and e-mails) holding more files than this fail as DATA."""

    archive_max_mb: float = Field(2048.0, gt=0)
    """Archives whose members would inflate beyond this in all fail as DATA (zip bombs)."""

    archive_max_depth: int = Field(3, ge=1)
    """Archives inside archives are expanded this many levels deep; deeper ones fail as DATA."""

    document_timeout: float = Field(900.0, gt=0)
    """Seconds one document may spend in extraction before it fails as RESOURCE."""

    chunk_target_chars: int = Field(1500, ge=200)
    """Chunks grow up to about this many characters before a paragraph boundary closes them."""

    chunk_max_chars: int = Field(4000, ge=400)
    """No chunk is longer than this; longer paragraphs are split at sentence or word boundaries."""

    fuzzy_threshold: float = Field(92.0, ge=50, le=100)
    """rapidfuzz score (0-100) above which two names of one key group are merged."""

    s3_endpoint_url: str | None = None
    """S3 endpoint for ``s3://`` documents (default: AWS); set it for MinIO or a local S3 peer."""

    textract_bucket: str | None = None
    """S3 bucket the pages sent to Textract are uploaded to (required when Textract is selected)."""

    textract_prefix: str = "legaldoc/textract/"
    """Key prefix of those uploads; each object is named by the sha256 of its bytes."""

    textract_price_per_page: float = Field(0.0015, ge=0)
    """US dollars per page Textract charges (text detection); used for the estimated cost per batch."""

    textract_poll_interval: float = Field(5.0, gt=0)
    """Seconds before the first poll of a Textract job; later polls back off by half each time."""

    textract_poll_max_interval: float = Field(30.0, gt=0)
    """Longest wait between two polls of a Textract job (never more than a claim lease)."""

    textract_job_timeout: float = Field(3600.0, gt=0)
    """Seconds a Textract job may run per attempt before the stage fails (TRANSIENT, RESOURCE at the last)."""

    textract_rate_limit: str = "10/second"
    """Shared rate limit of Textract calls across all workers, in ``limits`` notation."""

    textract_pages_per_job: int = Field(3000, ge=1, le=3000)
    """Pages sent in one Textract job (its limit is 3,000): a document with more pages to read is
    sent as several jobs, one after the other."""

    redis_url: str = "redis://127.0.0.1:6379"
    """Redis server for queues and live state; each role below uses its own database of it."""

    broker_url: str | None = None
    """Celery broker URL; default: database 0 of ``redis_url``."""

    result_url: str | None = None
    """Celery result backend URL; default: database 1 of ``redis_url``."""

    cache_url: str | None = None
    """Result cache URL; default: database 2 of ``redis_url``."""

    ratelimit_url: str | None = None
    """Shared rate limits and circuit breakers; default: database 3 of ``redis_url``."""

    state_url: str | None = None
    """Live batch state and metrics; default: database 4 of ``redis_url``."""

    redis_prefix: str = "legaldoc:"
    """Prefix of every Redis key and pub/sub channel of an installation, the broker's queues included,
    so several installations can share one Redis server and its databases."""

    @field_validator("redis_prefix")
    @classmethod
    def _key_prefix(cls, value: str) -> str:
        # kombu subscribes to pub/sub patterns starting with the prefix: a glob character would match
        # other installations' channels; spaces and control characters make keys hard to name.
        if any(c in "*?[]\\" or c.isspace() or not c.isprintable() for c in value):
            raise ValueError(f"{value!r} has a character a Redis pattern would read as a wildcard, a space or a "
                             "control character; use letters, digits and punctuation such as : . - _ (e.g. acme:)")
        return value

    ocr_time_limit: float = Field(1800.0, gt=0)
    """Hard time limit (seconds) of a task on the ``ocr`` queue (extraction); the soft limit is 90% of it."""

    text_time_limit: float = Field(300.0, gt=0)
    """Hard time limit of a task on the ``text`` queue (chunking)."""

    entity_time_limit: float = Field(600.0, gt=0)
    """Hard time limit of a task on the ``entity`` queue (entities, resolve)."""

    graph_time_limit: float = Field(600.0, gt=0)
    """Hard time limit of a task on the ``graph`` queue (relate)."""

    control_time_limit: float = Field(600.0, gt=0)
    """Hard time limit of batch control and cleanup tasks."""

    claim_lease: float = Field(90.0, ge=2)
    """Seconds a stage claim lives without renewal; a running stage renews it every third of this."""

    sweep_interval: float = Field(30.0, ge=0.5)
    """Seconds between sweeps for expired claims and lost messages."""

    max_attempts: int = Field(3, ge=1, le=50)
    """Attempts per stage before a document fails for good."""

    retry_base_delay: float = Field(2.0, ge=0)
    """Base of the retry backoff in seconds (see the error categories in the README)."""

    retry_max_delay: float = Field(600.0, ge=0)
    """No retry waits longer than this, whatever a server's Retry-After says."""

    heartbeat_interval: float = Field(5.0, ge=0.2)
    """Seconds between a worker's heartbeats; a worker silent for 3 of them shows as offline."""

    worker_purge_after: float = Field(3600.0, ge=1)
    """Seconds after which an offline worker is removed from ``workers status``."""

    worker_shutdown_timeout: float = Field(60.0, ge=0)
    """On a cold shutdown (second SIGTERM), seconds running tasks get before they are re-queued."""

    cache_ttl_days: float = Field(7.0, gt=0)
    """Days a cache entry (extraction result, entity index) lives in Redis without being used."""

    cache_compress_above: int = Field(1024, ge=0)
    """Cache values larger than this many bytes are stored zlib-compressed."""

    cache_inline_max_kb: int = Field(512, ge=1)
    """Extraction results larger than this (compressed) are cached as a reference to the database row."""

    provider_rate_limit: str = "20/second"
    """Shared rate limit of each remote provider across all workers, in ``limits`` notation (``100/minute``)."""

    @field_validator("provider_rate_limit", "openai_request_limit", "openai_token_limit", "textract_rate_limit")
    @classmethod
    def _rate_limit_notation(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate limit; write it like 20/second or 500/minute") from None
        return value

    rate_limit_max_wait: float = Field(30.0, ge=0)
    """Seconds a call may wait for the shared rate limit before it fails as RATE_LIMIT (and is retried)."""

    breaker_fail_max: int = Field(5, ge=1)
    """Consecutive failures of a remote provider that open its shared circuit breaker."""

    breaker_reset_timeout: float = Field(60.0, gt=0)
    """Seconds an open circuit stays open before one trial call is let through."""

    openai_model: str = "gpt-5-mini"
    """Model of the ``openai`` and ``hybrid`` entity providers (any model with structured output)."""

    openai_request_limit: str = "500/minute"
    """Shared request limit of the OpenAI API across all workers, in ``limits`` notation."""

    openai_token_limit: str = "200000/minute"
    """Shared token limit (estimated tokens in and out) of the OpenAI API across all workers."""

    openai_chunk_tokens: int = Field(3000, ge=100)
    """Text sent in one model call is packed up to about this many tokens (estimated as 4 characters a token)."""

    openai_timeout: float = Field(60.0, gt=0)
    """Seconds one model call may take before it fails as TRANSIENT (and is retried)."""

    openai_invalid_retries: int = Field(2, ge=0)
    """Further calls for a chunk whose answer was empty or not the schema, before the document fails as DATA."""

    openai_price_in: float = Field(0.25, ge=0)
    """Estimated cost in US dollars per million input tokens (for the cost shown per batch)."""

    openai_price_out: float = Field(2.0, ge=0)
    """Estimated cost in US dollars per million output tokens."""

    worker_concurrency: int | None = Field(None, ge=1)
    """Processes per worker; default: the number of CPUs."""

    worker_max_tasks_per_child: int = Field(500, ge=1)
    """A worker process is replaced after this many tasks."""

    worker_max_memory_mb: int = Field(1500, ge=64)
    """A worker process is replaced after its task when its resident memory exceeds this."""

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING"
    """Least severe log records written (commands: to stderr; workers: to their log); ``-v``/``-q`` override it."""

    log_format: LogFormat = LogFormat.TEXT
    """``text`` lines, or ``json``: one object per line with ts, level, logger, message and the ids
    of the work (batch_id, document_id, stage, attempt, category, duration), for a log store."""

    worker_log_max_mb: float = Field(50.0, ge=0)
    """A detached worker's log is rotated past this size (``NAME.log.1`` ...); 0 never rotates."""

    worker_log_backups: int = Field(5, ge=1)
    """Rotated worker logs kept besides the current one."""

    worker_task_events: bool = False
    """Workers send Celery's task events (what Flower, `celery events` and celery-exporter read) from
    the start; off, as Celery's own default, until a monitor turns them on (Flower does, every few
    seconds: its ``enable_events``). While they are on, each stage runs as its own task."""

    worker_chain_stages: bool = True
    """A stage task runs its document's next stages itself when this worker consumes their queues
    (and sends no task events): each still its own claim, attempt and run, without a message and
    its queue in between; their state changes ride in fewer round trips to Redis."""

    worker_metrics_port: int | None = Field(None, ge=1, le=65535)
    """When set, each worker's main process also answers Prometheus scrapes on this port (the same
    metrics as ``legaldoc metrics serve``: they are read from Redis, so one exporter is enough)."""

    worker_metrics_host: str = "127.0.0.1"
    """Address a worker's metrics port listens on (``0.0.0.0`` for every interface)."""

    manifest_max_mb: float = Field(50.0, gt=0)
    """Manifests larger than this are refused."""

    metrics_retention_days: float = Field(7.0, gt=0)
    """Days stage durations, errors and completions are kept in Redis."""

    stall_warning: float = Field(120.0, gt=0)
    """Seconds without progress after which `submit --wait` says on stderr what holds the batch."""

    batch_retention_days: float = Field(30.0, gt=0)
    """Days a finished batch's live state is kept in Redis (the database keeps it for good)."""

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'legaldoc.db').as_posix()}"

    def redis_url_for(self, role: str) -> str:
        """The URL of one Redis role (broker, result, cache, ratelimit, state)."""
        explicit = getattr(self, f"{role}_url")
        return explicit or with_redis_db(self.redis_url, REDIS_DATABASES[role])

    def time_limit(self, queue: str) -> float:
        """The hard time limit of a queue's tasks."""
        return float(getattr(self, time_limit_setting(queue)))

    def soft_time_limit(self, queue: str) -> float:
        """The soft time limit of a queue's tasks (90% of the hard one, at least 5 s before it):
        a worker's task, and a stage of `legaldoc process`, fails as RESOURCE past it."""
        hard = self.time_limit(queue)
        return max(1.0, min(hard * 0.9, hard - 5))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=config_file()))

    @field_validator("redis_url", "broker_url", "result_url", "cache_url", "ratelimit_url", "state_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        return None if value is None else check_redis_url(value)

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return None if value is None else check_database_url(value)


REDIS_DATABASES = {"broker": 0, "result": 1, "cache": 2, "ratelimit": 3, "state": 4}


def with_redis_db(url: str, db: int) -> str:
    """``url`` pointing at Redis database ``db`` (TCP ``redis://host/db`` or ``unix:///path?db=N``)."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):
        query = [(k, v) for k, v in parse_qsl(parts.query) if k not in ("db", "virtual_host")]
        query.append(("db", str(db)))
        return f"unix://{parts.path}?{urlencode(query)}"
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, ""))


def masked(url: str) -> str:
    """A URL safe to print: no password."""
    if "@" in url:
        scheme, _, rest = url.partition("://")
        return f"{scheme}://***@{rest.rpartition('@')[2]}"
    return url


def check_redis_url(url: str) -> str:
    """`url` when it names a Redis server: ``redis://HOST[:PORT][/DB]``, ``rediss://…``, ``unix:///PATH``."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "redis+socket"):
        if not parts.path:
            raise ValueError(f"{masked(url)!r} names no socket path; write it like unix:///run/redis.sock")
        return url
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"{masked(url)!r} is not a Redis URL; write it like redis://HOST:6379/0")
    try:
        host, _, db = parts.hostname, parts.port, parts.path.strip("/")
    except ValueError:
        raise ValueError(f"{masked(url)!r} has a port that is not a number from 1 to 65535") from None
    if not host:
        raise ValueError(f"{masked(url)!r} names no host; write it like redis://HOST:6379")
    if db and not (db.isdigit() and int(db) < 16):
        raise ValueError(f"{masked(url)!r}: the database number must be 0-15, not {db!r}")
    query = dict(parse_qsl(parts.query))
    if parts.scheme == "rediss" or any(name in query for name in TLS_QUERY):
        if parts.scheme != "rediss":
            raise ValueError(f"{masked(url)!r} sets TLS options on a plain redis:// URL; write rediss://")
        reqs = query.get("ssl_cert_reqs", "required")
        if reqs.lower() not in CERT_REQS:
            raise ValueError(f"{masked(url)!r}: ssl_cert_reqs must be required, optional or none, not {reqs!r}")
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            if name in query and not Path(query[name]).is_file():
                raise ValueError(f"{masked(url)!r}: {name} {query[name]!r} is not a readable file")
    return url


TLS_QUERY = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
CERT_REQS = {"required": "CERT_REQUIRED", "optional": "CERT_OPTIONAL", "none": "CERT_NONE"}


def redis_tls(url: str) -> dict[str, Any] | None:
    """The TLS options of a ``rediss://`` URL, as Celery's ``broker_use_ssl`` and
    ``redis_backend_use_ssl`` take them (None for plain URLs). Certificates are verified unless the
    URL says ``ssl_cert_reqs=none``: kombu alone would not verify a rediss:// broker at all."""
    import ssl

    parts = urlsplit(url)
    if parts.scheme != "rediss":
        return None
    query = dict(parse_qsl(parts.query))
    options: dict[str, Any] = {"ssl_cert_reqs": getattr(ssl, CERT_REQS[query.get("ssl_cert_reqs", "required").lower()])}
    options.update({name: query[name] for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile") if name in query})
    return options


POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")


def check_database_url(url: str) -> str:
    """`url` for SQLite or PostgreSQL; ``postgres://`` and ``postgresql://`` get the psycopg driver."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"{masked(url)!r} is not a database URL; write sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    if scheme in POSTGRES_SCHEMES:
        if not urlsplit(f"x://{rest}").hostname and "host=" not in rest:
            raise ValueError(f"{masked(url)!r} names no host; write it like postgresql+psycopg://USER@HOST/DB")
        return f"postgresql+psycopg://{rest}"
    if scheme == "sqlite":
        return url
    raise ValueError(f"legaldoc stores its results in SQLite or PostgreSQL, not {scheme!r}; "
                     "write sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")  # fmt: skip


# -- where settings come from -------------------------------------------------------------------

ENV_PREFIX = "LEGALDOC_"
OTHER_VARIABLES = {"LEGALDOC_CONFIG", "LEGALDOC_HOME", "LEGALDOC_TEST_POSTGRES_URL"}  # not settings, also read
_config_file: Path | None = None  # from --config


def use_config_file(path: Path | None) -> None:
    """The settings file `--config` names (else LEGALDOC_CONFIG, else ./legaldoc.toml)."""
    global _config_file
    _config_file = path


def config_file() -> Path:
    return _config_file or Path(os.environ.get("LEGALDOC_CONFIG") or "legaldoc.toml")


def default_data_dir() -> Path:
    home = os.environ.get("LEGALDOC_HOME")
    return Path(home).expanduser().absolute() if home else Path(platformdirs.user_data_dir("legaldoc"))


class SettingsError(ValueError):
    """Raised when the settings name an unknown key, hold a bad value, or their file cannot be read."""


def _closest(name: str, env: bool = False) -> str:
    match = difflib.get_close_matches(name, list(Settings.model_fields), n=1, cutoff=0.6)
    if not match:
        return "; `legaldoc config show` lists every setting"
    return f"; did you mean {ENV_PREFIX + match[0].upper() if env else match[0]}?"


def _file_settings() -> dict[str, Any]:
    path = config_file()
    explicit = _config_file is not None or "LEGALDOC_CONFIG" in os.environ
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        if explicit:
            raise SettingsError(f"{path}: no such settings file") from None
        return {}
    except (OSError, UnicodeError, tomllib.TOMLDecodeError) as error:
        raise SettingsError(f"{path}: cannot be read as TOML: {error}") from None
    for key in data:
        if key not in Settings.model_fields:
            raise SettingsError(f"{path}: unknown setting {key!r}{_closest(key)}")
    return data


def _environment() -> dict[str, str]:
    found = {}
    for variable, value in os.environ.items():
        if not variable.upper().startswith(ENV_PREFIX) or variable.upper() in OTHER_VARIABLES:
            continue
        name = variable[len(ENV_PREFIX) :].lower()
        if name not in Settings.model_fields:
            raise SettingsError(f"unknown environment variable {variable}{_closest(name, env=True)}")
        found[name] = value
    return found


@dataclass(frozen=True)
class Source:
    """Where one setting's value came from."""

    name: str
    value: Any
    source: str  # flag, env, file or default


def setting_sources(settings: Settings, flags: dict[str, Any]) -> list[Source]:
    """Every setting with its value and where it came from."""
    environment, file = _environment(), _file_settings()
    sources = []
    for name in Settings.model_fields:
        origin = ("flag" if flags.get(name) is not None else "env" if name in environment
                  else "file" if name in file else "default")  # fmt: skip
        if name == "data_dir" and origin == "default" and os.environ.get("LEGALDOC_HOME"):
            origin = "env"  # LEGALDOC_HOME
        sources.append(Source(name, getattr(settings, name), origin))
    return sources


def load_settings(**overrides: Any) -> Settings:
    """Build Settings once; command-line flags come in as overrides and win. SettingsError names an
    unknown key (and the closest real one) or a bad value and where it came from."""
    flags = {key: value for key, value in overrides.items() if value is not None}
    environment, file = _environment(), _file_settings()
    try:
        return Settings(**flags)
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "?"
        where = (f"--{name.replace('_', '-')}" if name in flags else f"{ENV_PREFIX}{name.upper()}" if name in environment
                 else f"{config_file()}: {name}" if name in file else name)  # fmt: skip
        raise SettingsError(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None
