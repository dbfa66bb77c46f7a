"""What model calls may spend: one wall-clock deadline per question, and a bounded number of
calls at once in the process.

* ``Deadline``: created once per question and shared by every model call made for it (the
  follow-up rewrite, then the answer). The HTTP client's own timeout is per read, so a
  server that drips one byte at a time never trips it; the deadline is what bounds a question.
* ``call_within(deadline, slots, work)``: runs one model call in a worker thread. The caller
  gets control back at the deadline whatever the server does; the worker's reads stop at the
  deadline too (``DeadlineTransport``), so a cut call does not linger on the connection.
* ``ModelSlots``: at most N model calls at once. A call that finds none free fails at once
  (its question is answered extractively), so model calls never hold every web worker.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

import httpx

T = TypeVar("T")

_CURRENT: ContextVar[Deadline | None] = ContextVar("model_call_deadline", default=None)


class Deadline:
    """``seconds`` of wall-clock time from now, for every model call of one question."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.remaining() == 0.0


class DeadlinePassed(TimeoutError):
    """The question's deadline passed before the model call finished."""

    def __init__(self, deadline: Deadline) -> None:
        super().__init__(f"the deadline of {deadline.seconds:g} s passed")


class NoFreeSlot(RuntimeError):
    """Every model slot is taken by other questions."""


class ModelSlots:
    """At most ``limit`` model calls at once in this process."""

    def __init__(self, limit: int = 2) -> None:
        self.limit = limit
        self._free = threading.BoundedSemaphore(limit)

    def take(self) -> None:
        if not self._free.acquire(blocking=False):
            raise NoFreeSlot(f"all {self.limit} model slots are in use")

    def give_back(self) -> None:
        self._free.release()


def call_within(deadline: Deadline, slots: ModelSlots | None, work: Callable[[], T]) -> T:
    """``work()`` run in a worker thread holding a slot: its result, or its exception, or
    DeadlinePassed when the deadline comes first. The slot is given back when the worker
    ends, not at the deadline, so calls still winding down count against the limit."""
    if deadline.expired:
        raise DeadlinePassed(deadline)
    if slots is not None:
        slots.take()
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        _CURRENT.set(deadline)
        try:
            outcome["value"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            outcome["error"] = exc
        finally:
            if slots is not None:
                slots.give_back()
            done.set()

    threading.Thread(target=run, name="model-call", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise DeadlinePassed(deadline)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


class _DeadlineStream(httpx.SyncByteStream):
    def __init__(self, stream: httpx.SyncByteStream, deadline: Deadline, request: httpx.Request) -> None:
        self._stream, self._deadline, self._request = stream, deadline, request

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if self._deadline.expired:
                raise httpx.ReadTimeout("the question's deadline passed", request=self._request)
            yield chunk

    def close(self) -> None:
        self._stream.close()


class DeadlineTransport(httpx.HTTPTransport):
    """An httpx transport that ends a model call's request at its question's deadline: each
    wait is capped at the time left, and the body stops being read once the deadline passes."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        deadline = _CURRENT.get()
        if deadline is None:
            return super().handle_request(request)
        left = deadline.remaining()
        if left == 0.0:
            raise httpx.ReadTimeout("the question's deadline passed", request=request)
        timeouts = request.extensions.get("timeout") or {}
        request.extensions["timeout"] = {name: min(timeouts.get(name) or left, left)
                                         for name in ("connect", "read", "write", "pool")}
        response = super().handle_request(request)
        response.stream = _DeadlineStream(response.stream, deadline, request)
        return response
