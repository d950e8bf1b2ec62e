"""SVG snapshots of the monitor's main and batch screens, rendered from a fixed scene written into
a real redis-server (tests/monitorkit.py). Update after an intended change of the screens with
`pytest tests/test_monitor_snapshots.py --snapshot-update` and look at the report."""

from __future__ import annotations

import pytest

from legaldoc.config import Settings, load_settings
from legaldoc.tui.app import BatchScreen, MonitorApp
from tests.monitorkit import NOW, FixedMemory, fill_scene

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]


async def _settled(pilot) -> None:
    """Until two screenshots 0.1 s apart are the same (at most 10 s): a loaded machine may still be
    laying out the tables the refresh filled when a fixed pause ends."""
    previous = None
    for _ in range(100):
        await pilot.pause(0.1)
        current = pilot.app.export_screenshot()
        if current == previous:
            return
        previous = current


async def _refreshed(pilot) -> None:
    while pilot.app.refreshes < 1:
        await pilot.pause(0.05)
    await _settled(pilot)


async def _batch_screen(pilot) -> None:
    await _refreshed(pilot)
    await pilot.press("down", "enter")  # the running batch (second row: the queued high-priority one is newer)
    while not (isinstance(pilot.app.screen, BatchScreen) and pilot.app.screen.refreshes >= 1):
        await pilot.pause(0.05)
    await _settled(pilot)


@pytest.fixture
def scene(tmp_path, redis_url) -> Settings:
    """The scene in Redis; the database (SQLite, empty) only names no documents."""
    settings = load_settings(data_dir=tmp_path / ".legaldoc", redis_url=redis_url)
    fill_scene(settings)
    return settings


@pytest.mark.parametrize("size", SIZES)
def test_main_screen(snap_compare, scene, size):
    app = MonitorApp(FixedMemory(scene, clock=lambda: NOW), refresh=60)
    assert snap_compare(app, terminal_size=size, run_before=_refreshed)


@pytest.mark.parametrize("size", SIZES)
def test_batch_screen(snap_compare, scene, size):
    app = MonitorApp(FixedMemory(scene, clock=lambda: NOW), refresh=60)
    assert snap_compare(app, terminal_size=size, run_before=_batch_screen)
