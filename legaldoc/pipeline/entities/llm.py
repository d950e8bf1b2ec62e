"""Entities from a language model through the OpenAI API (``openai``), or the model for people and
organizations beside the local rules (``hybrid``).

The model answers with text, never offsets: each answer is a structured list of (text, type,
normalized value), and every mention is placed by exact search in the chunk it came from. A
mention whose text is not a slice of its chunk is dropped and counted, never given an invented
offset. Text goes out packed into pieces of about ``openai_chunk_tokens`` tokens (estimated as
4 characters a token), cut at paragraph, line or word boundaries.

This module is pure: the shared rate limits, circuit breaker and response cache come in from the
services layer through the `CallGate` and `AnswerCache` protocols. Every failure is raised as a
`LegaldocError` of the right category; an error never turns into "no entities".
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from legaldoc.errors import (
    ConfigurationError,
    DataError,
    LegaldocError,
    RateLimitError,
    TransientError,
)
from legaldoc.models import EntityType, Mention
from legaldoc.pipeline.entities.base import squash

T = TypeVar("T")

PROMPT_VERSION = "2"
CHARS_PER_TOKEN = 4  # the estimate used for packing and the shared token limit (no tokenizer needed)
PROMPT_OVERHEAD_TOKENS = 350  # instructions and schema, sent with every piece
MODEL_CONFIDENCE = 0.8
EXTRACTOR = "openai"

# What the model is asked for in `hybrid`: the types rules find least well.
MODEL_TYPES: tuple[EntityType, ...] = (EntityType.PERSON, EntityType.PARTY, EntityType.ATTORNEY, EntityType.JUDGE,
                                       EntityType.ORGANIZATION, EntityType.LAW_FIRM)  # fmt: skip


class ModelMode(StrEnum):
    """`openai`: the model finds every type; `hybrid`: the rules plus the model for `MODEL_TYPES`."""

    OPENAI = "openai"
    HYBRID = "hybrid"


# -- the structured answer ---------------------------------------------------------------------

ModelType = Literal[
    "CASE", "STATUTE", "RULE", "COURT", "JUDGE", "PARTY", "CASE_NAME", "DOCKET_NUMBER",
    "ATTORNEY", "PERSON", "ORGANIZATION", "LAW_FIRM", "DATE", "MONEY",
]  # fmt: skip


class ModelMention(BaseModel):
    """One entity as the model reports it."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="the mention exactly as it is written in the text, character for character")
    type: ModelType = Field(description="the kind of entity")
    normalized: str = Field(description="a canonical form: full name in natural order, ISO date, amount like 1250.00 USD")


class ModelAnswer(BaseModel):
    """Every entity mention of one piece of text."""

    model_config = ConfigDict(extra="forbid")

    mentions: list[ModelMention]


def answer_schema() -> dict[str, Any]:
    """The JSON schema of `ModelAnswer` for strict structured output."""
    return {"name": "legal_entities", "strict": True, "schema": ModelAnswer.model_json_schema()}


def instructions(types: Sequence[EntityType]) -> str:
    names = ", ".join(t.value for t in types)
    return (
        "You extract legal entities from US court documents. Report every mention of these types: "
        f"{names}. Copy each mention's text exactly as it appears in the input, character for character "
        "(same spelling, case, punctuation and line breaks); never paraphrase, expand or join parts that are "
        "apart in the text. Report a mention once even when it recurs. PERSON is anyone not an attorney or "
        "judge; PARTY is a litigant as named in the case; LAW_FIRM is a firm of lawyers. Answer with an empty "
        "list when there is none."
    )


# -- what the services layer provides ----------------------------------------------------------


class CallGate(Protocol):
    """The shared rate limits (requests and tokens) and circuit breaker every model call goes through."""

    def call(self, function: Callable[[], T], *, tokens: int = 0) -> T: ...


class AnswerCache(Protocol):
    """Model answers by key; failures to read or write are the cache's to swallow."""

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


@dataclass(frozen=True)
class Completion:
    """One model answer: its text (None when it had none), why it stopped, the tokens it cost."""

    content: str | None
    finish_reason: str | None
    tokens_in: int
    tokens_out: int
    refusal: str | None = None


Ask = Callable[[str, str], Completion]  # (instructions, text) -> completion


