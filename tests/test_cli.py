"""The command line, run as a real subprocess: help, JSON shapes, exit codes, stdout/stderr split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DOCUMENTS, NEF, SAMPLES

COMMANDS = ["process", "show", "entities", "run", "submit", "status", "cancel", "recover", "workers", "workers start",
            "workers status", "workers scale", "workers stop", "cache", "cache warm", "cache stats", "cache clear", "monitor",
            "db", "db current", "db upgrade", "config", "config show", "doctor", "export", "search", "report", "documents",
            "projects", "metrics", "metrics serve", "metrics show"]


def legaldoc(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "legaldoc", *args], cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize("command", [[], *[c.split() for c in COMMANDS]])
def test_every_command_has_help(command, tmp_path):
    result = legaldoc(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "Usage" in result.stdout and len(result.stdout) > 200


def test_process_json_lines_then_show_and_entities(tmp_path):
    inputs = [str(SAMPLES), str(NEF / "almd_1.txt"), str(DOCUMENTS / "empty.pdf")]
    result = legaldoc("process", *inputs, "--project", "acme", "--json", cwd=tmp_path)
    assert result.returncode == 1, result.stderr  # empty.pdf failed
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 6
    keys = {"document_id", "source", "status", "error", "pages", "ocr_pages", "chunks", "mentions", "entities", "relationships"}
    for line in lines:
        assert set(line) == keys
    failed = [line for line in lines if line["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["error"]["category"] == "DATA" and failed[0]["error"]["stage"] == "extract"
    assert "empty.pdf" in failed[0]["error"]["message"]
    done = [line for line in lines if line["status"] == "done"]
    scan = next(line for line in done if line["source"].endswith("complaint-scan.png"))
    assert scan["ocr_pages"] == 1
    for line in done:
        assert line["mentions"] and set(line["mentions"][0]) == {"type", "text", "start", "end", "page", "normalized"}
    assert "Traceback" not in result.stderr

    shown = legaldoc("show", str(done[0]["document_id"]), "--json", cwd=tmp_path)
    assert shown.returncode == 0
    detail = json.loads(shown.stdout)
    assert detail["status"] == "done" and [r["stage"] for r in detail["stage_runs"]] == ["extract", "chunk", "entities", "resolve", "relate"]

    listed = legaldoc("entities", "--project", "acme", "--type", "COURT", "--json", cwd=tmp_path)
    courts = json.loads(listed.stdout)
    assert {c["key"] for c in courts} >= {"ilnd", "almd"}
    ilnd = next(c for c in courts if c["key"] == "ilnd")
    assert ilnd["documents"] == 4 and ilnd["mentions"] >= 4

    human = legaldoc("entities", "--project", "acme", cwd=tmp_path)
    assert human.returncode == 0 and "COURT" in human.stdout


def test_expected_failures_exit_with_their_code_and_no_traceback(tmp_path):
    missing = legaldoc("process", str(tmp_path / "nope"), cwd=tmp_path)
    assert missing.returncode == 2 and "no such file" in missing.stderr and "Traceback" not in missing.stderr
    unknown = legaldoc("show", "999", cwd=tmp_path)
    assert unknown.returncode == 2 and "no document with id 999" in unknown.stderr
    bad_type = legaldoc("entities", "--type", "NOPE", cwd=tmp_path)
    assert bad_type.returncode == 2
    unreachable = legaldoc("entities", cwd=tmp_path, env={"LEGALDOC_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"})
    assert unreachable.returncode == 3 and "cannot reach the database" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_settings_precedence_flags_over_env_over_toml(tmp_path):
    (tmp_path / "legaldoc.toml").write_text('project = "from-toml"\nocr_dpi = 200\n')
    code = "from legaldoc.config import load_settings as l; s=l(); print(s.project, s.ocr_dpi); print(l(project='flag').project)"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "LEGALDOC_OCR_DPI": "150"})  # fmt: skip
    assert result.stdout.split() == ["from-toml", "150", "flag"]


def test_pipeline_imports_no_infrastructure():
    code = ("import sys, legaldoc.pipeline.extract, legaldoc.pipeline.chunk, legaldoc.pipeline.entities, "
            "legaldoc.pipeline.resolve, legaldoc.pipeline.relate; "
            "print(sorted(m for m in ('sqlalchemy','typer','rich','celery','redis','textual') if m in sys.modules))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_db_current_and_upgrade(tmp_path):
    """`db current` changes nothing and exits 1 while the schema is behind; `db upgrade` brings it to
    the newest revision; an unreachable database is exit 3 in one line."""
    behind = legaldoc("db", "current", "--json", cwd=tmp_path)
    assert behind.returncode == 1 and json.loads(behind.stdout)["revision"] is None
    upgraded = legaldoc("db", "upgrade", "--json", cwd=tmp_path)
    assert upgraded.returncode == 0 and json.loads(upgraded.stdout)["from"] is None
    now = json.loads(legaldoc("db", "current", "--json", cwd=tmp_path).stdout)
    assert now["current"] and now["revision"] == now["head"] == json.loads(upgraded.stdout)["to"]
    again = legaldoc("db", "upgrade", cwd=tmp_path)
    assert again.returncode == 0 and "already at" in again.stderr
    lost = legaldoc("db", "current", "--database-url", "postgresql+psycopg://nobody@127.0.0.1:1/x", cwd=tmp_path)
    assert lost.returncode == 3 and "cannot reach the database" in lost.stderr and "Traceback" not in lost.stderr


def test_config_show_names_every_source_and_masks_secrets(tmp_path):
    """`config show --json`: each setting's value and where it came from (flag, env, file, default);
    a password inside a URL never prints."""
    (tmp_path / "legaldoc.toml").write_text('ocr_dpi = 150\nstate_url = "redis://user:hunter2@cache:6379/4"\n')
    result = legaldoc("config", "show", "--json", "--redis-url", "redis://flag:6379", cwd=tmp_path,
                      env={"LEGALDOC_MAX_PAGES": "12"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)["settings"]
    assert {name: shown[name]["source"] for name in ("redis_url", "max_pages", "ocr_dpi", "chunk_max_chars")} == {
        "redis_url": "flag", "max_pages": "env", "ocr_dpi": "file", "chunk_max_chars": "default"}  # fmt: skip
    assert shown["max_pages"]["value"] == 12 and shown["state_url"]["value"] == "redis://***@cache:6379/4"
    assert "hunter2" not in result.stdout
    other = tmp_path / "other.toml"
    other.write_text("max_pages = 7\n")
    assert json.loads(legaldoc("--config", str(other), "config", "show", "--json", cwd=tmp_path).stdout)["settings"][
        "max_pages"] == {"value": 7, "source": "file"}  # fmt: skip
