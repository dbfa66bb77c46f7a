"""Fixtures of the web-app tests.

* ``ui_engine`` (session): the real engine, with the bundled MiniLM embedder, over a private
  copy of the corpus in a tmp dir. Built once (~20 s, longer on a busy machine). If the
  top-level conftest has left a finished build in ``tests/artifacts/real-index-cache``, it
  seeds the index (``Engine.load`` re-checks it against the corpus and re-embeds whatever
  differs), which only makes the build faster.
* ``serving(paths, run_dir, *args)``: the same with extra ``serve`` arguments (``--mcp``).
* ``ui_server`` (module): ``spacesec serve`` in a subprocess on a free loopback port, over the
  same corpus and index folders (so it starts without building), with its feedback log and
  Gradio's temp files in the tmp dir. Waited for by polling its URL (90 s at most) and
  terminated at the end of the module.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
VENV_BIN = ROOT / ".venv" / "bin"
SERVER_START_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class UiPaths:
    base: Path
    corpus_dir: Path
    index_dir: Path
    feedback_path: Path


@dataclass
class Server:
    url: str  # "http://127.0.0.1:PORT/"
    port: int
    paths: UiPaths
    feedback_path: Path
    log_path: Path
    process: subprocess.Popen


@pytest.fixture(scope="session")
def ui_paths(tmp_path_factory, real_engine) -> UiPaths:
    """A corpus and index of the app's own, copied from the session's built engine."""
    base = tmp_path_factory.mktemp("ui")
    corpus_dir = base / "corpus"
    shutil.copytree(real_engine.settings.corpus_dir, corpus_dir)
    index_dir = base / "index"
    shutil.copytree(real_engine.settings.index_dir, index_dir, symlinks=True)
    return UiPaths(base, corpus_dir, index_dir, base / "feedback.jsonl")


@pytest.fixture(scope="session")
def ui_settings(ui_paths):
    from rag.settings import Settings

    return Settings(corpus_dir=ui_paths.corpus_dir, index_dir=ui_paths.index_dir,
                    feedback_path=ui_paths.feedback_path)


@pytest.fixture(scope="session")
def ui_engine(ui_settings):
    """The real engine over the tmp copy of the corpus (shared by the whole session)."""
    from rag.engine import Engine

    return Engine.load(ui_settings)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spacesec_command() -> list[str]:
    exe = VENV_BIN / "spacesec"
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "rag.cli"]


def _log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return "(no log)"


@contextmanager
def serving(ui_paths: UiPaths, run_dir: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[Server]:
    """``spacesec serve [extra...]`` on a free port of 127.0.0.1, until the block ends; ``env``
    adds environment variables (settings such as SPACESEC_LLM_PROVIDER)."""
    feedback_path = run_dir / "feedback.jsonl"
    log_path = run_dir / "server.log"
    port = free_port()
    extra_env = env or {}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACESEC_", "GRADIO_"))}
    env.update(extra_env)
    env.update({
        "SPACESEC_FEEDBACK_PATH": str(feedback_path),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(run_dir / "gradio-tmp"),
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    command = _spacesec_command() + ["--corpus-dir", str(ui_paths.corpus_dir),
                                     "--index-dir", str(ui_paths.index_dir),
                                     "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    url = f"http://127.0.0.1:{port}/"
    with log_path.open("wb") as log:
        # cwd is the folder holding the corpus: file routes must refuse it even there.
        process = subprocess.Popen(command, cwd=ui_paths.base, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"the server exited with code {process.returncode}:\n{_log_tail(log_path)}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not answer {url} within {SERVER_START_TIMEOUT_S:.0f} s:\n"
                            f"{_log_tail(log_path)}")
            time.sleep(0.25)
        yield Server(url, port, ui_paths, feedback_path, log_path, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def ui_server(ui_engine, ui_paths, tmp_path_factory):
    """``spacesec serve`` on a free port of 127.0.0.1, for the tests of one module."""
    with serving(ui_paths, tmp_path_factory.mktemp("server")) as server:
        yield server


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """``tests/artifacts`` (git-ignored): screenshots and other by-products."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
