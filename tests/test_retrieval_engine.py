"""Retrieval through the engine with the real embedder, input validation and query cues."""

from __future__ import annotations

import pytest
from conftest import CORPUS_DIR
from langchain_core.documents import Document

from rag.corpus import load_corpus
from rag.instruments import Catalogue, PartRef, part_refs
from rag.validation import InvalidQuestion

pytestmark = pytest.mark.slow

NUCLEAR = "What does the Outer Space Treaty say about nuclear weapons in orbit?"
METADATA = ("chunk_id", "doc_id", "title", "short_title", "year", "kind", "section", "section_title",
            "start", "end", "score")


def test_nuclear_weapons_question_finds_ost_article_iv(real_engine):
    docs = real_engine.retrieve(NUCLEAR)
    first = docs[0].metadata
    assert (first["doc_id"], first["section"]) == ("outer-space-treaty-1967", "Article IV")
    assert first["chunk_id"].startswith("outer-space-treaty-1967/article-iv/")
    assert "nuclear weapons" in docs[0].page_content


@pytest.mark.parametrize("question, doc_id, section", [
    ("What does Article IX of the Outer Space Treaty require before harmful interference?",
     "outer-space-treaty-1967", "Article IX"),
    ("What does LTS guideline B.6 ask about space weather?",
     "copuos-long-term-sustainability-guidelines-2019", "Guideline B.6"),
    ("Which State is liable for damage caused on the surface of the Earth under the Liability Convention?",
     "liability-convention-1972", None),
    ("Who must be notified about the re-entry of a space object with a nuclear power source?",
     "unga-nuclear-power-sources-principles-1992", None),
])
def test_named_parts_and_topics_rank_first(real_engine, question, doc_id, section):
    first = real_engine.retrieve(question, k=3)[0].metadata
    assert first["doc_id"] == doc_id
    if section:
        assert first["section"] == section


@pytest.mark.parametrize(("question", "doc_id"), [
    ("Which countries signed the Florence joint statement?", "cspo-2024-florence-joint-statement"),
    ("which states are in the CSpO", "cspo-2024-florence-joint-statement"),
    # Without the name, "apply to" fits only other treaties' articles: none of the guidelines'
    # passages was a candidate for the name's boost to lift.
    ("Do the debris guidelines apply to private companies?", "copuos-space-debris-mitigation-guidelines-2007"),
])
def test_named_document_leads_when_the_rest_of_the_question_is_generic(real_engine, question, doc_id):
    # Without the name, "which countries signed" matches every treaty's signature clauses.
    assert real_engine.retrieve(question, k=3)[0].metadata["doc_id"] == doc_id


@pytest.mark.parametrize("question", [
    NUCLEAR,
    "liability for damage caused by space objects",
    "registration of objects launched into outer space",
    "What does the Rescue Agreement say about returning astronauts?",
])
def test_documents_carry_metadata_and_come_best_first(real_engine, question):
    docs = real_engine.retrieve(question, k=8)
    assert len(docs) == 8
    assert all(isinstance(d, Document) for d in docs)
    for doc in docs:
        meta = doc.metadata
        assert set(METADATA) <= set(meta)
        assert doc.id == meta["chunk_id"]
        info = real_engine.corpus.get(meta["doc_id"])
        assert (meta["title"], meta["year"], meta["kind"]) == (info.title, info.year, info.kind)
        source = real_engine.corpus.text(info)
        assert doc.page_content == source[meta["start"]:meta["end"]]  # verbatim
    ids = [d.metadata["chunk_id"] for d in docs]
    assert len(ids) == len(set(ids))
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True), scores


def test_scores_non_increasing_when_question_names_two_documents(real_engine):
    question = "Compare the Rescue Agreement and the Liability Convention on the return of space objects"
    scores = [d.metadata["score"] for d in real_engine.retrieve(question, k=8)]
    assert scores == sorted(scores, reverse=True), scores


