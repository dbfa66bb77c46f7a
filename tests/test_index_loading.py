"""Loading reads files: the saved BM25 index, the vectors once (FAISS storage), sentence
vectors in memory when small and read as needed when large; and answering a question reads
only some sentence vectors."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeEmbedder, copy_corpus, make_settings

from rag.abstention import Vocabulary
from rag.corpus import load_corpus
from rag.engine import Engine
from rag.index_store import LEXICAL_DIR, build_index, current_dir, expected_identity, load_index
from rag.lexical import LexicalIndex
from rag.stored_rows import StoredRows

TEXTS = ["liability for damage caused by space objects", "registration of space objects",
         "rescue of astronauts", "damage on the surface of the Earth", "the moon and other celestial bodies"]
QUESTIONS = [
    "Which weapons may States not place in orbit around the Earth?",
    "Who pays compensation for damage caused by a space object on the surface of the Earth?",
    "What must the launching State enter in its register of space objects?",
    "football league spring",  # near no sentence, for the fake embedder: off topic
]


def test_saved_lexical_index_scores_like_the_built_one(tmp_path):
    built = LexicalIndex(TEXTS)
    built.save(tmp_path / "bm25")
    loaded = LexicalIndex.load(tmp_path / "bm25")
    query = "damage caused by space objects on Earth"
    assert loaded.size == built.size == len(TEXTS)
    assert np.array_equal(loaded.scores(query), built.scores(query))
    assert list(loaded.top(query, 3)) == list(built.top(query, 3))
    assert np.array_equal(loaded.scores_of(query, np.array([0, 3])), built.scores_of(query, np.array([0, 3])))
    assert isinstance(loaded._bm25.scores["data"], np.memmap)  # read as searches touch it


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("loading")
    settings = make_settings(copy_corpus(base / "corpus"), base / "index")
    build_index(settings, FakeEmbedder())
    return settings


def test_loading_reads_the_saved_bm25_index_instead_of_building_one(built, monkeypatch):
    assert (current_dir(built.index_dir) / LEXICAL_DIR).is_dir()

    def no_build(self, texts):
        raise AssertionError("the BM25 index was rebuilt at load")

    monkeypatch.setattr(LexicalIndex, "__init__", no_build)
    engine = Engine.load(built, rebuild=False, embedder=FakeEmbedder())
    assert engine.retriever.lexical is engine.index.lexical
    assert engine.retrieve("liability for damage caused by space objects", k=3)


def test_loading_reads_the_corpus_wide_tables_instead_of_scanning_every_passage(built, monkeypatch):
    scanned: list[str] = []
    original = Vocabulary.__init__

    def recording(self, texts):
        texts = list(texts)
        scanned.extend(texts)
        original(self, texts)

    monkeypatch.setattr(Vocabulary, "__init__", recording)
    monkeypatch.setattr("rag.lexical.document_counts", lambda texts: pytest.fail("idf counted at load"))
    engine = Engine.load(built, rebuild=False, embedder=FakeEmbedder())
    passages = {c.text for c in engine.index.chunks}
    assert scanned and not passages & set(scanned)  # only the catalogue's names were read
    rebuilt = Vocabulary([c.text for c in engine.index.chunks] + engine.catalogue.names)
    assert (" ".join(engine.vocabulary._texts), engine.vocabulary._tokens) == (rebuilt._texts[0], rebuilt._tokens)


def test_vectors_are_held_once_and_small_sentence_vectors_in_memory(built):
    loaded = load_index(built.index_dir, expected_identity(load_corpus(built.corpus_dir), built))
    on_disk = np.load(current_dir(built.index_dir) / "vectors.npy")
    assert np.array_equal(loaded.vectors, on_disk)
    assert not loaded.vectors.flags.owndata and not loaded.vectors.flags.writeable  # FAISS's memory
    assert type(loaded.sentence_vectors) is np.ndarray  # a small file is read whole, not mapped


def test_large_sentence_vectors_are_read_from_the_file_and_answers_stay_the_same(built, monkeypatch):
    in_memory = Engine.load(built, rebuild=False, embedder=FakeEmbedder())
    monkeypatch.setattr("rag.stored_rows.READ_WHOLE_BYTES", 0)  # every file counts as large
    from_file = Engine.load(built, rebuild=False, embedder=FakeEmbedder())
    assert isinstance(from_file.index.sentence_vectors, StoredRows)
    for question in QUESTIONS:
        expected, got = in_memory.ask(question), from_file.ask(question)
        assert (got.text, got.abstained, got.confidence) == (expected.text, expected.abstained, expected.confidence)


class RowsOnly:
    """Sentence vectors that may be read row by row, never all at once."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, key):
        return self.array[key]

    def __matmul__(self, other):
        raise AssertionError("a question read every sentence vector")


@pytest.fixture(scope="module")
def exact_and_indexed(built, tmp_path_factory):
    """The same corpus below and above the exact-search threshold."""
    large = make_settings(built.corpus_dir, tmp_path_factory.mktemp("hnsw") / "index", exact_search_max_passages=50)
    return (Engine.load(built, embedder=FakeEmbedder()), Engine.load(large, embedder=FakeEmbedder()))


def test_above_the_threshold_answers_read_only_the_sentences_they_need(exact_and_indexed, monkeypatch):
    exact, indexed = exact_and_indexed
    guard = RowsOnly(indexed.index.sentence_vectors)
    monkeypatch.setattr(indexed.index, "sentence_vectors", guard)
    monkeypatch.setattr(indexed.retriever, "sentence_vectors", guard)
    decisions = [(exact.ask(q).abstained, indexed.ask(q).abstained) for q in QUESTIONS]
    assert [e for e, _ in decisions] == [i for _, i in decisions]
    assert any(e for e, _ in decisions) and not all(e for e, _ in decisions)
