"""Taking a cancelled batch's waiting messages out of the broker's queue lists.

A cancelled document's stage message would otherwise stay queued until a worker pops it and finds,
in the database, that there is nothing to do: a no-op per document, minutes of them for a large
batch, and the memory of every message until then. `drop_stage_messages` removes them with one
atomic script per queue list (`lua/drop_messages.lua`): workers consuming at the same time pop a
message either before the script (it was theirs; a no-op as before) or after it (it is gone);
every other message keeps its place and order.

Cost (the bound): the script reads the lists once, `WINDOW` messages at a time, then goes from the
newest end to the last message it drops: a run of messages to drop is one LTRIM, a run to keep is
moved aside and back. Redis serves nothing else meanwhile (benchmarks/scale.py measures it: about
1.3 s for 100,000 messages on a loaded 2-core machine), so lists holding more than `MAX_MESSAGES`
in all are left alone (logged): their messages stay no-ops for the workers, as before. Messages a
worker has already taken (its prefetch, at most concurrency x prefetch multiplier) and delayed
retries it holds are not in the lists: they stay no-ops too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from legaldoc.state.scripts import Script

WINDOW = 1000
"""Messages the script reads or moves per command."""
MAX_MESSAGES = 300_000
"""Messages in the lists past which the script is not run (it would hold Redis for seconds)."""


class TooManyMessages(Exception):
    """The lists hold more messages than `MAX_MESSAGES`: nothing was removed."""


def drop_stage_messages(client: redis.Redis, lists: Iterable[str], document_ids: Sequence[int],
                        database: str | None = None) -> int:  # fmt: skip
    """Remove the stage messages of `document_ids` (stamped with `database`, when given) from `lists`;
    the number removed. TooManyMessages when the lists hold more than `MAX_MESSAGES`."""
    if not document_ids:
        return 0
    lists = list(dict.fromkeys(lists))
    if not lists:
        return 0
    pipe = client.pipeline(transaction=False)
    for key in lists:
        pipe.llen(key)
    waiting = sum(pipe.execute())
    if waiting > MAX_MESSAGES:
        raise TooManyMessages(f"{waiting:,} messages wait in {', '.join(lists)}; at most {MAX_MESSAGES:,} are searched")
    script = Script(client, "drop_messages")
    ids = ",".join(map(str, document_ids))  # one argument: a script's arguments are not a Lua list of any length
    return int(script({"scratch": f"{lists[0]}\x00purge", "lists": lists},
                      {"database": database or "", "window": WINDOW, "documents": ids}))