def test_two_named_documents_both_lead(real_engine):
    question = "Compare the Rescue Agreement and the Liability Convention on the return of space objects"
    leading = {d.metadata["doc_id"] for d in real_engine.retrieve(question, k=8)[:2]}
    assert leading == {"rescue-agreement-1968", "liability-convention-1972"}


@pytest.mark.parametrize("k", [1, 3, 7, 20])
def test_k_is_respected(real_engine, k):
    assert len(real_engine.retrieve(NUCLEAR, k=k)) == k


def test_default_k_is_settings_top_k(real_engine):
    assert len(real_engine.retrieve(NUCLEAR)) == real_engine.settings.top_k


@pytest.mark.parametrize("bad_k", [0, -1, 101, 2.5, "3", True])
def test_bad_k_raises_value_error(real_engine, bad_k):
    with pytest.raises(ValueError, match="k must be"):
        real_engine.retrieve(NUCLEAR, k=bad_k)
    with pytest.raises(ValueError, match="k must be"):
        real_engine.as_retriever(k=bad_k)


def test_filter_by_doc_ids(real_engine):
    wanted = {"rescue-agreement-1968", "moon-agreement-1979"}
    docs = real_engine.retrieve(NUCLEAR, k=10, doc_ids=sorted(wanted))
    assert len(docs) == 10
    assert {d.metadata["doc_id"] for d in docs} <= wanted


def test_filter_by_kind(real_engine):
    docs = real_engine.retrieve(NUCLEAR, k=10, kinds=["resolution"])
    assert len(docs) == 10
    assert {d.metadata["kind"] for d in docs} == {"resolution"}


def test_filter_by_year(real_engine):
    docs = real_engine.retrieve("liability for damage", k=6, years=[1972, 1975])
    assert len(docs) == 6
    assert {d.metadata["year"] for d in docs} <= {1972, 1975}


def test_filters_combine(real_engine):
    docs = real_engine.retrieve("space debris", k=5, kinds=["guidelines"], years=[2007])
    assert docs and {d.metadata["doc_id"] for d in docs} == {"copuos-space-debris-mitigation-guidelines-2007"}


def test_filter_smaller_than_k_returns_all_it_allows(real_engine):
    doc_id = "cspo-2024-florence-joint-statement"
    available = sum(c.doc_id == doc_id for c in real_engine.index.chunks)
    docs = real_engine.retrieve("space security cooperation", k=available + 5, doc_ids=[doc_id])
    assert len(docs) == available
    assert len({d.metadata["chunk_id"] for d in docs}) == available


def test_filters_matching_nothing_together_return_empty(real_engine):
    assert real_engine.retrieve(NUCLEAR, doc_ids=["outer-space-treaty-1967"], years=[2024]) == []


@pytest.mark.parametrize("filters, value", [({"years": [1800]}, "1800"), ({"doc_ids": ["no-such-doc"]}, "no-such-doc"),
                                            ({"kinds": ["novel"]}, "novel")])
def test_unknown_filter_values_are_refused_by_name(real_engine, filters, value):
    with pytest.raises(ValueError, match=value):
        real_engine.retrieve(NUCLEAR, **filters)


@pytest.mark.parametrize("question, words", [
    ("", "empty"),
    ("   \n\t  ", "empty"),
    ("x" * 2001, "2,000"),
    ("What about\x00 nuclear weapons?", "control characters"),
    ("Liability \x1b[31mred\x1b[0m", "control characters"),
    ("broken \ud800 surrogate", "Unicode"),
    (None, "text"),
    (42, "text"),
])
def test_invalid_questions_raise_helpful_value_errors(real_engine, question, words):
    with pytest.raises(ValueError) as info:
        real_engine.retrieve(question)
    assert isinstance(info.value, InvalidQuestion)
    assert words in str(info.value)
    assert str(info.value).endswith(".")  # a full sentence saying what to do


def test_question_length_limit_is_inclusive(real_engine):
    assert real_engine.retrieve("w" * real_engine.settings.max_question_chars, k=1)
    # Surrounding whitespace does not count.
    assert real_engine.retrieve("  " + "w" * real_engine.settings.max_question_chars + "\n", k=1)


