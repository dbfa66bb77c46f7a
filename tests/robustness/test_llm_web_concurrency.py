"""The served app under slow LLM answers: however many users ask in LLM mode while the model
server drips its replies, another user's extractive question is answered at once (model calls
are capped, and a question that finds every model slot taken is answered extractively)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import ROOT
from fake_openai_server import Drip, FakeOpenAIServer

pytestmark = pytest.mark.slow

QUESTION = "What does the Outer Space Treaty say about nuclear weapons in orbit?"
LLM_USERS = 6
DEADLINE_S = 25


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(params=[2, 4], ids=["2 model slots", "4 model slots"])
def dripping_app(real_engine, tmp_path, request):
    """``spacesec serve`` over a copy of the session's index, its LLM a server that drips;
    as many model calls allowed at once as the app has workers by default (4), or fewer."""
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    shutil.copytree(real_engine.settings.corpus_dir, corpus)
    shutil.copytree(real_engine.settings.index_dir, index, symlinks=True)
    with FakeOpenAIServer() as llm:
        llm.script(*[Drip("States Parties undertake not to place nuclear weapons in orbit [1]. " * 5, 0.2)
                     for _ in range(LLM_USERS)])
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SPACESEC_", "GRADIO_"))}
        env.update({"SPACESEC_LLM_PROVIDER": "openai", "SPACESEC_LLM_BASE_URL": llm.base_url,
                    "SPACESEC_LLM_MODEL": "fake", "SPACESEC_LLM_TIMEOUT_S": str(DEADLINE_S),
                    "SPACESEC_LLM_MAX_CONCURRENT": str(request.param),
                    "SPACESEC_FEEDBACK_PATH": str(tmp_path / "feedback.jsonl"), "HF_HUB_OFFLINE": "1",
                    "GRADIO_ANALYTICS_ENABLED": "False", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
        log = (tmp_path / "server.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "rag.cli", "--corpus-dir", str(corpus), "--index-dir",
                                    str(index), "serve", "--port", str(port)], cwd=ROOT, env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}/"
        try:
            deadline = time.monotonic() + 120
            while True:
                assert process.poll() is None, Path(log.name).read_text()[-3000:]
                try:
                    with urllib.request.urlopen(url, timeout=2):
                        break
                except OSError:
                    assert time.monotonic() < deadline, "the app did not start"
                    time.sleep(0.3)
            yield url, llm, request.param
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def test_an_extractive_question_is_not_queued_behind_slow_llm_answers(dripping_app):
    from gradio_client import Client

    url, llm, slots = dripping_app
    client = Client(url, verbose=False)
    jobs = [client.submit(QUESTION, [], [], [], [], "llm", 5, api_name="/ask") for _ in range(LLM_USERS)]
    end = time.monotonic() + 30
    while llm.active < slots and time.monotonic() < end:  # the model calls have started
        time.sleep(0.1)
    assert llm.active == slots
    started = time.monotonic()
    extractive = Client(url, verbose=False).submit(QUESTION, [], [], [], [], "extractive", 5, api_name="/ask")
    try:
        out = extractive.result(timeout=20)
    except TimeoutError:
        pytest.fail("the extractive question was still queued behind LLM answers after 20 s")
    waited = time.monotonic() - started
    assert out[2].startswith("Answered with"), out[2]
    assert waited < 10, f"the extractive question waited {waited:.1f} s behind LLM answers"
    assert llm.active <= slots  # never more model calls at once than allowed
    for job in jobs:
        job.cancel()
