"""Helpers for tests that drive a worker process and interrupt it at a known point."""

from __future__ import annotations

import selectors
import subprocess
import time


def wait_for_line(proc: subprocess.Popen, prefix: str, timeout: float = 120) -> None:
    """Read ``proc``'s stdout until a line starts with ``prefix`` (or fail)."""
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if selector.select(timeout=1):
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return
            if not line:
                raise RuntimeError(f"worker exited ({proc.wait()}) before '{prefix}'")
    raise TimeoutError(f"worker never printed '{prefix}'")
