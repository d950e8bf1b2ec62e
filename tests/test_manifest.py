"""Manifests: validation with line numbers, priorities, expansion and de-duplication."""

from __future__ import annotations

import pytest

from legaldoc.errors import UsageError
from legaldoc.manifest import load_manifest
from legaldoc.queues import broker_priority, parse_priority, priority_keys
from tests.conftest import REPO, SAMPLES


def test_sample_manifest_lists_the_samples():
    loaded = load_manifest(REPO / "manifests" / "sample.yaml")
    assert loaded.manifest.project == "sample" and loaded.name == "sample" and loaded.manifest.priority == 5
    assert sorted(d.source for d in loaded.documents) == sorted(str(p.resolve()) for p in SAMPLES.iterdir())


def test_paths_globs_and_uris_collapse_duplicates(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        f"project: p\npriority: 9\ndocuments:\n  - glob: '{SAMPLES}/*.pdf'\n  - path: {SAMPLES}/complaint.pdf\n"
        "    metadata: {custodian: J. Doe}\n  - uri: s3://bucket/key.pdf\n  - uri: s3://bucket/key.pdf\n"
    )
    loaded = load_manifest(manifest)
    assert [d.source for d in loaded.documents] == [str(SAMPLES / "complaint.pdf"), "s3://bucket/key.pdf"]
    assert loaded.documents[0].metadata == {"custodian": "J. Doe"}
    assert loaded.name.startswith("m-") and loaded.lock_name == "m"


@pytest.mark.parametrize(("text", "fragment"), [
    ("project: p\ndocuments: []\n", "m.yaml:2: documents"),
    ("documents:\n  - path: x\n", "project: Field required"),
    ("project: p\nextra: 1\ndocuments:\n  - uri: s3://b/k\n", "m.yaml:2: extra"),
    ("project: p\ndocuments:\n  - uri: http://example.com/a.pdf\n", "uri must start with s3://"),
    ("project: p\ndocuments:\n  - glob: 'nothing-here/*.pdf'\n", "matches no files"),
    ("- just a list\n", "a manifest is a mapping"),
])  # fmt: skip
def test_invalid_manifests_explain_themselves(tmp_path, text, fragment):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(text)
    with pytest.raises(UsageError) as raised:
        load_manifest(manifest)
    assert fragment in str(raised.value)


def test_oversized_manifest_is_refused(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n" + "  - uri: s3://b/k\n" * 2000)
    with pytest.raises(UsageError, match="limited to"):
        load_manifest(manifest, max_mb=0.01)


def test_priorities_translate_once():
    assert [parse_priority(v) for v in ("high", "normal", "low", "9", 0)] == [8, 5, 2, 9, 0]
    for bad in ("urgent", 10, -1, True):
        with pytest.raises(ValueError):
            parse_priority(bad)
    assert broker_priority(9) == 0 and broker_priority(0) == 9  # kombu's Redis transport serves 0 first
    assert priority_keys("ocr")[:3] == ["ocr", "ocr:1", "ocr:2"]
