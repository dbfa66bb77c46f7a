"""How long LLM-mode questions take when the model server drips its reply (not part of the suite).

A scripted OpenAI-compatible server on 127.0.0.1 (``tests/fake_openai_server.py``) sends each
reply one byte every ``--interval`` seconds, so every read is quick and the whole reply is
not. Times, with ``SPACESEC_LLM_TIMEOUT_S`` = ``--timeout``: one LLM answer, a follow-up
(rewrite + answer), and an extractive follow-up on the same LLM-configured engine.

Usage: .venv/bin/python benchmarks/llm_deadline.py [--timeout 2] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

QUESTION = "What does the Outer Space Treaty say about nuclear weapons in orbit?"
HISTORY = [{"role": "user", "content": "What does the Outer Space Treaty say about weapons?"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--interval", type=float, default=0.05)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    from fake_openai_server import Drip, FakeOpenAIServer

    from rag.engine import Engine
    from rag.llm import make_chat_model
    from rag.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        shutil.copytree(ROOT / "corpus", corpus)
        engine = Engine.load(Settings(corpus_dir=corpus, index_dir=Path(tmp) / "index"))
        slow = Drip("States Parties undertake not to place nuclear weapons in orbit [1]. ", args.interval)
        cases = [("one LLM answer", QUESTION, [], "llm", 1),
                 ("a follow-up (rewrite + answer)", "And on the Moon?", HISTORY, "llm", 2),
                 ("an extractive follow-up", "And on the Moon?", HISTORY, "extractive", 1)]
        for name, question, history, mode, replies in cases:
            server = FakeOpenAIServer(*[slow] * replies).start()  # one per case: no drip outlives it
            try:
                settings = engine.settings.model_copy(update={
                    "llm_provider": "openai", "llm_base_url": server.base_url, "llm_model": "fake",
                    "llm_timeout_s": args.timeout})
                llm_engine = dataclasses.replace(engine, settings=settings, chat_model=make_chat_model(settings))
                started = time.monotonic()
                answer = llm_engine.ask(question, history=history, mode=mode)
                print(f"{name}: {time.monotonic() - started:.1f} s, {len(server.requests)} model call(s), "
                      f"{answer.mode} answer; {answer.notice[:70]}")
            finally:
                server.stop()


if __name__ == "__main__":
    main()
