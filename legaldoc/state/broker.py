"""Publishing Celery task messages straight into the broker's Redis lists, in bulk.

Celery's `apply_async` costs about a hundred times a bare LPUSH per message. Every legaldoc message
has the same shape (a task name and a few ids), so it is rendered from a template of Celery's
message protocol 2 (the envelope kombu's Redis transport stores) and pushed through one pipeline.
Workers consume these messages exactly like ones Celery sent; the end-to-end tests prove it.

Every message names its lineage as Celery's own tools read it: ``retries`` (the attempt - 1),
``parent_id`` (the task that published it) and ``root_id`` (one root per document: its first
message at submit). A ``task-sent`` event, the one `celery.events.Dispatcher` would send, goes out
with the messages when a monitor (Flower, `celery events`) listens on the event channel.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis

from legaldoc.models import Stage
from legaldoc.queues import (
    PRIORITY_STEPS,
    STAGE_QUEUE,
    Queue,
    broker_priority,
    stage_task,
)
from legaldoc.state.keys import Keys
from legaldoc.state.roundtrip import RoundTrip, send_packed
from legaldoc.state.scripts import Script

_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"
_REPLY_TO = str(uuid.uuid5(uuid.NAMESPACE_DNS, "legaldoc.invalid"))
_SENTINELS = ("\x00ID\x00", "\x00ARGSREPR\x00", "\x00BODY\x00", "\x00SENT\x00")
_VALUES = ("\x00RETRIES\x00", "\x00ROOT\x00", "\x00PARENT\x00")  # whole JSON values (a number, a string or null)
SENT_HEADER = "legaldoc_sent"  # epoch seconds of publishing: the dashboard's oldest-message age
EVENT_CHANNEL = "{prefix}/{db}.celeryev/task.sent"  # kombu's fanout topic of Celery's event exchange
LISTENING_TTL = 1.0  # seconds an answer to "does a monitor listen for task events?" holds

@dataclass(frozen=True)
class Lineage:
    """The task that publishes messages, as Celery names it: the messages it publishes have it as
    parent and share its root, so monitors draw one tree per document."""

    task_id: str
    root_id: str


@dataclass(frozen=True)
class Message:
    task: str
    args: tuple[Any, ...]
    queue: str
    priority: int  # user priority, 9 most urgent
    eta: datetime | None = None
    retries: int = 0  # Celery's count of earlier attempts
    parent: Lineage | None = None  # the publishing task; None: the message is a root (its own root_id)


def _envelope(task: str, queue: str, kombu_priority: int, task_id: str, argsrepr: str, body: str,
              sent: str, eta: str | None, retries: Any = 0, root_id: Any = None, parent_id: Any = None) -> dict[str, Any]:  # fmt: skip
    return {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": task, "id": task_id, "shadow": None, "eta": eta, "expires": None,
            "group": None, "group_index": None, "retries": retries, "timelimit": [None, None],
            "root_id": root_id or task_id, "parent_id": parent_id, "argsrepr": argsrepr, "kwargsrepr": "{}", "origin": _ORIGIN,
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None, "stamps": {},
            SENT_HEADER: sent,
        },
        "properties": {
            "correlation_id": task_id, "reply_to": _REPLY_TO, "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": kombu_priority,
            "body_encoding": "base64", "delivery_tag": task_id,
        },
    }  # fmt: skip


class _Template:
    """One pre-rendered envelope per (task, queue, priority); only id, args and body vary. Rendering
    is one `str.format` of the envelope with its variable places numbered."""

    def __init__(self, task: str, queue: str, kombu_priority: int, key: str) -> None:
        text = json.dumps(_envelope(task, queue, kombu_priority, *_SENTINELS, None, *_VALUES))
        escaped = {json.dumps(s)[1:-1]: s for s in _SENTINELS} | {json.dumps(s): s for s in _VALUES}
        pattern = re.compile("|".join(map(re.escape, escaped)))
        place = {sentinel: index for index, sentinel in enumerate((*_SENTINELS, *_VALUES))}
        parts = pattern.split(text)
        order = [escaped[match] for match in pattern.findall(text)]
        pieces = [parts[0].replace("{", "{{").replace("}", "}}")]
        for sentinel, part in zip(order, parts[1:], strict=True):
            pieces.append(f"{{{place[sentinel]}}}")
            pieces.append(part.replace("{", "{{").replace("}", "}}"))
        self.format = "".join(pieces).format
        self.key = key

    def render(self, task_id: str, argsrepr: str, body: str, sent: str, retries: int = 0, root_id: str | None = None,
               parent_id: str | None = None) -> str:  # fmt: skip
        return self.format(task_id, _json_inner(argsrepr), body, sent, int(retries),
                           f'"{_json_inner(root_id or task_id)}"', "null" if parent_id is None else f'"{_json_inner(parent_id)}"')  # fmt: skip


def _json_inner(text: str) -> str:
    """A string as JSON writes it between its quotes (most need no escape: printable ASCII without quotes)."""
    if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
        return text
    return json.dumps(text)[1:-1]


_BODY_SUFFIX = ", {}, " + json.dumps(_EMBED) + "]"


def _body(args: tuple[Any, ...]) -> str:
    return base64.b64encode(("[" + json.dumps(args) + _BODY_SUFFIX).encode()).decode()


def _utcoffset() -> int:
    """Hours west of UTC, as Celery's events carry it (`celery.utils.time.utcoffset`)."""
    return (time.altzone if time.daylight else time.timezone) // 3600


