"""The persisted index: chunk store, vectors and FAISS index, built atomically, checked at load.

Layout: ``index/current`` is a symlink to ``index/builds/<fingerprint>/``. A build writes a
new folder and then swaps the symlink in one ``rename``, so a killed build leaves the
previous index in place and loadable.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import faiss
import numpy as np

from rag.abstention import Vocabulary
from rag.chunking import CHUNKER_VERSION, Chunk, chunk_document
from rag.corpus import Corpus, load_corpus
from rag.embedding import Embedder, OnnxEmbedder, is_onnx_folder
from rag.learn.model_store import PAIR_LORA, QUERY_LORA, TunedModelError, read_tuned_model
from rag.lexical import LexicalIndex, document_counts
from rag.sentences import answer_units
from rag.settings import Settings
from rag.stored_rows import StoredRows, open_rows
from rag.verified_files import first_unsound, hash_files

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 2: BM25, answer tables and the ONNX export saved with the build; 3: acronyms in the vocabulary
CHUNKS_FILE, VECTORS_FILE, FAISS_FILE, MANIFEST_FILE = (
    "chunks.jsonl", "vectors.npy", "dense.faiss", "manifest.json")
# Answer sentences: (chunk index, start, end) in the chunk's text, and their vectors.
SENTENCES_FILE, SENTENCE_VECTORS_FILE = "sentences.npy", "sentence_vectors.npy"
# What answering needs about the whole corpus, computed by the build so a start reads it:
# each term's passage count (idf weights) and the corpus's words (abstention).
TERMS_FILE, VOCABULARY_TEXT, VOCABULARY_TOKENS = "text_terms.json", "vocabulary.txt", "vocabulary_tokens.json"
# Folders: the BM25 index (bm25s's files), and the embedder's ONNX export that embedded the
# passages and embeds the questions (with ``embedder_runtime`` "onnx").
LEXICAL_DIR, ONNX_DIR, QUERY_ONNX_DIR, PAIR_ONNX_DIR = "bm25", "onnx", "query-onnx", "pair-onnx"
#: Bumped when the tokeniser of ``rag.lexical`` changes, so saved BM25 indexes are rebuilt.
LEXICAL_VERSION = 1
# Libraries whose versions change the vectors or scores an index holds, per embedder runtime.
_LIBRARIES = {"onnx": ("bm25s", "faiss-cpu", "onnxruntime", "space-security-rag"),
              "torch": ("bm25s", "faiss-cpu", "sentence-transformers", "space-security-rag")}
#: Files every build has: a manifest that does not list a checksum for each is not trusted.
REQUIRED_FILES = (CHUNKS_FILE, VECTORS_FILE, FAISS_FILE, SENTENCES_FILE, SENTENCE_VECTORS_FILE,
                  TERMS_FILE, VOCABULARY_TEXT, VOCABULARY_TOKENS)
#: Written first into every build folder: a build deletes only folders that carry it.
BUILD_MARKER = ".spacesec-build"
_BUILD_NAME = re.compile(r"(?:\.tmp-)?[0-9a-f]{20}(?:-\d+)*")
#: Scratch folders of the ONNX exports, named by the building process.
_SCRATCH_NAME = re.compile(r"\.(?:query-)?onnx-\d+")


class IndexError_(RuntimeError):
    """The index cannot be used or written; the message says what to do."""


@dataclass(frozen=True)
class BuildReport:
    documents: int
    chunks: int
    embedded: int
    seconds: float
    rebuilt: bool
    fingerprint: str


@dataclass
class LoadedIndex:
    """An index as loaded: ``vectors`` is a view of the FAISS index's own storage (one copy in
    memory), ``sentence_vectors`` are read from the file as needed (``rag.stored_rows``) and the
    BM25 arrays are memory-mapped."""

    manifest: dict
    chunks: list[Chunk]
    vectors: np.ndarray
    faiss_index: faiss.Index
    sentences: np.ndarray
    sentence_vectors: np.ndarray | StoredRows
    lexical: LexicalIndex | None = None
    #: The ONNX export of the embedder, when the build made one.
    onnx_dir: Path | None = None
    #: ``rag.lexical.document_counts`` of the passages' texts.
    text_terms: dict[str, int] | None = None
    #: The words of the passages' texts (``rag.abstention.Vocabulary``).
    vocabulary: Vocabulary | None = None
    #: The ONNX export of the tuned query encoder, when there is a tuned model.
    query_onnx_dir: Path | None = None
    #: The ONNX export of the tuned model's pair model (``rag.learn.pair_model``), when it has one.
    pair_onnx_dir: Path | None = None

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]


def _library_versions(runtime: str) -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES[runtime]:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


def expected_identity(corpus: Corpus, settings: Settings) -> dict:
    """What an index must have been built from to be current for this corpus and settings."""
    entries = {d.doc_id: hashlib.sha256(json.dumps(d.__dict__, sort_keys=True).encode()).hexdigest()
               for d in corpus.documents}
    return {
        "format": FORMAT_VERSION,
        "documents": corpus.checksums(),
        "catalogue": entries,
        "embedder": settings.embedder,
        "embedder_runtime": settings.embedder_runtime,
        "chunker": {"version": CHUNKER_VERSION, "max_tokens": settings.chunk_max_tokens,
                    "target_words": settings.chunk_target_words},
        "lexical": LEXICAL_VERSION,
        "libraries": _library_versions(settings.embedder_runtime),
        "query_model": tuned_model_identity(settings),
    }


def tuned_model_identity(settings: Settings) -> dict | None:
    """What the tuned query model was trained on (questions, documents, base model), or None
    when the installed model is used as is. A changed model makes the index stale."""
    if not settings.use_tuned_model:
        return None
    try:
        tuned = read_tuned_model(settings.tuned_model_dir, settings.embedder)
    except (TunedModelError, ValueError):
        return None  # the engine says why when it loads
    if tuned is None:
        return None
    keys = ("questions_sha256", "documents", "base_model_sha256")
    return {"digest": tuned.digest} | {k: tuned.manifest.get(k) for k in keys}


def fingerprint(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]


def current_dir(index_dir: Path) -> Path:
    return index_dir / "current"


def current_build(index_dir: Path) -> Path | None:
    """The build folder ``current`` links to, resolved once (a reader then reads every file
    from it, whatever a concurrent build does to ``current``); None when ``current`` is not
    a symbolic link to a folder (missing, a loop, a real folder)."""
    link = current_dir(index_dir)
    if not link.is_symlink():
        return None
    try:
        folder = link.resolve(strict=True)
    except (OSError, RuntimeError):  # dangling, or a loop
        return None
    return folder if folder.is_dir() else None


def _read_build_manifest(folder: Path) -> dict | None:
    try:
        manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def read_manifest(index_dir: Path) -> dict | None:
    folder = current_build(index_dir)
    return None if folder is None else _read_build_manifest(folder)


def check_index(index_dir: Path, identity: dict) -> str | None:
    """Why the current index cannot be used for ``identity``, or None when it is sound."""
    return _check_build(index_dir, current_build(index_dir), identity)


def _check_build(index_dir: Path, folder: Path | None, identity: dict) -> str | None:
    if folder is None:
        link = current_dir(index_dir)
        if not link.exists() and not link.is_symlink():
            return "no index has been built"
        return "index/current is not a link to a build folder"
    manifest = _read_build_manifest(folder)
    if manifest is None:
        return "index manifest is unreadable"
    for key in ("format", "documents", "catalogue", "embedder", "embedder_runtime", "chunker", "lexical",
                "libraries", "query_model"):
        if manifest.get(key) != identity[key]:
            return f"index is stale ({key} changed)"
    if manifest.get("fingerprint") != fingerprint(identity):  # built when the identity had other parts
        return "index is stale (built by another version)"
    files = manifest.get("files")
    if (not isinstance(files, dict) or not set(REQUIRED_FILES) <= set(files)
            or not any(str(name).startswith(LEXICAL_DIR + "/") for name in files)):
        return "index manifest does not list a checksum for every index file"
    unsound = first_unsound(folder, files)
    return f"index file {unsound} is missing or corrupted" if unsound is not None else None


def load_index(index_dir: Path, identity: dict) -> LoadedIndex:
    """Load the current index after checking it matches ``identity`` byte for byte."""
    folder = current_build(index_dir)
    problem = _check_build(index_dir, folder, identity)
    if problem:
        raise IndexError_(f"{problem}; run 'spacesec build'.")
    manifest = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
    chunks = _read_chunks(folder)
    index = faiss.read_index(str(folder / FAISS_FILE))
    vectors = stored_vectors(index)  # the index's own copy: vectors.npy is for builds only
    sentences = np.load(folder / SENTENCES_FILE, allow_pickle=False)
    # Read as questions need them (large corpora): a question reads only its passages' rows.
    sentence_vectors = open_rows(folder / SENTENCE_VECTORS_FILE)
    lexical = LexicalIndex.load(folder / LEXICAL_DIR)
    if not (len(chunks) == len(vectors) == index.ntotal == manifest["chunk_count"] == lexical.size
            and len(sentences) == len(sentence_vectors)):
        raise IndexError_("index parts disagree on the number of passages; run 'spacesec build --force'.")
    onnx_dir, query_onnx_dir, pair_onnx_dir = (folder.resolve() / name if is_onnx_folder(folder / name) else None
                                               for name in (ONNX_DIR, QUERY_ONNX_DIR, PAIR_ONNX_DIR))
    return LoadedIndex(manifest, chunks, vectors, index, sentences, sentence_vectors, lexical, onnx_dir,
                       json.loads((folder / TERMS_FILE).read_text(encoding="utf-8")),
                       Vocabulary.load(folder / VOCABULARY_TEXT, folder / VOCABULARY_TOKENS),
                       query_onnx_dir, pair_onnx_dir)


class _StoredVectors(np.ndarray):
    """A numpy view of a FAISS index's memory that keeps the index alive (``owner``)."""

    owner: faiss.Index | None = None


