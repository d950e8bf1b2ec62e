"""The Lua scripts of `state/lua/`, called like functions: with named keys and arguments.

Each script begins with a header naming its keys and its arguments in order; a name starting
with ``*`` takes the rest as a list:

    --! keys: batch docs
    --! args: document version *fields

The loader declares those names as Lua locals (``local batch, docs = KEYS[1], KEYS[2]``), so the
body reads them by name, and a caller passes dicts by the same names; a missing or unknown name
is an error before anything reaches Redis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

import redis

from legaldoc.state.roundtrip import RoundTrip

_HEADER = re.compile(r"^--! (keys|args):(.*)$", re.MULTILINE)
_LUA = {"keys": "KEYS", "args": "ARGV"}


@cache
def _source(name: str) -> tuple[str, dict[str, list[str]]]:
    text = (files("legaldoc.state") / "lua" / f"{name}.lua").read_text(encoding="utf-8")
    names = {kind: spec.split() for kind, spec in _HEADER.findall(text)}
    prologue = []
    for kind, table in _LUA.items():
        fixed = [n for n in names.setdefault(kind, []) if not n.startswith("*")]
        if fixed:
            prologue.append(f"local {', '.join(fixed)} = {', '.join(f'{table}[{i}]' for i in range(1, len(fixed) + 1))}")
        rest = [n for n in names[kind] if n.startswith("*")]
        if rest and rest != names[kind][-1:]:
            raise ValueError(f"{name}.lua: only the last {kind} name may take the rest")
        if rest:
            prologue.append(f"local {rest[0][1:]} = {{unpack({table}, {len(fixed) + 1})}}")
    return "\n".join(prologue) + "\n" + text, names


class Script:
    """One script of `state/lua/`, registered on a client (EVALSHA, loaded on first use)."""

    def __init__(self, client: redis.Redis, name: str) -> None:
        source, names = _source(name)
        self.name = name
        self.keys, self.args = names["keys"], names["args"]
        self._script = client.register_script(source)

    @staticmethod
    def _ordered(names: list[str], given: Mapping[str, Any], what: str) -> list[Any]:
        wanted = {n.lstrip("*") for n in names}
        if given.keys() != wanted:
            raise TypeError(f"{what}: expected {sorted(wanted)}, got {sorted(given)}")
        values = [given[n] for n in names if not n.startswith("*")]
        if names and names[-1].startswith("*"):
            rest: Sequence[Any] = given[names[-1][1:]]
            values.extend(rest)
        return values

    def queue(self, trip: RoundTrip, keys: Mapping[str, Any], args: Mapping[str, Any], *,
              reply: Callable[[Any], None] | None = None) -> None:  # fmt: skip
        """Add one call to a round trip (as EVALSHA; run on its own, loading it, if the server lacks it)."""
        ordered_keys = self._ordered(self.keys, keys, f"{self.name} keys")
        ordered_args = self._ordered(self.args, args, f"{self.name} args")
        script = self._script
        client = script.registered_client

        def load_and_run() -> Any:  # the server lacks it: load and run it in one round trip
            pipe = client.pipeline(transaction=False)
            pipe.script_load(script.script)
            pipe.evalsha(script.sha, len(ordered_keys), *ordered_keys, *ordered_args)
            return pipe.execute()[1]

        trip.script(client, script.sha, ordered_keys, ordered_args, reply=reply, run=load_and_run)

    def __call__(self, keys: Mapping[str, Any], args: Mapping[str, Any], *, client: Any = None) -> Any:
        """Run the script (on `client`, e.g. a pipeline, when given)."""
        return self._script(keys=self._ordered(self.keys, keys, f"{self.name} keys"),
                            args=self._ordered(self.args, args, f"{self.name} args"), client=client)  # fmt: skip