class _SentEvents:
    """Celery ``task-sent`` events, rendered as a `celery.events.Dispatcher` publishes them through
    kombu's Redis transport: the event exchange ``celeryev`` is a fanout, so each event is one
    PUBLISH on ``<global_keyprefix>/<db>.celeryev/task.sent`` (``fanout_prefix`` and
    ``fanout_patterns`` at their defaults) of a kombu envelope whose base64 body is the event.

    Nobody may listen (pub/sub keeps nothing): the first event is published on its own and the
    receivers it reached say whether the others are worth sending; the answer holds for
    LISTENING_TTL seconds, so a bulk submit with no monitor sends one event, not one per message."""

    _BODY, _TAG = json.dumps("\x00BODY\x00")[1:-1], json.dumps("\x00TAG\x00")[1:-1]

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        db = client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = EVENT_CHANNEL.format(prefix=prefix, db=db)
        self.hostname = f"gen{_ORIGIN}"
        self.until = 0.0  # monotonic time the last answer expires
        self.listening = False
        self.envelope = json.dumps({
            "body": "\x00BODY\x00", "content-encoding": "utf-8", "content-type": "application/json",
            "headers": {"hostname": self.hostname},
            "properties": {"delivery_mode": 1, "delivery_info": {"exchange": "celeryev", "routing_key": "task.sent"},
                           "priority": 0, "body_encoding": "base64", "delivery_tag": "\x00TAG\x00"},
        })  # fmt: skip

    def render(self, message: Message, task_id: str, argsrepr: str) -> str:
        parent = message.parent
        event = {
            "hostname": self.hostname, "utcoffset": _utcoffset(), "pid": os.getpid(), "clock": 0, "uuid": task_id,
            "name": message.task, "args": argsrepr, "kwargs": "{}", "retries": message.retries,
            "eta": message.eta.isoformat() if message.eta else None, "expires": None, "queue": message.queue,
            "exchange": "", "routing_key": message.queue, "root_id": parent.root_id if parent else task_id,
            "parent_id": parent.task_id if parent else None, "timestamp": time.time(), "type": "task-sent",
        }  # fmt: skip
        body = base64.b64encode(json.dumps(event).encode()).decode()
        return self.envelope.replace(self._BODY, body).replace(self._TAG, task_id)

    def event(self, message: Message, task_id: str, argsrepr: str) -> str | None:
        """The event of one message, to go with it while a monitor listens; published on its own
        (and counted) when the last answer has expired; None while nobody listens."""
        if time.monotonic() >= self.until:
            self.listening = bool(self.client.publish(self.channel, self.render(message, task_id, argsrepr)))
            self.until = time.monotonic() + LISTENING_TTL
            return None
        return self.render(message, task_id, argsrepr) if self.listening else None

    def queue(self, trip: RoundTrip, message: Message, task_id: str, argsrepr: str) -> None:
        """The same in a round trip that carries other commands: when the last answer has expired
        the event rides along, and its answer (the receivers it reached) is the next one."""
        if time.monotonic() >= self.until:
            self.until = time.monotonic() + LISTENING_TTL
            trip.add(self.client, "PUBLISH", self.channel, self.render(message, task_id, argsrepr),
                     reply=lambda receivers: setattr(self, "listening", bool(receivers)))  # fmt: skip
        elif self.listening:
            trip.add(self.client, "PUBLISH", self.channel, self.render(message, task_id, argsrepr))


