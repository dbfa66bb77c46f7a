"""The LLM mode keeps one wall-clock deadline per question, across the follow-up rewrite and
the answer, however slowly the server drips its reply; a call cut at the deadline does not
linger; the extractive path never waits for a model; and when every model slot is taken a
question is answered extractively at once instead of queueing."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from fake_openai_server import Drip, FakeOpenAIServer, Reply

from rag.llm import make_chat_model
from rag.llm_budget import ModelSlots

QUESTION = "What does the Outer Space Treaty say about nuclear weapons in orbit?"
HISTORY = [{"role": "user", "content": "What does the Outer Space Treaty say about weapons?"},
           {"role": "assistant", "content": "States Parties undertake not to place nuclear weapons in orbit."}]
DEADLINE_S = 2.0
#: What a deadline may overrun by on a busy machine (the drips below take minutes).
SLACK_S = 1.5
SLOW = Drip("States Parties undertake not to place nuclear weapons in orbit [1]. " * 3, interval=0.2)


@pytest.fixture
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def llm_engine(engine, server, slots: int = 2):
    settings = engine.settings.model_copy(update={
        "llm_provider": "openai", "llm_base_url": server.base_url, "llm_model": "fake",
        "llm_timeout_s": DEADLINE_S, "llm_max_concurrent": slots})
    return dataclasses.replace(engine, settings=settings, chat_model=make_chat_model(settings),
                               model_slots=ModelSlots(slots))


def _timed(call):
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def _wait_until(condition, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_an_answer_meets_its_deadline_however_the_server_drips(fake_engine, server, stream):
    engine = llm_engine(fake_engine, server)
    server.script(SLOW)
    tokens: list[str] = []
    answer, elapsed = _timed(lambda: engine.ask(QUESTION, mode="llm", stream=tokens.append if stream else None))
    assert answer.mode == "extractive" and "timed out after 2 s" in answer.notice, answer.notice
    assert elapsed < DEADLINE_S + SLACK_S, elapsed
    # the call cut at the deadline stops reading: the server sees the connection go
    assert _wait_until(lambda: server.active == 0, 3.0), "the model call kept reading after its deadline"


def test_a_follow_up_spends_one_deadline_for_rewrite_and_answer(fake_engine, server):
    engine = llm_engine(fake_engine, server)
    server.script(SLOW, SLOW)
    answer, elapsed = _timed(lambda: engine.ask("And on the Moon?", history=HISTORY, mode="llm"))
    assert answer.mode == "extractive" and "timed out" in answer.notice
    assert elapsed < DEADLINE_S + SLACK_S, elapsed
    assert len(server.requests) <= 2


def test_a_fast_follow_up_still_uses_the_model_for_both_calls(fake_engine, server):
    engine = llm_engine(fake_engine, server)
    server.script(Reply("What does the Outer Space Treaty say about nuclear weapons on the Moon?"),
                  Reply("States Parties undertake not to place in orbit any objects carrying nuclear weapons [1]."))
    answer = engine.ask("And on the Moon?", history=HISTORY, mode="llm")
    assert len(server.requests) == 2 and answer.mode == "llm", answer.notice


def test_the_extractive_path_never_calls_the_model(fake_engine, server):
    engine = llm_engine(fake_engine, server)
    server.script(SLOW, SLOW)
    answer, elapsed = _timed(lambda: engine.ask("And on the Moon?", history=HISTORY, mode="extractive"))
    assert answer.mode == "extractive" and "language model" not in answer.notice
    assert server.requests == []
    assert elapsed < SLACK_S


def test_when_every_model_slot_is_taken_a_question_is_answered_extractively_at_once(fake_engine, server):
    engine = llm_engine(fake_engine, server, slots=1)
    server.script(SLOW)
    holder = threading.Thread(target=lambda: engine.ask(QUESTION, mode="llm"))
    holder.start()
    try:
        assert _wait_until(lambda: server.active == 1, 5.0)
        busy, elapsed = _timed(lambda: engine.ask(QUESTION, mode="llm"))
        assert busy.mode == "extractive" and "busy" in busy.notice, busy.notice
        assert elapsed < SLACK_S and len(server.requests) == 1
        extractive, elapsed = _timed(lambda: engine.ask(QUESTION, mode="extractive"))
        assert extractive.citations and elapsed < SLACK_S
    finally:
        holder.join(timeout=DEADLINE_S + 5)
    assert _wait_until(lambda: server.active == 0, 3.0)
    server.script(Reply("States Parties undertake not to place in orbit any objects carrying nuclear weapons [1]."))
    assert engine.ask(QUESTION, mode="llm").mode == "llm"  # the slot was given back
