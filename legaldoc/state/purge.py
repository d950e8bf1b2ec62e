"""Taking a cancelled batch's waiting messages out of the broker's queue lists.

A cancelled document's stage message would otherwise stay queued until a worker pops it and finds,
in the database, that there is nothing to do: a no-op per document, minutes of them for a large
batch, and the memory of every message until then. `drop_stage_messages` removes them with one
atomic script per queue list (`lua/drop_messages.lua`): workers consuming at the same time pop a
message either before the script (it was theirs; a no-op as before) or after it (it is gone);
every other message keeps its place and order.

Cost (the bound): the script reads the list once, `WINDOW` messages at a time, and rewrites it only
from its newest end to the last message it drops; Redis serves nothing else meanwhile, about 1 ms per
1,000 messages read (benchmarks/scale.py measures it). Messages a worker has already taken (its
prefetch, at most concurrency x prefetch multiplier) and delayed retries it holds are not in the
lists: they stay no-ops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from legaldoc.state.scripts import Script

WINDOW = 1000
"""Messages the script reads or moves per command."""


def drop_stage_messages(client: redis.Redis, lists: Iterable[str], document_ids: Sequence[int],
                        database: str | None = None) -> int:  # fmt: skip
    """Remove the stage messages of `document_ids` (stamped with `database`, when given) from `lists`;
    the number removed."""
    if not document_ids:
        return 0
    script = Script(client, "drop_messages")
    ids = ",".join(map(str, document_ids))  # one argument: a script's arguments are not a Lua list of any length
    return sum(int(script({"list": key, "scratch": f"{key}\x00purge"}, {"database": database or "", "window": WINDOW,
                                                                         "documents": ids}))
               for key in lists)  # fmt: skip