def stored_vectors(index: faiss.Index) -> np.ndarray:
    """The vectors a flat or HNSW-flat FAISS index stores, as a read-only numpy view of its
    memory (no copy); the view, and any slice of it, keeps ``index`` alive."""
    flat = faiss.downcast_index(index.storage) if isinstance(index, faiss.IndexHNSW) else index
    if flat.ntotal == 0:
        return np.zeros((0, flat.d), dtype=np.float32)
    memory = faiss.rev_swig_ptr(flat.get_xb(), flat.ntotal * flat.d).reshape(flat.ntotal, flat.d)
    view = memory.view(_StoredVectors)
    view.owner = index
    view.flags.writeable = False
    return view


#: Chunk fields whose values repeat across a document's passages: held once each.
_SHARED_FIELDS = ("doc_id", "title", "short_title", "kind", "section", "section_title")


def _read_chunks(folder: Path) -> list[Chunk]:
    # Line by line: the file's text is never held whole beside the objects made from it.
    shared: dict[str, str] = {}
    chunks = []
    with (folder / CHUNKS_FILE).open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                fields = json.loads(line)
                for name in _SHARED_FIELDS:
                    fields[name] = shared.setdefault(fields[name], fields[name])
                chunks.append(Chunk(**fields))
    return chunks


