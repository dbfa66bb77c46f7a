"""States' names in questions: read without them by the question model, so that which state a
question names never decides whether it is answered."""

from __future__ import annotations

import numpy as np
import pytest

from rag.asked import asked_for, evidence
from rag.states import states_named, without_state_names


@pytest.mark.parametrize(("question", "expected"), [
    ("Can China build a military base on the Moon?", "Can a State build a military base on the Moon?"),
    ("If a Russian satellite breaks apart and damages a Japanese satellite, who has to pay?",
     "If a foreign satellite breaks apart and damages a foreign satellite, who has to pay?"),
    ("What did the United States of America commit to?", "What did a State commit to?"),
    ("What did the US and the UK agree in Florence?", "What did a State and a State agree in Florence?"),
    ("russia moon base treaty", "a State moon base treaty"),
    ("Was the Soviet Union bound by the treaty?", "Was a State bound by the treaty?"),
    ("Are China's satellites registered?", "Are a State's satellites registered?"),
    ("Could North Korea or a South Korean firm launch one?", "Could a State or a foreign firm launch one?"),
])
def test_states_names_and_adjectives_are_replaced(question, expected):
    assert without_state_names(question) == expected


@pytest.mark.parametrize("question", [
    "Who has to tell us when a satellite falls?",  # "us", the pronoun, is not the US
    "What does the Outer Space Treaty say about nuclear weapons in orbit?",
    "Which states met in Florence in 2024?",
    "Must a launching State register the object with the United Nations?",
])
def test_questions_naming_no_state_are_unchanged(question):
    assert without_state_names(question) == question


def test_a_quote_listing_states_by_name_or_adjective_counts_as_naming_states():
    asked = asked_for("Which countries signed the joint statement?")
    assert asked.states
    assert evidence(asked, "the Governments of Australia, Canada, France, Germany, Italy and Japan")["has_states"] == 1.0
    assert evidence(asked, "a Norwegian delegation took part")["has_states"] == 1.0
    assert evidence(asked, "Each party shall take appropriate measures.")["has_states"] == 0.0


@pytest.mark.parametrize(("text", "count"), [
    (("Senior representatives from Australia, Canada, France, Germany, Italy, Japan, New Zealand, Norway, "
      "the United Kingdom, and the United States gathered for the annual meeting."), 10),
    ("The Board met from December 3-5, 2024 in Florence, Italy.", 1),
    ("States Parties shall regard astronauts as envoys of mankind.", 0),
])
def test_states_named_counts_names_of_states(text, count):
    assert states_named(text) == count


@pytest.mark.slow
def test_which_countries_is_answered_with_the_sentence_that_lists_them(real_engine):
    answer = real_engine.ask("Which countries are part of the Combined Space Operations initiative?")
    assert not answer.abstained
    assert any(states_named(c.quote) >= 10 for c in answer.citations)
    # Answered or partial, it never says the corpus lacks the list it quotes.
    assert "does not state the list of states" not in answer.text


@pytest.mark.slow
def test_a_partial_answer_names_as_missing_only_what_no_quote_holds(real_engine):
    question = "Which countries took part in the Florence meeting?"
    candidates = real_engine.draft(question, real_engine.search(question)).candidates
    listing = [p for p in candidates if states_named(p.hit.chunk.text[p.start:p.end]) >= 10][:1]
    others = [p for p in candidates if states_named(p.hit.chunk.text[p.start:p.end]) == 0][:2]
    asked = asked_for(question)
    missing = asked.unstated([p.hit.chunk.text[p.start:p.end] for p in others])
    assert missing == "the list of states asked for"
    without = real_engine.composer.write(question, others, 0.5, missing)
    assert without.partial and without.text.startswith(f"The corpus does not state {missing}; ")
    given = asked.unstated([p.hit.chunk.text[p.start:p.end] for p in listing + others])
    with_list = real_engine.composer.write(question, listing + others, 0.5, given)
    assert with_list.partial and with_list.text.startswith("These provisions may not answer exactly what was asked")


@pytest.mark.slow
def test_the_question_model_reads_a_question_the_same_whichever_state_it_names(real_engine):
    model = real_engine.answerability
    template = "If a {} satellite breaks apart and damages a {} satellite, who has to pay?"
    drafts = [real_engine.draft(template.format(a, b), []) for a, b in
              [("Russian", "Japanese"), ("French", "German"), ("Chinese", "American")]]
    logits = [float(model.question.logit(d.unnamed_vector[None, :].astype(np.float64))[0]) for d in drafts]
    assert logits == pytest.approx([logits[0]] * 3, abs=1e-6)
    assert not np.allclose(drafts[0].vector, drafts[1].vector)  # retrieval still reads the names


@pytest.mark.slow
def test_a_question_naming_no_state_is_embedded_once(real_engine, monkeypatch):
    calls = []
    embed = real_engine.retriever.embed_query
    monkeypatch.setattr(real_engine.retriever, "embed_query", lambda text: calls.append(text) or embed(text))
    draft = real_engine.draft("Who pays when a satellite falls on a house?", [])
    assert calls == ["Who pays when a satellite falls on a house?"]
    assert draft.unnamed_vector is draft.vector
