"""Load test of the web app (loopback only, bounded in time and count; not part of the suite).

N concurrent gradio_client clients ask questions for a fixed time against a server this
script starts on 127.0.0.1 (or --url of one already running on this machine). Every reply is
compared with the reply the same question got when asked alone: a lost or mixed-up answer
counts as an error. Exits 1 on any error.

Usage: .venv/bin/python benchmarks/load_test.py [--clients 20] [--seconds 60]
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger("load_test")

QUESTIONS = [
    "What does the Outer Space Treaty say about nuclear weapons in orbit?",
    "Which states met in Florence in 2024?",
    "Who is liable for damage caused by a space object on the surface of the Earth?",
    "What must a State do when astronauts land in its territory after an accident?",
    "What do the LTS guidelines say about space weather data?",
    "How do the debris mitigation guidelines define space debris?",
    "What did the United States commit to about anti-satellite missile tests?",
    "What information must a State of registry give the UN Secretary-General?",
    "What is the capital of France?",
    "Can a country claim the Moon?",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"server at {url} did not start within {seconds:.0f} s")


def _reply(client, question: str) -> str:
    chat, *_ = client.predict(question, [], [], [], [], "extractive", 5, api_name="/ask")
    content = chat[-1]["content"]
    return "".join(p.get("text", "") for p in content) if isinstance(content, list) else str(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--url", help="a running app on this machine (default: start one)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    from gradio_client import Client

    server = None
    url = args.url
    if url and urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load test only targets this machine (127.0.0.1)")
    if not url:
        port = _free_port()
        url = f"http://127.0.0.1:{port}/"
        server = subprocess.Popen([str(ROOT / ".venv" / "bin" / "spacesec"), "serve", "--port", str(port)],
                                  cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env=os.environ | {"SPACESEC_FEEDBACK_PATH": os.devnull})
    try:
        _wait(url, 120)
        reference = Client(url, verbose=False)
        expected = {q: _reply(reference, q) for q in QUESTIONS}
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        stop = time.monotonic() + args.seconds

        def worker(seed: int) -> None:
            client = Client(url, verbose=False)
            i = seed
            while time.monotonic() < stop:
                question = QUESTIONS[i % len(QUESTIONS)]
                i += 1
                started = time.perf_counter()
                try:
                    reply = _reply(client, question)
                    problem = None if reply == expected[question] else f"mixed-up answer for {question!r}: {reply[:120]!r} instead of {expected[question][:120]!r}"
                except Exception as exc:  # noqa: BLE001 - counted and reported, never hidden
                    problem = f"{type(exc).__name__}: {exc}"
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if problem:
                        errors.append(problem)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(args.clients)]
        began = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - began
    finally:
        if server:
            server.terminate()
            server.wait(timeout=30)
    latencies.sort()
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else 0.0
    log.info("clients %d, %.0f s: %d requests, %.1f requests/s, p50 %.0f ms, p95 %.0f ms, errors %d",
             args.clients, elapsed, len(latencies), len(latencies) / elapsed,
             1000 * statistics.median(latencies or [0]), 1000 * p95, len(errors))
    for problem in errors[:10]:
        log.info("  %s", problem)
    return 1 if errors or not latencies else 0


if __name__ == "__main__":
    sys.exit(main())
