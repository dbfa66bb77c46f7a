"""Scale benchmark: retrieval and answers over synthetic corpora of 10k, 100k and 1M passages.

Usage: .venv/bin/python benchmarks/scale.py [--sizes 10000,100000,1000000] [--queries 200]
       [--out docs/PERFORMANCE.md | --no-write]

For each size, three processes (so each peak memory is its own ``ru_maxrss``):

1. *build*: a deterministic synthetic corpus (seeded), the FAISS index the settings choose for
   that size (``rag.index_store.make_faiss_index``), the BM25 index, the ``HybridRetriever``
   over them; then FAISS search p50/p95 for the candidate pool and recall@10 against exact
   search, ``HybridRetriever.search`` p50/p95 (k=10) without a filter, with a kind filter and
   with the query's own document as filter, and how many of its top 10 the exact path (every
   score computed, as for small corpora) also returns. It writes the whole index as
   ``spacesec build`` does (``rag.index_store``'s writer: passages, vectors, FAISS, answer
   sentences and their vectors, BM25, the embedder's ONNX export), recorded as built from the
   shipped corpus, so the real loader and engine open it.
2. *cold start*: ``spacesec ask "<a real question>"`` against that index: process start to the
   first answer, as a user runs it (the question is embedded by the ONNX export).
3. *serving*: ``Engine.load`` of that index, then ``engine.retrieve`` and ``engine.ask`` over
   the synthetic queries; their times plus, per query, the measured time of the ONNX export
   embedding a real question (median of three). Its peak memory is the serving process's.

Vectors are generated directly (no model): unit vectors around cluster centres inside a
64-dimensional subspace plus a little noise, which keeps nearest neighbours meaningful the way
sentence embeddings do. Texts are word sequences drawn from a Zipf-distributed vocabulary
mixed with words specific to each cluster; each passage has three answer sentences (its
thirds) whose vectors are the passage's plus noise. Queries are perturbed copies of random
passages (vector) and six of their words (text). The engine's embedder is a lookup of those
vectors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import machine_summary, percentile, run_child, update_section

log = logging.getLogger("benchmark.scale")

DIMENSION, SUBSPACE, WORDS_PER_PASSAGE, VOCABULARY, SENTENCES = 384, 64, 60, 20_000, 3
KINDS = ("treaty", "resolution", "guidelines", "statement", "report",
         "decision", "note", "letter", "study", "summary")
SEED = 20240601


def synthetic_vectors(n: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors in clusters (about 1,000 passages each) and each one's cluster."""
    rng = np.random.default_rng(seed)
    clusters = max(8, n // 1000)
    centres = rng.standard_normal((clusters, DIMENSION), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    basis = rng.standard_normal((SUBSPACE, DIMENSION), dtype=np.float32) / np.sqrt(DIMENSION)
    owner = rng.integers(0, clusters, n)
    vectors = np.empty((n, DIMENSION), dtype=np.float32)
    for start in range(0, n, 100_000):  # in slices, to bound the temporary arrays
        rows = slice(start, min(n, start + 100_000))
        size = rows.stop - rows.start
        spread = rng.standard_normal((size, SUBSPACE), dtype=np.float32) / np.sqrt(SUBSPACE) @ basis
        noise = rng.standard_normal((size, DIMENSION), dtype=np.float32) / np.sqrt(DIMENSION)
        block = centres[owner[rows]] + 0.8 * spread + 0.3 * noise
        vectors[rows] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors, owner


def synthetic_texts(owner: np.ndarray, seed: int = SEED) -> list[str]:
    """One passage of ``WORDS_PER_PASSAGE`` words per vector: Zipf-common words and words of
    the passage's cluster (so the lexical and the dense signal agree, as in real text)."""
    rng = np.random.default_rng(seed + 1)
    common = np.array([f"w{i}" for i in range(VOCABULARY)])
    texts = []
    for start in range(0, len(owner), 100_000):
        block = owner[start:start + 100_000]
        ranks = np.minimum(rng.zipf(1.3, (len(block), WORDS_PER_PASSAGE)), VOCABULARY) - 1
        words = common[ranks].astype(object)
        topical = rng.random((len(block), WORDS_PER_PASSAGE)) < 0.3
        topic_words = rng.integers(0, 200, (len(block), WORDS_PER_PASSAGE))
        for row, cluster in enumerate(block):
            cols = np.flatnonzero(topical[row])
            words[row, cols] = [f"c{cluster}t{t}" for t in topic_words[row, cols]]
        texts.extend(" ".join(row) for row in words)
    return texts


def synthetic_sentences(texts: list[str], vectors: np.ndarray, target: Path,
                        seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Each passage's three answer sentences (its word thirds, as (chunk, start, end) spans)
    and their vectors (the passage's plus noise), written to ``target`` as a memory-mapped
    ``.npy``: at 1M passages they are 4.3 GiB."""
    rng = np.random.default_rng(seed + 3)
    spans = np.zeros((len(texts) * SENTENCES, 3), dtype=np.int32)
    per = WORDS_PER_PASSAGE // SENTENCES
    for i, text in enumerate(texts):
        starts = np.cumsum([0] + [len(w) + 1 for w in text.split(" ")])  # where each word starts
        bounds = [int(starts[j * per]) for j in range(SENTENCES)] + [len(text) + 1]
        spans[i * SENTENCES:(i + 1) * SENTENCES] = [(i, bounds[j], bounds[j + 1] - 1) for j in range(SENTENCES)]
    out = np.lib.format.open_memmap(target, mode="w+", dtype=np.float32, shape=(len(spans), DIMENSION))
    for start in range(0, len(vectors), 100_000):
        block = np.repeat(vectors[start:start + 100_000], SENTENCES, axis=0)
        block += 0.6 * rng.standard_normal(block.shape, dtype=np.float32) / np.sqrt(DIMENSION)
        out[start * SENTENCES:start * SENTENCES + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    out.flush()
    return spans, out


def synthetic_queries(vectors: np.ndarray, texts: list[str], count: int,
                      seed: int = SEED) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``count`` queries near random passages: a perturbed vector and six of the passage's
    words; returns (texts, vectors, the passages they were made from)."""
    rng = np.random.default_rng(seed + 2)
    picks = rng.choice(len(vectors), size=count, replace=False)
    noise = rng.standard_normal((count, DIMENSION), dtype=np.float32) / np.sqrt(DIMENSION)
    queries = vectors[picks] + 0.5 * noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    words = [texts[p].split() for p in picks]
    texts_out = [f"query{n} " + " ".join(rng.choice(w, size=6, replace=False)) for n, w in enumerate(words)]
    return texts_out, queries.astype(np.float32), picks


class LookupEmbedder:
    """Stands in for the MiniLM embedder: returns the prepared vector of each query text."""

    name, batch_size, path = "lookup", 32, None

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self._vectors = dict(zip(texts, vectors, strict=True))
        self.dimension = vectors.shape[1]

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        other = np.eye(1, self.dimension, dtype=np.float32)[0]  # any text but a query's (the warm-up)
        return np.stack([self._vectors.get(t, other) for t in texts])


def synthetic_chunks(texts: list[str], owner: np.ndarray) -> list:
    """Passages with the metadata the retriever reads (one document per cluster)."""
    from rag.chunking import Chunk

    return [Chunk(chunk_id=f"doc-{c}/paragraph-{i}", doc_id=f"doc-{c}", title=f"Document {c}",
                  short_title=f"Doc {c}", year=2000 + i % 25, kind=KINDS[i % len(KINDS)],
                  section=f"Paragraph {i % 50 + 1}", section_title="", start=0, end=len(text), text=text)
            for i, (text, c) in enumerate(zip(texts, owner, strict=True))]


def _timed(function, items) -> tuple[list, list[float]]:
    """``function`` applied to each item, and each call's time in milliseconds."""
    results, times = [], []
    for item in items:
        started = time.perf_counter()
        results.append(function(item))
        times.append(1000 * (time.perf_counter() - started))
    return results, times


def _overlap(found: list, expected: list, k: int = 10) -> float:
    """Mean share of each expected top ``k`` that was found."""
    return float(np.mean([len(set(f[:k]) & set(e[:k])) / k for f, e in zip(found, expected, strict=True)]))


def build_size(n: int, queries: int, workdir: Path, onnx_dir: Path) -> dict:
    """Process 1: build the synthetic index for ``n`` passages, time the search through it,
    and write it to ``workdir/index`` (the queries to ``workdir/queries.npz``)."""
    import faiss

    from rag.corpus import load_corpus
    from rag.index_store import _write_build, expected_identity, make_faiss_index
    from rag.instruments import QueryCues
    from rag.lexical import LexicalIndex
    from rag.retrieval import Filters, HybridRetriever
    from rag.settings import Settings

    settings = Settings()
    vectors, owner = synthetic_vectors(n)
    texts = synthetic_texts(owner)
    query_texts, query_vectors, picks = synthetic_queries(vectors, texts, queries)
    np.savez(workdir / "queries.npz", texts=np.array(query_texts), vectors=query_vectors, picks=picks)
    spans, sentence_vectors = synthetic_sentences(texts, vectors, workdir / "sentence_vectors.npy")
    chunks = synthetic_chunks(texts, owner)
    del texts
    started = time.perf_counter()
    index = make_faiss_index(vectors, settings)
    faiss_build = time.perf_counter() - started
    started = time.perf_counter()
    lexical = LexicalIndex([c.embed_text for c in chunks])
    lexical_build = time.perf_counter() - started
    # Without answer sentences, as measured before they existed here: the exact path's
    # sentence blend would read all of them for every reference query.
    retriever = HybridRetriever(chunks, vectors, index, LookupEmbedder(query_texts, query_vectors), settings,
                                lexical=lexical)
    result = {"passages": n, "faiss_index": type(index).__name__, "faiss_build_s": faiss_build,
              "lexical_build_s": lexical_build, "queries": queries}

    exact = faiss.IndexFlatIP(DIMENSION)
    exact.add(vectors)
    _, truth = exact.search(query_vectors, 10)
    del exact
    found, dense_ms = _timed(lambda q: retriever._dense_top(q, settings.candidate_pool, None), query_vectors)
    result |= _summary("dense", dense_ms) | {"recall_at_10": _overlap([f[:10].tolist() for f in found],
                                                                      truth.tolist())}
    if isinstance(index, faiss.IndexHNSW):  # the recall/latency trade-off of efSearch
        for ef in (64, 128, 256):
            params = faiss.SearchParametersHNSW(efSearch=ef)
            found, times = _timed(lambda q: index.search(q[None], 10, params=params)[1][0], query_vectors)  # noqa: B023
            result[f"recall_ef{ef}"] = _overlap([f.tolist() for f in found], truth.tolist())
            result[f"dense_ef{ef}_p50_ms"] = statistics.median(times)
    filters = {"": lambda i: None, "kind": lambda i: Filters(kinds=[KINDS[0]]),
               "document": lambda i: Filters(doc_ids=[chunks[picks[i]].doc_id])}
    for name, make in filters.items():
        chosen = [make(i) for i in range(queries)]
        hits, search_ms = _timed(lambda i: retriever.search(query_texts[i], 10, QueryCues(), chosen[i]),  # noqa: B023
                                 range(queries))
        _, mask_ms = _timed(lambda f: f and retriever.allowed_mask(f.doc_ids, f.kinds, f.years), chosen)
        sample = range(min(50, queries))  # the exact path is slow at 1M: a sample suffices
        reference = _exact_path_search(retriever, [query_texts[i] for i in sample], [chosen[i] for i in sample])
        result |= _summary(f"search{name}", search_ms) | _summary(f"mask{name}", mask_ms)
        result[f"agreement{name}"] = _overlap([[h.chunk.chunk_id for h in hits[i]] for i in sample],
                                              [[h.chunk.chunk_id for h in r] for r in reference])
    # Written as `spacesec build` writes, recorded as built from the shipped corpus (whose
    # catalogue the engine uses), with the real embedder's ONNX export for real questions.
    export = workdir / "onnx"
    shutil.copytree(onnx_dir, export, copy_function=os.link)
    started = time.perf_counter()
    identity = expected_identity(load_corpus(settings.corpus_dir), settings)
    _write_build(workdir / "index", identity, chunks, vectors, spans, sentence_vectors, index, lexical, export)
    result["write_s"] = time.perf_counter() - started
    folder = workdir / "index" / "current"
    result["index_mb"] = os.path.getsize(folder / "dense.faiss") / 2**20
    result["folder_mb"] = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    return result


def serve_size(workdir: Path, questions: Path) -> dict:
    """Process 3: the engine over the written index: ``retrieve`` and ``ask`` per query, and
    the ONNX export's time to embed a real question (added to both, per query)."""
    from rag.embedding import OnnxEmbedder
    from rag.engine import Engine
    from rag.settings import Settings

    saved = np.load(workdir / "queries.npz")
    texts, vectors = [str(t) for t in saved["texts"]], saved["vectors"]
    settings = Settings(index_dir=workdir / "index")
    started = time.perf_counter()
    engine = Engine.load(settings, rebuild=False, embedder=LookupEmbedder(texts, vectors))
    result = {"engine_load_s": time.perf_counter() - started}
    model = OnnxEmbedder(engine.index.onnx_dir, threads=settings.onnx_threads)
    model.embed(["warm up"])
    real = [json.loads(line)["question"] for line in questions.read_text().splitlines() if line.strip()]
    passes = [_timed(lambda i: model.embed([real[i % len(real)]]), range(len(texts)))[1] for _ in range(3)]
    embed_ms = np.median(passes, axis=0).tolist()  # per query, the median of 3: less noise
    result |= _summary("embed", embed_ms)
    for name, call in (("retrieve", lambda q: engine.retrieve(q, k=10)), ("ask", engine.ask)):
        engine.retriever.embed_query.cache_clear()
        answers, times = _timed(call, texts)
        result |= _summary(name, [e + t for e, t in zip(embed_ms, times, strict=True)])
        if name == "ask":
            result["answered"] = sum(not a.abstained for a in answers) / len(answers)
    return result


def _summary(name: str, times: list[float]) -> dict:
    return {f"{name}_p50_ms": statistics.median(times), f"{name}_p95_ms": percentile(times, 0.95)}


def _exact_path_search(retriever, queries: list[str], filters: list) -> list:
    """``retriever.search`` results as the exact (small-corpus) path computes them."""
    from rag.instruments import QueryCues

    indexed = retriever.settings
    retriever.settings = indexed.model_copy(update={"exact_search_max_passages": len(retriever.chunks)})
    try:
        return [retriever.search(q, 10, QueryCues(), f) for q, f in zip(queries, filters, strict=True)]
    finally:
        retriever.settings = indexed


def format_table(rows: list[dict]) -> str:
    """The results as a Markdown table, one column per corpus size."""
    def pair(key: str, digits: int = 1):
        return lambda r: f"{r[key + '_p50_ms']:.{digits}f} / {r[key + '_p95_ms']:.{digits}f} ms"

    lines = [
        ("FAISS index", lambda r: r["faiss_index"]),
        ("FAISS index build / BM25 index build", lambda r: f"{r['faiss_build_s']:.1f} / {r['lexical_build_s']:.1f} s"),
        ("writing the index (all files, checksums)", lambda r: f"{r['write_s']:.1f} s"),
        ("FAISS index file / whole index folder",
         lambda r: f"{r['index_mb']:,.0f} / {r['folder_mb']:,.0f} MiB"),
        ("**cold start** (`spacesec ask`, process start to answer)", lambda r: f"{r['cold_s']:.1f} s"),
        ("of which `Engine.load` (in the serving process)", lambda r: f"{r['engine_load_s']:.1f} s"),
        ("peak memory: cold start / serving (load, 200 retrieve, 200 ask)",
         lambda r: f"{r['cold_rss_mb']:,.0f} / {r['serve_rss_mb']:,.0f} MiB"),
        ("peak memory: build process", lambda r: f"{r['build_rss_mb']:,.0f} MiB"),
        ("FAISS top-40 p50 / p95", pair("dense", 2)),
        ("recall@10 of the FAISS index vs exact", lambda r: f"{r['recall_at_10']:.3f}"),
        ("same at efSearch 64 / 128 / 256 (p50 of a top-10 search)", lambda r: (
            " / ".join(f"{r[f'recall_ef{ef}']:.3f}" for ef in (64, 128, 256)) + " ("
            + " / ".join(f"{r[f'dense_ef{ef}_p50_ms']:.2f}" for ef in (64, 128, 256)) + " ms)"
            if "recall_ef64" in r else "exact")),
        ("search p50 / p95 (k=10, query vector given)", pair("search")),
        ("question embedding (ONNX, a real question) p50 / p95", pair("embed")),
        ("**retrieve p50 / p95** (`engine.retrieve`, k=10, incl. embedding)", pair("retrieve")),
        ("**ask p50 / p95** (`engine.ask`, incl. embedding)", pair("ask")),
        ("share of asks answered (not abstained)", lambda r: f"{r['answered']:.2f}"),
        ("top-10 agreement with the exact path", lambda r: f"{r['agreement']:.3f}"),
        ("search, kind filter (10% pass) p50 / p95, incl. its mask", pair("searchkind")),
        ("search, the query's own document p50 / p95, incl. its mask", pair("searchdocument")),
        ("of which `allowed_mask` p50: kind / document", lambda r: f"{r['maskkind_p50_ms']:.1f} / {r['maskdocument_p50_ms']:.1f} ms"),
        ("agreement with the exact path: kind / document filter",
         lambda r: f"{r['agreementkind']:.3f} / {r['agreementdocument']:.3f}"),
    ]
    table = ["| passages | " + " | ".join(f"{r['passages']:,}" for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    return "\n".join(table + [f"| {name} | " + " | ".join(show(r) for r in rows) + " |" for name, show in lines])


def _export(target: Path) -> Path:
    """The bundled model's ONNX export (in a child process: the parent stays small)."""
    code = ("import sys; from rag.onnx_export import export_onnx; from rag.settings import Settings; "
            "name = Settings().embedder; export_onnx(name, sys.argv[1], name=name)")
    run_child([sys.executable, "-c", code, str(target)])
    return target


def measure_size(size: int, args: argparse.Namespace, onnx_dir: Path, scratch: Path) -> dict:
    """The three processes for one size; the index is deleted afterwards."""
    workdir = scratch / f"size-{size}"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    me = [sys.executable, __file__, "--queries", str(args.queries), "--questions", args.questions,
          "--workdir", str(workdir)]
    try:
        build = run_child(me + ["--worker", "build", "--size", str(size), "--onnx", str(onnx_dir)])
        row = json.loads(build.stdout.splitlines()[-1]) | {"build_rss_mb": build.max_rss_mb}
        (workdir / "sentence_vectors.npy").unlink()  # the index holds its own copy
        question = json.loads(Path(args.questions).read_text().splitlines()[0])["question"]
        cold = run_child([str(Path(sys.executable).with_name("spacesec")), "--corpus-dir", str(ROOT / "corpus"),
                          "--index-dir", str(workdir / "index"), "ask", question])
        serve = run_child(me + ["--worker", "serve"])
        return row | json.loads(serve.stdout.splitlines()[-1]) | {
            "cold_s": cold.seconds, "cold_rss_mb": cold.max_rss_mb, "serve_rss_mb": serve.max_rss_mb,
            "seconds": build.seconds + cold.seconds + serve.seconds}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated passage counts")
    parser.add_argument("--queries", type=int, default=200, help="queries per size")
    parser.add_argument("--questions", default=str(ROOT.parent / "shared" / "eval" / "dev.jsonl"),
                        help="real questions, embedded for the retrieve and ask timings")
    parser.add_argument("--scratch", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "spacesec-scale"),
                        help="where each size's index is written (about 9 GiB at 1M passages), then deleted")
    parser.add_argument("--out", default=str(ROOT / "docs" / "PERFORMANCE.md"))
    parser.add_argument("--no-write", action="store_true", help="print the table only")
    parser.add_argument("--worker", choices=["build", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "build":
        print(json.dumps(build_size(args.size, args.queries, Path(args.workdir), Path(args.onnx))))
        return 0
    if args.worker == "serve":
        print(json.dumps(serve_size(Path(args.workdir), Path(args.questions))))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    load_before = os.getloadavg()
    scratch = Path(args.scratch)
    scratch.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        onnx_dir = _export(scratch / "onnx")
        for size in (int(s) for s in args.sizes.split(",")):
            log.info("%s passages ...", f"{size:,}")
            rows.append(measure_size(size, args, onnx_dir, scratch))
            log.info("  done in %.0f s (load average %.1f)", rows[-1]["seconds"], os.getloadavg()[0])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table = format_table(rows)
    print(table)
    if not args.no_write:
        note = (f"Measured {time.strftime('%Y-%m-%d')} on {machine_summary()}; load average "
                f"{load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after (a shared machine). "
                f"{args.queries} queries per size; agreement with the exact path on the first 50. "
                "Wall time per size: " + ", ".join(f"{r['passages']:,}: {r['seconds']:.0f} s" for r in rows) + ".")
        update_section(Path(args.out), "scale", f"{note}\n\n{table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