def _key(embedder: str, text: str) -> str:
    return f"{embedder}:{hashlib.sha256(text.encode('utf-8')).hexdigest()[:24]}"


def sentence_texts(chunks: list[Chunk], spans: np.ndarray) -> list[str]:
    """What the embedder reads for each answer sentence: its instrument and section, then the text."""
    return [f"{chunks[c].header}: {chunks[c].text[a:b]}" for c, a, b in spans]


def _previous_vectors(index_dir: Path) -> dict[str, np.ndarray]:
    """Vectors of the current build by embedder and embedded text, to skip re-embedding them."""
    folder = current_build(index_dir)
    manifest = None if folder is None else _read_build_manifest(folder)
    try:
        if manifest is None or first_unsound(folder, manifest["files"]) is not None:
            return {}
        chunks = _read_chunks(folder)
        spans = np.load(folder / SENTENCES_FILE, allow_pickle=False)
        texts = [c.embed_text for c in chunks] + sentence_texts(chunks, spans)
        vectors = np.concatenate([np.load(folder / VECTORS_FILE, allow_pickle=False),
                                  np.load(folder / SENTENCE_VECTORS_FILE, allow_pickle=False)])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return {}
    return {_key(manifest["embedder"], t): v for t, v in zip(texts, vectors, strict=False)}


