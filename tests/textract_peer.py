"""A small local Textract: an HTTP server speaking the Textract JSON protocol that boto3 reaches
through AWS_ENDPOINT_URL_TEXTRACT. It answers StartDocumentTextDetection (reading the object from
the S3 peer), GetDocumentTextDetection (IN_PROGRESS for `job_seconds`, then LINE blocks of each
page's real text, read by tesseract, a few per response so NextToken is exercised) and
DetectDocumentText. It counts calls, keeps the documents it was sent, and can be scripted to fail
the next calls of an operation with an error code (ThrottlingException, AccessDeniedException).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pypdfium2 as pdfium
from PIL import Image

_OCR_CACHE: dict[str, list[str]] = {}  # sha256 of a document -> text of each page (tesseract is slow)
_OCR_LOCK = threading.Lock()  # one tesseract at a time: the machine is shared


def _tesseract(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.convert("L").save(buffer, format="PPM")
    done = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "3"], input=buffer.getvalue(), capture_output=True,
                          check=True, timeout=300, env={**os.environ, "OMP_THREAD_LIMIT": "1"})  # fmt: skip
    return done.stdout.decode("utf-8", "replace")


def page_texts(data: bytes) -> list[str]:
    """The text on each page of a PDF or image, as tesseract reads it."""
    digest = hashlib.sha256(data).hexdigest()
    with _OCR_LOCK:
        if digest not in _OCR_CACHE:
            if data.startswith(b"%PDF"):
                pdf = pdfium.PdfDocument(data)
                _OCR_CACHE[digest] = [_tesseract(pdf[i].render(scale=150 / 72, grayscale=True).to_pil())
                                      for i in range(len(pdf))]  # fmt: skip
                pdf.close()
            else:
                _OCR_CACHE[digest] = [_tesseract(Image.open(io.BytesIO(data)))]
        return _OCR_CACHE[digest]


def text_layer_chars(data: bytes) -> list[int]:
    pdf = pdfium.PdfDocument(data)
    try:
        return [len(pdf[i].get_textpage().get_text_bounded().strip()) for i in range(len(pdf))]
    finally:
        pdf.close()


def _blocks(texts: list[str]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for number, text in enumerate(texts, start=1):
        blocks.append({"BlockType": "PAGE", "Id": str(uuid.uuid4()), "Page": number, "Confidence": 99.9})
        for line in (line.strip() for line in text.splitlines()):
            if line:
                blocks.append({"BlockType": "LINE", "Id": str(uuid.uuid4()), "Page": number, "Text": line,
                               "Confidence": 97.5})  # fmt: skip
    return blocks


@dataclass
class Job:
    bucket: str
    key: str
    data: bytes
    started: float
    texts: list[str] | None = None  # read in the background from Start on, like the real service


@dataclass
class TextractPeer:
    s3_endpoint: str
    job_seconds: float = 1.0
    blocks_per_response: int = 7
    calls: Counter = field(default_factory=Counter)
    starts: list[str] = field(default_factory=list)  # the job id each Start call answered
    received: list[tuple[str, str, bytes]] = field(default_factory=list)  # bucket, key, bytes of each new job
    jobs: dict[str, Job] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    failures: dict[str, list[str]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def fail(self, operation: str, code: str, times: int = 1) -> None:
        """The next `times` calls of `operation` answer with error `code`."""
        self.failures.setdefault(operation, []).extend([code] * times)

    def start(self) -> str:
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - the http.server spelling
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                operation = self.headers.get("X-Amz-Target", "").rpartition(".")[2]
                status, reply = peer.answer(operation, body)
                payload = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.1")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            self.calls[operation] += 1
            scripted = self.failures.get(operation)
            if scripted:
                code = scripted.pop(0)
                return 400, {"__type": code, "message": f"scripted {code}"}
        try:
            return getattr(self, f"_{operation}")(body)
        except KeyError as exc:
            return 400, {"__type": "InvalidJobIdException", "message": str(exc)}

    def _StartDocumentTextDetection(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        location = body["DocumentLocation"]["S3Object"]
        token = body.get("ClientRequestToken")
        with self.lock:
            if token and token in self.tokens:
                self.starts.append(self.tokens[token])
                return 200, {"JobId": self.tokens[token]}
        s3 = boto3.client("s3", endpoint_url=self.s3_endpoint)
        try:
            data = s3.get_object(Bucket=location["Bucket"], Key=location["Name"])["Body"].read()
        except Exception as exc:
            return 400, {"__type": "InvalidS3ObjectException", "message": f"Unable to get object metadata from S3: {exc}"}
        job_id = uuid.uuid4().hex
        with self.lock:
            job = self.jobs[job_id] = Job(location["Bucket"], location["Name"], data, time.monotonic())
            self.received.append((location["Bucket"], location["Name"], data))
            self.starts.append(job_id)
            if token:
                self.tokens[token] = job_id
        threading.Thread(target=lambda: setattr(job, "texts", page_texts(data)), daemon=True).start()
        return 200, {"JobId": job_id}

    def _GetDocumentTextDetection(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        job = self.jobs[body["JobId"]]
        texts = job.texts
        if time.monotonic() - job.started < self.job_seconds or texts is None:
            return 200, {"JobStatus": "IN_PROGRESS"}
        blocks = _blocks(texts)
        start = int(body.get("NextToken") or 0)
        size = min(int(body.get("MaxResults", 1000)), self.blocks_per_response)
        reply: dict[str, Any] = {"JobStatus": "SUCCEEDED", "DocumentMetadata": {"Pages": len(texts)},
                                 "Blocks": blocks[start : start + size]}  # fmt: skip
        if start + size < len(blocks):
            reply["NextToken"] = str(start + size)
        return 200, reply

    def _DetectDocumentText(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:  # noqa: N802
        data = base64.b64decode(body["Document"]["Bytes"])
        return 200, {"DocumentMetadata": {"Pages": 1}, "Blocks": _blocks(page_texts(data))}
