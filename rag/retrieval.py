"""Hybrid retrieval: dense (MiniLM + FAISS) and lexical (BM25) scores fused, then boosted
for the documents and parts a question names."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import faiss
import numpy as np

from rag.chunking import Chunk
from rag.embedding import Embedder
from rag.instruments import QueryCues, section_ref
from rag.lexical import LexicalIndex
from rag.settings import Settings


@dataclass(frozen=True)
class Hit:
    """One retrieved passage with its fused score and the two scores it came from."""

    chunk: Chunk
    score: float
    dense: float
    lexical: float


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return np.zeros_like(values) if high - low < 1e-9 else (values - low) / (high - low)


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
                 sentence_vectors: np.ndarray | None = None) -> None:
        self.chunks = chunks
        self.vectors = vectors
        self.sentence_vectors = sentence_vectors
        # Sentences are stored in chunk order: the first sentence row of each chunk that has any.
        owners = sentences[:, 0] if sentences is not None and len(sentences) else np.zeros(0, np.int32)
        self._sentence_owner, self._sentence_starts = np.unique(owners, return_index=True)
        self.index = index
        self.embedder = embedder
        self.settings = settings
        self.lexical = LexicalIndex([c.embed_text for c in chunks])
        self._refs = [section_ref(c.section) for c in chunks]
        self._doc_of = np.array([c.doc_id for c in chunks])
        self.embed_query = lru_cache(maxsize=2048)(self._embed_query)

    def _embed_query(self, text: str) -> np.ndarray:
        return self.embedder.embed([text])[0]

    def allowed_mask(self, doc_ids=None, kinds=None, years=None) -> np.ndarray | None:
        """Chunks that pass the metadata filters (None when nothing is filtered)."""
        if not (doc_ids or kinds or years):
            return None
        mask = np.ones(len(self.chunks), dtype=bool)
        if doc_ids:
            mask &= np.isin(self._doc_of, list(doc_ids))
        if kinds:
            mask &= np.array([c.kind in kinds for c in self.chunks])
        if years:
            wanted = {int(y) for y in years}
            mask &= np.array([c.year in wanted for c in self.chunks])
        return mask

    def search(self, query: str, k: int, cues: QueryCues, allowed: np.ndarray | None = None) -> list[Hit]:
        """The ``k`` best chunks for ``query`` (best first; ties keep corpus order)."""
        if not self.chunks or k <= 0:
            return []
        query_vector = self.embed_query(query)
        dense = self.vectors @ query_vector
        weight_s = self.settings.sentence_weight
        if weight_s and self.sentence_vectors is not None and len(self._sentence_starts):
            # A passage is as close as its closest sentence: long passages dilute a precise match.
            best = np.maximum.reduceat(self.sentence_vectors @ query_vector, self._sentence_starts)
            dense = dense.copy()
            dense[self._sentence_owner] = (1 - weight_s) * dense[self._sentence_owner] + weight_s * best
        lexical = self.lexical.scores(query)
        pool = np.arange(len(self.chunks)) if allowed is None else np.flatnonzero(allowed)
        if pool.size == 0:
            return []
        size = min(self.settings.candidate_pool, pool.size)
        by_dense = pool[np.argsort(-dense[pool], kind="stable")[:size]]
        by_lexical = pool[np.argsort(-lexical[pool], kind="stable")[:size]]
        candidates = np.union1d(by_dense, by_lexical)
        weight = self.settings.dense_weight
        fused = weight * _minmax(dense[candidates]) + (1 - weight) * _minmax(lexical[candidates])
        fused += self._boosts(candidates, cues)
        order = _cover_named(list(np.lexsort((candidates, -fused))), candidates, self._doc_of, cues)[:k]
        return [Hit(self.chunks[candidates[i]], float(fused[i]), float(dense[candidates[i]]),
                    float(lexical[candidates[i]])) for i in order]

    def _boosts(self, candidates: np.ndarray, cues: QueryCues) -> np.ndarray:
        boosts = np.zeros(len(candidates), dtype=np.float32)
        named = set(cues.doc_ids)
        parts = set(cues.parts)
        for j, i in enumerate(candidates):
            in_named = self.chunks[i].doc_id in named
            if in_named:
                boosts[j] += self.settings.named_document_boost
            if parts and self._refs[i] in parts and (in_named or not named):
                boosts[j] += self.settings.named_section_boost
        return boosts
