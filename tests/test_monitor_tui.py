"""`legaldoc monitor` driven by Textual's pilot against a real redis-server, real workers and a real
database: rows, counts and errors of a batch run with failures, the batch screen, recover and
cancel through their confirmations, --read-only, and a Redis that goes away and comes back."""

from __future__ import annotations

import asyncio
import subprocess
import time

import pytest
import redis
from textual.widgets import DataTable, Static

from legaldoc.services.monitor import Monitor
from legaldoc.tui.app import (
    BatchScreen,
    ConfirmScreen,
    DashboardScreen,
    DocumentScreen,
    HelpScreen,
    MonitorApp,
)
from tests.batchkit import connect, nef_copies, write_manifest
from tests.conftest import DOCUMENTS, NEF, _free_port
from tests.monitorkit import NOW, FixedMemory, fill_scene
from tests.test_cli import legaldoc

pytestmark = pytest.mark.any_database  # the dashboard reads what services give it, whatever the database

GOOD = 4
SIZE = (160, 48)


async def until(pilot, condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.05)


def cells(table: DataTable, key: str) -> list[str]:
    return [str(c) for c in table.get_row(key)]


def column(table: DataTable, index: int) -> list[str]:
    return [str(table.get_row_at(i)[index]) for i in range(table.row_count)]


def header(app: MonitorApp) -> str:
    return str(app.screen.query_one("#header", Static).render())


