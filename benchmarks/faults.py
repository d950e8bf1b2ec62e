"""The long fault suite: real redis-servers, real `legaldoc` worker subprocesses, a fresh data folder
per scenario, faults injected from outside, and a bound per scenario (exit 1 when one is broken).

  F1  SIGKILL a random pool process every 3-5 s during a batch of N court e-mails: nothing lost, no
      duplicate row (every output table's row count equals a clean in-process run of the same
      documents, done first in this script), no stage attempted more than 3 times.
  F3  SIGKILL the worker's main process once a third of the batch is done, then start a new worker.
  F4  SIGKILL redis-server once a third is done and restart it 3 s later, empty (no persistence);
      F4/aof the same with `appendonly yes --appendfsync everysec` (restarted from its AOF).
      F3 and F4: the batch settles by itself (no `wait`, no `recover`: the sweeper and the finalize
      task), nothing lost, no duplicate row, within the bound below.
  F5  200 malformed files among 800 good ones, generated here (truncated and encrypted PDFs, render
      bombs, zip bombs whose headers lie, 200-megapixel PNGs, empty files, wrong extensions, UTF-16
      and cp1252 text, binary named .txt, 2 MB of one repeated "Smith v. Jones" line): every
      malformed file ends classified (failed with a category and a message naming it, or done when
      it is readable), every good one done, no stage attempt longer than its queue's hard time
      limit, and the peak resident memory of any worker descendant (pool processes, tesseract) at
      most 1.5 GB (VmHWM read from /proc every 0.2 s).
  F6  The manifest loader: YAML tags, alias bombs (top level, inside metadata), a manifest over the
      50 MB cap and a glob that would walk the whole disk, each refused (UsageError) in < 1 s; 100,000
      entries loaded in < 10 s and < 500 MB (benchmarks/manifest.py, run as a child).

Settings of the batch scenarios: claim_lease 10 s (renewed every 3.3 s), sweep_interval 2 s,
retry_base_delay 0.2 s; F5 also ocr_time_limit 120 s and 60 s for the other queues.

Recovery bound (F3, F4), from those settings: after the fault the documents not yet done need what
they needed before, at the rate measured before the fault, with 50% slack for a shared machine; on
top, a claim the fault orphaned expires after one lease and is re-queued by the next sweep (lease +
sweep interval), and a message the fault lost is re-published by the first sweep that finds its
queue empty and the document waiting for more than two leases (2 x lease + sweep interval):

    bound = 1.5 x remaining / rate + 2 x claim_lease + 2 x sweep_interval + 15 s (a new worker's start)

"time to recover" is from the fault until the batch row says finished.

Scenarios live in a registry (`@scenario("F7", "title")` on a function `Context -> list[Row]`);
F2 (a poison document), F8 (two installations on one Redis) and F9 (Retry-After honoured) are left
to be added that way.

Usage: python benchmarks/faults.py [--only F1,F3,...] [--docs 300] [--seed 1] [--json]
       --docs N scales every batch scenario (F5: 8N/3 good and 2N/3 malformed files).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from legaldoc.config import Settings, load_settings  # noqa: E402
from legaldoc.errors import UsageError  # noqa: E402
from legaldoc.lifecycle import DocumentStatus  # noqa: E402
from legaldoc.manifest import load_manifest  # noqa: E402
from legaldoc.queues import STAGE_QUEUE  # noqa: E402
from legaldoc.services import batches as service  # noqa: E402
from legaldoc.services.embedded import WorkerProcess  # noqa: E402
from legaldoc.services.process import process_paths  # noqa: E402
from legaldoc.storage.db import Database  # noqa: E402
from legaldoc.storage.tables import BatchDocument, Document, StageRun  # noqa: E402
from tests.batchkit import Cluster, connect, nef_copies, output_row_counts, write_manifest  # noqa: E402
from tests.conftest import CORPUS, DOCUMENTS, NEF, settings_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LEASE, SWEEP = 10.0, 2.0
FAULT_SETTINGS = {"claim_lease": LEASE, "sweep_interval": SWEEP, "retry_base_delay": 0.2}
F5_LIMITS = {"ocr_time_limit": 120.0, "text_time_limit": 60.0, "entity_time_limit": 60.0, "graph_time_limit": 60.0}
RSS_BOUND_MB = 1536
MAX_ATTEMPTS = 3


@dataclass
class Row:
    scenario: str
    title: str
    documents: int | None = None
    kills: int | None = None
    lost: int | None = None
    duplicates: int | None = None
    max_attempts: int | None = None
    peak_rss_mb: float | None = None
    recover_s: float | None = None
    bound_s: float | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict:
        return {**asdict(self), "ok": self.ok}


Scenario = Callable[["Context"], list[Row]]
SCENARIOS: dict[str, tuple[str, Scenario]] = {}


def scenario(key: str, title: str) -> Callable[[Scenario], Scenario]:
    """Register a scenario under its key (F1, F2, ...); `--only` picks them by key."""

    def register(function: Scenario) -> Scenario:
        SCENARIOS[key] = (title, function)
        return function

    return register


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on a fixed free port, which can be killed and started again."""

    def __init__(self, folder: Path, *, aof: bool = False) -> None:
        self.folder, self.aof, self.port = folder, aof, free_port()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.aof else ["--appendonly", "no"]
        self.process = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                         *persistence, "--dir", str(self.folder), "--logfile", str(self.folder / "redis.log")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return self
            except (redis.ConnectionError, redis.BusyLoadingError):
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start: {(self.folder / 'redis.log').read_text()[-2000:]}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


