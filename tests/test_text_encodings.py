"""UTF-16 and UTF-32 text (as Windows tools save it) is text, not binary: a byte-order mark, or the
NUL byte beside every ASCII character of BOM-less UTF-16, is read before the binary check."""

from __future__ import annotations

import json

import pytest

from legaldoc.config import load_settings
from legaldoc.errors import UnsupportedFormat
from legaldoc.pipeline.extract import extract, sniff_kind
from tests.test_cli import legaldoc

MOTION = """UNITED STATES DISTRICT COURT
NORTHERN DISTRICT OF CALIFORNIA

MARÍA GONZÁLEZ, Plaintiff,
v.
ACME SHIPPING CORPORATION, Defendant.

Case No. 3:21-cv-04567-JSC

MOTION TO DISMISS

Defendant moves to dismiss under Rule 12(b)(6). See Bell Atlantic Corp. v. Twombly, 550 U.S. 544 (2007);
Ashcroft v. Iqbal, 556 U.S. 662 (2009). The complaint's § 1983 claim fails for the reasons below.
"""

ENCODINGS = ["utf-16", "utf-16-be-bom", "utf-32", "utf-16-le", "utf-16-be"]


def _encode(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-be-bom":
        return "\ufeff".encode("utf-16-be") + text.encode("utf-16-be")
    return text.encode(encoding)  # "utf-16" and "utf-32" write a mark; "-le"/"-be" write none


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_wide_text_is_decoded_not_refused_as_binary(tmp_path, encoding):
    data = _encode(MOTION.replace("\n", "\r\n"), encoding)
    assert b"\x00" in data[:4096]
    assert sniff_kind(data, "motion.txt") == "text"
    document = extract(data, "motion.txt", load_settings(data_dir=tmp_path / ".legaldoc"))
    assert document.text == MOTION.strip("\n")


def test_utf16_html_is_html(tmp_path):
    markup = "<!DOCTYPE html><html><body><h1>ORDER</h1><p>The motion in Roe v. Wade is granted.</p></body></html>"
    data = markup.encode("utf-16")
    assert sniff_kind(data, "order.bin") == "html"
    document = extract(data, "order.bin", load_settings(data_dir=tmp_path / ".legaldoc"))
    assert "ORDER" in document.text and "<p>" not in document.text


@pytest.mark.parametrize("data", [
    b"\xff\xfe" + bytes(range(256)) * 8,  # a mark, then binary: not text
    b"\x00\x01\x02\x03binary\x00\x00\x10\x11" * 100,
])  # fmt: skip
def test_binary_with_nul_bytes_is_still_refused(tmp_path, data):
    with pytest.raises(UnsupportedFormat, match="blob.txt is a binary file"):
        extract(data, "blob.txt", load_settings(data_dir=tmp_path / ".legaldoc"))


def test_process_reads_a_utf16_legal_text_file(tmp_path):
    path = tmp_path / "motion-utf16.txt"
    path.write_text(MOTION, encoding="utf-16")
    result = legaldoc("process", str(path), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert report["status"] == "done" and report["error"] is None
    assert len(report["mentions"]) >= 2  # the two citations at least
    shown = legaldoc("show", str(report["document_id"]), "--text", "--json", cwd=tmp_path)
    assert "MARÍA GONZÁLEZ" in json.loads(shown.stdout)["text"]
