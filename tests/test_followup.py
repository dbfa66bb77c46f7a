"""Follow-up questions use the conversation; questions that stand alone never do."""

from __future__ import annotations

import pytest

from rag.followup import is_follow_up

LIABILITY_TALK = [
    {"role": "user", "content": "Who is liable under the Liability Convention for damage caused by a "
                                "space object on the surface of the Earth?"},
    {"role": "assistant", "content": "A launching State shall be absolutely liable [1]."},
]


@pytest.mark.parametrize("question", [
    "Who bears the expenses of recovering and returning it?",
    "What would be the main purposes of that regime?",
    "How often does that information have to be updated?",
    "And the Moon Agreement?",
    "What about registration?",
    "Who pays for that?",
    "Does the Outer Space Treaty ban it?",  # the treaty is named, but "it" is the earlier subject
])
def test_questions_that_point_back_are_follow_ups(question):
    assert is_follow_up(question)


@pytest.mark.parametrize("question", [
    "Can a country claim the Moon?",
    "What does the Outer Space Treaty say about nuclear weapons in orbit?",
    "Who pays for damage caused by a falling satellite?",
    "Is it legal to test anti-satellite missiles?",
    # A demonstrative of time points at the calendar.
    "Which countries have ratified the Outer Space Treaty as of this year?",
    # The final pronoun stands for something the question names before a later clause.
    "Can a country mine helium-3 on the Moon and keep it?",
    "Which countries signed the Outer Space Treaty but never ratified it?",
    "If two countries launch a satellite together, which one registers it?",
    # Long scenarios carry their own antecedents.
    ("A company launches a satellite from its home country and the satellite later breaks up. "
     "Who has to answer for that?"),
])
def test_questions_that_stand_alone_are_not_follow_ups(question):
    assert not is_follow_up(question)


def test_few_self_contained_training_questions_read_as_follow_ups():
    from conftest import ROOT

    from rag.learn.questions import load_questions

    questions = load_questions(ROOT / "training" / "questions.jsonl")
    flagged = [q.question for q in questions if is_follow_up(q.question)]
    assert len(flagged) <= 0.005 * len(questions), flagged[:10]


@pytest.mark.parametrize("question", [
    "Can a country claim the Moon?",
    "What does the Registration Convention require a launching State to record?",
])
def test_a_new_question_is_not_steered_by_the_previous_one(real_engine, question):
    alone = [d.metadata["chunk_id"] for d in real_engine.retrieve(question, k=5)]
    after = [d.metadata["chunk_id"] for d in real_engine.retrieve(question, k=5, history=LIABILITY_TALK)]
    assert after == alone
    assert real_engine.ask(question, history=LIABILITY_TALK).text == real_engine.ask(question).text


def test_off_topic_abstention_does_not_depend_on_the_conversation(real_engine):
    question = "What is a good recipe for banana bread?"
    assert real_engine.ask(question).abstained
    assert real_engine.ask(question, history=LIABILITY_TALK).abstained


def test_a_follow_up_naming_a_document_retrieves_from_it(real_engine):
    history = [{"role": "user", "content": "What does the Outer Space Treaty say about liability for damage?"}]
    docs = real_engine.retrieve("And what does the Moon Agreement say about it?", k=3, history=history)
    assert docs[0].metadata["doc_id"] == "moon-agreement-1979"
