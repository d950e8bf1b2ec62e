"""Commands for several Redis databases sent in one round trip.

legaldoc's roles live in different databases of one Redis by default (broker 0, cache 2, state 4),
each overridable with its own URL. A stage ends by writing to three of them: the state script, the
cache, the next stage's message. `RoundTrip` gathers those commands and sends them as one pipeline
on one connection, grouped by database with a ``SELECT`` before each other database's commands and
a last one back to the connection's own; commands for a role on another server go in one pipeline
per server.

Scripts go as plain EVALSHA (redis-py's pipelines would first ask SCRIPT EXISTS: one more round
trip). A script the server does not hold yet (a new or restarted server) answers NOSCRIPT; that
one command is then run again on its own, which loads the script. Redis runs every command of a
pipeline whatever the others answer, so nothing else is sent twice.

A command queued with ``must`` (a message: losing it would stall a document) raises its error
from `send`; the others (state, cache: the database holds the truth) are handed back to be logged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import NoScriptError

# redis-py before 5.3 makes get_connection name a command (ignored by the pool); later releases
# deprecate the argument
_POOL_NAMES_COMMAND = getattr(
    inspect.signature(redis.ConnectionPool.get_connection).parameters.get("command_name"), "default", None
) is inspect.Parameter.empty

Reply = Callable[[Any], None]

_SERVER_FIELDS = ("host", "port", "path", "username", "password", "ssl_ca_certs", "connection_class")


def _server(client: redis.Redis) -> tuple[Any, ...]:
    """What names a client's server (everything but the database)."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    return (*(kwargs.get(name) for name in _SERVER_FIELDS), pool.connection_class)


def _db(client: redis.Redis) -> int:
    return int(client.connection_pool.connection_kwargs.get("db") or 0)


@dataclass
class _Command:
    client: redis.Redis
    args: tuple[Any, ...]
    reply: Reply | None
    retry: Callable[[], Any] | None  # a script's own call: loads it on NOSCRIPT
    must: bool = False


@dataclass
class RoundTrip:
    """Commands gathered in order, for any of the clients, sent by `send`.

    ``home`` is the client whose connection carries the commands of every client on its server."""

    home: redis.Redis
    commands: list[_Command] = field(default_factory=list)
    sent: int = 0  # round trips made by `send` (for the counting benchmark and the tests)
    # a command others wait for is queued (an entity index write): the trip goes at its stage's end
    # even when the next stage runs in the same task (`services.stages.Chain`); `send` clears it
    prompt: bool = False
    # items held until `send`, per gatherer: (how they become commands, the items)
    gathered: dict[int, tuple[Callable[[RoundTrip, list[Any]], None], list[Any]]] = field(default_factory=dict)

    def add(self, client: redis.Redis, *args: Any, reply: Reply | None = None, must: bool = False) -> None:
        """Queue one command for `client`'s database; `reply` gets its answer; `must`: its failure
        raises from `send`."""
        self.commands.append(_Command(client, args, reply, None, must))

    def script(self, client: Any, sha: str, keys: list[Any], args: list[Any], *, run: Callable[[], Any],
               reply: Reply | None = None) -> None:  # fmt: skip
        """Queue one EVALSHA; `run` is the script's own call, used when the server lacks it."""
        self.commands.append(_Command(client, ("EVALSHA", sha, len(keys), *keys, *args), reply, run))

    def gather(self, gatherer: object, item: Any, emit: Callable[[RoundTrip, list[Any]], None]) -> None:
        """Hold `item` until `send`, which hands every item held for `gatherer` to `emit` at once,
        to be queued as commands (several document changes in one script call)."""
        self.gathered.setdefault(id(gatherer), (emit, []))[1].append(item)

    def __len__(self) -> int:
        return len(self.commands) + sum(len(items) for _, items in self.gathered.values())

    def send(self) -> list[Exception]:
        """Send everything queued (nothing: no round trip) and hand each reply to its callback.
        Returns the errors of the other commands; the first error of a `must` command raises, after
        every reply was handed over."""
        self.prompt = False
        gathered, self.gathered = self.gathered, {}
        for emit, items in gathered.values():
            emit(self, items)
        commands, self.commands = self.commands, []
        if not commands:
            return []
        groups: dict[tuple[Any, ...], list[_Command]] = {}
        for command in commands:
            groups.setdefault(_server(command.client), []).append(command)
        home = _server(self.home)
        errors: list[tuple[_Command, Exception]] = []
        for server, group in sorted(groups.items(), key=lambda item: item[0] != home):
            carrier = self.home if server == home else group[0].client
            try:
                errors += self._send(carrier, group)
            except redis.RedisError as exc:  # no answer at all: every command of the group failed
                errors += [(command, exc) for command in group]
        for command, error in errors:
            if command.must:
                raise error
        return list(dict.fromkeys(error for _, error in errors))

    def _send(self, carrier: redis.Redis, group: list[_Command]) -> list[tuple[_Command, Exception]]:
        if len({_db(queued.client) for queued in group}) == 1:
            carrier = group[0].client  # one database: its own client's connection, no SELECT
        pipe = carrier.pipeline(transaction=False)
        own = current = _db(carrier)
        # one database after the other, the carrier's own first: the fewest SELECTs. The order of
        # commands across databases does not matter (each database's keep theirs, and the state
        # script applies changes by version whatever their order).
        group = sorted(group, key=lambda queued: (_db(queued.client) != own, _db(queued.client)))
        slots: list[_Command | None] = []
        for queued in group:
            db = _db(queued.client)
            if db != current:
                pipe.execute_command("SELECT", db)
                slots.append(None)
                current = db
            pipe.execute_command(*queued.args)
            slots.append(queued)
        if current != own:
            pipe.execute_command("SELECT", own)
            slots.append(None)
        replies = pipe.execute(raise_on_error=False)
        self.sent += 1
        errors: list[tuple[_Command, Exception]] = []
        for command, value in zip(slots, replies, strict=True):
            if command is None:
                if isinstance(value, Exception):  # a refused SELECT: the commands after it failed too
                    raise value
                continue
            assert command is not None
            if isinstance(value, NoScriptError) and command.retry is not None:
                try:
                    value = command.retry()
                    self.sent += 1
                except Exception as exc:  # noqa: BLE001 - handed to the caller below
                    value = exc
            if isinstance(value, Exception):
                errors.append((command, value))
                continue
            if command.reply is not None:
                try:
                    command.reply(value)
                except redis.RedisError as exc:  # the reply says part of the command failed
                    errors.append((command, exc))
        return errors


def _packed(args: Sequence[bytes | str | int | float]) -> bytes:
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def send_packed(client: redis.Redis, commands: Sequence[Sequence[bytes | str | int | float]]) -> list[Any]:
    """Many commands in one round trip, packed here into RESP: for bulk writes (a submit's
    thousands of messages and document states), where redis-py's general packing of each argument
    costs more than the server's work. Replies unparsed (redis-py's raw values); the first error
    reply raises after every reply was read. Never retried: a message is not pushed twice."""
    if not commands:
        return []
    packed = b"".join(_packed(args) for args in commands)
    pool = client.connection_pool
    connection = pool.get_connection("PIPELINE") if _POOL_NAMES_COMMAND else pool.get_connection()
    try:
        connection.send_packed_command([packed])
        replies: list[Any] = []
        first: redis.ResponseError | None = None
        for _ in commands:
            try:
                replies.append(connection.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
                first = first or exc
    except BaseException:
        connection.disconnect()
        raise
    finally:
        pool.release(connection)
    if first is not None:
        raise first
    return replies
