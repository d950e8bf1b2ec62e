"""`legaldoc doctor`: all OK where everything is in place; a warning or a failure names the check and
what to do, with exit 1 or 3; `submit` says the same of Redis's eviction policy before it publishes."""

from __future__ import annotations

import json

import pytest
import redis

from tests.batchkit import nef_copies, write_manifest
from tests.conftest import settings_env
from tests.test_cli import legaldoc


def _doctor(env: dict[str, str], cwd) -> tuple[int, dict[str, dict[str, str]]]:
    result = legaldoc("doctor", "--json", cwd=cwd, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)["checks"]}


def test_all_ok_with_a_worker_then_each_problem_named(batch_settings, start_worker, tmp_path):
    env = settings_env(batch_settings)
    start_worker(concurrency=1)
    for _ in range(50):  # the worker's first heartbeat
        code, checks = _doctor(env, tmp_path)
        if checks["workers"]["detail"].startswith("1 live"):
            break
    assert code == 0 and {c["verdict"] for c in checks.values()} == {"OK"}, checks
    assert set(checks) == {"settings", "data folder", "database", "redis", "tesseract", "soffice", "workers"}
    assert checks["tesseract"]["detail"].startswith("in-process engine (tesserocr, tesseract 5.")

    broker = redis.Redis.from_url(batch_settings.redis_url_for("broker"))
    broker.config_set("maxmemory-policy", "allkeys-lru")
    try:
        code, checks = _doctor(env, tmp_path)
        assert code == 1 and checks["redis"]["verdict"] == "WARN" and "noeviction" in checks["redis"]["fix"]
        manifest = write_manifest(tmp_path / "m.yaml", [{"glob": f"{nef_copies(tmp_path / 'docs', 1)}/*"}])
        submitted = legaldoc("submit", str(manifest), cwd=tmp_path, env=env)
        assert submitted.returncode == 0 and "warning: redis" in submitted.stderr and "noeviction" in submitted.stderr
    finally:
        broker.config_set("maxmemory-policy", "noeviction")

    code, checks = _doctor({**env, "LEGALDOC_TESSERACT_LANG": "eng+klingon"}, tmp_path)
    assert code == 3 and checks["tesseract"]["verdict"] == "FAIL" and "klingon" in checks["tesseract"]["detail"]
    code, checks = _doctor({**env, "LEGALDOC_TESSERACT_LANG": "eng+klingon", "LEGALDOC_OCR_ENGINE": "tesserocr"}, tmp_path)
    assert code == 3 and checks["tesseract"]["verdict"] == "FAIL" and "LEGALDOC_TESSDATA_DIR" in checks["tesseract"]["fix"]
    code, checks = _doctor({**env, "LEGALDOC_OCR_ENGINE": "cli"}, tmp_path)
    assert checks["tesseract"]["verdict"] == "OK" and checks["tesseract"]["detail"].startswith("CLI ")


@pytest.mark.any_database  # a Redis check
def test_redis_stopped_is_a_failure_naming_redis(batch_settings, tmp_path):
    env = {**settings_env(batch_settings), "LEGALDOC_REDIS_URL": "redis://127.0.0.1:1"}
    code, checks = _doctor(env, tmp_path)
    assert code == 3 and checks["redis"]["verdict"] == "FAIL" and "cannot reach Redis" in checks["redis"]["detail"]
    assert checks["database"]["verdict"] == "OK"
