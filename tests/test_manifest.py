"""Manifests: validation with line numbers, priorities, expansion and de-duplication."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import legaldoc.manifest as manifest_module
from legaldoc.cli.exit_codes import ExitCode
from legaldoc.errors import LegaldocError, UsageError
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


def test_a_manifest_just_over_the_cap_does_not_say_it_is_the_cap(tmp_path):
    """A 50.01 MB manifest was 'is 50.0 MB; manifests are limited to 50 MB'."""
    manifest = tmp_path / "m.yaml"
    manifest.write_bytes(b"project: p\n" + b"#" * (int(0.01 * 1048576) + 100))
    with pytest.raises(UsageError) as raised:
        load_manifest(manifest, max_mb=0.01)
    assert "is 0.010 MB" not in str(raised.value) and "is 0.0 MB" not in str(raised.value)
    assert re.search(r"is 0\.01\d+ MB; manifests are limited to 0\.01 MB", str(raised.value)), str(raised.value)


def test_priorities_translate_once():
    assert [parse_priority(v) for v in ("high", "normal", "low", "9", 0)] == [8, 5, 2, 9, 0]
    for bad in ("urgent", 10, -1, True):
        with pytest.raises(ValueError):
            parse_priority(bad)
    assert broker_priority(9) == 0 and broker_priority(0) == 9  # kombu's Redis transport serves 0 first
    assert priority_keys("ocr", "legaldoc:")[:3] == ["legaldoc:ocr", "legaldoc:ocr:1", "legaldoc:ocr:2"]


# -- edges: alias bombs, NUL characters, long paths, deep nesting, tags without a JSON form -------------


def _alias_bomb(levels: int, top: str = "documents") -> str:
    """The classic billion laughs: each level an anchored list of ten aliases of the one before."""
    lines = ['    a0: &a0 "lol"'] + [f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, levels + 1)]
    body = "\n".join(lines)
    if top == "documents":
        return f"project: p\ndocuments:\n  - uri: s3://b/k\n    metadata:\n  {body.replace(chr(10), chr(10) + '  ')}\n"
    return f"project: p\nsomething:\n{body}\ndocuments:\n  - uri: s3://b/k\n"


@pytest.mark.parametrize("top", ["documents", "top level"])
def test_alias_bomb_is_refused_before_it_is_built(tmp_path, top):
    manifest = tmp_path / "bomb.yaml"
    manifest.write_text(_alias_bomb(9, top))
    assert manifest.stat().st_size < 1000
    started = time.monotonic()
    with pytest.raises(UsageError) as raised:
        load_manifest(manifest)
    assert time.monotonic() - started < 1.0
    message = str(raised.value)
    assert "bomb.yaml" in message and "aliases expand" in message and "instead of" in message


def test_metadata_may_not_grow_large_through_aliases(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - uri: s3://b/a\n    metadata: &big {k: &l3 [&l2 [&l1 [" + ", ".join(["x"] * 30)
                        + "]" + ", *l1" * 29 + "]" + ", *l2" * 29 + "]}\n  - uri: s3://b/k\n    metadata: {deep: *l3}\n")  # fmt: skip
    with pytest.raises(UsageError, match=r"m\.yaml:\d+: this document's metadata holds"):
        load_manifest(manifest)


def test_shared_metadata_through_an_alias_is_fine(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - uri: s3://b/a\n    metadata: &common {custodian: J. Doe, filed: 2024-01-05}\n"
                        + "".join(f"  - uri: s3://b/{i}\n    metadata: *common\n" for i in range(2000)))  # fmt: skip
    loaded = load_manifest(manifest)
    assert len(loaded.documents) == 2001
    assert loaded.documents[-1].metadata == {"custodian": "J. Doe", "filed": "2024-01-05"}  # a date stays the text written
    json.dumps([d.metadata for d in loaded.documents])


def test_an_alias_to_its_own_container_is_refused(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: &m {self: *m}\n")
    with pytest.raises(UsageError, match="contains it"):
        load_manifest(manifest)


@pytest.mark.parametrize(("text", "fragment"), [
    ('  - path: "a\\0b.pdf"\n', "NUL"),
    ('  - glob: "a\\0b/*.pdf"\n', "NUL"),
    ('  - uri: "s3://b/a\\0b"\n', "NUL"),
    ('  - uri: s3://b/k\n    metadata: {note: "x\\0y"}\n', "NUL"),
    ("  - uri: s3://b/k\n\0", "not valid YAML"),
    ("  - path: " + "a" * 5000 + "\n", "a path is at most 4,096"),
    ("  - path: " + "/".join(["a" * 200] * 30) + "\n", "a path is at most 4,096"),
    ("  - glob: " + "b" * 300 + "/*.pdf\n", "names are at most 255 bytes"),
    ("  - path: " + "/".join(["c" * 200] * 20) + "\n", "does not exist"),  # under PATH_MAX, over it with the folder
    ("  - uri: s3://b/k\n    metadata: {n: .nan}\n", "not a number JSON can hold"),
    ("  - uri: s3://b/k\n    metadata: {n: -.Inf}\n", "not a number JSON can hold"),
    ("  - uri: s3://b/k\n    metadata: {blob: !!binary aGVsbG8=}\n", "'binary' has no place"),
    ("  - uri: s3://b/k\n    metadata: !!set {a, b}\n", "'set' has no place"),
    ("  - uri: s3://b/k\n    metadata: !!python/object:os.system {}\n", "has no place"),
], ids=["nul-path", "nul-glob", "nul-uri", "nul-metadata", "raw-nul", "long-path", "many-folders", "long-name", "over-path-max",
        "nan", "inf", "binary", "set", "python-tag"])  # fmt: skip
def test_edges_are_usage_errors(tmp_path, text, fragment):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n" + text)
    with pytest.raises(UsageError) as raised:
        load_manifest(manifest)
    assert fragment in str(raised.value) and "m.yaml" in str(raised.value)
    assert len(str(raised.value)) < 1000  # a 5,000-character path is not echoed in full


@pytest.mark.timeout(60)
def test_a_glob_that_would_walk_for_ever_is_refused(tmp_path, monkeypatch):
    """Found by the fuzz: `glob: /*/*/*/...` walked the whole filesystem, and through a folder's links
    to itself (here two: 2^30 paths) for ever; now it stops at a budget of entries looked at."""
    monkeypatch.setattr(manifest_module, "MAX_GLOB_ENTRIES", 10_000)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.pdf").write_bytes(b"%PDF-1.4")
    (tree / "again").symlink_to(".")
    (tree / "more").symlink_to(".")
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - glob: 'tree" + "/*" * 30 + "/*.pdf'\n")
    started = time.monotonic()
    with pytest.raises(UsageError) as raised:
        load_manifest(manifest)
    assert time.monotonic() - started < 5
    assert "m.yaml" in str(raised.value) and "looks at more than 10,000 files and folders" in str(raised.value)
    assert raised.value.hint and "fewer wildcards" in raised.value.hint


_PATTERNS = ["*", "*/*", "**", "**/*.pdf", "a/**", "a/**/*.pdf", "a/**/**/*.pdf", "**/b/**", "a/*.pdf", "a/.*", "a/.*/*",
             "a/?.pdf", "a/[xy].*", "a/b/c/*/*", "a/**/", "*/", "a/x.pdf", "a/none.pdf", "a/b", "a/**b/*", "a[[]1]/*",
             "s p/*", "**/*.PDF", "a/link/*", "a/**/x.pdf", "loop/**/*.pdf"]  # fmt: skip


def test_the_bounded_glob_matches_what_glob_matches(tmp_path):
    for name in ["a/x.pdf", "a/y.txt", "a/.h.pdf", "a/b/z.pdf", "a/b/c/w.pdf", "a/.hid/q.pdf", "d/x.pdf", "a/b/c/d/e.PDF",
                 "a[1]/k.pdf", "s p/q r.pdf", "loop/l.pdf"]:  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "a" / "link").symlink_to(tmp_path / "d")
    (tmp_path / "loop" / "back").symlink_to(tmp_path / "loop")
    for pattern in _PATTERNS:
        full = str(tmp_path / pattern)
        expected = {Path(p).resolve() for p in glob.glob(full, recursive=True) if Path(p).is_file()}
        found = {Path(p).resolve() for p in manifest_module.bounded_glob(full, 10_000) if Path(p).is_file()}
        assert found == expected, pattern


@pytest.mark.parametrize("style", ["flow", "block"])
@pytest.mark.parametrize("levels", [40, 5000])
def test_deep_nesting_is_a_usage_error(tmp_path, style, levels):
    manifest = tmp_path / "m.yaml"
    if style == "flow":
        nested = "[" * levels + "]" * levels
        manifest.write_text(f"project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: {{a: {nested}}}\n")
    else:
        nested = "".join(" " * (6 + i) + f"k{i}:\n" for i in range(levels)) + " " * (6 + levels) + "x\n"
        manifest.write_text(f"project: p\ndocuments:\n  - uri: s3://b/k\n    metadata:\n{nested}")
    with pytest.raises(UsageError, match="nest"):
        load_manifest(manifest)


def test_the_pure_python_loader_refuses_deep_nesting_too(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_module, "_Loader", manifest_module.json_loader(yaml.SafeLoader))
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: {a: " + "[" * 5000 + "]" * 5000 + "}\n")
    with pytest.raises(UsageError, match="nest"):
        load_manifest(manifest)


def test_moderate_nesting_is_accepted(tmp_path):
    manifest = tmp_path / "m.yaml"
    manifest.write_text("project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: {a: " + "[" * 20 + "1" + "]" * 20 + "}\n")
    assert load_manifest(manifest).documents[0].metadata["a"] == [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]


def test_the_libyaml_loader_is_used_when_available():
    assert issubclass(manifest_module._Loader, getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def test_bad_manifests_exit_2_without_a_traceback(tmp_path):
    cases = {"nul.yaml": 'project: p\ndocuments:\n  - path: "a\\0b"\n', "long.yaml": "project: p\ndocuments:\n  - path: " + "a" * 5000 + "\n",
             "bomb.yaml": _alias_bomb(9), "deep.yaml": "project: p\ndocuments:\n  - uri: s3://b/k\n    metadata: {a: " + "[" * 5000 + "]" * 5000 + "}\n"}  # fmt: skip
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        result = subprocess.run([sys.executable, "-m", "legaldoc", "submit", name], cwd=tmp_path, capture_output=True, text=True,
                                timeout=120, env={**os.environ, "LEGALDOC_DATA_DIR": str(tmp_path / "data")})  # fmt: skip
        assert result.returncode == ExitCode.USAGE, (name, result.stderr[-2000:])
        assert "Traceback" not in result.stderr and name in result.stderr, (name, result.stderr[-2000:])


# -- fuzz -------------------------------------------------------------------------------------------

FUZZ = settings(max_examples=2000, deadline=timedelta(seconds=2), database=None, suppress_health_check=[HealthCheck.too_slow])
_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                       max_leaves=20)  # fmt: skip
_metadata = st.dictionaries(st.text(max_size=8), _values, max_size=4)
_NAME_CHARS = "ab/\x00.*"


def _repeated(head: str, unit: str, length: int, tail: str) -> str:
    return head + (unit * (length // len(unit) + 1))[:length] + tail


# Long names are a random head and tail around a repeated unit, 250-5,000 characters: cheap to draw (a
# 5,000-character random text costs hypothesis 5,000 choices), and they reach what random text of this
# alphabet never does: single names over 255 bytes (also in two-byte characters) and paths near PATH_MAX.
_units = st.sampled_from(["a", "\u00e9", "a/", "ab/.", "b" * 199 + "/", "c" * 254 + "/", "*", "\x00"]) | st.text(
    alphabet=_NAME_CHARS, min_size=1, max_size=12)  # fmt: skip
_long_names = st.builds(_repeated, st.text(alphabet=_NAME_CHARS, max_size=16), _units, st.integers(250, 5000),
                        st.text(alphabet=_NAME_CHARS, max_size=16))  # fmt: skip
_names = st.text(max_size=40) | _long_names
_entries = st.lists(st.one_of(
    st.fixed_dictionaries({"uri": st.text(max_size=30).map(lambda t: "s3://b/" + t)}, optional={"metadata": _metadata}),
    st.fixed_dictionaries({"path": _names}, optional={"metadata": _metadata}),
    st.fixed_dictionaries({"glob": _names}, optional={"metadata": _metadata}),
    st.fixed_dictionaries({}, optional={"path": _names, "glob": _names, "uri": _names, "metadata": _values, "extra": _values}),
), min_size=1, max_size=4)  # fmt: skip
_manifests = st.fixed_dictionaries({"project": st.text(min_size=1, max_size=20), "documents": _entries},
                                   optional={"name": _scalars, "priority": _scalars, "options": _values})  # fmt: skip
_yaml_bits = st.sampled_from(["project: p\n", "documents:\n", "  - uri: s3://b/k\n", "  - path: ", "  - glob: ", "x" * 300, "/x" * 3000, "    metadata: ", "&a ", "*a", "!!binary ",
                              "!!set ", "!!python/object:x ", "{", "}", "[", "]", ", ", ": ", "- ", "\n", "  ", "<<: ", "? ",
                              '"\\0"', "\\x00", "\x00", ".nan", "2024-01-05", "---\n", "...\n", "%YAML 1.1\n", "|\n", ">\n", "'"])  # fmt: skip


@pytest.fixture(scope="module")
def fuzz_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The one manifest path every fuzz example is written to, alone in its folder. A folder per example
    cost 2 ms, and so does rewriting a file in place on ext4 (truncating flushes it): each example
    unlinks the file and writes a new one (0.3 ms)."""
    return tmp_path_factory.mktemp("fuzz") / "fuzz.yaml"