def test_dashboard_shows_a_real_batch_with_failures_then_recovers_and_cancels(batch_settings, start_worker, tmp_path):
    """Given a batch run on a real worker where 4 documents exhaust TRANSIENT retries at entities
    and one empty PDF fails DATA, the dashboard shows its row, counts, errors and the worker; the
    batch screen groups the failures; `r` + yes re-runs the 4, which then succeed; `c` + yes
    cancels a second batch that no worker serves."""
    settings = batch_settings.model_copy(update={"entity_provider": "failing", "failing_category": "TRANSIENT",
                                                 "failing_attempts": batch_settings.max_attempts})  # fmt: skip
    folder = nef_copies(tmp_path / "docs", GOOD)
    (folder / "empty.pdf").write_bytes((DOCUMENTS / "empty.pdf").read_bytes())
    cluster = connect(settings)
    batch_id = cluster.submit(write_manifest(tmp_path / "m.yaml", [{"glob": f"{folder}/*"}], name="nightly")).batch_id
    worker = start_worker(concurrency=2, settings=settings)
    first = cluster.wait(batch_id, timeout=120)
    assert (first["succeeded"], first["failed"]) == (0, GOOD + 1), first

    async def scenario() -> None:
        app = MonitorApp(Monitor(settings), refresh=0.5)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.refreshes >= 1, what="the first refresh")
            screen = app.screen
            assert isinstance(screen, DashboardScreen)
            batches = screen.query_one("#batches", DataTable)
            row = cells(batches, batch_id)
            assert row[5] == "nightly" and row[6] == "acme" and row[2] == f"{GOOD + 1}/{GOOD + 1}" and row[3] == str(GOOD + 1)
            assert row[0] == "finished" and "100%" in row[1]  # status and progress first: narrow terminals show them
            top = header(app)
            attempts = GOOD * settings.max_attempts + 1  # every TRANSIENT attempt failed; DATA is not retried
            assert "● connected" in top and f"failed docs 24h {GOOD + 1}" in top and f"errors {attempts}" in top
            assert "workers 1/1" in top
            bars = str(screen.query_one("#error-bars", Static).render()).splitlines()
            transient, data = (next(b.split() for b in bars if b.startswith(c)) for c in ("TRANSIENT", "DATA"))
            assert transient[1] == str(GOOD * settings.max_attempts) and transient[-3:] == [str(GOOD), "docs", "failed"]
            assert data[1] == "1" and data[-3:] == ["1", "docs", "failed"]
            errors = screen.query_one("#errors", DataTable)
            assert errors.row_count >= GOOD + 1  # every retry is listed too
            assert set(column(errors, 1)) == {batch_id} and {"DATA", "TRANSIENT"} <= set(column(errors, 4))
            workers = screen.query_one("#workers", DataTable)
            assert workers.row_count == 1 and column(workers, 1) == ["all"] and column(workers, 6)[0].endswith(" ago")
            stages = screen.query_one("#stages", DataTable)
            assert column(stages, 0) == ["extract", "chunk", "entities", "resolve", "relate"]
            assert int(cells(stages, "entities")[1]) >= GOOD  # every attempt is a timing
            queues = screen.query_one("#queues", DataTable)
            assert cells(queues, "ocr")[2] == "1" and cells(queues, "ocr")[1] == "0"

            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")

            batches.focus()
            batches.move_cursor(row=batches.get_row_index(batch_id))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, BatchScreen) and app.screen.refreshes >= 1, what="the batch screen")
            detail = app.screen
            documents = detail.query_one("#documents", DataTable)
            assert documents.row_count == GOOD + 1
            assert column(documents, 1) == ["failed"] * (GOOD + 1)
            assert "empty.pdf" in column(documents, 3), column(documents, 3)  # the file name, not the whole path
            assert any(why.startswith("empty.pdf") for why in column(documents, 2))  # the reason names the file
            groups = detail.query_one("#groups", DataTable)
            assert cells(groups, "TRANSIENT")[:2] == ["TRANSIENT", str(GOOD)] and cells(groups, "DATA")[:2] == ["DATA", "1"]
            assert cells(groups, "TRANSIENT:0")[2] == "entities" and cells(groups, "DATA:0")[2] == "extract"

            await pilot.press("slash")
            await pilot.press(*"empty")
            await until(pilot, lambda: documents.row_count == 1, what="the text filter")
            await pilot.press("escape")
            await until(pilot, lambda: documents.row_count == GOOD + 1, what="the filter to clear")

            await pilot.press("r")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("n")  # no: nothing happens
            await pilot.pause(0.3)
            assert not app.actions and isinstance(app.screen, BatchScreen)
            await pilot.press("r")
            await pilot.press("y")
            await until(pilot, lambda: app.actions, what="recover")
            action, acted_on, result = app.actions[0]
            assert (action, acted_on, result["requeued"], result["left_failed"]) == ("recover", batch_id, GOOD, {"DATA": 1})
            await until(pilot, lambda: column(documents, 1).count("succeeded") == GOOD, timeout=120, what="the recovered documents")
            assert column(documents, 1)[0] == "failed"  # failures stay on top
            await pilot.press("escape")
            assert isinstance(app.screen, DashboardScreen)
            await until(pilot, lambda: cells(batches, batch_id)[3] == "1", what="the batch row to follow")
            assert "failed docs 24h 1" in header(app)  # recovered documents no longer count as failed

            worker.stop(timeout=20)  # nobody serves the next batch: it stays pending until cancelled
            second = cluster.submit(write_manifest(tmp_path / "m2.yaml", [{"glob": f"{nef_copies(tmp_path / 'more', 3, 7)}/*"}],
                                                   name="to-cancel")).batch_id  # fmt: skip
            await until(pilot, lambda: second in [str(k.value) for k in batches.rows], what="the new batch")
            assert batches.get_row_index(second) == 0  # active batches first
            assert cells(batches, second)[2] == "0/3" and "workers 0/1" in header(app)
            assert cells(screen.query_one("#queues", DataTable), "ocr")[1] == "3"  # waiting, nobody consuming
            batches.focus()
            batches.move_cursor(row=0)
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, BatchScreen) and app.screen.refreshes >= 1, what="batch 2")
            await pilot.press("c")
            assert isinstance(app.screen, ConfirmScreen)
            await pilot.press("y")
            await until(pilot, lambda: len(app.actions) == 2, what="cancel")
            assert app.actions[1][0] == "cancel" and app.actions[1][2]["cancelled_now"] == 3
            await until(pilot, lambda: column(app.screen.query_one("#documents", DataTable), 1) == ["cancelled"] * 3,
                        what="cancelled documents")  # fmt: skip

    asyncio.run(scenario())
    final = cluster.wait(batch_id, timeout=10)
    assert (final["succeeded"], final["failed"]) == (GOOD, 1)


def test_read_only_hides_the_actions(batch_settings):
    fill_scene(batch_settings)

    async def scenario() -> None:
        app = MonitorApp(FixedMemory(batch_settings, clock=lambda: NOW), refresh=60, read_only=True)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.refreshes >= 1)
            await pilot.press("down", "enter")
            await until(pilot, lambda: isinstance(app.screen, BatchScreen) and app.screen.refreshes >= 1)
            shown = {binding.action for _, binding, enabled, _ in app.screen.active_bindings.values() if enabled}
            assert "cycle_state" in shown and not {"recover", "cancel"} & shown
            await pilot.press("r", "c")
            await pilot.pause(0.2)
            assert isinstance(app.screen, BatchScreen) and not app.actions

    asyncio.run(scenario())


