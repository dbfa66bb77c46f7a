"""A real HTTP server that speaks just enough of the OpenAI chat-completions protocol to test
the LLM answer mode end to end: ``POST /v1/chat/completions``, plain JSON or streamed as
server-sent events, replaying a queue of scripted behaviours and recording every request.

    with FakeOpenAIServer() as server:
        server.script(Reply("The treaty bans weapons [1]."), Status(500), Slow(3, "late [1]."))
        settings = Settings(llm_provider="openai", llm_base_url=server.base_url, llm_model="fake")
        ...
        server.requests[0]["messages"]   # what the client sent

Behaviours (one per request, in order; an empty queue answers HTTP 500 "no script"):
``Reply(text)``, ``Status(code)``, ``Slow(seconds, text)``, ``Garbage(data)``,
``Truncated(text, after)`` (streams ``after`` characters, then closes the connection),
``Drip(text, interval)`` (sends the reply one byte every ``interval`` seconds: every read
is quick, the whole reply is not).
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


@dataclass
class Reply:
    text: str


@dataclass
class Status:
    code: int = 500
    message: str = "internal error"


@dataclass
class Slow:
    seconds: float
    text: str = "A late reply [1]."


@dataclass
class Garbage:
    data: bytes = b"\x00\xff\xfe{not json at all\x89PNG"


@dataclass
class Drip:
    text: str = "A reply that takes its time [1]."
    interval: float = 0.1


@dataclass
class Truncated:
    text: str
    after: int  # characters of ``text`` sent before the connection is cut


def _tokens(text: str) -> list[str]:
    """Split into word-sized deltas that join back to ``text`` exactly."""
    out, word = [], ""
    for ch in text:
        word += ch
        if ch == " ":
            out.append(word)
            word = ""
    if word:
        out.append(word)
    return out


def _chunk(delta: dict, finish: str | None = None) -> bytes:
    body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": "fake-model",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        self.server.owner._record(self.path, dict(self.headers), body)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        behaviour = self.server.owner._next()
        stream = bool(body.get("stream"))
        self.server.owner._busy(+1)
        try:
            self._perform(behaviour, stream)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (e.g. after its timeout)
        finally:
            self.server.owner._busy(-1)

    # -- behaviours -------------------------------------------------------------------
    def _perform(self, behaviour, stream: bool) -> None:
        if behaviour is None:
            return self._json(500, {"error": {"message": "no scripted behaviour left", "type": "server_error"}})
        if isinstance(behaviour, Status):
            return self._json(behaviour.code, {"error": {"message": behaviour.message, "type": "server_error"}})
        if isinstance(behaviour, Slow):
            if self.server.owner._stopping.wait(behaviour.seconds):
                return
            return self._reply(behaviour.text, stream)
        if isinstance(behaviour, Garbage):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream" if stream else "application/json")
            if stream:
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._write_chunk(b"data: " + behaviour.data + b"\n\n")
                self._write_chunk(b"data: [DONE]\n\n")
                self._write_chunk(b"")
            else:
                self.send_header("Content-Length", str(len(behaviour.data)))
                self.end_headers()
                self.wfile.write(behaviour.data)
            return None
        if isinstance(behaviour, Truncated):
            return self._truncated(behaviour, stream)
        if isinstance(behaviour, Drip):
            return self._drip(behaviour, stream)
        return self._reply(behaviour.text, stream)

    def _drip(self, behaviour: Drip, stream: bool) -> None:
        if stream:
            body = _chunk({"role": "assistant", "content": ""}) + b"".join(
                _chunk({"content": t}) for t in _tokens(behaviour.text)) + b"data: [DONE]\n\n"
            self._start_stream()
        else:
            body = json.dumps({"id": "chatcmpl-fake", "object": "chat.completion", "created": 0,
                               "model": "fake-model", "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": behaviour.text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
        for i in range(len(body)):
            if self.server.owner._stopping.wait(behaviour.interval):
                return
            if stream:
                self._write_chunk(body[i:i + 1])
            else:
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
        if stream:
            self._write_chunk(b"")

    def _reply(self, text: str, stream: bool) -> None:
        if not stream:
            return self._json(200, {
                "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                "model": "fake-model",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 10, "completion_tokens": 10, "total_tokens": 20},
            })
        self._start_stream()
        self._write_chunk(_chunk({"role": "assistant", "content": ""}))
        for token in _tokens(text):
            self._write_chunk(_chunk({"content": token}))
        self._write_chunk(_chunk({}, "stop"))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")  # the terminating zero-length chunk

    def _truncated(self, behaviour: Truncated, stream: bool) -> None:
        part = behaviour.text[: behaviour.after]
        if stream:
            self._start_stream()
            self._write_chunk(_chunk({"role": "assistant", "content": ""}))
            for token in _tokens(part):
                self._write_chunk(_chunk({"content": token}))
        else:
            body = json.dumps({"id": "chatcmpl-fake", "object": "chat.completion",
                               "choices": [{"index": 0, "message": {"role": "assistant",
                                                                    "content": behaviour.text}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # -- plumbing ---------------------------------------------------------------------
    def _json(self, code: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(format(len(data), "x").encode() + b"\r\n" + data + b"\r\n")
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: FakeOpenAIServer

    def handle_error(self, request, client_address) -> None:
        # Clients that give up on a deadline hang up mid-request: expected, not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class FakeOpenAIServer:
    """Context manager: starts on 127.0.0.1 on a free port; ``base_url`` ends in ``/v1``."""

    def __init__(self, *behaviours) -> None:
        self._queue: deque = deque(behaviours)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.requests: list[dict] = []
        self.active = 0  # requests still being answered
        self.paths: list[str] = []
        self.headers: list[dict] = []
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # scripting and inspection
    def script(self, *behaviours) -> FakeOpenAIServer:
        with self._lock:
            self._queue.extend(behaviours)
        return self

    def _next(self):
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _busy(self, change: int) -> None:
        with self._lock:
            self.active += change

    def _record(self, path: str, headers: dict, body: dict) -> None:
        with self._lock:
            self.paths.append(path)
            self.headers.append(headers)
            self.requests.append(body)

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return "http://127.0.0.1:" + str(self.port) + "/v1"

    # lifecycle
    def start(self) -> FakeOpenAIServer:
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