def children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                found.extend(int(c) for c in (task / "children").read_text().split())
    return found


def descendants(pid: int) -> list[int]:
    found, stack = [], [pid]
    while stack:
        for child in children(stack.pop()):
            found.append(child)
            stack.append(child)
    return found


def peak_rss_kb(pid: int) -> int:
    """VmHWM: the most resident memory the process has had (kB), 0 when it is gone."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


class RssWatch(threading.Thread):
    """Every 0.2 s, the peak resident memory of every descendant of the tracked worker processes."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.roots: list[int] = []
        self.peak_kb = 0
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            for root in list(self.roots):
                for pid in descendants(root):
                    self.peak_kb = max(self.peak_kb, peak_rss_kb(pid))

    @property
    def peak_mb(self) -> float:
        return round(self.peak_kb / 1024, 1)


class Installation:
    """A fresh data folder, its own redis-server, workers started on demand; all stopped at the end."""

    def __init__(self, ctx: Context, name: str, *, aof: bool = False, **overrides: float) -> None:
        self.folder = ctx.work / name
        self.folder.mkdir()
        self.redis = RedisServer(self.folder / "redis", aof=aof).start()
        self.settings: Settings = load_settings(data_dir=self.folder / ".legaldoc", redis_url=self.redis.url,
                                                **{**FAULT_SETTINGS, **overrides})  # fmt: skip
        self.cluster: Cluster = connect(self.settings)
        self.workers: list[WorkerProcess] = []
        self.rss = RssWatch()
        self.rss.start()

    def start_worker(self) -> WorkerProcess:
        log = self.folder / f"worker-{len(self.workers)}.log"
        worker = WorkerProcess(settings_env(self.settings), concurrency=2, log_path=log).start()
        self.workers.append(worker)
        self.rss.roots.append(worker.pid)
        return worker

    def submit(self, folder: Path) -> str:
        manifest = write_manifest(self.folder / "batch.yaml", [{"glob": f"{folder}/*"}], skip_processed=False)
        return self.cluster.submit(manifest).batch_id

    def status(self, batch_id: str):
        return service.batch_status(self.cluster.rt, batch_id, live=False)

    def wait_settled(self, batch_id: str, timeout: float) -> float | None:
        """Poll the database (never settling the batch ourselves) until the batch row has ended; the
        moment it did, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.status(batch_id).active:
                return time.monotonic()
            time.sleep(0.5)
        return None

    def wait_done(self, batch_id: str, count: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.status(batch_id).succeeded < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} documents were not done within {timeout:g} s")
            time.sleep(0.2)

    def close(self) -> None:
        self.rss.stopped.set()
        for worker in self.workers:
            worker.stop(timeout=20)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGKILL)  # the pool processes of a main process killed earlier
        self.redis.stop()
        self.cluster.database.engine.dispose()


@contextlib.contextmanager
def installation(ctx: Context, name: str, **kwargs) -> Iterator[Installation]:
    inst = Installation(ctx, name, **kwargs)
    try:
        yield inst
    finally:
        inst.close()


# -- what a batch left ---------------------------------------------------------------------------


@dataclass
class Outcome:
    documents: list[tuple[str, str, str | None, str | None]]  # source, status, category, message
    max_attempt: int
    runs: list[tuple[str, int, int | None, str, str | None]]  # stage, attempt, duration_ms, outcome, category


def outcome(database: Database, batch_id: str) -> Outcome:
    with database.read() as session:
        documents = session.execute(
            select(Document.source, Document.status, Document.error_category, Document.error_message)
            .join(BatchDocument, BatchDocument.document_id == Document.id).where(BatchDocument.batch_id == batch_id)
        ).all()  # fmt: skip
        runs = session.execute(select(StageRun.stage, StageRun.attempt, StageRun.duration_ms, StageRun.outcome,
                                      StageRun.error_category)).all()  # fmt: skip
        most = session.scalar(select(func.max(StageRun.attempt))) or 0
    return Outcome([tuple(d) for d in documents], int(most), [tuple(r) for r in runs])


def compare_rows(database: Database, expected: dict[str, int], row: Row) -> None:
    found = output_row_counts(database)
    extra = {t: found[t] - expected[t] for t in expected if found[t] > expected[t]}
    missing = {t: expected[t] - found[t] for t in expected if found[t] < expected[t]}
    row.duplicates = sum(extra.values())
    if extra:
        row.problems.append(f"rows beyond a clean run: {extra}")
    if missing:
        row.problems.append(f"rows missing against a clean run: {missing}")


def check_batch(inst: Installation, batch_id: str, expected: dict[str, int], row: Row) -> Outcome:
    result = outcome(inst.cluster.database, batch_id)
    row.documents = len(result.documents)
    row.lost = sum(1 for _, status, *_ in result.documents if status != DocumentStatus.DONE)
    row.max_attempts = result.max_attempt
    row.peak_rss_mb = inst.rss.peak_mb
    if row.lost:
        examples = [(Path(s).name, st, c, (m or "")[:120]) for s, st, c, m in result.documents if st != DocumentStatus.DONE][:3]
        row.problems.append(f"{row.lost} documents not done: {examples}")
    if result.max_attempt > MAX_ATTEMPTS:
        row.problems.append(f"a stage took {result.max_attempt} attempts (bound {MAX_ATTEMPTS})")
    compare_rows(inst.cluster.database, expected, row)
    live, stored = inst.cluster.counts(batch_id)
    if live != stored:
        row.notes.append(f"Redis mirror {live} != database {stored}")
    return result


# -- the scenarios' shared inputs ----------------------------------------------------------------


class Context:
    def __init__(self, work: Path, docs: int, seed: int) -> None:
        self.work, self.docs, self.rng = work, docs, random.Random(seed)
        self._nef: Path | None = None
        self._clean: dict[str, int] | None = None

    def nef_folder(self) -> Path:
        """`docs` court e-mails (the corpus's NEF texts, cycled) as distinct files in the work folder."""
        if self._nef is None:
            self._nef = nef_copies(self.work / "nef", self.docs)
        return self._nef

    def clean_counts(self) -> dict[str, int]:
        """The row counts of the same documents processed in this process into a fresh database."""
        if self._clean is None:
            started = time.monotonic()
            settings = load_settings(data_dir=self.work / "clean" / ".legaldoc")
            database = Database(settings.resolved_database_url)
            statuses = [r.status for r in process_paths([self.nef_folder()], "acme", settings, database)]
            assert set(statuses) == {"done"}, statuses
            self._clean = output_row_counts(database)
            database.engine.dispose()
            progress(f"clean run: {self.docs} documents in-process in {time.monotonic() - started:.0f} s: {self._clean}")
        return self._clean


def progress(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", file=sys.stderr, flush=True)


def recovery_bound(remaining: int, rate: float) -> float:
    return 1.5 * remaining / rate + 2 * LEASE + 2 * SWEEP + 15


# -- F1 ------------------------------------------------------------------------------------------


@scenario("F1", "SIGKILL a pool process every 3-5 s")
def killed_pool_processes(ctx: Context) -> list[Row]:
    expected = ctx.clean_counts()
    row = Row("F1", SCENARIOS["F1"][0], kills=0)
    with installation(ctx, "f1") as inst:
        batch_id = inst.submit(ctx.nef_folder())
        worker = inst.start_worker()
        next_kill, last_kill = time.monotonic() + ctx.rng.uniform(3, 5), None
        deadline = time.monotonic() + 900
        while inst.status(batch_id).active and time.monotonic() < deadline:
            if time.monotonic() >= next_kill:
                pool = children(worker.pid)
                if pool:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(ctx.rng.choice(pool), signal.SIGKILL)
                        row.kills = (row.kills or 0) + 1
                        last_kill = time.monotonic()
                next_kill = time.monotonic() + ctx.rng.uniform(3, 5)
            time.sleep(0.1)
        settled = time.monotonic()
        if inst.status(batch_id).active:
            row.problems.append("the batch did not settle within 900 s")
        if last_kill is not None:
            row.recover_s = round(settled - last_kill, 1)
        check_batch(inst, batch_id, expected, row)
    return [row]


# -- F3, F4 --------------------------------------------------------------------------------------


def _fault_mid_batch(ctx: Context, key: str, name: str, fault: Callable[[Installation, WorkerProcess], None],
                     **kwargs) -> Row:  # fmt: skip
    expected = ctx.clean_counts()
    row = Row(key, SCENARIOS[key.split("/")[0]][0] + (" (AOF everysec)" if kwargs.get("aof") else ""), kills=1)
    with installation(ctx, name, **kwargs) as inst:
        submitted = time.monotonic()
        batch_id = inst.submit(ctx.nef_folder())
        worker = inst.start_worker()
        inst.wait_done(batch_id, ctx.docs // 3)
        faulted = time.monotonic()
        done = inst.status(batch_id).succeeded
        row.bound_s = round(recovery_bound(ctx.docs - done, done / (faulted - submitted)), 1)
        fault(inst, worker)
        settled = inst.wait_settled(batch_id, timeout=max(2 * row.bound_s, 120))
        if settled is None:
            row.problems.append(f"the batch did not settle by itself within {2 * row.bound_s:.0f} s")
        else:
            row.recover_s = round(settled - faulted, 1)
            if row.recover_s > row.bound_s:
                row.problems.append(f"settled {row.recover_s} s after the fault, bound {row.bound_s} s")
        check_batch(inst, batch_id, expected, row)
    return row


@scenario("F3", "SIGKILL the worker's main process")
def killed_worker(ctx: Context) -> list[Row]:
    def fault(inst: Installation, worker: WorkerProcess) -> None:
        pool = children(worker.pid)
        os.kill(worker.pid, signal.SIGKILL)
        assert worker.process is not None
        worker.process.wait()
        time.sleep(1)
        orphans = [pid for pid in pool if Path(f"/proc/{pid}").exists()]
        if orphans:
            progress(f"F3: {len(orphans)} pool processes outlived their main process by 1 s")
        inst.start_worker()

    return [_fault_mid_batch(ctx, "F3", "f3", fault)]


@scenario("F4", "SIGKILL redis-server, restart it")
def killed_redis(ctx: Context) -> list[Row]:
    def fault(inst: Installation, worker: WorkerProcess) -> None:
        inst.redis.kill()
        time.sleep(3)
        inst.redis.start()

    return [_fault_mid_batch(ctx, "F4", "f4", fault), _fault_mid_batch(ctx, "F4/aof", "f4-aof", fault, aof=True)]


# -- F5 ------------------------------------------------------------------------------------------


def _pdf_with_text(text: str) -> bytes:
    """A one-page PDF whose text layer is `text` (Helvetica, one line per 14 pt)."""
    lines = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") for line in text.splitlines()[:48]]
    stream = "BT /F1 11 Tf 14 TL 50 760 Td " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>",
               f"<< /Length {len(stream.encode('latin-1', 'replace'))} >>\nstream\n{stream}\nendstream",
               "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]  # fmt: skip
    out, offsets = io.BytesIO(), []
    out.write(b"%PDF-1.4\n")
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1", "replace"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write("".join(f"{o:010d} 00000 n \n" for o in offsets).encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def _blank_pdf(side_pt: float) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument.new()
    document.new_page(side_pt, side_pt)
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def _encrypted_pdf(text: str, password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(_pdf_with_text(text))))
    writer.encrypt(user_password=password, owner_password=password + "-owner")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def _zip_bomb_template(folder: Path) -> bytes:
    """One member of 300 MB of zeros (about 300 KB deflated), written honestly; the copies lie."""
    path = folder / "template.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, archive.open("evidence.txt", "w") as member:
        block = b"\0" * (1 << 20)
        for _ in range(300):
            member.write(block)
    data = path.read_bytes()
    path.unlink()
    return data


def _lying_zip(template: bytes, declared: int, comment: bytes) -> bytes:
    """The template with the member's uncompressed size set to `declared` in both headers, and a comment."""
    data = bytearray(template)
    data[22:26] = declared.to_bytes(4, "little")  # local file header
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = declared.to_bytes(4, "little")
    assert data[-22:-18] == b"PK\x05\x06"
    data[-2:] = len(comment).to_bytes(2, "little")
    return bytes(data) + comment


def _huge_png_template() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (20_000, 10_000), 1).save(buffer, format="PNG")  # 200 megapixels, a few kB
    return buffer.getvalue()


# kind -> (share of the malformed files, what it may end as: done and/or failed with these categories)
MALFORMED: dict[str, tuple[int, set[str]]] = {
    "truncated-pdf": (30, {"done", "DATA"}),  # pdfium may repair what is left
    "encrypted-pdf": (20, {"DATA"}),
    "render-bomb": (18, {"DATA"}),  # a 200-inch page: over the pixel budget even at the floor dpi
    "render-bomb-ocr": (2, {"DATA"}),  # a 42-inch blank page: rendered at a lower dpi, no text
    "zip-bomb-small-header": (10, {"DATA"}),
    "zip-bomb-huge-header": (10, {"DATA"}),
    "huge-png": (20, {"DATA"}),
    "zero-byte": (20, {"DATA"}),
    "wrong-extension": (20, {"done"}),
    "utf16-bom": (15, {"done"}),
    "cp1252-text": (15, {"done"}),
    "binary-txt": (17, {"DATA"}),
    "pathological-text": (3, {"done", "RESOURCE"}),
}


def make_f5_inputs(ctx: Context, folder: Path, good: int, bad: int) -> dict[str, str]:
    """Write `good` readable documents and about `bad` malformed ones; the kind of each file, by name."""
    folder.mkdir()
    texts = [p.read_text() for p in sorted(NEF.glob("*.txt"))]
    dockets = sorted(CORPUS.glob("dockets/*/*.html"), key=lambda p: p.stat().st_size)[:20]
    kinds: dict[str, str] = {}
    for index in range(good):
        which = index % 4
        if which < 2:
            name = f"good-{index:04d}.txt"
            (folder / name).write_text(texts[index % len(texts)])
        elif which == 2:
            name = f"good-{index:04d}.html"
            shutil.copyfile(dockets[index % len(dockets)], folder / name)
        else:
            name = f"good-{index:04d}.pdf"
            (folder / name).write_bytes(_pdf_with_text(f"Exhibit {index}\n" + texts[index % len(texts)]))
        kinds[name] = "good"
    source_pdf = (DOCUMENTS / "ca10_010110462922.pdf").read_bytes()
    zip_template, png = _zip_bomb_template(folder.parent), _huge_png_template()
    total_share = sum(share for share, _ in MALFORMED.values())
    for kind, (share, _) in MALFORMED.items():
        for index in range(max(1, round(bad * share / total_share))):
            text = texts[index % len(texts)]
            unique = f"{kind} {index}"
            files: dict[str, bytes] = {}
            if kind == "truncated-pdf":
                files[f"{kind}-{index}.pdf"] = source_pdf[: len(source_pdf) * (index % 9 + 1) // 10 + index]
            elif kind == "encrypted-pdf":
                files[f"{kind}-{index}.pdf"] = _encrypted_pdf(text, f"secret-{index}")
            elif kind == "render-bomb":
                files[f"{kind}-{index}.pdf"] = _blank_pdf(14400) + f"% {unique}\n".encode()
            elif kind == "render-bomb-ocr":
                files[f"{kind}-{index}.pdf"] = _blank_pdf(3000) + f"% {unique}\n".encode()
            elif kind == "zip-bomb-small-header":
                files[f"{kind}-{index}.zip"] = _lying_zip(zip_template, 1024, unique.encode())
            elif kind == "zip-bomb-huge-header":
                files[f"{kind}-{index}.zip"] = _lying_zip(zip_template, 0xFFFF_FFF0, unique.encode())
            elif kind == "huge-png":
                files[f"{kind}-{index}.png"] = png + unique.encode()
            elif kind == "zero-byte":
                files[f"{kind}-{index}.{('pdf', 'txt', 'html', 'png', 'docx')[index % 5]}"] = b""
            elif kind == "wrong-extension":
                pdf, page = _pdf_with_text(unique + "\n" + text), f"<html><body><p>{unique}</p><pre>{text}</pre></body></html>"
                name, data = [(f"{kind}-{index}.txt", pdf), (f"{kind}-{index}.pdf", page.encode()),
                              (f"{kind}-{index}.png", (unique + "\n" + text).encode())][index % 3]  # fmt: skip
                files[name] = data
            elif kind == "utf16-bom":
                files[f"{kind}-{index}.txt"] = (unique + "\n" + text).encode("utf-16")
            elif kind == "cp1252-text":
                files[f"{kind}-{index}.txt"] = (f"{unique} \u00a7 1983 \u2019s caf\u00e9 \u2013 \u00b6 12\n" + text).encode("cp1252")
            elif kind == "binary-txt":
                files[f"{kind}-{index}.txt"] = random.Random(index).randbytes(4096)
            elif kind == "pathological-text":
                files[f"{kind}-{index}.txt"] = (unique + "\n" + "Smith v. Jones\n" * (2_000_000 // 15)).encode()
            for name, data in files.items():
                (folder / name).write_bytes(data)
                kinds[name] = kind
    return kinds


def _file_of(source: str) -> str:
    return Path(source.split("!/")[0]).name


@scenario("F5", "200 malformed files among 800 good")
def malformed_inputs(ctx: Context) -> list[Row]:
    good, bad = round(ctx.docs * 8 / 3), round(ctx.docs * 2 / 3)
    row = Row("F5", f"{bad} malformed files among {good} good", kills=0, duplicates=0)
    folder = ctx.work / "f5-inputs"
    kinds = make_f5_inputs(ctx, folder, good, bad)
    progress(f"F5: {len(kinds)} files written ({sum(1 for k in kinds.values() if k != 'good')} malformed)")
    with installation(ctx, "f5", **F5_LIMITS) as inst:
        started = time.monotonic()
        batch_id = inst.submit(folder)
        inst.start_worker()
        if inst.wait_settled(batch_id, timeout=3600) is None:
            row.problems.append("the batch did not settle within 3600 s")
        row.recover_s = None
        elapsed = time.monotonic() - started
        result = outcome(inst.cluster.database, batch_id)
        row.documents, row.max_attempts, row.peak_rss_mb = len(result.documents), result.max_attempt, inst.rss.peak_mb
        by_kind: dict[str, dict[str, int]] = {}
        unclassified, lost = [], 0
        for source, status, category, message in result.documents:
            name = _file_of(source)
            kind = kinds.get(name, "?")
            ended = "done" if status == DocumentStatus.DONE else (category or status)
            by_kind.setdefault(kind, {}).setdefault(ended, 0)
            by_kind[kind][ended] += 1
            allowed = {"done"} if kind == "good" else MALFORMED[kind][1] if kind in MALFORMED else set()
            if status not in (DocumentStatus.DONE, DocumentStatus.FAILED):
                lost += 1
                unclassified.append((name, status))
            elif ended not in allowed:
                unclassified.append((name, ended, (message or "")[:160]))
            elif status == DocumentStatus.FAILED and (not message or name not in message or "Traceback" in message):
                unclassified.append((name, "unclear message", (message or "")[:160]))
        row.lost = lost
        if unclassified:
            row.problems.append(f"{len(unclassified)} documents not as expected: {unclassified[:5]}")
        over = [(stage, attempt, ms) for stage, attempt, ms, _, _ in result.runs
                if ms is not None and ms > 1000 * inst.settings.time_limit(STAGE_QUEUE[stage].value) + 2000]  # fmt: skip
        if over:
            row.problems.append(f"{len(over)} stage attempts ran past their hard time limit: {over[:3]}")
        longest = max((ms or 0 for _, _, ms, _, _ in result.runs), default=0)
        if row.peak_rss_mb > RSS_BOUND_MB:
            row.problems.append(f"peak RSS {row.peak_rss_mb} MB over {RSS_BOUND_MB} MB")
        if result.max_attempt > MAX_ATTEMPTS:
            row.problems.append(f"a stage took {result.max_attempt} attempts")
        row.notes.append(f"{elapsed:.0f} s; longest stage attempt {longest / 1000:.1f} s; outcomes by kind: "
                         + "; ".join(f"{k} {v}" for k, v in sorted(by_kind.items())))  # fmt: skip
    return [row]


# -- F6 ------------------------------------------------------------------------------------------


def _alias_bomb(levels: int, inside_metadata: bool) -> str:
    lines = ['    a0: &a0 "lol"'] + [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    body = "\n".join(lines)
    if inside_metadata:
        return "project: p\ndocuments:\n  - uri: s3://b/k\n    metadata:\n  " + body.replace("\n", "\n  ") + "\n"
    return f"project: p\nsomething:\n{body}\ndocuments:\n  - uri: s3://b/k\n"


def _big_manifest(path: Path, megabytes: float) -> None:
    line = b"  - uri: s3://bucket/matter/0000/document-000000.pdf\n"
    with path.open("wb") as out:
        out.write(b"project: p\ndocuments:\n")
        out.write(line * (int(megabytes * 1048576) // len(line) + 1))


_PEAK = "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:], check=True, capture_output=True, text=True); " \
        "print(done.stdout.strip()); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"


@scenario("F6", "manifest loader: hostile manifests, 100k entries")
def manifests(ctx: Context) -> list[Row]:
    row = Row("F6", SCENARIOS["F6"][0])
    folder = ctx.work / "f6"
    folder.mkdir()
    cases = {
        "!!python/object tag": "project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: !!python/object:os.system {}\n",
        "!!binary tag": "project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: {blob: !!binary aGVsbG8=}\n",
        "!!set tag": "project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: !!set {a, b}\n",
        "alias bomb, top level (10^9 values)": _alias_bomb(9, inside_metadata=False),
        "alias bomb in metadata (10^9 values)": _alias_bomb(9, inside_metadata=True),
        "glob over the whole disk (/*/*/.../*)": "project: p\ndocuments:\n  - glob: '" + "/*" * 40 + "'\n",
    }  # fmt: skip
    for index, text in enumerate(cases.values()):
        (folder / f"case-{index}.yaml").write_text(text)
    _big_manifest(folder / "over-50-mb.yaml", 50.01)
    paths = {label: folder / f"case-{index}.yaml" for index, label in enumerate(cases)} | {"51 MB manifest (cap 50 MB)": folder / "over-50-mb.yaml"}
    slowest = 0.0
    for label, path in paths.items():
        started = time.perf_counter()
        try:
            load_manifest(path)
            row.problems.append(f"{label}: accepted")
            continue
        except UsageError as error:
            seconds = time.perf_counter() - started
            slowest = max(slowest, seconds)
            progress(f"F6: {label}: refused in {seconds * 1000:.0f} ms: {str(error).splitlines()[0][:120]}")
        bound = 5.0 if label.startswith("glob") else 1.0  # the glob's budget: 1,000,000 entries looked at
        if seconds >= bound:
            row.problems.append(f"{label}: refused after {seconds:.2f} s (bound {bound:g} s)")
    # benchmarks/manifest.py in a child of a fresh interpreter, which reports the child's whole peak RSS
    # (the benchmark's own figure is the growth over what writing the manifest already took)
    command = [sys.executable, str(REPO / "benchmarks" / "manifest.py"), "--entries", "100000", "--rounds", "1", "--json"]
    done = subprocess.run([sys.executable, "-c", _PEAK, *command], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    figures, peak_mb = json.loads(lines[0]), float(lines[1])
    if figures["median_s"] >= 10 or peak_mb >= 500:
        row.problems.append(f"100,000 entries: {figures['median_s']} s, peak RSS {peak_mb:.0f} MB (bounds 10 s, 500 MB)")
    row.peak_rss_mb = round(peak_mb, 1)
    row.notes.append(f"{len(paths)} hostile manifests refused, slowest in {slowest * 1000:.0f} ms; "
                     f"100,000 entries ({figures['manifest_mb']} MB) loaded in {figures['median_s']} s, "
                     f"peak RSS of the loading process {peak_mb:.0f} MB (interpreter included)")  # fmt: skip
    return [row]


# -- the run -------------------------------------------------------------------------------------


def _cell(value: object) -> str:
    return "–" if value is None else str(value)


def print_table(rows: list[Row]) -> None:
    headers = ["", "scenario", "documents", "kills", "lost", "duplicates", "max attempts", "peak pool-child RSS MB (F6: loader)",
               "recovered by itself, s (bound)", "result"]  # fmt: skip
    lines = []
    for row in rows:
        recovered = None if row.recover_s is None else f"{row.recover_s}" + (f" ({row.bound_s})" if row.bound_s else "")
        lines.append([row.scenario, row.title, _cell(row.documents), _cell(row.kills), _cell(row.lost), _cell(row.duplicates),
                      _cell(row.max_attempts), _cell(row.peak_rss_mb), _cell(recovered), "ok" if row.ok else "BROKEN"])  # fmt: skip
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for line in lines:
        print("| " + " | ".join(line) + " |")
    for row in rows:
        for note in row.notes:
            print(f"{row.scenario}: {note}")
        for problem in row.problems:
            print(f"{row.scenario}: BROKEN: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=None, help=f"comma-separated scenarios (of {', '.join(SCENARIOS)})")
    parser.add_argument("--docs", type=int, default=300, help="documents per batch scenario (default 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    keys = [k.strip().upper() for k in args.only.split(",")] if args.only else list(SCENARIOS)
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    work = Path(tempfile.mkdtemp(prefix="legaldoc-faults-"))
    ctx = Context(work, args.docs, args.seed)
    rows: list[Row] = []
    started = time.monotonic()
    try:
        for key in keys:
            title, function = SCENARIOS[key]
            progress(f"{key}: {title}")
            scenario_started = time.monotonic()
            try:
                found = function(ctx)
            except Exception as error:  # a scenario that cannot run is a broken bound, reported as such
                found = [Row(key, title, problems=[f"{type(error).__name__}: {error}"])]
            for row in found:
                progress(f"{row.scenario}: {'ok' if row.ok else 'BROKEN'} in {time.monotonic() - scenario_started:.0f} s "
                         f"{json.dumps(row.as_json())}")  # fmt: skip
            rows.extend(found)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"docs": args.docs, "seconds": round(time.monotonic() - started), "rows": [r.as_json() for r in rows]}))
    else:
        print_table(rows)
        print(f"{len(rows)} rows in {time.monotonic() - started:.0f} s, --docs {args.docs}")
    sys.exit(0 if all(r.ok for r in rows) else 1)


if __name__ == "__main__":
    main()