def test_state_filter_cycles_through_document_states(batch_settings):
    fill_scene(batch_settings)

    async def scenario() -> None:
        app = MonitorApp(FixedMemory(batch_settings, clock=lambda: NOW), refresh=60)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.refreshes >= 1)
            assert column(app.screen.query_one("#batches", DataTable), 4)[:2] == ["20270115-075900-d4e5f6", "20270115-075000-a1b2c3"]
            await pilot.press("down", "enter")
            await until(pilot, lambda: isinstance(app.screen, BatchScreen) and app.screen.refreshes >= 1)
            documents = app.screen.query_one("#documents", DataTable)
            assert documents.row_count == 120
            seen = {}
            for _ in range(6):
                await pilot.press("s")
                seen[app.screen.state_filter] = (documents.row_count, set(column(documents, 1)))
            assert seen == {"failed": (6, {"failed"}), "running": (4, {"running"}), "pending": (40, {"pending"}),
                            "cancelled": (0, set()), "skipped": (0, set()), "succeeded": (70, {"succeeded"})}  # fmt: skip
            await pilot.press("s")
            assert app.screen.state_filter is None and documents.row_count == 120

    asyncio.run(scenario())


def test_losing_redis_shows_disconnected_and_reconnects(tmp_path, settings):
    port = _free_port()
    settings = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{port}"})

    def server() -> subprocess.Popen:
        process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", str(tmp_path)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        client = redis.Redis(port=port)
        for _ in range(200):
            try:
                client.ping()
                return process
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    async def scenario() -> None:
        app = MonitorApp(Monitor(settings), refresh=0.3)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.failures >= 1, what="a failed refresh")
            assert "disconnected" in header(app) and f"127.0.0.1:{port}" in header(app)
            process = server()
            try:
                await until(pilot, lambda: app.refreshes >= 1 and "● connected" in header(app), what="reconnection")
                process.terminate()
                process.wait(10)
                failures = app.failures
                await until(pilot, lambda: app.failures > failures and "disconnected" in header(app), what="the loss")
                assert "data" in header(app) and "old" in header(app)  # the last figures stay, marked stale
                process = server()
                refreshes = app.refreshes
                await until(pilot, lambda: app.refreshes > refreshes and "● connected" in header(app), what="reconnection")
                await pilot.press("down", "enter")  # no batches: Enter does nothing, nothing breaks
                assert isinstance(app.screen, DashboardScreen)
            finally:
                process.terminate()
                process.wait(10)

    asyncio.run(scenario())


def test_monitor_needs_a_terminal(tmp_path):
    result = legaldoc("monitor", cwd=tmp_path)
    assert result.returncode == 2 and "needs a terminal" in result.stderr and "status --json" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("refresh", ["0", "abc"])
def test_monitor_rejects_a_bad_refresh(tmp_path, refresh):
    result = legaldoc("monitor", "--refresh", refresh, cwd=tmp_path)
    assert result.returncode == 2 and "--refresh" in result.stderr


def test_enter_on_a_document_shows_its_mentions_in_context(batch_settings):
    """The document screen reads the same service as `show --mentions`: every mention with the
    entity it resolved to and its context line; `/` filters them."""
    from legaldoc.services.process import process_paths
    from legaldoc.storage.db import Database

    [report] = list(process_paths([NEF / "almd_1.txt"], "acme", batch_settings, Database(batch_settings.resolved_database_url)))
    fill_scene(batch_settings)

    async def scenario() -> None:
        app = MonitorApp(Monitor(batch_settings), refresh=60)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.refreshes >= 1, what="the first refresh")
            app.push_screen(DocumentScreen(report.document_id))
            await until(pilot, lambda: isinstance(app.screen, DocumentScreen) and app.screen.view is not None, what="the document")
            mentions = app.screen.query_one("#mentions", DataTable)
            assert mentions.row_count == len(report.mentions) > 5
            texts, contexts = column(mentions, 2), column(mentions, 4)
            assert all(" ".join(t.split())[:20] in " ".join(c.split()) for t, c in zip(texts, contexts, strict=True))
            assert "almd_1.txt" in str(app.screen.query_one("#summary", Static).render())
            await pilot.press("slash", *"docket_number")  # a type no text or context holds
            await until(pilot, lambda: set(column(mentions, 0)) == {"DOCKET_NUMBER"}, what="the filter")
            await pilot.press("escape", "escape")
            assert not isinstance(app.screen, DocumentScreen)

    asyncio.run(scenario())
