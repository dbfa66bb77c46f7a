"""Questions about an instrument as a whole are answered from what says what it is and is for."""

from __future__ import annotations

import pytest
from conftest import CORPUS_DIR

from rag.corpus import load_corpus
from rag.instruments import Catalogue


@pytest.fixture(scope="module")
def catalogue():
    return Catalogue(load_corpus(CORPUS_DIR))


@pytest.mark.parametrize("question, doc_id", [
    ("What is the Outer Space Treaty?", "outer-space-treaty-1967"),
    ("What is the Moon Agreement for?", "moon-agreement-1979"),
    ("Tell me about the CSpO statement", "cspo-2024-florence-joint-statement"),
    ("What is the purpose of the Liability Convention?", "liability-convention-1972"),
    ("Summarize the fact sheet", "us-da-asat-test-commitment-fact-sheet-2022"),
    # Loose and polite ways of asking the same.
    ("What's the Outer Space Treaty about?", "outer-space-treaty-1967"),
    ("What is the Outer Space Treaty really about?", "outer-space-treaty-1967"),
    ("Can you summarise the Moon Agreement?", "moon-agreement-1979"),
    ("Could you give me an overview of the LTS guidelines?", "copuos-long-term-sustainability-guidelines-2019"),
    ("What does the Rescue Agreement cover exactly?", "rescue-agreement-1968"),
    ("What's in the Florence joint statement?", "cspo-2024-florence-joint-statement"),
    ("What are the main provisions of the Liability Convention?", "liability-convention-1972"),
    ("What do the space debris mitigation guidelines say?", "copuos-space-debris-mitigation-guidelines-2007"),
    ("What does the US ASAT test commitment cover?", "us-da-asat-test-commitment-fact-sheet-2022"),
    ("What does the US commitment on ASAT tests cover exactly?", "us-da-asat-test-commitment-fact-sheet-2022"),
    ("Tell me about the US ASAT testing commitment", "us-da-asat-test-commitment-fact-sheet-2022"),
])
def test_questions_about_a_whole_instrument_are_recognised(catalogue, question, doc_id):
    assert catalogue.overview_of(question) == doc_id


@pytest.mark.parametrize("question", [
    "What does the Outer Space Treaty say about nuclear weapons?",
    "What is the Moon?",
    "How do the Outer Space Treaty and the Moon Agreement differ?",
    "What is the purpose of registration under the Registration Convention?",
    "Can the Moon Agreement be amended?",
    "Is the Moon Agreement in force?",
    "What are the provisions of the Liability Convention on claims?",
    "What does the Liability Convention say about the US?",
])
def test_questions_about_a_topic_are_not_overviews(catalogue, question):
    assert catalogue.overview_of(question) is None


@pytest.mark.parametrize("question, doc_id, first_section", [
    ("What is the Outer Space Treaty?", "outer-space-treaty-1967", "Preamble"),
    ("What is the Rescue Agreement for?", "rescue-agreement-1968", "Preamble"),
    ("What are the LTS guidelines?", "copuos-long-term-sustainability-guidelines-2019", "Paragraph 5"),
])
def test_an_overview_leads_with_the_purpose_or_the_opening(real_engine, question, doc_id, first_section):
    docs = real_engine.retrieve(question, k=3)
    assert [d.metadata["doc_id"] for d in docs] == [doc_id] * 3
    assert docs[0].metadata["section"] == first_section
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


def test_an_overview_respects_filters(real_engine):
    assert real_engine.retrieve("What is the Outer Space Treaty?", k=3, kinds=["guidelines"]) == []


@pytest.mark.parametrize("question, doc_id", [
    ("What is the Outer Space Treaty?", "outer-space-treaty-1967"),
    ("Tell me about the Registration Convention", "registration-convention-1975"),
])
def test_an_overview_answer_names_the_instrument_then_quotes_it(real_engine, question, doc_id):
    answer = real_engine.ask(question)
    doc = real_engine.corpus.get(doc_id)
    assert not answer.abstained and not answer.partial
    assert answer.text.startswith(f"{doc.short_title} ({doc.year}, {doc.kind}): \u201c{doc.title}\u201d.\n\n")
    assert answer.citations and {c.doc_id for c in answer.citations} == {doc_id}
    assert answer.confidence == 1.0


@pytest.mark.parametrize("question, opening", [
    ("What is the fact sheet?", ("Today at Vandenberg Space Force Base in California, Vice President Kamala Harris "
                                "announced that the United States commits not to conduct destructive")),
    ("What's in the Florence joint statement?", "The Combined Space Operations (CSpO) Initiative Principals' Board met"),
])
def test_an_overview_of_a_statement_leads_with_its_first_sentence_after_the_title(real_engine, question, opening):
    answer = real_engine.ask(question)
    assert answer.citations[0].quote.startswith(opening)
