"""Hybrid retrieval: dense (MiniLM + FAISS) and lexical (BM25) scores fused, then boosted
for the documents and parts a question names."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import faiss
import numpy as np

from rag.chunking import Chunk
from rag.embedding import Embedder
from rag.instruments import QueryCues, section_ref
from rag.lexical import LexicalIndex
from rag.settings import Settings


@dataclass(frozen=True)
class Filters:
    """Metadata filters, already validated (None means no filter on that field)."""

    doc_ids: list[str] | None = None
    kinds: list[str] | None = None
    years: list[int] | None = None

    def admit(self, chunk: Chunk) -> bool:
        """Whether ``chunk`` passes every filter."""
        return ((not self.doc_ids or chunk.doc_id in self.doc_ids)
                and (not self.kinds or chunk.kind in self.kinds)
                and (not self.years or chunk.year in self.years))


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with its fused score and the two scores it came from."""

    chunk: Chunk
    score: float
    dense: float
    lexical: float


_NO_CANDIDATES = (np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32))


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high - low < 1e-9 else (values - low) / (high - low)


def _faiss_top(index: faiss.Index, query_vector: np.ndarray, size: int,
               params: faiss.SearchParameters | None) -> np.ndarray:
    """Ids of the ``size`` best matches of ``query_vector`` in ``index`` (fewer if it has fewer)."""
    _, ids = index.search(query_vector.reshape(1, -1), size, params=params)
    return ids[0][ids[0] >= 0]


def _cover_named(order: list[int], candidates: np.ndarray, doc_of: np.ndarray, cues: QueryCues) -> list[int]:
    """When a question names several documents, lead with the best passage of each."""
    if len(cues.doc_ids) < 2:
        return order
    leaders = []
    for doc_id in cues.doc_ids:
        best = next((i for i in order if doc_of[candidates[i]] == doc_id), None)
        if best is not None:
            leaders.append(best)
    leaders.sort(key=order.index)
    return leaders + [i for i in order if i not in leaders]


