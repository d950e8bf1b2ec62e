"""Use cases of workers: start them detached, wait for their heartbeat, plan a scale of one queue."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from legaldoc import hosts
from legaldoc.errors import ServiceUnavailable
from legaldoc.logs import LOG_FILE_MODE, LOG_FOLDER_MODE
from legaldoc.state.workers import Heartbeat, WorkerRegistry


def worker_name(name: str | None) -> str:
    """A unique worker name; ``@HOST`` is added when the name has no host part (`hosts.worker_name`)."""
    return hosts.worker_name(name)


def parse_autoscale(text: str) -> tuple[int, int]:
    """``MAX,MIN`` (or ``MAX``) as integers with MAX >= MIN >= 0."""
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"--autoscale takes MAX,MIN (e.g. 8,2), not {text!r}")
    high, low = int(parts[0]), int(parts[1]) if len(parts) == 2 else 0
    if high < 1 or low > high:
        raise ValueError(f"--autoscale needs MAX >= 1 and MIN <= MAX, not {text!r}")
    return high, low


def worker_command(*, queues: Sequence[str] = (), concurrency: int | None = None, autoscale: str | None = None,
                   name: str | None = None, loglevel: str | None = None, log_format: str | None = None,
                   log_file: Path | None = None) -> list[str]:  # fmt: skip
    """The command line of a worker; the log level and format default to its settings."""
    command = [sys.executable, "-m", "legaldoc.tasks.worker", *(["--name", name] if name else [])]
    command += [*(["--loglevel", loglevel] if loglevel else []), *(["--log-format", log_format] if log_format else []),
                *(["--log-file", str(log_file)] if log_file else [])]  # fmt: skip
    if queues:
        command += ["--queues", ",".join(queues)]
    if autoscale:
        command += ["--autoscale", autoscale]
    elif concurrency:
        command += ["--concurrency", str(concurrency)]
    return command


@dataclass
class Detached:
    name: str
    pid: int
    log: Path  # the worker's log, rotated by size by the worker itself
    output: Path  # whatever the process writes on stdout/stderr outside logging (a crash, a native library)


def log_paths(log_folder: Path, name: str) -> tuple[Path, Path]:
    """``LOG_FOLDER/NAME.log`` (the worker's log) and ``NAME.out`` (its raw stdout and stderr)."""
    stem = name.replace("@", "_").replace("/", "_")
    return log_folder / f"{stem}.log", log_folder / f"{stem}.out"


def start_detached(command: list[str], env: Mapping[str, str], log_folder: Path, name: str) -> Detached:
    """Start a worker in its own session, writing its log to ``LOG_FOLDER/NAME.log`` (rotated by
    the worker: `--log-file` is added to `command`) and its raw output to ``NAME.out``.

    The folder is 0750 and the files 0640 whatever the umask (a log shipper's group may read them,
    others may not), and ones an older version left readable to others are tightened."""
    log_folder.mkdir(parents=True, exist_ok=True, mode=LOG_FOLDER_MODE)
    os.chmod(log_folder, LOG_FOLDER_MODE)
    log, output_path = log_paths(log_folder, name)
    if log.exists():
        os.chmod(log, LOG_FILE_MODE)
    descriptor = os.open(output_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE)
    os.fchmod(descriptor, LOG_FILE_MODE)
    with os.fdopen(descriptor, "ab") as output:
        process = subprocess.Popen([*command, "--log-file", str(log)], env=dict(env), stdin=subprocess.DEVNULL,
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
    return Detached(name, process.pid, log, output_path)


def process_alive(pid: int) -> bool:
    """True while a process of this host runs (a zombie waiting to be reaped counts as gone)."""
    import psutil

    try:
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    except ChildProcessError:
        pass
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True


def wait_for_exit(pids: Sequence[int], timeout: float) -> list[int]:
    """Wait until these local processes have exited; the ones still running when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        running = [pid for pid in pids if process_alive(pid)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.1)


def wait_for_heartbeat(registry: WorkerRegistry, detached: Detached, timeout: float = 60.0) -> Heartbeat:
    """The worker's first heartbeat; ServiceUnavailable with its log's tail when it dies or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for heartbeat in registry.workers(purge=False):
            if heartbeat.name == detached.name and heartbeat.online() and heartbeat.pid == detached.pid:
                return heartbeat
        if not process_alive(detached.pid):
            said = "\n".join(t for t in (tail(detached.log), tail(detached.output)) if t)
            raise ServiceUnavailable(f"worker {detached.name} exited at start; its log ({detached.log}) ends with:\n"
                                     f"{said}")  # fmt: skip
        time.sleep(0.2)
    raise ServiceUnavailable(f"worker {detached.name} (pid {detached.pid}) sent no heartbeat within {timeout:g} s",
                             hint=f"see its log: {detached.log}")  # fmt: skip


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def wait_until(registry: WorkerRegistry, predicate: Callable[[list[Heartbeat]], bool], timeout: float) -> bool:
    """Poll the heartbeats until `predicate(workers)` holds; False when time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate(registry.workers(purge=False)):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


@dataclass(frozen=True)
class Action:
    """One step of a scale: grow/shrink a pool, change an autoscale range, stop a worker, start one."""

    kind: str  # grow | shrink | autoscale | stop | start
    worker: str | None
    count: int
    before: int
    after: int
    minimum: int = 0

    def describe(self, queue: str) -> str:
        if self.kind == "start":
            return f"started a worker on {queue} with {self.after} processes"
        if self.kind == "stop":
            return f"stopped {self.worker} ({self.before} processes)"
        if self.kind == "autoscale":
            return f"set {self.worker}'s autoscale to max {self.after}, min {self.minimum} (was max {self.before})"
        return f"{'grew' if self.kind == 'grow' else 'shrank'} {self.worker} from {self.before} to {self.after} processes"


def plan_scale(workers: Sequence[Heartbeat], queue: str, target: int) -> list[Action]:
    """Steps that bring the total concurrency of the online workers consuming `queue` to `target`.

    Growing adds processes to the smallest pool (or raises an autoscale maximum); with no worker on
    the queue a new local worker is started. Shrinking takes from the largest pools first, never
    below one process, and stops whole workers only when fewer workers than that remain wanted.
    """
    serving = [w for w in workers if w.online() and queue in w.queues]
    size = {w.name: (w.autoscale[0] if w.autoscale else w.concurrency) for w in serving}
    current = sum(size.values())
    if target == current:
        return []
    if target > current:
        if not serving:
            return [Action("start", None, target, 0, target)]
        smallest = min(serving, key=lambda w: (size[w.name], w.name))
        extra = target - current
        before = size[smallest.name]
        if smallest.autoscale:
            return [Action("autoscale", smallest.name, extra, before, before + extra, smallest.autoscale[1])]
        return [Action("grow", smallest.name, extra, before, before + extra)]
    actions: list[Action] = []
    excess = current - target
    ordered = sorted(serving, key=lambda w: (-size[w.name], w.name))
    keep = max(target, 0)
    stop_count = max(0, len(ordered) - keep) if keep < len(ordered) else 0
    for heartbeat in reversed(ordered[len(ordered) - stop_count :] if stop_count else []):
        actions.append(Action("stop", heartbeat.name, size[heartbeat.name], size[heartbeat.name], 0))
        excess -= size[heartbeat.name]
    for heartbeat in ordered[: len(ordered) - stop_count]:
        if excess <= 0:
            break
        before = size[heartbeat.name]
        take = min(excess, before - 1)
        if take <= 0:
            continue
        if heartbeat.autoscale:
            actions.append(Action("autoscale", heartbeat.name, take, before, before - take,
                                  min(heartbeat.autoscale[1], before - take)))  # fmt: skip
        else:
            actions.append(Action("shrink", heartbeat.name, take, before, before - take))
        excess -= take
    return actions
