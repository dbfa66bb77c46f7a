"""rag.milvus_store against Milvus Lite (a database file in tmp_path).

Synthetic chunks with seeded random unit vectors; no embedder. The last test syncs the
shipped index's chunks and vectors (skipped when that index is missing or stale).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from rag.chunking import Chunk
from rag.milvus_store import MilvusStore, SyncReport, content_hash, filter_expression

pytestmark = pytest.mark.slow

pytest.importorskip("pymilvus", reason="pymilvus is not installed (pip install pymilvus)")
pytest.importorskip("milvus_lite", reason="milvus-lite is not installed (pip install milvus-lite)")

DIM = 16
ROOT = Path(__file__).resolve().parent.parent
QUOTED_DOC = 'odd"doc\\id'  # a doc id holding a quote and a backslash


def _chunk(doc_id: str, n: int, kind: str, year: int, text: str) -> Chunk:
    return Chunk(chunk_id=f"{doc_id}/article-{n}/1", doc_id=doc_id, title=f"The {doc_id} text",
                 short_title=doc_id.title(), year=year, kind=kind, section=f"Article {n}",
                 section_title="Scope" if n == 1 else "", start=100 * n, end=100 * n + len(text),
                 text=text)


CHUNKS = [
    _chunk("ost", 1, "treaty", 1967, "Exploration of outer space shall be free for all states."),
    _chunk("ost", 2, "treaty", 1967, "Nuclear weapons shall not be placed in orbit around the earth."),
    _chunk("ost", 3, "treaty", 1967, "Astronauts are envoys of mankind in outer space."),
    _chunk("liability", 1, "treaty", 1972, "A launching state is liable for damage caused by its space object."),
    _chunk("liability", 2, "treaty", 1972, "Claims for compensation are presented through diplomatic channels."),
    _chunk("lts", 1, "guidelines", 2019, "States should share orbital data to avoid a xylophone collision."),
    _chunk("lts", 2, "guidelines", 2019, "Debris mitigation measures should be implemented by operators."),
    _chunk(QUOTED_DOC, 1, "statement", 2022, "A statement about destructive anti-satellite missile tests."),
]


def _vectors(n: int, seed: int = 7) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    with MilvusStore(str(tmp_path / "milvus.db"), collection="test_passages", dimension=DIM) as s:
        yield s


@pytest.fixture
def synced(store):
    vectors = _vectors(len(CHUNKS))
    store.sync(CHUNKS, vectors)
    return store, vectors


def _ids(hits) -> list[str]:
    return [chunk.chunk_id for chunk, _ in hits]


def test_sync_is_idempotent(store):
    vectors = _vectors(len(CHUNKS))
    assert store.sync(CHUNKS, vectors) == SyncReport(upserted=len(CHUNKS), deleted=0, unchanged=0)
    assert store.sync(CHUNKS, vectors) == SyncReport(upserted=0, deleted=0, unchanged=len(CHUNKS))
    assert store.count() == len(CHUNKS)


def test_changed_chunk_is_upserted_and_removed_document_deleted(synced):
    store, vectors = synced
    changed = dataclasses.replace(CHUNKS[0], text="Exploration of outer space is a zanzibar province.")
    moved = dataclasses.replace(CHUNKS[1], start=CHUNKS[1].start + 5, end=CHUNKS[1].end + 5)
    kept = [changed, moved] + [c for c in CHUNKS[2:] if c.doc_id != "liability"]
    kept_vectors = np.concatenate([vectors[:3], vectors[5:]])
    report = store.sync(kept, kept_vectors)
    assert report == SyncReport(upserted=2, deleted=2, unchanged=len(kept) - 2)
    assert store.count() == len(kept)
    assert _ids(store.lexical_search("zanzibar", 3)) == [changed.chunk_id]
    assert store.lexical_search("diplomatic compensation", 3) == []  # the deleted document
    assert store.dense_search(kept_vectors[1], 1)[0][0] == moved  # new offsets stored
    assert content_hash(changed) != content_hash(CHUNKS[0])
    assert store.sync(kept, kept_vectors).upserted == 0


def test_dense_search_returns_the_nearest_chunk(synced):
    store, vectors = synced
    for i in (0, 3, 5, 7):
        (chunk, score), *_ = store.dense_search(vectors[i], 3)
        assert chunk == CHUNKS[i]  # rebuilt field for field
        assert score == pytest.approx(1.0, abs=1e-4)
    scores = [s for _, s in store.dense_search(vectors[2], len(CHUNKS))]
    assert scores == sorted(scores, reverse=True)


def test_lexical_search_finds_a_rare_word(synced):
    store, _ = synced
    hits = store.lexical_search("xylophone", 3)
    assert _ids(hits) == [CHUNKS[5].chunk_id]
    assert hits[0][1] > 0
    # The header (short title, section) is indexed with the passage, as in rag.lexical.
    assert CHUNKS[3].chunk_id in _ids(store.lexical_search("Liability", 5))
    assert store.lexical_search("qwertyuiop", 3) == []
    assert store.lexical_search("the", 3) == []  # a stop word
    assert store.lexical_search("   ", 3) == []


def test_filter_expression_text():
    assert filter_expression(["b", "a"], None, [1967]) == 'doc_id in ["a", "b"] and year in [1967]'
    assert filter_expression(None, ["treaty"], None) == 'kind in ["treaty"]'
    assert filter_expression() == ""
    assert filter_expression([QUOTED_DOC]) == 'doc_id in ["odd\\"doc\\\\id"]'
    with pytest.raises(ValueError):
        filter_expression(years=["1967] or year in [1972"])


def test_filters_restrict_results(synced):
    store, vectors = synced
    k = len(CHUNKS)
    assert {c.doc_id for c, _ in store.dense_search(vectors[0], k, filter_expression(["liability"]))} == {"liability"}
    assert {c.kind for c, _ in store.dense_search(vectors[0], k, filter_expression(kinds=["guidelines"]))} == {"guidelines"}
    assert {c.year for c, _ in store.dense_search(vectors[0], k, filter_expression(years=[1967, 2019]))} == {1967, 2019}
    both = filter_expression(["ost", "lts"], ["treaty"], [1967])
    assert sorted(_ids(store.dense_search(vectors[5], k, both))) == sorted(c.chunk_id for c in CHUNKS[:3])
    assert _ids(store.lexical_search("xylophone", k, filter_expression(["ost"]))) == []
    assert _ids(store.lexical_search("xylophone", k, filter_expression(["lts"]))) == [CHUNKS[5].chunk_id]


def test_quoted_values_are_data(synced):
    store, vectors = synced
    k = len(CHUNKS)
    assert _ids(store.dense_search(vectors[0], k, filter_expression([QUOTED_DOC]))) == [CHUNKS[7].chunk_id]
    for hostile in ['x" or doc_id != "', 'ost"] or doc_id in ["lts', "x\\", 'a\nb', "it's"]:
        assert store.dense_search(vectors[0], k, filter_expression([hostile])) == []
        assert store.lexical_search("space", k, filter_expression(kinds=[hostile])) == []


def test_hybrid_search(synced):
    store, vectors = synced
    # The vector points at chunk 0, the words at chunk 5: both come back.
    hits = store.hybrid_search(vectors[0], "xylophone collision", 3, dense_weight=0.5)
    assert {CHUNKS[0].chunk_id, CHUNKS[5].chunk_id} <= set(_ids(hits))
    assert _ids(store.hybrid_search(vectors[0], "xylophone", 1, dense_weight=1.0)) == [CHUNKS[0].chunk_id]
    assert _ids(store.hybrid_search(vectors[0], "xylophone", 1, dense_weight=0.0)) == [CHUNKS[5].chunk_id]
    scores = [s for _, s in hits]
    assert scores == sorted(scores, reverse=True)
    filtered = store.hybrid_search(vectors[0], "xylophone", 5, filter_expression(["liability"]))
    assert {c.doc_id for c, _ in filtered} == {"liability"}
    assert _ids(store.hybrid_search(vectors[0], "", 1)) == [CHUNKS[0].chunk_id]


def test_reopen_keeps_rows_and_checks_dimension(tmp_path):
    path = str(tmp_path / "milvus.db")
    vectors = _vectors(len(CHUNKS))
    with MilvusStore(path, dimension=DIM) as first:
        first.sync(CHUNKS, vectors)
    with MilvusStore(path, dimension=DIM) as again:
        assert again.count() == len(CHUNKS)
        assert again.sync(CHUNKS, vectors).upserted == 0
        with pytest.raises(ValueError):
            again.sync(CHUNKS, vectors[:, :8])
        with pytest.raises(ValueError):
            again.sync(CHUNKS + CHUNKS[:1], np.concatenate([vectors, vectors[:1]]))
    with pytest.raises(ValueError, match="dimension"):
        MilvusStore(path, dimension=DIM * 2)


def test_shipped_corpus(tmp_path):
    """The built index's chunks and MiniLM vectors: each vector finds its own chunk."""
    from rag import index_store

    index_dir = ROOT / "index"
    manifest = index_store.read_manifest(index_dir)
    if manifest is None:
        pytest.skip("no built index in /work/main/index (run 'spacesec build')")
    try:  # the manifest is its own identity: this checks the files' hashes, not freshness
        loaded = index_store.load_index(index_dir, manifest)
    except index_store.IndexError_ as exc:
        pytest.skip(f"the built index cannot be loaded: {exc}")
    chunks, vectors = loaded.chunks, loaded.vectors
    with MilvusStore(str(tmp_path / "milvus.db"), dimension=vectors.shape[1]) as store:
        assert store.sync(chunks, vectors).upserted == len(chunks)
        assert store.sync(chunks, vectors).upserted == 0
        for i in np.linspace(0, len(chunks) - 1, 8).astype(int):
            (chunk, score), *_ = store.dense_search(vectors[i], 1)
            assert chunk.embed_text == chunks[i].embed_text
            assert score == pytest.approx(1.0, abs=1e-3)
        doc = chunks[0].doc_id
        only = filter_expression([doc])
        hits = store.lexical_search("state responsibility", 5, only)
        assert hits and {c.doc_id for c, _ in hits} == {doc}
        hybrid = store.hybrid_search(vectors[0], chunks[0].text[:80], 5, dense_weight=0.7)
        assert hybrid[0][0].chunk_id == chunks[0].chunk_id