class HybridRetriever:
    """Scores chunks for a query; everything it needs is built once at load."""

    def __init__(self, chunks: list[Chunk], vectors: np.ndarray, index: faiss.Index,
                 embedder: Embedder, settings: Settings, sentences: np.ndarray | None = None,
                 sentence_vectors: np.ndarray | None = None, query_embedder: Embedder | None = None,
                 lexical: LexicalIndex | None = None, untrained_docs: frozenset[str] = frozenset()) -> None:
        """``lexical`` is the saved BM25 index of ``chunks``; without it one is built here.
        ``query_embedder`` embeds questions (the tuned encoder) when it differs from ``embedder``;
        passages of ``untrained_docs`` (documents it was not trained on) are then scored with a
        blend of its vector and the installed model's (``settings.tuned_weight_on_untrained``)."""
        self.chunks = chunks
        self.vectors = vectors
        self.sentence_vectors = sentence_vectors
        # Sentences are stored in chunk order: the first sentence row of each chunk that has any.
        owners = sentences[:, 0] if sentences is not None and len(sentences) else np.zeros(0, np.int32)
        self._sentence_owner, self._sentence_starts = np.unique(owners, return_index=True)
        # int64 like the positions looked up in it: searchsorted would otherwise convert the
        # whole table at every lookup (0.45 ms each at a million passages).
        self._sentence_owner = self._sentence_owner.astype(np.int64)
        self._sentence_ends = np.append(self._sentence_starts[1:], len(owners)).astype(np.int64)
        self._position = {c.chunk_id: i for i, c in enumerate(chunks)}
        self.index = index
        self.embedder = embedder  # passages (and anything compared with them symmetrically)
        self.query_embedder = query_embedder or embedder  # questions: the tuned encoder if any
        self.settings = settings
        self.lexical = lexical if lexical is not None else LexicalIndex([c.embed_text for c in chunks])
        labels = {c.section for c in chunks}  # few distinct labels: parse each once
        parsed = {label: section_ref(label) for label in labels}
        #: The part each passage stands for ("Article IV" -> article 4), or None.
        self.parts = [parsed[c.section] for c in chunks]
        self._doc_of = np.array([c.doc_id for c in chunks])
        self._kind_of = np.array([c.kind for c in chunks])
        self._year_of = np.array([c.year for c in chunks], dtype=np.int64)
        self._owners = owners
        self.use_query_encoder(self.query_embedder, untrained_docs)

    def use_query_encoder(self, query_embedder: Embedder, untrained_docs: frozenset[str] = frozenset()) -> None:
        """Embed questions with ``query_embedder`` from now on (``spacesec tune`` tries several)."""
        self.query_embedder = query_embedder
        self.embed_query = lru_cache(maxsize=2048)(self._embed_query)
        self._blended_query = lru_cache(maxsize=2048)(self._blend_query)
        tuned = query_embedder is not self.embedder
        #: Documents the question encoder was not trained on (none when questions are embedded like passages).
        self.untrained_docs = frozenset(untrained_docs) if tuned else frozenset()
        self._untrained = (np.isin(self._doc_of, sorted(self.untrained_docs)) if self.untrained_docs
                           else np.zeros(len(self.chunks), dtype=bool))
        self._untrained_sentence = self._untrained[self._owners] if len(self._owners) else np.zeros(0, dtype=bool)

    def _embed_query(self, text: str) -> np.ndarray:
        return self.query_embedder.embed([text])[0]

    def _blend_query(self, text: str) -> np.ndarray:
        """The vector for passages of documents the tuned encoder was not trained on."""
        weight = self.settings.tuned_weight_on_untrained
        vector = weight * self.embed_query(text) + (1 - weight) * self.embedder.embed([text])[0]
        return (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)

    def chunk_similarities(self, text: str, positions: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of the question ``text`` to the chunks at ``positions`` (all by default)."""
        return self._similarities(text, self.vectors, self._untrained, positions)

    def sentence_similarities(self, text: str, rows: np.ndarray | None = None) -> np.ndarray:
        """Cosine similarity of the question ``text`` to the answer sentences at ``rows`` (all by default)."""
        return self._similarities(text, self.sentence_vectors, self._untrained_sentence, rows)

    def _similarities(self, text: str, vectors: np.ndarray, untrained: np.ndarray,
                      rows: np.ndarray | None) -> np.ndarray:
        picked = vectors if rows is None else vectors[rows]
        scores = np.asarray(picked @ self.embed_query(text), dtype=np.float32)
        blend = untrained if rows is None else untrained[rows]
        if blend.any():
            scores[blend] = picked[blend] @ self._blended_query(text)
        return scores

    def allowed_mask(self, doc_ids=None, kinds=None, years=None) -> np.ndarray | None:
        """Chunks that pass the metadata filters (None when nothing is filtered)."""
        if not (doc_ids or kinds or years):
            return None
        mask = np.ones(len(self.chunks), dtype=bool)
        if doc_ids:
            mask &= np.isin(self._doc_of, list(doc_ids))
        if kinds:
            mask &= np.isin(self._kind_of, list(kinds))
        if years:
            mask &= np.isin(self._year_of, [int(y) for y in years])
        return mask

    def search(self, query: str, k: int, cues: QueryCues, filters: Filters | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (best first; ties keep corpus order)."""
        if not self.chunks or k <= 0:
            return []
        query_vector = self.embed_query(query)
        filters = filters or Filters()
        candidates, dense, lexical = self._with_named(query, query_vector, filters, cues,
                                                      self._candidates(query, query_vector, filters))
        if candidates.size == 0:
            return []
        weight = self.settings.dense_weight
        fused = weight * _minmax(dense) + (1 - weight) * _minmax(lexical)
        fused += self._boosts(candidates, cues)
        order = _cover_named(list(np.lexsort((candidates, -fused))), candidates, self._doc_of, cues)[:k]
        scores = [float(fused[i]) for i in order]
        for p in range(len(scores) - 2, -1, -1):  # a passage led for its named document ranks
            scores[p] = max(scores[p], scores[p + 1])  # above the ones after it: so does its score
        return [Hit(self.chunks[candidates[i]], score, float(dense[i]), float(lexical[i]))
                for i, score in zip(order, scores, strict=True)]

    def _candidates(self, query: str, query_vector: np.ndarray,
                    filters: Filters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(candidate ids, their dense scores, their lexical scores) for the fusion."""
        allowed = self.allowed_mask(filters.doc_ids, filters.kinds, filters.years)
        if len(self.chunks) > self.settings.exact_search_max_passages:
            return self._indexed_candidates(query, query_vector, allowed)
        return self._exact_candidates(query, query_vector, allowed)

    def _with_named(self, query: str, query_vector: np.ndarray, filters: Filters, cues: QueryCues,
                    found: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``found`` (what ``_candidates`` returns) with the best passages of each named document
        that has none among them. Its boost lifts only what is a candidate, and a question whose
        words, once the name is taken out, fit other documents better would miss it: "Do the debris
        guidelines apply to private companies?" found only other treaties' "apply to" articles."""
        candidates = found[0]
        missing = [d for d in cues.doc_ids if (not filters.doc_ids or d in filters.doc_ids)
                   and not np.any(self._doc_of[candidates] == d)]
        if not missing:
            return found
        extra = self._candidates(query, query_vector, replace(filters, doc_ids=missing))
        merged = [np.concatenate([a, b]) for a, b in zip(found, extra, strict=True)]
        order = np.argsort(merged[0], kind="stable")  # candidates stay in index order, as union1d leaves them
        return merged[0][order], merged[1][order], merged[2][order]

    def _exact_candidates(self, query: str, query_vector: np.ndarray,
                          allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Small corpora: score every chunk exactly; the pool's best by each score are the
        candidates. Returns (candidate ids, their dense scores, their lexical scores)."""
        dense = self.chunk_similarities(query)
        weight_s = self.settings.sentence_weight
        if weight_s and self.sentence_vectors is not None and len(self._sentence_starts):
            # A passage is as close as its closest sentence: long passages dilute a precise match.
            best = np.maximum.reduceat(self.sentence_similarities(query), self._sentence_starts)
            dense = dense.copy()
            dense[self._sentence_owner] = (1 - weight_s) * dense[self._sentence_owner] + weight_s * best
        lexical = self.lexical.scores(query)
        pool = np.arange(len(self.chunks)) if allowed is None else np.flatnonzero(allowed)
        if pool.size == 0:
            return _NO_CANDIDATES
        size = min(self.settings.candidate_pool, pool.size)
        by_dense = pool[np.argsort(-dense[pool], kind="stable")[:size]]
        by_lexical = pool[np.argsort(-lexical[pool], kind="stable")[:size]]
        by_lexical = by_lexical[lexical[by_lexical] > 0]  # no shared term: not a lexical candidate
        candidates = np.union1d(by_dense, by_lexical)
        return candidates, dense[candidates], lexical[candidates]

    def _indexed_candidates(self, query: str, query_vector: np.ndarray,
                            allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Large corpora: candidates from a FAISS top-k and a BM25 top-k, then exact scores
        for those candidates only. Returns what ``_exact_candidates`` returns."""
        size = self.settings.candidate_pool
        candidates = np.union1d(self._dense_top(query_vector, size, allowed),
                                self.lexical.top(query, size, allowed))
        if self._untrained.any():  # their passages are found by their own query vector
            untrained = self._untrained if allowed is None else self._untrained & allowed
            candidates = np.union1d(candidates, self._dense_top(self._blended_query(query), size, untrained))
        if candidates.size == 0:
            return _NO_CANDIDATES
        dense = self._blend_sentences(candidates, self.chunk_similarities(query, candidates), query)
        return candidates, dense, self.lexical.scores_of(query, candidates)

    def _dense_top(self, query_vector: np.ndarray, size: int, allowed: np.ndarray | None) -> np.ndarray:
        """Ids of the ``size`` chunks nearest ``query_vector`` among the ``allowed`` ones, best
        first. A filter that leaves at most ``exact_search_max_passages`` chunks is searched
        exactly (the flat vectors, skipping the others), as a corpus of that size would be: so
        few allowed chunks, such as one document's, may all lie far from where a graph search
        looks. Larger filters are applied inside the HNSW search."""
        hnsw = isinstance(self.index, faiss.IndexHNSW)
        ef = max(self.settings.hnsw_ef_search, size)
        if allowed is None:
            return _faiss_top(self.index, query_vector, size, faiss.SearchParametersHNSW(efSearch=ef) if hnsw else None)
        bits = np.packbits(allowed, bitorder="little")  # must outlive the searches below
        selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        if hnsw and np.count_nonzero(allowed) > self.settings.exact_search_max_passages:
            return _faiss_top(self.index, query_vector, size, faiss.SearchParametersHNSW(efSearch=ef, sel=selector))
        flat = faiss.downcast_index(self.index.storage) if hnsw else self.index
        return _faiss_top(flat, query_vector, size, faiss.SearchParameters(sel=selector))

    def _sentence_rows(self, positions) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(which of the chunks at ``positions`` have sentences, those sentences' rows in one
        array (a chunk's rows are consecutive, so they are read together), where each chunk's
        rows start in it)."""
        positions = np.asarray(positions, dtype=np.int64)
        if not positions.size:
            return np.zeros(0, dtype=bool), np.zeros(0, np.int64), np.zeros(0, np.int64)
        slots = np.minimum(np.searchsorted(self._sentence_owner, positions), len(self._sentence_owner) - 1)
        has = self._sentence_owner[slots] == positions
        starts, ends = self._sentence_starts[slots[has]], self._sentence_ends[slots[has]]
        rows = [np.arange(a, b) for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        return has, np.concatenate(rows) if rows else np.zeros(0, np.int64), np.r_[0, np.cumsum(ends - starts)[:-1]]

    def best_sentence(self, query_vector: np.ndarray, positions) -> float:
        """The highest similarity of ``query_vector`` to a sentence of the chunks at
        ``positions`` (-1 when they have none); reads only those chunks' sentence vectors."""
        if self.sentence_vectors is None or not len(self._sentence_starts):
            return -1.0
        _, rows, _ = self._sentence_rows(positions)
        return float((self.sentence_vectors[rows] @ query_vector).max(initial=-1.0)) if rows.size else -1.0

    def position_of(self, chunk: Chunk) -> int:
        """Where ``chunk`` is in the index."""
        return self._position[chunk.chunk_id]

    def nearest(self, query_vector: np.ndarray, size: int) -> np.ndarray:
        """Positions of the ``size`` chunks nearest ``query_vector`` by the FAISS index alone."""
        return self._dense_top(query_vector, size, None)

    def _blend_sentences(self, candidates: np.ndarray, dense: np.ndarray, query: str) -> np.ndarray:
        """``dense`` with each candidate's best sentence score blended in, as the exact path does."""
        weight_s = self.settings.sentence_weight
        if not weight_s or self.sentence_vectors is None or not len(self._sentence_starts):
            return dense
        has, rows, offsets = self._sentence_rows(candidates)  # every candidate's sentences, one read
        if not has.any():
            return dense
        best = np.maximum.reduceat(self.sentence_similarities(query, rows), offsets)
        blended = dense.copy()
        blended[has] = (1 - weight_s) * dense[has] + weight_s * best
        return blended

    def _boosts(self, candidates: np.ndarray, cues: QueryCues) -> np.ndarray:
        boosts = np.zeros(len(candidates), dtype=np.float32)
        named = set(cues.doc_ids)
        parts = set(cues.parts)
        for j, i in enumerate(candidates):
            in_named = self.chunks[i].doc_id in named
            if in_named:
                boosts[j] += self.settings.named_document_boost
            if parts and self.parts[i] in parts and (in_named or not named):
                boosts[j] += self.settings.named_section_boost
        return boosts