@dataclass
class ModelUsage:
    """What the model stage cost for one document (or, added up, a batch)."""

    calls: int = 0  # requests that reached the provider (invalid answers included)
    cached: int = 0  # pieces answered from the cache
    tokens_in: int = 0
    tokens_out: int = 0
    dropped: int = 0  # mentions whose text was not an exact slice of their piece

    def add(self, other: ModelUsage) -> None:
        for name in ("calls", "cached", "tokens_in", "tokens_out", "dropped"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def cost(self, price_in: float, price_out: float) -> float:
        """Estimated US dollars at these prices per million tokens."""
        return round((self.tokens_in * price_in + self.tokens_out * price_out) / 1_000_000, 6)

    def as_counts(self) -> dict[str, int]:
        return {"calls": self.calls, "cached": self.cached, "tokens_in": self.tokens_in,
                "tokens_out": self.tokens_out, "dropped": self.dropped}  # fmt: skip


@dataclass(frozen=True)
class EntityRun:
    """Mentions of one document and what the model cost to find them."""

    mentions: list[Mention]
    usage: ModelUsage = field(default_factory=ModelUsage)


# -- packing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Piece:
    """A slice of the document text sent in one call: text == document[start:start + len(text)]."""

    start: int
    text: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()


def estimate_tokens(text: str) -> int:
    return len(text) // CHARS_PER_TOKEN + 1


_BREAKS = (re.compile(r"\n[ \t]*\n\s*"), re.compile(r"\n"), re.compile(r"(?<=[.;:!?])\s+"), re.compile(r"\s+"))


def _cut(text: str, start: int, end: int, limit: int) -> int:
    """Where to end a piece of text[start:end] that may hold `limit` characters: after the last
    paragraph break, else line break, else sentence end, else space, else at the limit."""
    if end - start <= limit:
        return end
    window = text[start : start + limit]
    for pattern in _BREAKS:
        found = [m.end() for m in pattern.finditer(window) if m.end() > limit // 3]
        if found:
            return start + found[-1]
    return start + limit


def pack(text: str, budget_tokens: int) -> list[Piece]:
    """The text cut into pieces of at most about `budget_tokens` tokens, at natural boundaries;
    blank pieces are left out. The same text and budget always give the same pieces."""
    limit = max(100, budget_tokens * CHARS_PER_TOKEN)
    pieces = []
    start = 0
    while start < len(text):
        end = _cut(text, start, len(text), limit)
        if text[start:end].strip():
            pieces.append(Piece(start, text[start:end]))
        start = end
    return pieces


# -- placing the model's mentions ------------------------------------------------------------------


def _bounded(text: str, start: int, end: int) -> bool:
    """The slice does not start or end inside a word."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    return not (before.isalnum() and text[start].isalnum()) and not (after.isalnum() and text[end - 1].isalnum())


def locate(piece: Piece, answer: ModelAnswer, wanted: frozenset[EntityType]) -> tuple[list[Mention], int]:
    """Mentions of `wanted` types at every exact, word-bounded occurrence of their text in the
    piece, with document offsets; and how many of the model's mentions were no slice of it."""
    mentions: list[Mention] = []
    dropped = 0
    seen: set[tuple[str, str]] = set()
    for item in answer.mentions:
        entity_type = EntityType(item.type)
        if entity_type not in wanted:
            continue
        needle = item.text.strip()
        if (needle, item.type) in seen:
            continue
        seen.add((needle, item.type))
        spans = [m.start() for m in re.finditer(re.escape(needle), piece.text)] if needle else []
        spans = [s for s in spans if _bounded(piece.text, s, s + len(needle))]
        if not spans:
            dropped += 1
            continue
        normalized = squash(item.normalized) or squash(needle)
        for offset in spans:
            start = piece.start + offset
            mentions.append(Mention(type=entity_type, text=needle, start=start, end=start + len(needle),
                                    normalized=normalized, extractor=EXTRACTOR, confidence=MODEL_CONFIDENCE,
                                    attrs={"extractors": [EXTRACTOR]}))  # fmt: skip
    return mentions, dropped


def merge(local: Sequence[Mention], model: Sequence[Mention]) -> list[Mention]:
    """Local and model mentions as one list: a mention both found (same type and span) is one,
    keeping the local reading with both extractors listed and the higher confidence."""
    by_span: dict[tuple[EntityType, int, int], Mention] = {}
    for mention in local:
        by_span[(mention.type, mention.start, mention.end)] = mention
    for mention in model:
        key = (mention.type, mention.start, mention.end)
        found = by_span.get(key)
        if found is None:
            by_span[key] = mention
            continue
        extractors = [*found.attrs.get("extractors", [found.extractor]), EXTRACTOR]
        by_span[key] = found.model_copy(update={"confidence": max(found.confidence, mention.confidence),
                                                "attrs": {**found.attrs, "extractors": extractors}})  # fmt: skip
    return list(by_span.values())


# -- the provider ----------------------------------------------------------------------------------


def cache_key(piece: Piece, model: str, mode: ModelMode) -> str:
    return hashlib.sha256(f"{piece.sha256}|{model}|{PROMPT_VERSION}|{mode.value}".encode()).hexdigest()


class ModelEntityProvider:
    """Entities from a model (``openai``), or the local rules plus the model (``hybrid``)."""

    def __init__(self, mode: ModelMode, model: str, ask: Ask, gate: CallGate, *, cache: AnswerCache | None = None,
                 budget_tokens: int = 3000, invalid_retries: int = 2,
                 local: Callable[[str, Mapping[str, Any] | None], list[Mention]] | None = None) -> None:  # fmt: skip
        self.name = mode.value
        self.mode = mode
        self.model = model
        self.ask = ask
        self.gate = gate
        self.cache = cache
        self.budget_tokens = budget_tokens
        self.invalid_retries = invalid_retries
        self.local = local
        self.types: tuple[EntityType, ...] = MODEL_TYPES if mode is ModelMode.HYBRID else tuple(EntityType)
        self.prompt = instructions(self.types)

    def extract(self, text: str, record: Mapping[str, Any] | None = None) -> list[Mention]:
        return self.run(text, record).mentions

    def run(self, text: str, record: Mapping[str, Any] | None = None, *, usage: ModelUsage | None = None) -> EntityRun:
        """Every piece's answer (from the cache, else the model), placed and merged. `usage` is
        filled as calls are made, so a run that fails half way still tells what it spent."""
        from legaldoc.pipeline.entities import deduplicate

        usage = usage if usage is not None else ModelUsage()
        found: list[Mention] = []
        wanted = frozenset(self.types)
        budget = max(100, self.budget_tokens - PROMPT_OVERHEAD_TOKENS)
        for piece in pack(text, budget):
            answer = self._answer(piece, usage)
            mentions, dropped = locate(piece, answer, wanted)
            found.extend(mentions)
            usage.dropped += dropped
        local = self.local(text, record) if self.local is not None and self.mode is ModelMode.HYBRID else []
        return EntityRun(deduplicate(merge(local, found)), usage)

    def _answer(self, piece: Piece, usage: ModelUsage) -> ModelAnswer:
        key = cache_key(piece, self.model, self.mode)
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                try:
                    answer = ModelAnswer.model_validate_json(cached)
                except ValidationError:
                    pass  # written by another version of the schema: ask again
                else:
                    usage.cached += 1
                    return answer
        tokens = PROMPT_OVERHEAD_TOKENS + estimate_tokens(piece.text) * 2  # the text in, about as much out
        reason = ""
        for _ in range(1 + self.invalid_retries):
            completion = self.gate.call(lambda: self.ask(self.prompt, piece.text), tokens=tokens)
            usage.calls += 1
            usage.tokens_in += completion.tokens_in
            usage.tokens_out += completion.tokens_out
            parsed, reason = parse_answer(completion)
            if parsed is not None:
                if self.cache is not None:
                    self.cache.put(key, parsed.model_dump_json().encode())
                return parsed
        raise DataError(f"the model {self.model} gave no usable answer for the text at offset {piece.start} "
                        f"after {1 + self.invalid_retries} calls: {reason}")  # fmt: skip


def parse_answer(completion: Completion) -> tuple[ModelAnswer | None, str]:
    """The answer, or None and why it is not one."""
    if completion.refusal:
        return None, f"the model refused: {completion.refusal[:200]}"
    if not completion.content or not completion.content.strip():
        return None, f"empty answer (finish reason {completion.finish_reason or 'none'})"
    if completion.finish_reason == "length":
        return None, "the answer was cut off at the output token limit"
    try:
        return ModelAnswer.model_validate_json(completion.content), ""
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "answer"
        return None, f"the answer is not the schema ({where}: {first['msg']})"


# -- the OpenAI SDK ---------------------------------------------------------------------------------

_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$")


def parse_reset(value: str) -> float | None:
    """Seconds in OpenAI's reset notation (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``) or plain seconds."""
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not value or match is None:
        return None
    hours, minutes, seconds, millis = (float(part) if part else 0.0 for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def retry_after_headers(headers: Mapping[str, str] | None) -> float | None:
    """The wait a 429 asks for: ``retry-after-ms``, ``retry-after``, else the later of the
    ``x-ratelimit-reset-requests`` / ``-tokens`` resets."""
    if not headers:
        return None
    lower = {k.lower(): v for k, v in headers.items()}
    if "retry-after-ms" in lower:
        try:
            return max(0.0, float(lower["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    if "retry-after" in lower:
        seconds = parse_reset(lower["retry-after"])
        if seconds is not None:
            return seconds
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(lower["retry-after"]).timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    resets = [parse_reset(lower[name]) for name in ("x-ratelimit-reset-requests", "x-ratelimit-reset-tokens") if name in lower]
    known = [r for r in resets if r is not None]
    return max(known) if known else None


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if isinstance(code, str):
        return code
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return str(inner["code"])
    return ""


def classify_openai_error(exc: BaseException, model: str) -> LegaldocError:
    """The SDK's exception as one of ours, with the category and the fix."""
    import openai

    detail = str(getattr(exc, "message", None) or exc)[:300]
    code = _error_code(exc)
    if isinstance(exc, openai.APITimeoutError):
        return TransientError(f"openai: no answer within the timeout: {detail}", hint="raise LEGALDOC_OPENAI_TIMEOUT if it persists")
    if isinstance(exc, openai.APIConnectionError):
        return TransientError(f"openai: cannot connect: {detail}", hint="check OPENAI_BASE_URL and the network")
    if not isinstance(exc, openai.APIStatusError):
        return TransientError(f"openai: {type(exc).__name__}: {detail}")
    status = exc.status_code
    if code == "insufficient_quota":
        return ConfigurationError(f"openai: the account has no quota left ({detail})",
                                  hint="add credit or raise the limit in the OpenAI account's billing settings")  # fmt: skip
    if status == 429:
        headers = dict(exc.response.headers) if exc.response is not None else {}
        return RateLimitError(f"openai: rate limited (429): {detail}", retry_after=retry_after_headers(headers),
                              hint="lower LEGALDOC_OPENAI_REQUEST_LIMIT / LEGALDOC_OPENAI_TOKEN_LIMIT to the account's limits")  # fmt: skip
    if status == 401:
        return ConfigurationError(f"openai: the API key was refused (401): {detail}", hint="set a valid OPENAI_API_KEY")
    if status == 403:
        return ConfigurationError(f"openai: access denied (403): {detail}",
                                  hint="the key's project or organization may not use this model or region")  # fmt: skip
    if status == 404 or code == "model_not_found":
        return ConfigurationError(f"openai: model {model!r} not found ({detail})",
                                  hint="set LEGALDOC_OPENAI_MODEL to a model the key can use, or check OPENAI_BASE_URL")  # fmt: skip
    if status >= 500 or status in (408, 409):
        return TransientError(f"openai: server error {status}: {detail}")
    if code == "context_length_exceeded" or status == 413:
        return DataError(f"openai: the text is too long for {model}: {detail}", hint="lower LEGALDOC_OPENAI_CHUNK_TOKENS")
    if "response_format" in detail or "json_schema" in detail:
        return ConfigurationError(f"openai: {model} does not take structured output: {detail}",
                                  hint="choose a model with structured output in LEGALDOC_OPENAI_MODEL")  # fmt: skip
    return DataError(f"openai: the request was refused ({status}): {detail}")


def openai_ask(model: str, timeout: float) -> Ask:
    """A function asking `model` through the OpenAI SDK (OPENAI_API_KEY, OPENAI_BASE_URL from the
    environment); the SDK's own retries are off, so the retry policies and the shared limits count
    every call."""
    try:
        import openai
    except ImportError:
        raise ConfigurationError("the openai entity provider needs the openai package",
                                 hint="pip install 'legaldoc[openai]'") from None  # fmt: skip
    try:
        client = openai.OpenAI(max_retries=0, timeout=timeout)
    except openai.OpenAIError as error:  # no OPENAI_API_KEY
        raise ConfigurationError(f"openai: {error}", hint="set OPENAI_API_KEY, or choose entities: local") from None
    schema = answer_schema()
    create: Callable[..., Any] = client.chat.completions.create  # its overloads differ across SDK versions

    def ask(prompt: str, text: str) -> Completion:
        try:
            response = create(
                model=model,
                messages=[{"role": "system", "content": prompt}, {"role": "user", "content": text}],
                response_format={"type": "json_schema", "json_schema": schema},
            )
        except openai.OpenAIError as error:
            raise classify_openai_error(error, model) from error
        if not response.choices:
            return Completion(None, None, *_tokens(response))
        choice = response.choices[0]
        refusal = getattr(choice.message, "refusal", None)
        return Completion(choice.message.content, choice.finish_reason, *_tokens(response), refusal=refusal)

    return ask


def _tokens(response: Any) -> tuple[int, int]:
    usage = getattr(response, "usage", None)
    if usage is None:
        return 0, 0
    return int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)

