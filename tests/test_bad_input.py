"""No traceback for an expected failure, anywhere: every bad input a user or a cron job can give a
command ends in one `error:` line on stderr that names the thing and what to do, with exit 2
(fix the input) or 3 (something is unreachable)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.batchkit import write_manifest
from tests.conftest import NEF
from tests.test_cli import legaldoc

UNREACHABLE_REDIS = "redis://127.0.0.1:1"
UNREACHABLE_POSTGRES = "postgresql://nobody@127.0.0.1:1/x"


def _manifest(tmp: Path) -> str:
    return str(write_manifest(tmp / "m.yaml", [{"path": str(NEF / "almd_1.txt")}]))


def _toml(text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / "legaldoc.toml").write_text(text)


def _not_a_database(tmp: Path) -> None:
    (tmp / ".legaldoc").mkdir()
    (tmp / ".legaldoc" / "legaldoc.db").write_text("these are not the pages of an SQLite file\n" * 100)


# (id, arguments, environment, setup, exit code, words the one line must hold)
CASES: list[tuple[str, list[str], dict[str, str], Callable[[Path], None] | None, int, str]] = [
    ("status redis url without host", ["status"], {"LEGALDOC_REDIS_URL": "redis:/x"}, None, 2, "names no host"),
    ("submit http url", ["submit", "MANIFEST"], {"LEGALDOC_REDIS_URL": "http://h"}, None, 2, "not a Redis URL"),
    ("run word for a url", ["run", "MANIFEST", "--database-url", "foo"], {}, None, 2, "not a database URL"),
    ("monitor bad url", ["monitor", "--redis-url", "foo"], {}, None, 2, "not a Redis URL"),
    ("workers status db 42", ["workers", "status", "--redis-url", "redis://h/42"], {}, None, 2, "0-15"),
    ("cache stats port", ["cache", "stats", "--redis-url", "redis://h:99999"], {}, None, 2, "port"),
    ("recover env typo", ["recover", "--stuck"], {"LEGALDOC_REDIS_UR": "redis://h"}, None, 2, "LEGALDOC_REDIS_URL"),
    ("process mysql", ["process", str(NEF / "almd_1.txt"), "--database-url", "mysql://a@b/c"], {}, None, 2, "SQLite or PostgreSQL"),
    ("status postgres down", ["status", "--database-url", UNREACHABLE_POSTGRES], {}, None, 3, "cannot reach the database"),
    ("db current postgres down", ["db", "current", "--database-url", UNREACHABLE_POSTGRES], {}, None, 3, "cannot reach"),
    ("entities missing config", ["--config", "nope.toml", "entities"], {}, None, 2, "no such settings file"),
    ("show toml typo", ["show", "1"], {}, _toml('redis_ur = "redis://h"\n'), 2, "did you mean redis_url"),
    ("config show bad toml", ["config", "show"], {}, _toml("redis_url = \n"), 2, "cannot be read as TOML"),
    ("status toml bad value", ["status"], {}, _toml("ocr_dpi = 10\n"), 2, "ocr_dpi"),
    ("status folder not creatable", ["status", "--data-dir", "/proc/legaldoc"], {}, None, 2, "cannot create the data folder"),
    ("status not a database", ["status"], {}, _not_a_database, 2, "not a legaldoc database"),
    ("submit missing manifest", ["submit", "nowhere.yaml"], {}, None, 2, "nowhere.yaml"),
    ("run missing manifest", ["run", "nowhere.yaml"], {}, None, 2, "nowhere.yaml"),
    ("process missing path", ["process", "nowhere.pdf"], {}, None, 2, "no such file or folder"),
    ("status unknown batch", ["status", "no-such-batch"], {}, None, 2, "no batch no-such-batch"),
    ("cancel unknown batch", ["cancel", "no-such-batch"], {}, None, 2, "no batch no-such-batch"),
    ("recover unknown batch", ["recover", "no-such-batch", "--analyze"], {}, None, 2, "no batch no-such-batch"),
    ("recover neither", ["recover"], {}, None, 2, "name a batch"),
    ("cache warm redis down", ["cache", "warm", "--project", "acme"], {}, None, 3, "cannot reach Redis"),
    ("workers start unknown queue", ["workers", "start", "--queue", "nosuch"], {}, None, 2, "unknown queue"),
    ("submit redis down", ["submit", "MANIFEST"], {"LEGALDOC_REDIS_URL": UNREACHABLE_REDIS}, None, 3, "cannot reach Redis"),
    ("workers status redis down", ["workers", "status"], {"LEGALDOC_REDIS_URL": UNREACHABLE_REDIS}, None, 3, "cannot reach Redis"),
    ("submit bad timeout", ["submit", "MANIFEST", "--wait", "--timeout", "soon"], {}, None, 2, "invalid duration"),
    ("entities unknown type", ["entities", "--type", "WIZARD"], {}, None, 2, "unknown entity type"),
    ("show unknown document", ["show", "424242"], {}, None, 2, "no document with id 424242"),
    ("export unknown project", ["export", "--project", "nope", "--format", "csv"], {}, None, 2, "no project named 'nope'"),
    ("export parquet to stdout", ["export", "--format", "parquet", "--out", "-"], {}, None, 2, "only jsonl can go to stdout"),
    ("search unbalanced quote", ["search", '"motion to'], {}, None, 2, "unbalanced quote"),
    ("search nothing to find", ["search", "--", "-moot"], {}, None, 2, "no word to look for"),
    ("search no query", ["search"], {}, None, 2, "give a QUERY or --entity"),
    ("report unknown batch", ["report", "no-such-batch"], {}, None, 2, "no batch no-such-batch"),
    ("documents unknown project", ["documents", "--project", "nope"], {}, None, 2, "no project named 'nope'"),
    ("show unknown path", ["show", "nowhere/at/all.pdf"], {}, None, 2, "no document 'nowhere/at/all.pdf'"),
]  # fmt: skip


@pytest.mark.parametrize(("arguments", "environment", "setup", "code", "words"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line_and_an_exit_code(tmp_path, arguments, environment, setup, code, words):
    if setup:
        setup(tmp_path)
    arguments = [_manifest(tmp_path) if a == "MANIFEST" else a for a in arguments]
    result = legaldoc(*arguments, cwd=tmp_path, env={"LEGALDOC_REDIS_URL": UNREACHABLE_REDIS, **environment})
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert result.returncode == code, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in result.stderr, result.stderr
