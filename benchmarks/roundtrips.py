"""A counting TCP proxy between Redis clients and redis-server: round trips and commands per client.

A round trip is a turn of one connection: the client sends (one command, or a whole pipeline, in
as many TCP segments as it takes) and then waits for the server's answers; the next turn starts
when the client sends again after every command it sent was answered. Commands are counted from
the RESP arrays the client sends, answers from the RESP replies the server sends (RESP2 and 3; a
pub/sub push no command asked for counts as nothing), so a pipeline the server starts answering
while the client still sends its rest stays one turn, unless the server has answered every command
that arrived just when the rest arrives (a pipeline written in pieces: legaldoc's connections write
each in one piece, `state.connection`), which counts as two: an upper bound. Connections are told apart by the name their client gives itself (``CLIENT SETNAME``):
legaldoc names every connection it opens ``legaldoc`` (`legaldoc.state.connection`); Celery's and
kombu's connections stay unnamed. The turns of a connection's setup (HELLO, CLIENT SETNAME/SETINFO,
SELECT, each answered before the next) are counted apart, as ``setup``.

Used by `benchmarks/batches.py` and the round-trip tests:

    with CountingProxy(6379) as proxy:          # clients connect to proxy.port
        ...
        proxy.counts()["legaldoc"].round_trips
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field

READS = {b"GET", b"MGET", b"HGET", b"HMGET", b"HGETALL"}
SETUP = {b"HELLO", b"CLIENT", b"SELECT", b"AUTH", b"READONLY", b"PING"}  # PING: a check on connecting
NAMED = b"legaldoc"


@dataclass
class Counts:
    connections: int = 0
    round_trips: int = 0  # turns after the connection's setup
    setup: int = 0  # turns of the setup
    reads: int = 0  # of the round trips, those carrying a read (GET, HMGET...): a cache lookup the work waits for
    commands: dict[str, int] = field(default_factory=dict)

    @property
    def total_commands(self) -> int:
        return sum(self.commands.values())


def _commands(buffer: bytearray) -> list[bytes]:
    """Consume the complete RESP arrays at the start of `buffer`; the command names."""
    names: list[bytes] = []
    while buffer:
        if buffer[:1] != b"*":  # an inline command (redis-cli): one line
            end = buffer.find(b"\r\n")
            if end < 0:
                break
            names.append(bytes(buffer[:end]).split(b" ", 1)[0].upper())
            del buffer[: end + 2]
            continue
        end = buffer.find(b"\r\n")
        if end < 0:
            break
        count, position, first = int(buffer[1:end]), end + 2, None
        complete = True
        for index in range(count):
            line = buffer.find(b"\r\n", position)
            if line < 0:
                complete = False
                break
            size = int(buffer[position + 1 : line])
            if len(buffer) < line + 2 + size + 2:
                complete = False
                break
            if index == 0:
                first = bytes(buffer[line + 2 : line + 2 + size]).upper()
            elif index == 1 and first == b"CLIENT" and bytes(buffer[line + 2 : line + 2 + size]).upper() == b"SETNAME":
                first = b"CLIENT SETNAME"
            elif index == 2 and first == b"CLIENT SETNAME":
                first = b"CLIENT SETNAME " + bytes(buffer[line + 2 : line + 2 + size])
            position = line + 2 + size + 2
        if not complete:
            break
        names.append(first or b"")
        del buffer[:position]
    return names


_SIMPLE = frozenset(b"+-:_,#(")  # one line
_BULK = frozenset(b"$!=")  # a length line, then that many bytes and CRLF
_AGGREGATE = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}  # elements per count


def _reply_end(buffer: bytearray, position: int) -> int | None:
    """Where the RESP reply starting at `position` ends, or None while it is incomplete. An
    attribute (``|``) is part of the reply that follows it."""
    line = buffer.find(b"\r\n", position)
    if line < 0:
        return None
    kind = buffer[position]
    if kind in _SIMPLE:
        return line + 2
    size = int(buffer[position + 1 : line])
    if kind in _BULK:
        end = line + 2 + size + 2 if size >= 0 else line + 2
        return end if len(buffer) >= end else None
    if kind in _AGGREGATE:
        end: int | None = line + 2
        for _ in range(max(size, 0) * _AGGREGATE[kind]):
            assert end is not None
            end = _reply_end(buffer, end)
            if end is None:
                return None
        if kind == ord("|"):  # the attribute's reply follows
            return _reply_end(buffer, end) if end is not None else None
        return end
    raise ValueError(f"not a RESP reply: {bytes(buffer[position:position + 20])!r}")


def _replies(buffer: bytearray) -> int:
    """Consume the complete replies at the start of `buffer`; how many answer a command (pushes,
    ``>``, do not)."""
    count = 0
    while buffer:
        end = _reply_end(buffer, 0)
        if end is None:
            break
        count += buffer[0] != ord(">")
        del buffer[:end]
    return count


class _Connection:
    def __init__(self) -> None:
        self.label = "other"
        self.counts = Counts(connections=1)
        self.outstanding = 0  # commands sent and not answered yet
        self.in_setup = True
        self.turn_is_setup = False
        self.turn_reads = False
        self.buffer = bytearray()  # a command in transit
        self.answers = bytearray()  # a reply in transit

    def client_sent(self, data: bytes) -> None:
        # a turn starts when the client sends with every command it sent answered and none in transit
        fresh = not self.buffer and self.outstanding == 0
        self.buffer += data
        names = _commands(self.buffer)
        self.outstanding += len(names)
        counts = self.counts
        if fresh:
            self.turn_reads = False
            self.turn_is_setup = self.in_setup
            if self.in_setup:
                counts.setup += 1
            else:
                counts.round_trips += 1
        for name in names:
            if name.startswith(b"CLIENT SETNAME ") and name.endswith(NAMED):
                self.label = "legaldoc"
            if name.split(b" ", 1)[0] not in SETUP:
                self.in_setup = False
                if self.turn_is_setup:  # a turn that began with setup carries work too
                    self.turn_is_setup = False
                    counts.setup -= 1
                    counts.round_trips += 1
            if not self.turn_reads and not self.turn_is_setup and name in READS:
                self.turn_reads = True
                counts.reads += 1
            key = name.split(b" ", 1)[0].decode(errors="replace")
            counts.commands[key] = counts.commands.get(key, 0) + 1

    def server_sent(self, data: bytes) -> None:
        self.answers += data
        # a subscribed connection gets more than it asked (each channel's confirmation, messages)
        self.outstanding = max(0, self.outstanding - _replies(self.answers))


class CountingProxy:
    """Listens on 127.0.0.1:`port` (a free one) and forwards to 127.0.0.1:`upstream`, in a thread."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.connections: list[_Connection] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="counting-proxy", daemon=True)
        self.server: asyncio.AbstractServer | None = None

    def counts(self) -> dict[str, Counts]:
        """Totals per label since the start or the last `reset` (read from another thread: a
        turn in flight may be half counted)."""
        totals: dict[str, Counts] = {}
        for connection in list(self.connections):
            total = totals.setdefault(connection.label, Counts())
            c = connection.counts
            total.connections += c.connections
            total.round_trips += c.round_trips
            total.setup += c.setup
            total.reads += c.reads
            for name, count in list(c.commands.items()):
                total.commands[name] = total.commands.get(name, 0) + count
        return totals

    def reset(self) -> None:
        for connection in list(self.connections):
            connection.counts = Counts()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, on_data) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := await reader.read(65536):
                on_data(data)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except (OSError, asyncio.CancelledError):
            client_writer.close()
            return
        connection = _Connection()
        self.connections.append(connection)
        try:
            await asyncio.gather(self._pipe(client_reader, server_writer, connection.client_sent),
                                 self._pipe(server_reader, client_writer, connection.server_sent))  # fmt: skip
        except asyncio.CancelledError:
            server_writer.close()

    def __enter__(self) -> CountingProxy:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(asyncio.start_server(self._handle, "127.0.0.1", self.port), self.loop)
        self.server = future.result(timeout=10)
        return self

    def __exit__(self, *_: object) -> None:
        async def stop() -> None:
            if self.server is not None:
                self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
