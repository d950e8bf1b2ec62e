"""`legaldoc doctor`: every check a batch depends on, each OK, WARN or FAIL with what to do.

The checks look, they never change anything but a probe file in the data folder. `submit` runs the
cheap ones (the data folder and Redis's eviction policy) before it publishes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import StrEnum

import redis

from legaldoc.config import config_file
from legaldoc.errors import ConfigurationError, LegaldocError
from legaldoc.pipeline.extract import tesseract_api
from legaldoc.pipeline.extract.ocr import resolved_engine
from legaldoc.queues import DEFAULT_PRIORITY
from legaldoc.services.batches import foreign_workers, queues_needed
from legaldoc.services.wiring import Runtime
from legaldoc.state.connection import explain
from legaldoc.storage.db import revisions


class Verdict(StrEnum):
    OK = "OK"
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def _settings(rt: Runtime) -> Check:
    file = config_file()
    return Check("settings", Verdict.OK, f"file {file}" + ("" if file.exists() else " (none)") + "; no unknown keys")


def _data_folder(rt: Runtime) -> Check:
    folder = rt.settings.data_dir
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-"):
            pass
    except OSError as error:
        return Check("data folder", Verdict.FAIL, f"{folder}: {error.strerror}", "choose another with --data-dir or LEGALDOC_HOME")
    free = shutil.disk_usage(folder).free
    if free < 100 * 2**20:
        return Check("data folder", Verdict.FAIL, f"{folder}: {free / 2**20:.0f} MB free", "free disk space")
    if free < 2**30:
        return Check("data folder", Verdict.WARN, f"{folder}: {free / 2**30:.1f} GB free", "free disk space")
    return Check("data folder", Verdict.OK, f"{folder}, writable, {free / 2**30:.0f} GB free")


def _database(rt: Runtime) -> Check:
    where = rt.database.where
    revision, head = revisions(rt.settings.resolved_database_url)
    if revision != head:
        return Check("database", Verdict.WARN, f"{where}: schema {revision}, newest {head}", "legaldoc db upgrade")
    return Check("database", Verdict.OK, f"{where}: schema {revision} (current), identity {rt.database.identity[:8]}")


def _redis(rt: Runtime) -> Check:
    info = rt.client("broker").info()
    policy, version = info.get("maxmemory_policy", "?"), info.get("redis_version", "?")
    if policy != "noeviction":
        return Check("redis", Verdict.WARN, f"{rt.where('broker')}: Redis {version}, maxmemory-policy {policy}",
                     "set maxmemory-policy noeviction: under memory pressure Redis would drop queued messages")  # fmt: skip
    seconds, microseconds = rt.client("state").time()
    skew = abs(time.time() - (seconds + microseconds / 1e6))
    if skew > 5:
        return Check("redis", Verdict.WARN, f"this machine's clock is {skew:.0f} s off Redis's", "synchronise clocks (NTP)")
    return Check("redis", Verdict.OK, f"{rt.where('state')}: Redis {version}, maxmemory-policy noeviction")


def _tesseract(rt: Runtime) -> Check:
    settings = rt.settings
    engine = resolved_engine(settings)
    if engine == "tesserocr":
        if not tesseract_api.available():
            return Check("tesseract", Verdict.FAIL, "ocr_engine is tesserocr but tesserocr is not installed",
                         "pip install tesserocr, or set LEGALDOC_OCR_ENGINE=cli")  # fmt: skip
        try:
            folder = tesseract_api.find_tessdata(settings.tessdata_dir, settings.tesseract_lang)
        except ConfigurationError as exc:
            return Check("tesseract", Verdict.FAIL, exc.message, exc.hint or "set LEGALDOC_TESSDATA_DIR")
        return Check("tesseract", Verdict.OK, f"in-process engine (tesserocr, {tesseract_api.version()}), "
                     f"languages {settings.tesseract_lang} from {folder}")  # fmt: skip
    command = shutil.which(settings.tesseract_cmd)
    if command is None:
        return Check("tesseract", Verdict.FAIL, f"{settings.tesseract_cmd} not found",
                     "pip install tesserocr (the in-process engine), install tesseract-ocr "
                     "(scanned pages cannot be read without one), or set LEGALDOC_TESSERACT_CMD")  # fmt: skip
    listed = subprocess.run([command, "--list-langs"], capture_output=True, text=True, timeout=30).stdout.split()
    missing = [lang for lang in settings.tesseract_lang.split("+") if lang not in listed]
    if missing:
        return Check("tesseract", Verdict.FAIL, f"no language data for {', '.join(missing)}",
                     f"install tesseract-ocr-{missing[0]}")  # fmt: skip
    return Check("tesseract", Verdict.OK, f"CLI {command} (a process per page), languages {settings.tesseract_lang}")


def _soffice(rt: Runtime) -> Check:
    command = shutil.which(rt.settings.soffice_cmd)
    if command is None:
        return Check("soffice", Verdict.WARN, f"{rt.settings.soffice_cmd} not found",
                     "install libreoffice-writer-nogui to read .doc and .wpd files")  # fmt: skip
    return Check("soffice", Verdict.OK, command)


def _workers(rt: Runtime) -> Check:
    known = rt.registry.workers()
    if not known:
        return Check("workers", Verdict.OK, "none yet (legaldoc run starts its own; for submit: legaldoc workers start)")
    if foreign := foreign_workers(rt, DEFAULT_PRIORITY):
        return Check("workers", Verdict.FAIL, foreign, "start workers with this --data-dir / --database-url")
    if bare := rt.registry.queues_without_workers(queues_needed(DEFAULT_PRIORITY)):
        return Check("workers", Verdict.WARN, f"no live worker on {', '.join(bare)}", "legaldoc workers start")
    online = [w for w in known if w.online()]
    if skewed := [w.name for w in online if w.last_seen - time.time() > 5]:
        return Check("workers", Verdict.WARN, f"clocks ahead of this machine: {', '.join(skewed)}", "synchronise clocks (NTP)")
    return Check("workers", Verdict.OK, f"{len(online)} live on every queue, serving this database")


def _openai(rt: Runtime) -> Check | None:
    """Only when the settings choose a model entity provider (a key alone changes nothing)."""
    from legaldoc.services.openai_entities import MODEL_ENTITY_PROVIDERS, base_url, preflight

    if rt.settings.entity_provider not in MODEL_ENTITY_PROVIDERS:
        return None
    try:
        preflight(rt.settings, None)
    except LegaldocError as error:
        return Check("openai", Verdict.FAIL, error.message, error.hint or "")
    return Check("openai", Verdict.OK, f"{base_url()}: model {rt.settings.openai_model}, key accepted")


CHECKS: list[tuple[str, Callable[[Runtime], Check | None]]] = [
    ("settings", _settings), ("data folder", _data_folder), ("database", _database), ("redis", _redis),
    ("tesseract", _tesseract), ("soffice", _soffice), ("workers", _workers), ("openai", _openai),
]  # fmt: skip
CHEAP = ("data folder", "redis")


def diagnose(rt: Runtime, *, only: tuple[str, ...] | None = None) -> list[Check]:
    """Run the checks (or `only` these); one that cannot even run is a FAIL naming why."""
    checks = []
    for name, check in CHECKS:
        if only is not None and name not in only:
            continue
        try:
            if (found := check(rt)) is not None:
                checks.append(found)
        except redis.RedisError as error:
            checks.append(Check(name, Verdict.FAIL, *explain(error, rt.where())))
        except (LegaldocError, OSError, subprocess.SubprocessError) as error:
            reason = error.message if isinstance(error, LegaldocError) else f"{type(error).__name__}: {error}"
            checks.append(Check(name, Verdict.FAIL, reason, ""))
    return checks


def worst(checks: list[Check]) -> Verdict:
    verdicts = {c.verdict for c in checks}
    return Verdict.FAIL if Verdict.FAIL in verdicts else Verdict.WARN if Verdict.WARN in verdicts else Verdict.OK

