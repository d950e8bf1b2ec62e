"""Everyday questions answered from the command line: which projects, which documents, one
document by its path with its mentions in context and its relationships, one entity in full."""

from __future__ import annotations

import json
import shutil

from tests.conftest import DOCUMENTS, NEF, SAMPLES
from tests.test_cli import legaldoc


def _json(*arguments: str, cwd) -> object:
    result = legaldoc(*arguments, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_projects_documents_show_and_entities(tmp_path):
    work = tmp_path / "matter"
    work.mkdir()
    shutil.copyfile(SAMPLES / "complaint.pdf", work / "complaint.pdf")
    shutil.copyfile(NEF / "almd_1.txt", work / "notice.txt")
    shutil.copyfile(DOCUMENTS / "empty.pdf", work / "empty.pdf")
    processed = legaldoc("process", "matter", "--project", "acme", cwd=tmp_path)
    assert processed.returncode == 1  # empty.pdf
    legaldoc("process", str(work / "notice.txt"), "--project", "other", cwd=tmp_path)

    projects = {p["project"]: p for p in _json("projects", cwd=tmp_path)}
    assert (projects["acme"]["documents"], projects["other"]["documents"]) == (3, 1)
    assert projects["acme"]["entities"] > 10

    documents = _json("documents", "--project", "acme", cwd=tmp_path)
    assert [d["status"] for d in documents] == ["done", "failed", "done"]  # complaint, empty, notice
    failed = _json("documents", "--project", "acme", "--status", "failed", cwd=tmp_path)
    assert [d["source"].rsplit("/", 1)[-1] for d in failed] == ["empty.pdf"] and failed[0]["error"]["category"] == "DATA"
    complaint = next(d for d in documents if d["source"].endswith("complaint.pdf"))
    assert complaint["mentions"] > 10 and complaint["entities"] > 5 and complaint["relationships"] > 0

    by_id = _json("show", str(complaint["document_id"]), cwd=tmp_path)
    by_relative_path = _json("show", "matter/complaint.pdf", cwd=tmp_path)
    by_absolute_path = _json("show", str(work / "complaint.pdf"), cwd=work)
    assert by_id == by_relative_path == by_absolute_path
    ambiguous = legaldoc("show", "matter/notice.txt", cwd=tmp_path)
    assert ambiguous.returncode == 2 and "several projects" in ambiguous.stderr
    assert _json("show", "matter/notice.txt", "--project", "other", cwd=tmp_path)["project"] == "other"

    detail = _json("show", "matter/complaint.pdf", "--mentions", "--relations", cwd=tmp_path)
    assert all(" ".join(m["text"].split()) in m["context"] for m in detail["mentions"])
    assert any(m["entity"] for m in detail["mentions"])
    relations = detail["relationship_list"]
    assert len(relations) == complaint["relationships"] and all(r["evidence"] and r["evidence"][0]["text"] for r in relations)
    shown = legaldoc("show", "matter/complaint.pdf", "--mentions", cwd=tmp_path)
    assert shown.returncode == 0 and "context" in shown.stdout

    entities = _json("entities", "--project", "acme", cwd=tmp_path)
    party = next(e for e in entities if e["type"] == "PARTY" and e["documents"] >= 1)
    one = _json("entities", party["name"], "--project", "acme", cwd=tmp_path)
    one = one if isinstance(one, dict) else next(e for e in one if e["id"] == party["id"])
    assert one["id"] == party["id"] and one["mentions"] == party["mentions"]
    assert sum(len(d["mentions"]) for d in one["documents"]) == party["mentions"]
    assert all(m["context"] for d in one["documents"] for m in d["mentions"])
    assert {a["alias"] for a in one["aliases"]} == {a["alias"] for a in party["aliases"]}

    for arguments, words in [
        (["documents", "--project", "nope"], "no project named 'nope'"),
        (["documents", "--project", "acme", "--status", "happy"], "unknown status"),
        (["show", "matter/nothing.pdf"], "no document 'matter/nothing.pdf'"),
        (["show", "4242"], "no document with id 4242"),
        (["entities", "Nobody Whatsoever", "--project", "acme"], "no entity named"),
    ]:
        refused = legaldoc(*arguments, cwd=tmp_path)
        assert refused.returncode == 2 and words in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
