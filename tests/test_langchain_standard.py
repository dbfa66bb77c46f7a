"""LangChain's standard retriever tests against ``engine.as_retriever()`` (fake embedder: fast)."""

from __future__ import annotations

import pytest
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_tests.integration_tests import RetrieversIntegrationTests

from rag.langchain_retriever import CorpusRetriever

_ENGINE = {}


@pytest.fixture(autouse=True)
def _bind_engine(fake_engine):
    _ENGINE["engine"] = fake_engine
    yield


def make_retriever(k: int | None = None, **filters) -> BaseRetriever:
    return _ENGINE["engine"].as_retriever(k=k, **filters)


class TestCorpusRetrieverStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return make_retriever

    @property
    def retriever_constructor_params(self) -> dict:
        return {"k": 2}

    @property
    def retriever_query_example(self) -> str:
        return "nuclear weapons in orbit"


# -- beyond the standard suite --------------------------------------------------------------
def test_as_retriever_is_a_corpus_retriever(fake_engine):
    retriever = fake_engine.as_retriever()
    assert isinstance(retriever, CorpusRetriever)
    assert retriever.k == fake_engine.settings.top_k


async def test_ainvoke_respects_k(fake_engine):
    docs = await fake_engine.as_retriever(k=4).ainvoke("registration of space objects", k=2)
    assert len(docs) == 2 and all(isinstance(d, Document) for d in docs)


def test_batch(fake_engine):
    results = fake_engine.as_retriever(k=2).batch(["liability for damage", "rescue of astronauts"])
    assert [len(r) for r in results] == [2, 2]


def test_retriever_matches_engine(fake_engine):
    query = "return of space objects to the launching authority"
    via_retriever = [d.metadata["chunk_id"] for d in fake_engine.as_retriever(k=4).invoke(query)]
    via_engine = [d.metadata["chunk_id"] for d in fake_engine.retrieve(query, k=4)]
    assert via_retriever == via_engine


def test_retriever_filters(fake_engine):
    retriever = fake_engine.as_retriever(k=5, doc_ids=["moon-agreement-1979"], years=[1979])
    docs = retriever.invoke("nuclear weapons in orbit")
    assert len(docs) == 5 and {d.metadata["doc_id"] for d in docs} == {"moon-agreement-1979"}
    docs = fake_engine.as_retriever(k=5, kinds=["statement"]).invoke("space security")
    assert docs and {d.metadata["kind"] for d in docs} == {"statement"}


def test_retriever_rejects_invalid_question(fake_engine):
    with pytest.raises(ValueError, match="empty"):
        fake_engine.as_retriever().invoke("   ")


@pytest.mark.parametrize("k", [0, -1, 101])
def test_invalid_constructor_k_rejected(fake_engine, k):
    with pytest.raises(ValueError):
        fake_engine.as_retriever(k=k)


def test_invoke_with_k_zero_is_rejected(fake_engine):
    retriever = fake_engine.as_retriever(k=3)
    try:
        docs = retriever.invoke("nuclear weapons in orbit", k=0)
    except ValueError:
        return
    raise AssertionError(f"k=0 returned {len(docs)} documents instead of raising")