def test_tabs_and_newlines_are_allowed(real_engine):
    assert real_engine.retrieve("nuclear weapons\n\tin orbit", k=1)


def test_follow_up_uses_the_conversation(real_engine):
    history = [
        {"role": "user", "content": "What does the Rescue Agreement say about a space object that lands "
                                    "in another State?"},
        {"role": "assistant", "content": "It must be recovered and returned on request."},
    ]
    docs = real_engine.retrieve("Who bears the expenses of recovering it?", k=3, history=history)
    assert "rescue-agreement-1968" in [d.metadata["doc_id"] for d in docs]


def test_history_in_gradio_parts_format_is_accepted(real_engine):
    history = [{"role": "user", "content": [{"type": "text", "text": "Tell me about the Rescue Agreement."}]}]
    docs = real_engine.retrieve("Who bears the expenses of recovering it?", k=3, history=history)
    assert "rescue-agreement-1968" in [d.metadata["doc_id"] for d in docs]


def test_bad_history_is_rejected(real_engine):
    with pytest.raises(ValueError, match="History"):
        real_engine.retrieve(NUCLEAR, history="not a list")


def test_single_doc_id_string_is_not_silently_ignored(real_engine):
    try:
        docs = real_engine.retrieve(NUCLEAR, k=3, doc_ids="outer-space-treaty-1967")
    except ValueError:
        return  # refusing a bare string is fine too
    assert docs and {d.metadata["doc_id"] for d in docs} == {"outer-space-treaty-1967"}


# -- query cues ---------------------------------------------------------------------------------
CATALOGUE = Catalogue(load_corpus(CORPUS_DIR))


@pytest.mark.parametrize("text, doc_id", [
    ("Does the OST ban weapons of mass destruction?", "outer-space-treaty-1967"),
    ("What does the Outer Space Treaty say?", "outer-space-treaty-1967"),
    ("Under the Liability Convention, who pays?", "liability-convention-1972"),
    ("What do the LTS guidelines recommend?", "copuos-long-term-sustainability-guidelines-2019"),
    ("In the Florence statement, what did the CSpO agree?", "cspo-2024-florence-joint-statement"),
    ("the Moon Treaty and natural resources", "moon-agreement-1979"),
    ("the NPS principles on re-entry", "unga-nuclear-power-sources-principles-1992"),
    ("Registration Convention", "registration-convention-1975"),
])
def test_catalogue_detects_documents(text, doc_id):
    assert CATALOGUE.documents_named(text) == [doc_id]


def test_catalogue_orders_by_mention_and_ignores_lookalikes():
    text = "Compare the Liability Convention with the Rescue Agreement."
    assert CATALOGUE.documents_named(text) == ["liability-convention-1972", "rescue-agreement-1968"]
    # "ost" inside other words, or lower-case, is not the treaty's acronym.
    assert CATALOGUE.documents_named("What is the cost of a lost satellite?") == []


@pytest.mark.parametrize("text, ref", [
    ("What does Article IX say?", PartRef("article", "9")),
    ("see art. 4 of the Moon Agreement", PartRef("article", "4")),
    ("LTS guideline B.6 on space weather", PartRef("guideline", "b.6")),
    ("under principle 3 of the NPS principles", PartRef("principle", "3")),
    ("Article XVII", PartRef("article", "17")),
    ("para. 12 of the context", PartRef("paragraph", "12")),
])
def test_part_references_are_parsed(text, ref):
    assert part_refs(text) == [ref]
    assert CATALOGUE.cues(text).parts == (ref,)


def test_part_references_keep_order_without_repeats():
    assert part_refs("Article IV, then art. 4 again, then Guideline A.1") == [
        PartRef("article", "4"), PartRef("guideline", "a.1")]


def test_no_part_reference_in_plain_text():
    assert part_refs("States shall avoid harmful contamination of the moon.") == []
