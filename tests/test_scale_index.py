"""The FAISS index chosen by corpus size, and retrieval through it.

Up to ``exact_search_max_passages`` passages the index is exact (IndexFlatIP) and every score
is computed; above it the index is HNSW and candidates come from FAISS and BM25 top-k. The
threshold is set tiny here (50) so the shipped corpus (255 passages) is "large".
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from conftest import FakeEmbedder, copy_corpus, make_settings

from rag.engine import Engine
from rag.index_store import build_index, make_faiss_index, read_manifest
from rag.lexical import LexicalIndex
from rag.settings import Settings

OST = "outer-space-treaty-1967"
QUESTIONS = [  # (question, doc_id, section) that the fake embedder and BM25 find first
    ("States Parties undertake not to place in orbit around the Earth any objects carrying nuclear weapons",
     OST, "Article IV"),
    ("compensation for damage caused by its space object on the surface of the Earth",
     "liability-convention-1972", "Article II"),
    ("astronauts in distress, emergency landing, return of the personnel of a spacecraft",
     "rescue-agreement-1968", None),
    ("register of space objects launched into Earth orbit maintained by the launching State",
     "registration-convention-1975", None),
]


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    """The same corpus and fake embedder indexed below (exact) and above (HNSW) the threshold."""
    base = tmp_path_factory.mktemp("scale")
    corpus = copy_corpus(base / "corpus")
    exact = Engine.load(make_settings(corpus, base / "exact"), embedder=FakeEmbedder())
    indexed = Engine.load(make_settings(corpus, base / "hnsw", exact_search_max_passages=50),
                          embedder=FakeEmbedder())
    return exact, indexed


def test_small_corpus_keeps_the_exact_flat_index(engines, monkeypatch):
    exact, _ = engines
    assert read_manifest(exact.settings.index_dir)["faiss_index"] == "IndexFlatIP"
    assert type(exact.index.faiss_index) is faiss.IndexFlatIP
    monkeypatch.setattr(exact.retriever, "_indexed_candidates", _must_not_run)
    assert exact.retrieve(QUESTIONS[0][0], k=3)


def test_above_the_threshold_the_manifest_records_hnsw(engines):
    _, indexed = engines
    manifest = read_manifest(indexed.settings.index_dir)
    assert manifest["faiss_index"] == "IndexHNSWFlat"
    assert isinstance(indexed.index.faiss_index, faiss.IndexHNSWFlat)
    assert indexed.index.faiss_index.ntotal == manifest["chunk_count"] > 50


@pytest.mark.parametrize("question, doc_id, section", QUESTIONS)
def test_above_the_threshold_retrieval_finds_the_expected_passage(engines, monkeypatch, question, doc_id, section):
    exact, indexed = engines
    monkeypatch.setattr(indexed.retriever, "_exact_candidates", _must_not_run)
    first = indexed.retrieve(question, k=5)[0].metadata
    assert first["doc_id"] == doc_id
    if section:
        assert first["section"] == section
    assert first["chunk_id"] == exact.retrieve(question, k=5)[0].metadata["chunk_id"]


def test_above_the_threshold_results_match_the_exact_path(engines):
    exact, indexed = engines
    for question, _, _ in QUESTIONS:
        ours = [d.id for d in indexed.retrieve(question, k=5)]
        reference = [d.id for d in exact.retrieve(question, k=5)]
        assert len(set(ours) & set(reference)) >= 4, (question, ours, reference)


@pytest.mark.parametrize("doc_ids, kinds", [((OST,), None), (None, ("treaty",))])
def test_above_the_threshold_filters_hold(engines, doc_ids, kinds):
    _, indexed = engines
    docs = indexed.retrieve(QUESTIONS[0][0], k=8, doc_ids=doc_ids, kinds=kinds)
    assert len(docs) == 8
    assert all(d.metadata["doc_id"] in doc_ids for d in docs) if doc_ids else True
    assert all(d.metadata["kind"] in kinds for d in docs) if kinds else True
    assert docs[0].metadata["section"] == "Article IV"


def test_changing_the_threshold_rebuilds_the_index_without_re_embedding(tmp_path):
    corpus = copy_corpus(tmp_path / "corpus")
    build_index(make_settings(corpus, tmp_path / "index"), FakeEmbedder())
    assert read_manifest(tmp_path / "index")["faiss_index"] == "IndexFlatIP"
    embedder = FakeEmbedder()
    report = build_index(make_settings(corpus, tmp_path / "index", exact_search_max_passages=50), embedder)
    assert report.rebuilt and report.embedded == 0 and embedder.calls == []
    assert read_manifest(tmp_path / "index")["faiss_index"] == "IndexHNSWFlat"


def test_make_faiss_index_chooses_by_size():
    vectors = np.eye(4, dtype=np.float32)
    assert type(make_faiss_index(vectors)) is faiss.IndexFlatIP  # no settings: exact, as before
    assert type(make_faiss_index(vectors, Settings(exact_search_max_passages=4))) is faiss.IndexFlatIP
    hnsw = make_faiss_index(vectors, Settings(exact_search_max_passages=3, hnsw_m=8))
    assert type(hnsw) is faiss.IndexHNSWFlat and hnsw.metric_type == faiss.METRIC_INNER_PRODUCT
    assert list(hnsw.search(vectors[2:3], 1)[1][0]) == [2]


def test_lexical_top_and_scores_of_agree_with_full_scores():
    texts = ["liability for damage caused by space objects", "registration of space objects",
             "rescue of astronauts", "damage on the surface of the Earth", "the moon and other celestial bodies"]
    lexical = LexicalIndex(texts)
    query = "damage caused by space objects on Earth"
    full = lexical.scores(query)
    top = lexical.top(query, 3)
    assert list(top) == list(np.argsort(-full, kind="stable")[:3])
    assert np.allclose(lexical.scores_of(query, np.arange(len(texts))), full)
    allowed = np.array([False, True, True, True, False])
    assert set(lexical.top(query, 5, allowed)) == {1, 3}  # only allowed chunks sharing a term
    assert lexical.top("zzz unknown", 3).size == 0


def _must_not_run(*args, **kwargs):
    raise AssertionError("this candidate path must not be used for this corpus size")
