"""Scale-out: several worker hosts share one database, one Redis and one object store.

The "machines" are real worker subprocesses, each in its own UTS namespace (its own hostname, set
by `unshare --user --map-root-user --uts`) with its own working folder, TMPDIR and data folder;
they share PostgreSQL (SQLite's file when no PostgreSQL is given: one host's stand-in, not a
deployment), one redis-server, and documents named by `s3://` URIs served by moto's S3 server.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import boto3
import pytest
from sqlalchemy import select, update

from legaldoc import hosts
from legaldoc.config import Settings
from legaldoc.lifecycle import AttemptOutcome, BatchStatus, DocumentStatus
from legaldoc.manifest import load_manifest
from legaldoc.models import STAGES
from legaldoc.queues import STAGE_QUEUE
from legaldoc.services import batches as service
from legaldoc.services.embedded import SOCKET_PATH_MAX, EmbeddedRedis, RunRecord, mark_runner
from legaldoc.services.wiring import Runtime
from legaldoc.storage import claims
from legaldoc.storage import repository as repo
from legaldoc.storage.tables import Batch, Document, StageRun
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import DATABASE_KINDS, NEF, settings_env

UNSHARE = shutil.which("unshare")
REAL_DATABASE = DATABASE_KINDS[-1]  # PostgreSQL when the tests have one: what a deployment uses
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


def _namespaces(*flags: str) -> list[str]:
    """`unshare` with a user namespace (no privileges needed) and `flags`; UsageError where the
    kernel refuses unprivileged namespaces: the test cannot run there, it must not pass."""
    if UNSHARE is None:
        raise pytest.UsageError("tests/test_scaleout.py needs unshare (util-linux)")
    command = [UNSHARE, "--user", "--map-root-user", *flags]
    probe = subprocess.run([*command, "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        raise pytest.UsageError(f"unprivileged namespaces are refused here ({probe.stderr.strip()}); "
                                "allow them (sysctl kernel.unprivileged_userns_clone=1) to run the scale-out tests")  # fmt: skip
    return command


class Machine:
    """A worker host: its own hostname, working folder, TMPDIR and data folder; shared settings."""

    def __init__(self, name: str, root: Path, settings: Settings, s3_endpoint: str) -> None:
        self.name = name
        self.home = root / name
        self.data = self.home / "data"
        self.tmp = self.home / "tmp"
        for folder in (self.data, self.tmp):
            folder.mkdir(parents=True)
        self.log = self.home / "worker.log"
        env = settings_env(settings)
        env.update(S3_CREDENTIALS, LEGALDOC_DATA_DIR=str(self.data), LEGALDOC_HOME=str(self.data), TMPDIR=str(self.tmp),
                   HOME=str(self.home), LEGALDOC_S3_ENDPOINT_URL=s3_endpoint)  # fmt: skip
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, concurrency: int = 2) -> Machine:
        command = [*_namespaces("--uts"), "sh", "-c", 'hostname "$0" && exec "$@"', self.name,
                   sys.executable, "-m", "legaldoc.tasks.worker", "--concurrency", str(concurrency), "--loglevel", "INFO",
                   "--log-file", str(self.log)]  # fmt: skip
        self.process = subprocess.Popen(command, cwd=self.home, env=self.env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=(self.home / "worker.out").open("ab"),
                                        start_new_session=True)  # fmt: skip
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.log, self.home / "worker.out") if p.exists())


def _online(rt: Runtime, machines: list[Machine], timeout: float = 60) -> dict[str, str]:
    """Worker name by host, once every machine's worker has sent its heartbeat."""
    deadline = time.monotonic() + timeout
    while True:
        online = {w.host: w.name for w in rt.registry.online()}
        if all(m.name in online for m in machines):
            return online
        for machine in machines:
            assert machine.process is None or machine.process.poll() is None, f"{machine.name} died:\n{machine.output()}"
        assert time.monotonic() < deadline, f"workers did not come up: {online}"
        time.sleep(0.2)


