"""Engine.ask in LLM mode, end to end: real retrieval and verification, a scripted
OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import re

import pytest
from fake_openai_server import FakeOpenAIServer, Reply, Status

from rag.settings import Settings

pytestmark = pytest.mark.slow

QUESTION = "What does the Outer Space Treaty say about nuclear weapons in orbit?"


@pytest.fixture
def llm_engine(real_engine):
    from rag.llm import make_chat_model

    with FakeOpenAIServer() as server:
        settings = real_engine.settings.model_copy(update={
            "llm_provider": "openai", "llm_base_url": server.base_url, "llm_model": "fake", "llm_timeout_s": 5})
        engine = dataclasses.replace(real_engine, settings=settings, chat_model=make_chat_model(settings))
        yield engine, server


def _assert_invariants(answer) -> None:
    numbers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert numbers == {c.n for c in answer.citations}
    assert all(c.quote in c.text for c in answer.citations)


def test_llm_answer_cites_retrieved_passages(llm_engine):
    engine, server = llm_engine
    server.script(Reply("States Parties undertake not to place nuclear weapons in orbit around the Earth [1]."))
    answer = engine.ask(QUESTION, mode="llm")
    assert answer.mode == "llm" and not answer.abstained
    _assert_invariants(answer)
    assert answer.citations[0].doc_id == "outer-space-treaty-1967"
    sent = str(server.requests[-1])
    assert "Article IV" in sent  # the numbered passages went to the model


def test_llm_failure_falls_back_to_extractive_with_notice(llm_engine):
    engine, server = llm_engine
    server.script(Status(500))
    answer = engine.ask(QUESTION, mode="llm")
    assert answer.mode == "extractive"
    assert "language model failed" in answer.notice
    assert answer.citations and answer.citations[0].doc_id == "outer-space-treaty-1967"
    _assert_invariants(answer)


def test_unanswerable_questions_abstain_without_calling_the_model(llm_engine):
    engine, server = llm_engine
    answer = engine.ask("What is the capital of France?", mode="llm")
    assert answer.abstained and not server.requests


def test_llm_mode_requires_configuration(real_engine):
    assert not real_engine.llm_available
    with pytest.raises(ValueError, match="not configured"):
        real_engine.ask(QUESTION, mode="llm")
    assert Settings().llm_provider == "none"


def test_follow_ups_are_condensed_by_the_model(llm_engine):
    engine, server = llm_engine
    server.script(Reply("Who bears the expenses of recovering a space object under the Rescue Agreement?"))
    history = [{"role": "user", "content": "What does the Rescue Agreement say about space objects landing abroad?"},
               {"role": "assistant", "content": "The State must notify the launching authority."}]
    docs = engine.retrieve("Who pays for that?", k=3, history=history)
    assert "Rescue" in str(server.requests[-1]) and "Who pays for that?" in str(server.requests[-1])
    assert docs[0].metadata["doc_id"] == "rescue-agreement-1968"


def test_condensing_failure_falls_back_to_the_rule_based_rewrite(llm_engine):
    engine, server = llm_engine
    server.script(Status(500))
    history = [{"role": "user", "content": "What does the Rescue Agreement say about space objects landing abroad?"}]
    docs = engine.retrieve("Who bears the expenses of recovering and returning it?", k=3, history=history)
    assert any(d.metadata["doc_id"] == "rescue-agreement-1968" for d in docs)


def test_the_answerability_check_gates_the_models_answer(llm_engine):
    engine, server = llm_engine
    question = "Who enforces the duty to register space objects?"
    extractive = engine.ask(question, mode="extractive")
    assert extractive.partial
    server.script(Reply("The launching State shall register the space object in an appropriate registry "
                        "which it shall maintain [2]."))
    answer = engine.ask(question, mode="llm")
    assert answer.mode == "llm" and answer.partial and not answer.abstained
    assert answer.confidence == extractive.confidence
    assert answer.text.startswith("The corpus does not state a penalty, sanction or means of enforcement; "
                                  "the closest provisions say:\n\n")
    _assert_invariants(answer)
    server.requests.clear()
    refused = engine.ask("What penalty applies to a State that fails to register a space object?", mode="llm")
    assert refused.abstained and not server.requests  # not found: the model is not asked
