"""The model entity providers (``openai``, ``hybrid``) wired to what every worker shares: the
OpenAI API's request and token limits and circuit breaker (`ProviderGuard`), and model answers
in the result cache. And the preflight `submit` runs before it accepts a batch that uses them.

Nothing is sent anywhere unless a batch or the settings choose ``openai`` or ``hybrid``: an
``OPENAI_API_KEY`` in the environment alone changes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from typing import TypeVar

from legaldoc.config import Settings
from legaldoc.errors import ConfigurationError, ErrorCategory, ProviderNotReady, categorize
from legaldoc.pipeline.entities import (
    EntityProvider,
    LocalEntityProvider,
    entity_provider_from_settings,
)
from legaldoc.pipeline.entities.llm import CallGate, ModelEntityProvider, ModelMode, openai_ask
from legaldoc.state.cache import ResultCache

T = TypeVar("T")
log = logging.getLogger("legaldoc.openai")

MODEL_ENTITY_PROVIDERS = frozenset(mode.value for mode in ModelMode)
DEFAULT_BASE_URL = "https://api.openai.com/v1"


def base_url() -> str:
    return os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL


def scope(settings: Settings) -> str:
    """What a CONFIGURATION failure is about: the endpoint, the key and the model (a new key or
    model is a new scope, so fixing either lifts a halt at once)."""
    material = f"{base_url()}|{os.environ.get('OPENAI_API_KEY', '')}|{settings.openai_model}"
    return hashlib.sha256(material.encode()).hexdigest()[:16]


class CachedAnswers:
    """Model answers in the Redis result cache; a cache that fails only costs a model call."""

    def __init__(self, cache: ResultCache) -> None:
        self.cache = cache

    def get(self, key: str) -> bytes | None:
        try:
            return self.cache.get_answer(key)
        except Exception:
            log.warning("model answer cache unavailable", exc_info=True)
            return None

    def put(self, key: str, value: bytes) -> None:
        try:
            self.cache.put_answer(key, value)
        except Exception:
            log.warning("could not cache a model answer", exc_info=True)


class LocalGate:
    """The gate of `legaldoc process` (one process, no Redis): no shared limits, no answer cache;
    a CONFIGURATION failure stops this process's later calls the way the guard's halt does."""

    def __init__(self) -> None:
        self.halted: str | None = None

    def call(self, function: Callable[[], T], *, tokens: int = 0) -> T:
        if self.halted is not None:
            raise ConfigurationError(f"{self.halted} [openai calls stopped: an earlier call got this answer]")
        try:
            return function()
        except Exception as exc:
            if categorize(exc) is ErrorCategory.CONFIGURATION:
                self.halted = str(exc)
            raise


def model_entity_provider(settings: Settings, name: str, cache: ResultCache | None) -> ModelEntityProvider:
    """The provider with the shared guard and the answer cache in Redis; without a result cache
    (`legaldoc process`, no Redis) with a `LocalGate`."""
    from legaldoc.services.guard import ProviderGuard

    gate: CallGate = LocalGate()
    if cache is not None:
        gate = ProviderGuard("openai", settings, limit=settings.openai_request_limit,
                             token_limit=settings.openai_token_limit, scope=scope(settings))  # fmt: skip
    return ModelEntityProvider(ModelMode(name), settings.openai_model, openai_ask(settings.openai_model, settings.openai_timeout),
                               gate, cache=CachedAnswers(cache) if cache is not None else None,
                               budget_tokens=settings.openai_chunk_tokens, invalid_retries=settings.openai_invalid_retries,
                               local=LocalEntityProvider().extract)  # fmt: skip


def entity_provider_for(settings: Settings, name: str | None, cache: ResultCache | None) -> EntityProvider:
    """The entity provider `name` (a batch's ``options.entities``), else the settings' one."""
    name = name or settings.entity_provider
    if name in MODEL_ENTITY_PROVIDERS:
        return model_entity_provider(settings, name, cache)
    if name != settings.entity_provider:
        settings = settings.model_copy(update={"entity_provider": name})
    return entity_provider_from_settings(settings)


def preflight(settings: Settings, name: str | None) -> None:
    """Refuse a batch whose model provider cannot work (exit 3, one line with the fix): no openai
    package, no OPENAI_API_KEY, a key the endpoint refuses, an endpoint that does not answer, a
    model it does not list. Local providers pass without a word."""
    name = name or settings.entity_provider
    if name not in MODEL_ENTITY_PROVIDERS:
        return
    where = f"entities: {name}"
    try:
        import openai
    except ImportError:
        raise ProviderNotReady(f"{where} needs the openai package", hint="pip install 'legaldoc[openai]'") from None
    if not os.environ.get("OPENAI_API_KEY"):
        raise ProviderNotReady(f"{where} sends document text to {base_url()}, but OPENAI_API_KEY is not set",
                               hint="export OPENAI_API_KEY (and OPENAI_BASE_URL for another OpenAI-compatible server), "
                                    "or choose entities: local")  # fmt: skip
    client = openai.OpenAI(max_retries=0, timeout=15)
    model = settings.openai_model
    try:
        listed = {m.id for m in client.models.list()}
    except openai.AuthenticationError:
        raise ProviderNotReady(f"{where}: {base_url()} refused OPENAI_API_KEY (401)", hint="set a valid OPENAI_API_KEY") from None
    except openai.APIConnectionError as error:
        raise ProviderNotReady(f"{where}: cannot reach {base_url()}: {error}",
                               hint="check OPENAI_BASE_URL and the network") from None  # fmt: skip
    except openai.APIStatusError as error:  # an endpoint that does not list models (or a key that may not): no verdict
        log.info("%s: could not list the models of %s (%s); not checked", where, base_url(), error.status_code)
        return
    if model not in listed:
        raise ProviderNotReady(f"{where}: {base_url()} has no model {model!r}",
                               hint="set LEGALDOC_OPENAI_MODEL to a model the endpoint lists")  # fmt: skip