@pytest.mark.parametrize("database_url", [REAL_DATABASE], indirect=True)
def test_two_worker_hosts_share_one_batch_of_s3_documents(batch_settings, s3_endpoint, tmp_path, monkeypatch):
    """Given two worker hosts (own hostname, folders, TMPDIR and data folder) on one database and one
    Redis, and a batch of 24 real court e-mails in an S3 bucket, When both consume it, Then both ran
    stages, no (document, stage, attempt) ran twice, every document is done with each stage run
    once, and the batch was settled exactly once."""
    for name, value in S3_CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="court-mail")
    uris = []
    for index, path in enumerate(sorted(NEF.glob("*.txt"))[:24]):
        key = f"inbox/{index:02d}-{path.name}"
        s3.put_object(Bucket="court-mail", Key=key, Body=path.read_bytes())
        uris.append({"uri": f"s3://court-mail/{key}"})
    settings = batch_settings.model_copy(update={"s3_endpoint_url": s3_endpoint})
    machines = [Machine(name, tmp_path / "hosts", settings, s3_endpoint) for name in ("machineA", "machineB")]
    cluster = connect(settings)
    try:
        for machine in machines:
            machine.start()
        names = _online(cluster.rt, machines)
        assert names["machineA"] != names["machineB"]
        submitted = cluster.submit(write_manifest(tmp_path / "scaleout.yaml", uris))
        deadline = time.monotonic() + 90
        while (summary := service.batch_status(cluster.rt, submitted.batch_id, live=False)).active:  # the workers settle it
            for machine in machines:
                assert machine.process is not None and machine.process.poll() is None, f"{machine.name} died:\n{machine.output()}"
            assert time.monotonic() < deadline, f"batch did not settle: {summary.as_json()}"
            time.sleep(0.2)
    finally:
        for machine in machines:
            machine.stop()
    assert (summary.status, summary.succeeded, summary.failed) == (BatchStatus.FINISHED, 24, 0), summary.as_json()
    with cluster.database.read() as session:
        documents = session.execute(select(Document.id, Document.status).where(Document.batch_id == submitted.batch_id)).all()
        runs = session.execute(select(StageRun.document_id, StageRun.stage, StageRun.attempt, StageRun.worker, StageRun.outcome)
                               .where(StageRun.document_id.in_([d.id for d in documents]))).all()  # fmt: skip
    assert len(documents) == 24 and {d.status for d in documents} == {DocumentStatus.DONE}
    hosts_seen = Counter(hosts.holder_host(r.worker) for r in runs)
    assert set(hosts_seen) == {"machineA", "machineB"}, hosts_seen  # both consumed
    twice = [key for key, n in Counter((r.document_id, r.stage, r.attempt) for r in runs).items() if n > 1]
    assert twice == []  # nothing was done twice
    done = Counter((r.document_id, r.stage) for r in runs if r.outcome == AttemptOutcome.DONE)
    assert done == {(d.id, s.value): 1 for d in documents for s in STAGES}  # each document done once, every stage
    settled = [line for m in machines for line in m.output().splitlines() if f"batch {submitted.batch_id} settled" in line]
    assert len(settled) == 1 and "settled finished" in settled[0], settled  # the batch ended once


def _empty_batch(rt: Runtime) -> str:
    """A running batch with nothing left open: the next finalize settles it."""
    with rt.database.session() as session:
        project = repo.get_or_create_project(session, "acme")
        batch_id = service.new_batch_id()
        session.add(Batch(id=batch_id, name="empty", lock_name="empty", project_id=project.id, priority=5,
                          status=BatchStatus.RUNNING, total=0))  # fmt: skip
    return batch_id