def _write(path: Path, data: bytes) -> None:
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def _load(path: Path):
    """`load_manifest` with a glob budget of 20,000 entries: the fuzz writes `/*/*/...` often, and each
    would look at a million entries of this machine's disk before it is refused."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(manifest_module, "MAX_GLOB_ENTRIES", 20_000)
        return load_manifest(path)


def _accepts_or_explains(path: Path, text: str) -> None:
    _write(path, text.encode("utf-8", errors="surrogateescape"))
    try:
        loaded = _load(path)
    except LegaldocError:
        return
    json.dumps([document.metadata for document in loaded.documents], allow_nan=False)
    assert loaded.documents


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_any_text(fuzz_file, text):
    _accepts_or_explains(fuzz_file, text)


@FUZZ
@given(st.binary(max_size=300))
def test_fuzz_any_bytes(fuzz_file, data):
    _write(fuzz_file, data)
    with contextlib.suppress(LegaldocError):
        _load(fuzz_file)


@FUZZ
@given(st.lists(_yaml_bits, max_size=40).map("".join))
def test_fuzz_yaml_fragments(fuzz_file, text):
    _accepts_or_explains(fuzz_file, text)


# Both emitters: PyYAML's folds long double-quoted scalars over lines, libyaml's writes them on one.
_dumpers = st.sampled_from([yaml.SafeDumper, getattr(yaml, "CSafeDumper", yaml.SafeDumper)])


@FUZZ
@given(_manifests, _dumpers)
def test_fuzz_yaml_structures(fuzz_file, data, dumper):
    _accepts_or_explains(fuzz_file, yaml.dump(data, Dumper=dumper, allow_unicode=True))


# -- documents_root ---------------------------------------------------------------------------------


def _rooted(tmp_path: Path) -> tuple[Path, Path]:
    """An allowed root holding a.txt and sub/b.txt, and a folder outside it holding secret.txt."""
    root, outside = tmp_path / "allowed", tmp_path / "outside"
    (root / "sub").mkdir(parents=True)
    outside.mkdir()
    (root / "a.txt").write_text("inside\n")
    (root / "sub" / "b.txt").write_text("inside too\n")
    (outside / "secret.txt").write_text("outside\n")
    return root, outside


def _manifest(folder: Path, *entries: str) -> Path:
    path = folder / "batch.yaml"
    path.write_text("project: p\ndocuments:\n" + "".join(f"  - {entry}\n" for entry in entries))
    return path


def test_documents_root_accepts_files_inside_and_leaves_s3_alone(tmp_path):
    root, _ = _rooted(tmp_path)
    manifest = _manifest(root, "path: a.txt", "glob: 'sub/*.txt'", f"path: {root}/sub/../a.txt", "uri: s3://bucket/key.pdf")
    loaded = load_manifest(manifest, roots=[root.resolve()])
    assert sorted(d.source for d in loaded.documents) == sorted([str(root.resolve() / "a.txt"), str(root.resolve() / "sub" / "b.txt"),
                                                                  "s3://bucket/key.pdf"])  # fmt: skip


@pytest.mark.parametrize("kind", ["outside", "dotdot", "symlink", "symlinked-folder", "glob"])
def test_documents_root_refuses_what_resolves_outside(tmp_path, kind):
    from legaldoc.errors import ManifestError

    root, outside = _rooted(tmp_path)
    (root / "link.txt").symlink_to(outside / "secret.txt")
    (root / "linked").symlink_to(outside)
    entry = {"outside": f"path: {outside / 'secret.txt'}", "dotdot": "path: ../outside/secret.txt",
             "symlink": "path: link.txt", "symlinked-folder": "path: linked/secret.txt", "glob": "glob: '*/*.txt'"}[kind]  # fmt: skip
    manifest = _manifest(root, "path: a.txt", entry)
    assert len(load_manifest(manifest).documents) >= 2  # without the setting, all is accepted
    with pytest.raises(ManifestError) as caught:
        load_manifest(manifest, roots=[root.resolve()])
    message = caught.value.message
    assert str(manifest) in message and "documents_root" in message and str(root.resolve()) in message, message
    assert entry.split(": ", 1)[1].strip("'") in message and str((outside / "secret.txt").resolve()) in message, message


def test_documents_root_setting_refuses_a_manifest_at_submit(tmp_path):
    root, outside = _rooted(tmp_path)
    manifest = _manifest(tmp_path, f"path: {root / 'a.txt'}", f"path: {outside / 'secret.txt'}")
    env = {**os.environ, "LEGALDOC_DATA_DIR": str(tmp_path / "data"), "LEGALDOC_DOCUMENTS_ROOT": f"{tmp_path / 'elsewhere'}:{root}",
           "LEGALDOC_REDIS_URL": "redis://127.0.0.1:1"}  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "legaldoc", "submit", str(manifest)], capture_output=True, text=True,
                            timeout=120, env=env)  # fmt: skip
    assert result.returncode == ExitCode.USAGE, result.stderr
    assert "Traceback" not in result.stderr and "outside documents_root" in result.stderr and "secret.txt" in result.stderr, result.stderr
    assert "Redis" not in result.stderr  # refused before anything is contacted or submitted
