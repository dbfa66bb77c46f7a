"""Milvus search backend: passages, their vectors and Milvus's own BM25, in one collection.

One row per chunk, keyed by ``chunk_id``. Milvus computes the lexical side itself: a BM25
function turns ``lexical_text`` into the ``sparse`` field, so lexical search runs in the
server and several app replicas share one index. ``lexical_text`` holds the header and
passage already run through our own tokeniser (``rag.lexical.tokenize``: stop words out,
Snowball stems), which Milvus's standard tokenizer then splits at spaces (and splits
``b.10``): its own analyzers do not stem on Milvus Lite, and the same tokens on both backends
keep their rankings alike. ``uri`` is a server (``http://milvus:19530``) or, for tests and
local use, a Milvus Lite file (``./milvus.db``).

This module uses pymilvus directly rather than ``langchain_milvus.Milvus`` because the sync
needs upserts and deletes keyed by our own chunk ids and content hashes and an exact, typed
schema (INT64 ``year``/``start``/``end``/``part``, a BM25 input that is not the stored passage);
langchain-milvus 0.4.0 infers the schema from the first documents' metadata and, on Milvus
Lite 3.2.2, also needs explicit index, search and ranker parameters to run at all.

Scores: ``dense_search`` returns cosine similarity, ``lexical_search`` the BM25 score (>= 0;
Milvus Lite reports it negated as a distance, the server positive; both are mapped to the
score), ``hybrid_search`` the WeightedRanker's fused score (each side normalised by Milvus).
The collection is tied to one embedder: for another model use another collection name.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from rag.chunking import Chunk
from rag.lexical import tokenize
from rag.retrieval import Filters, HybridRetriever

log = logging.getLogger(__name__)

#: VARCHAR fields and their byte limits (Milvus counts UTF-8 bytes).
_STRING_FIELDS: dict[str, int] = {
    "chunk_id": 512, "content_hash": 64, "doc_id": 256, "title": 1024, "short_title": 512,
    "section": 512, "section_title": 1024, "kind": 64, "text": 65_535, "lexical_text": 65_535,
}
_INT_FIELDS = ("year", "start", "end", "part")
#: Everything a search returns: enough to rebuild the Chunk (``embed_text`` is derived).
_OUTPUT_FIELDS = ["chunk_id", "doc_id", "title", "short_title", "section", "section_title",
                  "kind", "year", "start", "end", "part", "text"]
#: What sync compares besides the hash: metadata outside ``embed_text`` (offsets, year...).
_SYNC_FIELDS = ["chunk_id", "content_hash", "doc_id", "title", "kind", "year", "start", "end", "part"]

#: Same tokens as rag.lexical where Milvus allows: lower-cased words, our stop words, English
#: stemming. Milvus Lite 3.2 applies the stop words but has no stemmer (it ignores the filter).
ANALYZER_PARAMS: dict[str, Any] = {"tokenizer": "standard"}  # the only one Milvus Lite has
_BATCH = 256


@dataclass(frozen=True)
class SyncReport:
    """What one ``MilvusStore.sync`` changed."""

    upserted: int
    deleted: int
    unchanged: int


def content_hash(chunk: Chunk) -> str:
    """sha256 of what is embedded and BM25-indexed (header plus passage)."""
    return hashlib.sha256(chunk.embed_text.encode("utf-8")).hexdigest()


def _quote(value: str) -> str:
    """A Milvus string literal holding ``value`` as data (backslash, quotes and line breaks escaped)."""
    escaped = (str(value).replace("\\", "\\\\").replace('"', '\\"')
               .replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def filter_expression(doc_ids: Iterable[str] | None = None, kinds: Iterable[str] | None = None,
                      years: Iterable[int] | None = None) -> str:
    """A Milvus boolean expression keeping rows in all the given sets ("" when none is given).

    ``filter_expression(["a", "b"], None, [1967])`` -> ``doc_id in ["a", "b"] and year in [1967]``.
    Strings are quoted as literals; years must be integers (``int()`` rejects anything else).
    """
    clauses = []
    if doc_ids:
        clauses.append(f"doc_id in [{', '.join(_quote(d) for d in sorted(set(doc_ids)))}]")
    if kinds:
        clauses.append(f"kind in [{', '.join(_quote(k) for k in sorted(set(kinds)))}]")
    if years:
        clauses.append(f"year in [{', '.join(str(int(y)) for y in sorted({int(y) for y in years}))}]")
    return " and ".join(clauses)


def _row(chunk: Chunk, vector: np.ndarray, digest: str) -> dict[str, Any]:
    row: dict[str, Any] = {name: getattr(chunk, name) for name in _OUTPUT_FIELDS}
    row.update(content_hash=digest, lexical_text=" ".join(tokenize(chunk.embed_text)),
               dense=np.asarray(vector, dtype=np.float32).tolist())
    for name, limit in _STRING_FIELDS.items():
        if len(row[name].encode("utf-8")) > limit:
            raise ValueError(f"chunk {chunk.chunk_id}: field {name} exceeds {limit} bytes")
    return row


def _chunk(entity: dict[str, Any]) -> Chunk:
    return Chunk(**{name: entity[name] for name in _OUTPUT_FIELDS})


class MilvusStore:
    """A Milvus collection of passages with dense vectors and server-side BM25.

    Example::

        store = MilvusStore("http://milvus:19530")        # or MilvusStore("./milvus.db")
        store.sync(loaded.chunks, loaded.vectors)
        hits = store.hybrid_search(query_vector, "liability for damage", k=5, dense_weight=0.7)
    """

    def __init__(self, uri: str, collection: str = "spacesec_passages", dimension: int = 384,
                 hnsw_m: int = 32, hnsw_ef_construction: int = 80, hnsw_ef_search: int = 128) -> None:
        from pymilvus import MilvusClient

        self.uri = uri
        self.collection = collection
        self.dimension = dimension
        self.hnsw_ef_search = hnsw_ef_search
        self.client = MilvusClient(uri=uri)
        if not self.client.has_collection(collection):
            self._create(hnsw_m, hnsw_ef_construction)
        else:
            self._check_dimension()
        self.client.load_collection(collection)  # a reopened collection starts released

    # -- schema -------------------------------------------------------------------------

    def _create(self, hnsw_m: int, hnsw_ef_construction: int) -> None:
        from pymilvus import DataType, Function, FunctionType
        from pymilvus.exceptions import MilvusException

        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        for name, limit in _STRING_FIELDS.items():
            extra: dict[str, Any] = {}
            if name == "lexical_text":
                extra = {"enable_analyzer": True, "analyzer_params": ANALYZER_PARAMS}
            schema.add_field(name, DataType.VARCHAR, max_length=limit,
                             is_primary=name == "chunk_id", **extra)
        for name in _INT_FIELDS:
            schema.add_field(name, DataType.INT64)
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=self.dimension)
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        schema.add_function(Function(name="lexical_text_bm25", function_type=FunctionType.BM25,
                                     input_field_names=["lexical_text"], output_field_names=["sparse"]))
        index = self.client.prepare_index_params()
        index.add_index(field_name="dense", index_type="HNSW", metric_type="COSINE",
                        params={"M": hnsw_m, "efConstruction": hnsw_ef_construction})
        index.add_index(field_name="sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25")
        for name in ("doc_id", "kind", "year"):  # filtered fields
            index.add_index(field_name=name, index_type="INVERTED")
        try:
            self.client.create_collection(self.collection, schema=schema)
            # sync=False: do not poll the build (an empty collection's indexes are ready at
            # once), and Milvus Lite has no AllocTimestamp for that polling.
            self.client.create_index(self.collection, index, sync=False)
            log.info("created Milvus collection %s (dimension %d) at %s",
                     self.collection, self.dimension, self.uri)
        except MilvusException:
            if not self.client.has_collection(self.collection):  # not a lost creation race
                raise
            self._check_dimension()

    def _check_dimension(self) -> None:
        fields = self.client.describe_collection(self.collection)["fields"]
        dense = next((f for f in fields if f["name"] == "dense"), None)
        found = int(dense["params"]["dim"]) if dense else None
        if found != self.dimension:
            raise ValueError(f"Milvus collection {self.collection} has dense dimension {found}, "
                             f"expected {self.dimension}; use another collection name.")

    # -- writing ------------------------------------------------------------------------

    def _stored(self) -> dict[str, tuple]:
        """chunk_id -> (content_hash, metadata...) of every stored row."""
        stored: dict[str, tuple] = {}
        # Strong: see every write so far, even the previous sync's (searches keep the default).
        iterator = self.client.query_iterator(self.collection, batch_size=5000, filter="",
                                              output_fields=_SYNC_FIELDS, consistency_level="Strong")
        try:
            while batch := iterator.next():
                for row in batch:
                    stored[row["chunk_id"]] = tuple(row[f] for f in _SYNC_FIELDS[1:])
        finally:
            iterator.close()
        return stored

    def sync(self, chunks: Sequence[Chunk], vectors: np.ndarray) -> SyncReport:
        """Make the collection hold exactly ``chunks`` (row i of ``vectors`` is chunk i's).

        New or changed chunks (by content hash or metadata) are upserted, chunks no longer
        given are deleted, the rest are left alone: a second run with the same input writes
        nothing. Vectors of unchanged chunks are not rewritten (same embedder assumed).
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) != len(chunks) or vectors.shape[1] != self.dimension:
            raise ValueError(f"need one {self.dimension}-dimensional vector per chunk, got "
                             f"{vectors.shape} for {len(chunks)} chunks")
        ids = [c.chunk_id for c in chunks]
        if len(set(ids)) != len(ids):
            raise ValueError("chunk ids are not unique")
        stored = self._stored()
        rows = []
        for chunk, vector in zip(chunks, vectors, strict=True):
            digest = content_hash(chunk)
            wanted = (digest, *(getattr(chunk, f) for f in _SYNC_FIELDS[2:]))
            if stored.get(chunk.chunk_id) != wanted:
                rows.append(_row(chunk, vector, digest))
        gone = sorted(set(stored) - set(ids))
        for i in range(0, len(rows), _BATCH):
            self.client.upsert(self.collection, rows[i:i + _BATCH])
        for i in range(0, len(gone), _BATCH):
            self.client.delete(self.collection, ids=gone[i:i + _BATCH])
        report = SyncReport(upserted=len(rows), deleted=len(gone), unchanged=len(chunks) - len(rows))
        log.info("synced %s: %d upserted, %d deleted, %d unchanged",
                 self.collection, report.upserted, report.deleted, report.unchanged)
        return report

    # -- searching ----------------------------------------------------------------------

    def count(self) -> int:
        """Rows in the collection."""
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def _dense_params(self, k: int) -> dict[str, Any]:
        return {"metric_type": "COSINE", "params": {"ef": max(self.hnsw_ef_search, k)}}

    @staticmethod
    def _hits(results: Any, score: Callable[[float], float] = float) -> list[tuple[Chunk, float]]:
        return [(_chunk(hit["entity"]), score(hit["distance"])) for hit in results[0]]

    def dense_search(self, vector: np.ndarray, k: int, expr: str = "") -> list[tuple[Chunk, float]]:
        """The ``k`` chunks nearest ``vector`` (cosine similarity, best first) among those ``expr`` keeps."""
        if k <= 0:
            return []
        results = self.client.search(
            self.collection, data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="dense",
            limit=k, filter=expr, output_fields=_OUTPUT_FIELDS, search_params=self._dense_params(k))
        return self._hits(results)

    def lexical_search(self, text: str, k: int, expr: str = "") -> list[tuple[Chunk, float]]:
        """The ``k`` best BM25 matches of ``text`` (score >= 0, best first); chunks sharing no
        term with it are left out."""
        terms = " ".join(tokenize(text))
        if k <= 0 or not terms:
            return []
        results = self.client.search(
            self.collection, data=[terms], anns_field="sparse", limit=k, filter=expr,
            output_fields=_OUTPUT_FIELDS, search_params={"metric_type": "BM25"})
        return [(c, s) for c, s in self._hits(results, lambda d: abs(float(d))) if s > 0]

    def hybrid_search(self, vector: np.ndarray, text: str, k: int, expr: str = "",
                      dense_weight: float = 0.7, pool: int = 40) -> list[tuple[Chunk, float]]:
        """Milvus's own hybrid search: the ``pool`` best dense and the ``pool`` best BM25 matches,
        fused by a WeightedRanker (``dense_weight`` and ``1 - dense_weight``); the ``k`` best."""
        from pymilvus import AnnSearchRequest, WeightedRanker

        if k <= 0:
            return []
        terms = " ".join(tokenize(text))
        if not terms:  # nothing for BM25 to match
            return self.dense_search(vector, k, expr)
        size = max(pool, k)
        requests = [
            AnnSearchRequest(data=[np.asarray(vector, dtype=np.float32).tolist()], anns_field="dense",
                             param=self._dense_params(size), limit=size, expr=expr or None),
            AnnSearchRequest(data=[terms], anns_field="sparse", param={"metric_type": "BM25"},
                             limit=size, expr=expr or None),
        ]
        results = self.client.hybrid_search(
            self.collection, requests, WeightedRanker(dense_weight, 1.0 - dense_weight),
            limit=k, output_fields=_OUTPUT_FIELDS)
        return self._hits(results)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MilvusRetriever(HybridRetriever):
    """Hybrid retrieval with Milvus as the search engine: candidates come from Milvus's dense
    (HNSW) and BM25 searches, with filters as Milvus expressions; the fusion, boosts and
    sentence blending are the FAISS path's own, so both backends rank alike."""

    def __init__(self, store: MilvusStore, *args: Any, **kwargs: Any) -> None:
        """``store`` plus the arguments of ``HybridRetriever`` (the local index)."""
        super().__init__(*args, **kwargs)
        self.store = store
        self._position = {c.chunk_id: i for i, c in enumerate(self.chunks)}

    def _candidates(self, query: str, query_vector: np.ndarray,
                    filters: Filters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        expr = filter_expression(filters.doc_ids, filters.kinds, filters.years)
        size = self.settings.candidate_pool
        # Twice the pool: the local path ranks its pool by passage-plus-best-sentence scores,
        # which Milvus cannot compute; a wider net catches what that blend would have lifted.
        dense_hits = self.store.dense_search(query_vector, 2 * size, expr)
        near = np.array(sorted({self._position[c.chunk_id] for c, _ in dense_hits}), dtype=np.int64)
        # The net's best by the blended score, as the local path picks its dense pool.
        blended = self._blend_sentences(near, self.chunk_similarities(query, near), query) if near.size else near
        by_dense = near[np.argsort(-blended, kind="stable")[:size]]
        # Milvus's BM25 finds lexical candidates; the local lexical index scores them, as on the FAISS path.
        lexical = self.lexical.scores(query)
        found = [self._position[c.chunk_id] for c, _ in self.store.lexical_search(query, size, expr)]
        candidates = np.union1d(by_dense, np.array([i for i in found if lexical[i] > 0], dtype=np.int64))
        if not candidates.size:
            return np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, np.float32)
        dense = self._blend_sentences(candidates, self.chunk_similarities(query, candidates), query)
        return candidates, dense, lexical[candidates].astype(np.float32)