def test_concurrent_finalizers_settle_a_batch_once(batch_settings, caplog):
    """Given a batch with nothing open, When eight workers finalize it at the same moment, Then one
    of them settles it: the row lock makes the others wait and find it settled (on PostgreSQL too,
    where transactions do not take the whole database)."""
    rt = Runtime(batch_settings)
    batch_id = _empty_batch(rt)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def finalize() -> None:
        try:
            start.wait()
            service.finalize_batch(rt, batch_id)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    with caplog.at_level(logging.INFO, logger="legaldoc.batches"):
        threads = [threading.Thread(target=finalize) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert errors == []
    settled = [r for r in caplog.records if r.getMessage().startswith(f"batch {batch_id} settled")]
    assert len(settled) == 1, [r.getMessage() for r in settled]
    assert service.batch_status(rt, batch_id, live=False).status is BatchStatus.FINISHED


_CONTAINER = """
import subprocess, sys
from legaldoc.storage import claims
sleepers = [subprocess.Popen(["sleep", "60"]) for _ in range(40)]
print(" ".join(claims.worker_identity(p.pid) for p in sleepers), flush=True)
sys.stdin.read()
"""


def test_a_claim_of_another_container_with_the_same_hostname_is_not_judged_here():
    """Given live processes of another process-id namespace on a host of the same name (two
    containers with host networking), When this host asks whether their claims' holders are
    dead, Then it does not take their pids for its own: they are not dead, whatever pid they have
    here. Its own dead process still is."""
    container = subprocess.Popen([*_namespaces("--pid", "--fork", "--kill-child"), sys.executable, "-c", _CONTAINER],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert container.stdout is not None
        holders = container.stdout.readline().split()
        assert len(holders) == 40
        pids = [int(h.rpartition(":")[2]) for h in holders]
        assert any(not Path(f"/proc/{pid}").exists() for pid in pids), pids  # some are no process here
        assert [h for h in holders if hosts.holder_is_dead(h)] == []
    finally:
        container.kill()  # unshare: --kill-child ends its pid 1, and the kernel the whole namespace
        container.wait(10)
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert hosts.holder_is_dead(claims.worker_identity(gone.pid))
    assert hosts.holder_host(claims.worker_identity()) == hosts.HOST
    # a `legaldoc run`'s record and a worker's heartbeat (`workers stop` waits for local pids) the same way
    assert not RunRecord(gone.pid, hosts.HOST, pid_space=hosts.SPACE).alive
    assert RunRecord(gone.pid, hosts.HOST, pid_space=hosts.SPACE + "0").alive  # not judged here
    assert not RunRecord(gone.pid, hosts.HOST).alive  # an older record: by its hostname, as before
    assert hosts.is_this_host(hosts.HOST, hosts.SPACE) and hosts.is_this_host(hosts.HOST, None)
    assert not hosts.is_this_host(hosts.HOST, hosts.SPACE + "0") and not hosts.is_this_host("elsewhere", hosts.SPACE)


def _stale(rt: Runtime, batch_id: str) -> int:
    """The batch's documents look abandoned: the first held by a worker of another host whose lease
    ran out, the others waiting an hour with no message on a queue. Returns the held one's id."""
    with rt.database.session() as session:
        ids = sorted(session.scalars(select(Document.id).where(Document.batch_id == batch_id)))
        assert claims.claim(session, ids[0], STAGES[0], 1, "elsewhere/1:7", -1).outcome is AttemptOutcome.RUNNING
        session.execute(update(Document).where(Document.id.in_(ids[1:])).values(updated_at=claims.now_utc() - timedelta(hours=1)))
    return ids[0]


@pytest.mark.any_database
def test_a_legaldoc_run_and_a_shared_installation_on_one_database_sweep_their_own_batches(batch_settings, tmp_path):
    """Given a shared installation's batch and a `legaldoc run`'s batch (its private Redis) on one
    database, both with an expired claim and documents whose messages look lost, When each
    installation's sweeper runs, Then each sweeps its own batch only: the shared one does not
    re-publish the run's documents to its workers, nor rebuild the run's batch in its Redis, and
    the other way round."""
    shared = Runtime(batch_settings)
    private = Runtime(batch_settings.model_copy(update={"redis_prefix": "private-run:"}))  # a Redis of its own
    runner = mark_runner(private)
    batches = {}
    for name, rt in (("shared", shared), ("run", private)):
        manifest = write_manifest(tmp_path / f"{name}.yaml", [{"glob": f"{nef_copies(tmp_path / name, 3)}/*"}], project=name)
        batches[name] = service.submit_batch(rt, load_manifest(manifest)).batch_id
        _drop_messages(rt)  # their messages are gone
        rt.state.client.delete(rt.state.keys.batch(batches[name]))  # and their live state
    with shared.database.read() as session:
        assert session.get(Batch, batches["run"]).runner == runner and session.get(Batch, batches["shared"]).runner is None
    held = {name: _stale(rt, batches[name]) for name, rt in (("shared", shared), ("run", private))}
    for name, rt in (("shared", shared), ("run", private)):
        with rt.database.read() as session:
            own = set(session.scalars(select(Document.id).where(Document.batch_id == batches[name])))
        report = service.sweep(rt)  # the expired claim's next attempt goes to this installation's queue
        assert (report.requeued, report.rebuilt) == (1, 1) and _published(rt) == [held[name]], (name, report)
        _drop_messages(rt)
        report = service.sweep(rt)  # the queue is empty: the waiting documents' messages were lost
        assert report.republished == 2 and set(_published(rt)) == own - {held[name]}, (name, report)
        other = batches["run" if name == "shared" else "shared"]
        assert rt.state.read(batches[name]) is not None
        assert rt.state.read(other) is None  # the other installation's batch stays out of this Redis


def _drop_messages(rt: Runtime) -> None:
    for queue in {q.value for q in STAGE_QUEUE.values()}:
        rt.client("broker").delete(*rt.state.keys.queue_lists(queue))


def _published(rt: Runtime) -> list[int]:
    """The documents of the stage messages waiting in this installation's extract queue."""
    bodies = [json.loads(m) for key in rt.state.keys.queue_lists(STAGE_QUEUE[STAGES[0]].value)
              for m in rt.client("broker").lrange(key, 0, -1)]  # fmt: skip
    return sorted(int(b["headers"]["argsrepr"].strip("()").split(",")[0]) for b in bodies)


def test_the_embedded_redis_finds_a_short_socket_path_when_tmpdir_is_deep_too(tmp_path, monkeypatch):
    """Given a data folder and a TMPDIR both too deep for a unix socket's path (a host's own folders
    under a long mount point), When `legaldoc run`'s Redis starts, Then it listens in a private
    folder of /tmp, and that folder is gone after it stops."""
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    (deep / "tmp").mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(deep / "tmp"))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    embedded = EmbeddedRedis(deep / "data")
    with embedded:
        assert embedded.socket is not None and len(str(embedded.socket)) <= SOCKET_PATH_MAX
        assert embedded.socket.parent.parent == Path("/tmp")
        folder = embedded.socket.parent
    assert not folder.exists()
