"""What the server refuses before Gradio sees a request: every upload (the app takes no
files), and any write request sent by a page of another origin."""

from __future__ import annotations

import json
import logging
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class RequestGuard:
    """ASGI middleware. A request is refused with 403 when it posts to an upload route, or
    when it is not a GET/HEAD/OPTIONS and carries an ``Origin`` whose host and port differ
    from the ``Host`` it was sent to (a browser on another site). Clients that send no
    ``Origin`` (gradio_client, MCP clients, curl) are not browsers and pass."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            reason = refusal(scope["method"], scope["path"], _header(scope, b"origin"), _header(scope, b"host"))
            if reason:
                log.warning("refused %s %s: %s", scope["method"], scope["path"], reason)
                await _forbidden(send, reason)
                return
        await self.app(scope, receive, send)


def refusal(method: str, path: str, origin: str | None, host: str | None) -> str | None:
    """Why a request must be refused, or None."""
    if path.rstrip("/").endswith("/upload"):
        return "This app accepts no file uploads."
    if method.upper() not in _SAFE_METHODS and origin is not None and urlsplit(origin).netloc != host:
        return "Requests from other sites are not accepted."
    return None


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


async def _forbidden(send, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
