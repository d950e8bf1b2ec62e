"""A small local server speaking the OpenAI endpoints legaldoc uses (``GET /v1/models``, ``POST
/v1/chat/completions`` with structured output), for the real openai SDK pointed at it with
OPENAI_BASE_URL. It counts every call with its arrival time and plays a script: each call takes
the next step (``ok``, ``429``, ``quota``, ``malformed``, ``empty``, ``slow``, ``500``, ``401``,
``404``), then ``default`` once the script is used up.

Its "model" reads the user text with a plain rule: every run of two or three capitalised words
is a PERSON (with natural-order normalization), and, when `invent` is set, one name that is not
in the text at all, which the provider must drop.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

NAME = re.compile(r"\b[A-Z][a-z]{2,}(?: [A-Z]\.)? [A-Z][a-z]{2,}\b")
INVENTED = "Zebulon Q. Nobody"
MODELS = ("gpt-5-mini", "peer-small")


@dataclass
class Peer:
    url: str = ""
    script: deque[str] = field(default_factory=deque)
    default: str = "ok"
    retry_after: str = "1"
    slow_seconds: float = 3.0
    invent: bool = True
    calls: list[float] = field(default_factory=list)  # arrival times of chat completions
    outcomes: list[str] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_step(self) -> str:
        with self.lock:
            self.calls.append(time.monotonic())
            step = self.script.popleft() if self.script else self.default
            self.outcomes.append(step)
            return step

    def max_in_window(self, seconds: float) -> int:
        """The most calls that arrived within any `seconds`-long window."""
        times = sorted(self.calls)
        best, low = 0, 0
        for high, moment in enumerate(times):
            while moment - times[low] >= seconds:
                low += 1
            best = max(best, high - low + 1)
        return best


def answer(text: str, invent: bool) -> dict[str, Any]:
    mentions = []
    for name in dict.fromkeys(NAME.findall(text)):
        mentions.append({"text": name, "type": "PERSON", "normalized": name})
    if invent:
        mentions.append({"text": INVENTED, "type": "PERSON", "normalized": INVENTED})
    return {"mentions": mentions}


def _handler(peer: Peer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = (body if isinstance(body, str) else json.dumps(body)).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            with suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)

        def _error(self, status: int, message: str, kind: str, code: str | None, headers: dict[str, str] | None = None) -> None:
            self._send(status, {"error": {"message": message, "type": kind, "param": None, "code": code}}, headers)

        def do_GET(self) -> None:
            if self.path.rstrip("/").endswith("/models"):
                self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": "peer"}
                                                            for m in MODELS]})  # fmt: skip
            else:
                self._error(404, "no such endpoint", "invalid_request_error", None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = json.loads(self.rfile.read(length) or b"{}")
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._error(404, "no such endpoint", "invalid_request_error", None)
                return
            step = peer.next_step()
            with peer.lock:
                peer.requests.append(request)
            model = request.get("model", "")
            if step == "429":
                self._error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded",
                            {"Retry-After": peer.retry_after, "x-ratelimit-reset-requests": "1s"})  # fmt: skip
                return
            if step == "quota":
                self._error(429, "You exceeded your current quota, please check your plan and billing details.",
                            "insufficient_quota", "insufficient_quota")  # fmt: skip
                return
            if step == "401":
                self._error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
                return
            if step == "404" or model not in MODELS:
                self._error(404, f"The model `{model}` does not exist or you do not have access to it.",
                            "invalid_request_error", "model_not_found")  # fmt: skip
                return
            if step == "500":
                self._error(500, "The server had an error while processing your request.", "server_error", None)
                return
            if step == "slow":
                time.sleep(peer.slow_seconds)
            text = request["messages"][-1]["content"]
            if step == "malformed":
                content: str | None = '{"mentions": [{"text": "Jane'
            elif step == "empty":
                content = ""
            else:
                content = json.dumps(answer(text, peer.invent))
            tokens_in = len(request["messages"][0]["content"] + text) // 4
            self._send(200, {
                "id": f"chatcmpl-{len(peer.calls)}", "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": content, "refusal": None}}],
                "usage": {"prompt_tokens": tokens_in, "completion_tokens": len(content or "") // 4,
                          "total_tokens": tokens_in + len(content or "") // 4},
            })  # fmt: skip

    return Handler


@contextmanager
def running_peer() -> Iterator[Peer]:
    peer = Peer()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(peer))
    server.daemon_threads = True
    peer.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, name="openai-peer", daemon=True)
    thread.start()
    try:
        yield peer
    finally:
        server.shutdown()
        server.server_close()
