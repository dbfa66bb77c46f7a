"""One retrieval interface, two implementations: the same retrieval checks on the embedded
FAISS index and on Milvus (Milvus Lite in a temporary folder)."""

from __future__ import annotations

import dataclasses

import pytest

pytestmark = pytest.mark.slow

NUCLEAR = "What does the Outer Space Treaty say about nuclear weapons in orbit?"


@pytest.fixture(scope="module", params=["faiss", "milvus"])
def engine(request, real_engine, tmp_path_factory):
    if request.param == "faiss":
        yield real_engine
        return
    pytest.importorskip("pymilvus")
    from rag.milvus_store import MilvusRetriever, MilvusStore

    index = real_engine.index
    settings = real_engine.settings.model_copy(update={
        "search_backend": "milvus", "milvus_uri": str(tmp_path_factory.mktemp("milvus") / "milvus.db")})
    store = MilvusStore(settings.milvus_uri, settings.milvus_collection, index.vectors.shape[1])
    store.sync(index.chunks, index.vectors)
    local = real_engine.retriever  # the same question encoder and lexical index as the FAISS path
    retriever = MilvusRetriever(store, index.chunks, index.vectors, index.faiss_index, local.embedder, settings,
                                index.sentences, index.sentence_vectors, local.query_embedder, lexical=index.lexical)
    yield dataclasses.replace(real_engine, settings=settings, retriever=retriever)
    store.close()


def test_named_article_comes_first(engine):
    top = engine.retrieve(NUCLEAR, k=3)[0].metadata
    assert (top["doc_id"], top["section"]) == ("outer-space-treaty-1967", "Article IV")


@pytest.mark.parametrize("question, doc_id", [
    ("Can a country claim the Moon as its own territory?", None),
    ("Who is liable for damage caused by a space object on the surface of the Earth?", "liability-convention-1972"),
    ("What do the LTS guidelines say about sharing space weather data?", "copuos-long-term-sustainability-guidelines-2019"),
    ("Which countries met in Florence in 2024?", "cspo-2024-florence-joint-statement"),
])
def test_plain_questions_land_on_the_right_instrument(engine, question, doc_id):
    docs = engine.retrieve(question, k=5)
    assert len(docs) == 5
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    if doc_id:
        assert docs[0].metadata["doc_id"] == doc_id


@pytest.mark.parametrize("filters, field, allowed", [
    ({"doc_ids": ["liability-convention-1972"]}, "doc_id", {"liability-convention-1972"}),
    ({"kinds": ["guidelines"]}, "kind", {"guidelines"}),
    ({"years": [1967, 1968]}, "year", {1967, 1968}),
])
def test_filters_restrict_results(engine, filters, field, allowed):
    docs = engine.retrieve("liability for damage and the return of objects", k=5, **filters)
    assert docs and {d.metadata[field] for d in docs} <= allowed


def test_follow_up_uses_history(engine):
    history = [{"role": "user", "content": "What does the Rescue Agreement say about space objects that land abroad?"}]
    docs = engine.retrieve("Who bears the expenses of recovering and returning it?", k=3, history=history)
    assert docs[0].metadata["doc_id"] == "rescue-agreement-1968"


def test_answers_are_the_same_on_both_backends(engine, real_engine):
    assert engine.ask(NUCLEAR).text == real_engine.ask(NUCLEAR).text


def test_backends_rank_the_dev_questions_alike(engine, real_engine):
    questions = [NUCLEAR, "Article IX consultations", "Can a country claim the Moon?",
                 "What is registered with the UN Secretary-General?", "Are the debris guidelines binding?"]
    for question in questions:
        ours = [d.metadata["chunk_id"] for d in engine.retrieve(question, k=5)]
        reference = [d.metadata["chunk_id"] for d in real_engine.retrieve(question, k=5)]
        # Candidate pools differ slightly (Milvus's HNSW and BM25 top lists), and min-max fusion
        # over a different pool can reorder near ties ("Are the debris guidelines binding?":
        # three passages within 0.003 on the FAISS path): the lead is one of the other's five.
        assert ours[0] in reference and len(set(ours) & set(reference)) >= 3, question
