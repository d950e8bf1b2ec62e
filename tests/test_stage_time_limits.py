"""`legaldoc process` gives every stage the soft time limit a worker's task has: pathological text
(2 MB of one repeated case-name line) fails as a classified RESOURCE timeout instead of running on.
The same text under realistic limits is a long run: `benchmarks/pathological.py`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from legaldoc.config import load_settings
from legaldoc.models import Stage
from legaldoc.services.timelimit import StageTimeLimitExceeded, stage_time_limit
from tests.conftest import settings_env

LINE = "Smith v. Jones\n"


def _pathological(tmp_path: Path) -> Path:
    path = tmp_path / "smith-v-jones.txt"
    path.write_text(LINE * (2_000_000 // len(LINE)))
    return path


def _process(path: Path, tmp_path: Path, **limits: float) -> tuple[int, dict, float]:
    env = settings_env(load_settings(data_dir=tmp_path / ".legaldoc", **limits))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "legaldoc", "process", str(path), "--json"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    elapsed = time.monotonic() - started
    assert "Traceback" not in result.stderr, result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    return result.returncode, report, elapsed


@pytest.mark.timeout(120)
def test_a_stage_past_its_time_limit_fails_as_resource_naming_the_file(tmp_path):
    path = _pathological(tmp_path)
    code, report, elapsed = _process(path, tmp_path, entity_time_limit=3.0)  # soft limit: 1 s
    print(f"2 MB repeated line, entity limit 3 s: {report['status']} in {elapsed:.1f}s")
    assert code == 1
    error = report["error"]
    assert report["status"] == "failed" and error["category"] == "RESOURCE" and error["stage"] == "entities", report
    assert path.name in error["message"] and "time limit of 1s" in error["message"]
    assert "LEGALDOC_ENTITY_TIME_LIMIT" in error["message"]
    assert elapsed < 60


def test_the_limit_interrupts_python_code_and_restores_the_previous_handler(tmp_path):
    settings = load_settings(data_dir=tmp_path / ".legaldoc", entity_time_limit=2.0)  # soft: 1 s
    before = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    with pytest.raises(StageTimeLimitExceeded) as caught, stage_time_limit(settings, Stage.ENTITIES, "loop.txt"):
        while True:
            pass
    assert 0.9 < time.monotonic() - started < 5
    assert caught.value.category.value == "RESOURCE" and caught.value.message.startswith("loop.txt: the entities stage")
    assert signal.getsignal(signal.SIGALRM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


@pytest.mark.timeout(60)
def test_a_long_run_before_an_at_sign_costs_linear_time_in_the_email_rule():
    from legaldoc.pipeline.entities import LocalEntityProvider

    provider = LocalEntityProvider()
    provider.extract("warm up: jane@example.com")
    text = "a." * 100_000 + "@"  # 200 KB of local-part characters and no domain: quadratic before
    started = time.monotonic()
    provider.extract(text)
    elapsed = time.monotonic() - started
    print(f"200 KB before an '@': {elapsed:.2f}s")
    assert elapsed < 5  # was about 110 s


@pytest.mark.parametrize(("text", "expected"), [
    ("Counsel: Jane Roe  jane.roe+ecf@example-law.com, j.o'neil@firm.co.uk", ["jane.roe+ecf@example-law.com", "j.o'neil@firm.co.uk"]),
    ("x" * 64 + "@example.com", ["x" * 64 + "@example.com"]),
    ("x" * 65 + "@example.com", []),  # longer than a local part may be (RFC 5321)
])  # fmt: skip
def test_email_addresses_are_still_found(text, expected):
    from legaldoc.pipeline.entities.base import finditer_near
    from legaldoc.pipeline.entities.names import _AT, _EMAIL, _EMAIL_START

    assert [m.group() for m in finditer_near(_EMAIL, text, _AT, _EMAIL_START, 0)] == expected
    assert [m.group() for m in _EMAIL.finditer(text)] == expected


def test_notice_recipients_are_still_read_beside_their_addresses():
    from legaldoc.pipeline.entities import LocalEntityProvider

    text = "Notice has been electronically mailed to:\n\nJane Roe   jane.roe@example-law.com, jroe@example.com\n"
    names = {m.text for m in LocalEntityProvider().extract(text) if m.type.value in ("PERSON", "ATTORNEY")}
    assert "Jane Roe" in names