def _embed_cached(texts: list[str], known: dict[str, np.ndarray], embedder: Embedder, name: str,
                  progress: bool) -> tuple[np.ndarray, int]:
    """Vectors for ``texts``, embedding only those not in ``known``; returns (vectors, embedded)."""
    keys = [_key(name, t) for t in texts]
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        fresh = embedder.embed([t for _, t in missing], progress=progress)
        known.update({k: v for (k, _), v in zip(missing, fresh, strict=True)})
    if not texts:
        return np.zeros((0, embedder.dimension), np.float32), 0
    return np.stack([known[k] for k in keys]).astype(np.float32), len(missing)


def choose_faiss_index(passages: int, settings: Settings | None = None) -> str:
    """The FAISS index class for ``passages`` vectors: exact ``IndexFlatIP`` up to
    ``settings.exact_search_max_passages`` (or always without settings), ``IndexHNSWFlat`` above."""
    if settings is None or passages <= settings.exact_search_max_passages:
        return "IndexFlatIP"
    return "IndexHNSWFlat"


def make_faiss_index(vectors: np.ndarray, settings: Settings | None = None) -> faiss.Index:
    """Inner-product search over ``vectors`` (normalised, so this is cosine); the class is
    chosen by ``choose_faiss_index``. HNSW keeps searches fast at a million passages."""
    dimension = vectors.shape[1]
    if choose_faiss_index(len(vectors), settings) == "IndexFlatIP":
        index = faiss.IndexFlatIP(dimension)
    else:
        index = faiss.IndexHNSWFlat(dimension, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = settings.hnsw_ef_construction
        index.hnsw.efSearch = settings.hnsw_ef_search
    index.add(vectors)
    return index


@contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def chunk_corpus(corpus: Corpus, embedder: Embedder, settings: Settings, progress: bool = False) -> list[Chunk]:
    from tqdm import tqdm

    chunks: list[Chunk] = []
    for doc in tqdm(corpus.documents, desc="documents", unit="doc", disable=not progress):
        chunks.extend(chunk_document(corpus.text(doc), doc, embedder.count_tokens,
                                     settings.chunk_max_tokens, settings.chunk_target_words))
    return chunks


def build_index(settings: Settings, embedder: Embedder, force: bool = False, progress: bool = False) -> BuildReport:
    """Build the index if it is missing, stale or damaged (always with ``force``)."""
    started = time.perf_counter()
    corpus = load_corpus(settings.corpus_dir)
    identity = expected_identity(corpus, settings)
    index_dir = settings.index_dir
    scratch: list[Path] = []  # exports not yet moved into a build: removed whatever happens
    try:
        with _build_lock(index_dir):
            _sweep(index_dir)
            if not force and check_index(index_dir, identity) is None:
                manifest = read_manifest(index_dir)
                wanted = choose_faiss_index(manifest["chunk_count"], settings)
                if manifest.get("faiss_index") == wanted:
                    return BuildReport(len(corpus.documents), manifest["chunk_count"], 0,
                                       time.perf_counter() - started, False, manifest["fingerprint"])
                log.info("the index should now be %s; rebuilding it (nothing is re-embedded)", wanted)
            onnx_dir = _onnx_export(index_dir, embedder, settings)
            # The tuned query encoder fits passages embedded by the model it was trained on.
            tuned_exports = _tuned_exports(index_dir, identity, settings) if onnx_dir else {}
            scratch += [p for p in (onnx_dir, *tuned_exports.values()) if p is not None]
            if onnx_dir is not None:  # the export embeds the passages, as it will the questions
                embedder = OnnxEmbedder(onnx_dir, settings.embed_batch_size, name=settings.embedder)
            chunks = chunk_corpus(corpus, embedder, settings, progress)
            spans = np.array([(i, a, b) for i, c in enumerate(chunks) for a, b in answer_units(c.text)],
                             dtype=np.int32).reshape(-1, 3)
            known = {} if force else _previous_vectors(index_dir)
            vectors, embedded = _embed_cached([c.embed_text for c in chunks], known, embedder,
                                              settings.embedder, progress)
            sentence_vectors, more = _embed_cached(sentence_texts(chunks, spans), known, embedder,
                                                   settings.embedder, progress)
            lexical = LexicalIndex([c.embed_text for c in chunks])
            fp = _write_build(index_dir, identity, chunks, vectors, spans, sentence_vectors,
                              make_faiss_index(vectors, settings), lexical, onnx_dir, tuned_exports)
    except PermissionError as exc:
        raise IndexError_(f"cannot write the index in {index_dir} ({exc.strerror}); "
                          "make it writable or set SPACESEC_INDEX_DIR to a writable folder.") from exc
    finally:
        for folder in scratch:
            shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - started
    log.info("built index %s: %d documents, %d chunks, %d texts embedded in %.1fs",
             fp, len(corpus.documents), len(chunks), embedded + more, seconds)
    return BuildReport(len(corpus.documents), len(chunks), embedded + more, seconds, True, fp)


def _owned_build(path: Path) -> bool:
    """Whether ``path`` is a build folder this index wrote: a real folder (never a symbolic
    link) with a build's name, carrying the marker (or, from before the marker, a manifest
    naming its fingerprint). Nothing else under ``builds/`` is ever deleted."""
    if path.is_symlink() or not path.is_dir() or not _BUILD_NAME.fullmatch(path.name):
        return False
    if (path / BUILD_MARKER).is_file():
        return True
    manifest = _read_build_manifest(path)
    return manifest is not None and manifest.get("fingerprint") == path.name.removeprefix(".tmp-")[:20]


def _sweep(index_dir: Path) -> None:
    """Remove what killed or failed builds left (the caller holds the build lock, so no
    build is running): their temporary folders and their unswapped ``current`` links."""
    builds = index_dir / "builds"
    if builds.is_dir() and not builds.is_symlink():
        for tmp in builds.glob(".*"):
            if _owned_build(tmp) or (_SCRATCH_NAME.fullmatch(tmp.name) and tmp.is_dir() and not tmp.is_symlink()):
                shutil.rmtree(tmp, ignore_errors=True)
            elif tmp.is_dir() and not tmp.is_symlink() and _BUILD_NAME.fullmatch(tmp.name) and not any(tmp.iterdir()):
                tmp.rmdir()  # killed before it held its marker
    for stale in index_dir.glob(".current-*"):
        if stale.is_symlink():
            stale.unlink()


def _bytes_needed(chunks: list[Chunk], vectors: np.ndarray, spans: np.ndarray,
                  sentence_vectors: np.ndarray) -> int:
    """Roughly what a build writes: the vectors twice (file and FAISS), the rest once."""
    text = sum(len(c.text) + len(c.embed_text) + 300 for c in chunks)
    return 2 * vectors.nbytes + spans.nbytes + sentence_vectors.nbytes + text


def _no_space(exc: OSError, folder: Path, needed: int) -> IndexError_ | None:
    """The message for a write that failed for lack of space (numpy's "N requested and M
    written" carries no errno: the free space tells)."""
    free = shutil.disk_usage(folder).free
    if exc.errno != errno.ENOSPC and free >= needed:
        return None
    return IndexError_(f"no space left on the device holding the index ({needed / 1e6:.1f} MB needed, "
                       f"{free / 1e6:.1f} MB free in {folder}); free some space or set "
                       "SPACESEC_INDEX_DIR to a folder on another disk, then build again.")


def _onnx_export(index_dir: Path, embedder: Embedder, settings: Settings) -> Path | None:
    """A scratch folder with the ONNX export of ``embedder`` (None unless the runtime is
    "onnx" and ``embedder`` is a sentence-transformers ``Embedder``): the current build's
    export when it was made from the same model (hard links, nothing re-exported), else a
    fresh one (this imports torch)."""
    if settings.embedder_runtime != "onnx" or not isinstance(embedder, Embedder):
        return None
    scratch = index_dir / "builds" / f".onnx-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.parent.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(index_dir)
    previous = current_dir(index_dir) / ONNX_DIR
    if manifest and manifest.get("embedder") == embedder.name and is_onnx_folder(previous):
        shutil.copytree(previous, scratch, copy_function=_link_or_copy)
    else:
        from rag.onnx_export import export_onnx

        export_onnx(embedder.path, scratch, name=embedder.name)
    return scratch


def _tuned_exports(index_dir: Path, identity: dict, settings: Settings) -> dict[str, Path]:
    """Scratch folders with the ONNX exports of the tuned model's parts (LoRA weights merged into
    the installed model), by the name they take in a build: the query encoder and, when the
    model has one, the pair model. Nothing without a tuned model or on the torch runtime. The
    current build's exports are reused when they came from the same tuned model."""
    if settings.embedder_runtime != "onnx" or identity.get("query_model") is None:
        return {}
    folder = settings.tuned_model_dir
    parts = {QUERY_ONNX_DIR: _export_query_model}
    if (folder / PAIR_LORA).is_dir():
        parts[PAIR_ONNX_DIR] = _export_pair_model
    manifest = read_manifest(index_dir)
    exports = {}
    for name, export in parts.items():
        scratch = index_dir / "builds" / f".{name}-{os.getpid()}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.parent.mkdir(parents=True, exist_ok=True)
        previous = current_dir(index_dir) / name
        if manifest and manifest.get("query_model") == identity["query_model"] and is_onnx_folder(previous):
            shutil.copytree(previous, scratch, copy_function=_link_or_copy)
        else:
            export(settings, scratch)
        exports[name] = scratch
    return exports


def _export_query_model(settings: Settings, scratch: Path) -> None:
    from rag.learn.query_model import load_tuned
    from rag.onnx_export import export_onnx

    export_onnx(load_tuned(settings.embedder, settings.tuned_model_dir / QUERY_LORA), scratch,
                name=f"{settings.embedder}+tuned")


def _export_pair_model(settings: Settings, scratch: Path) -> None:
    from rag.learn.pair_model import load_pair_model
    from rag.onnx_export import export_pair_onnx

    model, tokenizer, max_length = load_pair_model(settings.embedder, settings.tuned_model_dir / PAIR_LORA)
    export_pair_onnx(model, tokenizer, max_length, scratch, name=f"{settings.embedder}+pair")


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _data_files(folder: Path) -> list[str]:
    """Every file of a build folder but its manifest, as paths relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)


def _write_build(index_dir: Path, identity: dict, chunks: list[Chunk], vectors: np.ndarray,
                 spans: np.ndarray, sentence_vectors: np.ndarray, faiss_index: faiss.Index,
                 lexical: LexicalIndex, onnx_dir: Path | None = None,
                 tuned_exports: dict[str, Path] | None = None) -> str:
    fp = fingerprint(identity)
    builds = index_dir / "builds"
    if builds.is_symlink():
        raise IndexError_(f"{builds} is a symbolic link; the index writes and deletes builds only in a "
                          "folder of its own: remove the link or choose another --index-dir.")
    builds.mkdir(parents=True, exist_ok=True)
    tmp = builds / f".tmp-{fp}-{os.getpid()}"
    tmp.mkdir()
    try:
        (tmp / BUILD_MARKER).write_text("written by space-security-rag\n", encoding="utf-8")
        _write_files(tmp, identity, fp, chunks, vectors, spans, sentence_vectors, faiss_index, lexical,
                     onnx_dir, tuned_exports or {})
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            no_space = _no_space(exc, builds, _bytes_needed(chunks, vectors, spans, sentence_vectors))
            if no_space is not None:
                raise no_space from exc
        raise
    return _publish(index_dir, tmp, fp)


def _write_files(tmp: Path, identity: dict, fp: str, chunks: list[Chunk], vectors: np.ndarray,
                 spans: np.ndarray, sentence_vectors: np.ndarray, faiss_index: faiss.Index,
                 lexical: LexicalIndex, onnx_dir: Path | None, tuned_exports: dict[str, Path]) -> None:
    with (tmp / CHUNKS_FILE).open("w", encoding="utf-8") as handle:
        for chunk in chunks:
            handle.write(json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n")
    np.save(tmp / VECTORS_FILE, vectors, allow_pickle=False)
    faiss.write_index(faiss_index, str(tmp / FAISS_FILE))
    np.save(tmp / SENTENCES_FILE, spans, allow_pickle=False)
    np.save(tmp / SENTENCE_VECTORS_FILE, sentence_vectors, allow_pickle=False)
    lexical.save(tmp / LEXICAL_DIR)
    terms = document_counts(c.text for c in chunks)
    (tmp / TERMS_FILE).write_text(json.dumps(terms, sort_keys=True), encoding="utf-8")
    Vocabulary([c.text for c in chunks]).save(tmp / VOCABULARY_TEXT, tmp / VOCABULARY_TOKENS)
    if onnx_dir is not None:
        onnx_dir.rename(tmp / ONNX_DIR)
    for name, export in tuned_exports.items():
        export.rename(tmp / name)
    files = hash_files(tmp, _data_files(tmp))
    manifest = identity | {
        "fingerprint": fp, "files": files, "chunk_count": len(chunks),
        "dimension": int(vectors.shape[1]), "faiss_index": type(faiss_index).__name__,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    for path in tmp.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())


def _publish(index_dir: Path, tmp: Path, fp: str) -> str:
    """Rename the finished build into place, swap ``current`` to it, remove older builds."""
    builds = tmp.parent
    final = builds / fp
    if final.exists() or final.is_symlink():
        if final.resolve() == current_build(index_dir) or not _owned_build(final):
            final = builds / f"{fp}-{time.time_ns()}"  # what `current` points to stays until the swap
        else:
            shutil.rmtree(final)  # left by a build killed before its swap: nothing points to it
    tmp.rename(final)
    link = current_dir(index_dir)
    if link.is_dir() and not link.is_symlink():  # a copy made without links: keep it, out of the way
        aside = index_dir / f"current.moved-{time.time_ns()}"
        link.rename(aside)
        log.warning("%s was a folder, not a link to a build; moved it to %s", link, aside)
    link_tmp = index_dir / f".current-{os.getpid()}"
    link_tmp.unlink(missing_ok=True)
    link_tmp.symlink_to(Path("builds") / final.name)
    os.replace(link_tmp, link)  # the atomic swap
    for old in builds.iterdir():
        if old.name != final.name and _owned_build(old):
            shutil.rmtree(old, ignore_errors=True)
    return fp
