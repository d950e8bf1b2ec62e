"""Who this process is, among the hosts of one installation: claim holders and worker names.

Several worker hosts share one database and one Redis, so a name made here must not collide with
one made on another host, and a check of "is that process alive?" may only look at processes this
host can see. Containers make both harder: two of them may share a hostname (host networking) and
each has its own process-id namespace, so pid 7 here and pid 7 there are different processes.

A claim holder is ``HOST/SPACE:PID``: the hostname, the inode of the process-id namespace
(``/proc/self/ns/pid``; empty where there is none) and the pid. A holder is judged dead only by a
process of the same host *and* namespace. Holders written before the namespace was part of the
name (``HOST:PID``) are judged by the hostname alone, as they were then.
"""

from __future__ import annotations

import os
import secrets
import socket

HOST = socket.gethostname()


def _pid_space() -> str:
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:  # not Linux, or no /proc: the hostname alone names the process space
        return ""


SPACE = _pid_space()


def is_this_host(host: str, space: str | None) -> bool:
    """Whether a process a record names by host and process space (None: the record did not say,
    written before spaces were recorded) is one this process can see by its pid."""
    return host == HOST and (space is None or space == SPACE)


def holder(pid: int | None = None) -> str:
    """The claim holder name of this process, or of process `pid` of this host."""
    return f"{HOST}/{SPACE}:{pid or os.getpid()}"


def _local_pid(name: str) -> int | None:
    """The pid of a holder of this host and process space; None for another's or a malformed name."""
    place, _, pid = name.rpartition(":")
    if not pid.isdigit():
        return None
    host, slash, space = place.rpartition("/")
    if not slash:  # HOST:PID, written before namespaces were named
        host, space = place, SPACE
    return int(pid) if (host, space) == (HOST, SPACE) else None


def holder_is_dead(name: str | None) -> bool:
    """True when the holder is a process of this host and process space that no longer exists.
    A holder of another host, or of another container on a host of the same name, is never judged
    here: its lease tells."""
    pid = _local_pid(name) if name else None
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def holder_host(name: str) -> str:
    """The hostname part of a holder name."""
    return name.rpartition(":")[0].rpartition("/")[0] or name.rpartition(":")[0]


def worker_name(name: str | None = None) -> str:
    """A worker's name: `name`, or ``legaldoc-RANDOM``, with ``@HOST`` added when it has no host part.
    Random, not the pid: containers sharing a hostname all have their pid 1."""
    name = name or f"legaldoc-{secrets.token_hex(3)}"
    return name if "@" in name else f"{name}@{HOST}"