class Broker:
    """Publishes legaldoc task messages to the broker database and measures queue depths.

    Queue lists are named by `keys.queue_lists`: the installation's prefix, as kombu's
    ``global_keyprefix`` adds it for the workers."""

    def __init__(self, client: redis.Redis, keys: Keys, *, database: Callable[[], str] | None = None,
                 events: bool = True) -> None:  # fmt: skip
        self.client = client
        self.keys = keys
        self.events = _SentEvents(client, keys.prefix) if events else None  # task-sent, for monitors
        self.database = database  # the identity stage messages carry: a worker of another database refuses them
        self._templates: dict[tuple[str, str, int], _Template] = {}
        self._ids: tuple[int, str, itertools.count] | None = None
        self._queue_stats = Script(client, "queue_stats")

    def _task_id(self) -> str:
        """A unique id in UUID form: a random 80-bit prefix per process and a counter (uuid4 is 10x slower)."""
        if self._ids is None or self._ids[0] != os.getpid():
            self._ids = (os.getpid(), str(uuid.uuid4())[:24], itertools.count())
        return f"{self._ids[1]}{next(self._ids[2]):012x}"

    def _template(self, task: str, queue: str, kombu_priority: int) -> _Template:
        key = (task, queue, kombu_priority)
        template = self._templates.get(key)
        if template is None:
            template = self._templates[key] = _Template(task, queue, kombu_priority,
                                                        self.keys.queue_lists(queue)[kombu_priority])
        return template

    def encode(self, message: Message, sent: str | None = None) -> tuple[str, str]:
        """The Redis list and the serialized envelope of one message."""
        key, payload, _, _ = self._encode(message, sent or f"{time.time():.3f}")
        return key, payload

    def _encode(self, message: Message, sent: str) -> tuple[str, str, str, str]:
        """(Redis list, envelope, task id, argsrepr) of one message."""
        kombu_priority = broker_priority(message.priority)
        task_id = self._task_id()
        argsrepr = repr(message.args)
        body = _body(message.args)
        parent = message.parent
        root_id, parent_id = (parent.root_id, parent.task_id) if parent else (None, None)
        if message.eta is None:
            template = self._template(message.task, message.queue, kombu_priority)
            return template.key, template.render(task_id, argsrepr, body, sent, message.retries, root_id, parent_id), task_id, argsrepr
        envelope = _envelope(message.task, message.queue, kombu_priority, task_id, argsrepr, body, sent,
                             message.eta.isoformat(), message.retries, root_id, parent_id)  # fmt: skip
        return self.keys.queue_lists(message.queue)[kombu_priority], json.dumps(envelope), task_id, argsrepr

    def publish(self, messages: Iterable[Message], *, chunk: int = 1000, front: bool = False) -> int:
        """Push messages in order, many values per LPUSH and many LPUSHes per round trip. Consumers
        pop from the right of a list, so LPUSH queues at the back; `front` RPUSHes instead (in
        reverse, so the first message is the next one consumed): the next attempt of a crashed stage."""
        count = 0
        pending: dict[str, list[str]] = {}
        events: list[str] = []
        buffered = 0
        sent = f"{time.time():.3f}"
        for message in messages:
            key, payload, task_id, argsrepr = self._encode(message, sent)
            if self.events is not None and (event := self.events.event(message, task_id, argsrepr)) is not None:
                events.append(event)
            pending.setdefault(key, []).append(payload)
            count += 1
            buffered += 1
            if buffered >= chunk * 5 and not front:
                self._flush(pending, chunk, events=events)
                events = []
                buffered = 0
        self._flush(pending, chunk, front, events)
        return count

    def _flush(self, pending: dict[str, list[str]], chunk: int, front: bool = False, events: list[str] | None = None) -> None:
        commands: list[list[str]] = [["PUBLISH", self.events.channel, event] for event in events or ()] if self.events else []
        for key, payloads in pending.items():
            if front:  # the first message rightmost: RPUSH the last ones first
                payloads.reverse()
            for offset in range(0, len(payloads), chunk):
                commands.append(["RPUSH" if front else "LPUSH", key, *payloads[offset : offset + chunk]])
        pending.clear()
        send_packed(self.client, commands)

    def publish_stage(self, items: Sequence[tuple[int, Stage, int]], priority: int, *, countdown: float | None = None,
                      front: bool = False, parent: Lineage | None = None) -> int:  # fmt: skip
        """Publish (document id, stage, attempt[, database]) messages to each stage's queue (at the
        front of its priority list with `front`); `parent`: the task publishing them (each message is
        then its child, under its root), else each is a root."""
        return self.publish(self._stage_messages(items, priority, countdown, parent), front=front)

    def queue(self, trip: RoundTrip, messages: Iterable[Message], *, front: bool = False) -> int:
        """Add messages to a round trip that carries other commands (a stage's end: its state
        change, its cache writes and the next stage's message go to Redis together)."""
        pending: dict[str, list[str]] = {}
        sent = f"{time.time():.3f}"
        for message in messages:
            key, payload, task_id, argsrepr = self._encode(message, sent)
            if self.events is not None:
                self.events.queue(trip, message, task_id, argsrepr)
            pending.setdefault(key, []).append(payload)
        for key, payloads in pending.items():
            trip.add(self.client, "RPUSH" if front else "LPUSH", key, *(reversed(payloads) if front else payloads), must=True)
        return sum(map(len, pending.values()))

    def queue_stage(self, trip: RoundTrip, items: Sequence[tuple[int, Stage, int]], priority: int, *,
                    countdown: float | None = None, front: bool = False, parent: Lineage | None = None) -> int:  # fmt: skip
        """`publish_stage` in a round trip that carries other commands."""
        return self.queue(trip, self._stage_messages(items, priority, countdown, parent), front=front)

    def _stage_messages(self, items: Sequence[tuple[int, Stage, int]], priority: int, countdown: float | None,
                        parent: Lineage | None) -> Iterable[Message]:  # fmt: skip
        eta = datetime.now(UTC) + timedelta(seconds=countdown) if countdown else None
        stamp = (self.database(),) if self.database else ()
        return (Message(stage_task(stage), (document_id, stage.value, attempt, *stamp), STAGE_QUEUE[stage], priority, eta,
                        attempt - 1, parent)
                for document_id, stage, attempt in items)  # fmt: skip

    def queue_more_urgent(self, trip: RoundTrip, queues: Iterable[str], priority: int, reply: Callable[[bool], None]) -> None:
        """Ask in `trip` whether a message more urgent than `priority` waits in any of these queues;
        `reply` gets the answer when the trip is sent (at once, False, when nothing is more urgent)."""
        steps = broker_priority(priority)  # kombu's steps 0 .. steps - 1 are served before this priority
        lists = [key for queue in sorted(queues) for key in self.keys.queue_lists(queue)[:steps]]
        if not lists:
            reply(False)
            return
        # Redis deletes an emptied list, so a list holds a message exactly when its key exists
        trip.add(self.client, "EXISTS", *lists, reply=lambda found: reply(int(found) > 0))

    def depth(self, queue: str) -> int:
        """Messages waiting in a queue, over all its priority lists."""
        return self.depths([queue])[queue]

    def depths(self, queues: Iterable[str] = tuple(Queue)) -> dict[str, int]:
        queues = list(queues)
        pipe = self.client.pipeline(transaction=False)
        for queue in queues:
            for key in self.keys.queue_lists(queue):
                pipe.llen(key)
        sizes = pipe.execute()
        return {queue: sum(sizes[i * 10 : i * 10 + 10]) for i, queue in enumerate(queues)}

    def queue_stats(self, queues: Iterable[str] = tuple(Queue)) -> dict[str, tuple[int, float | None]]:
        """Queue -> (depth over all its priority lists, publishing time of its oldest message or None),
        in one script call: LLEN and LINDEX -1 of every priority list."""
        queues = list(queues)
        lists = [key for queue in queues for key in self.keys.queue_lists(queue)]
        reply = json.loads(self._queue_stats({"lists": lists}, {"lists_per_queue": len(PRIORITY_STEPS)}))
        return {queue: (int(q["depth"]), float(q["oldest"]) if q["oldest"] else None)
                for queue, q in zip(queues, reply or [], strict=True)}  # fmt: skip
