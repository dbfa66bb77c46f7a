"""An index whose manifest disagrees with its files is never answered from: it is rebuilt,
or the load stops with a message saying what to do."""

from __future__ import annotations

import json

import pytest
from conftest import FakeEmbedder

from rag.engine import Engine
from rag.index_store import IndexError_, build_index, current_dir


def _edit_manifest(settings, **changes) -> None:
    path = current_dir(settings.index_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest), encoding="utf-8")


@pytest.mark.parametrize("changes, words", [
    ({"chunk_count": 3}, "disagree"),
    ({"embedder": "some-other-model"}, "embedder changed"),
    ({"documents": {}}, "documents changed"),
])
def test_manifest_that_disagrees_is_refused_then_rebuilt(scratch_corpus, changes, words):
    build_index(scratch_corpus, FakeEmbedder())
    _edit_manifest(scratch_corpus, **changes)
    with pytest.raises(IndexError_, match=words):
        Engine.load(scratch_corpus, rebuild=False, embedder=FakeEmbedder())
    engine = Engine.load(scratch_corpus, embedder=FakeEmbedder())
    assert engine.index.manifest["chunk_count"] == len(engine.index.chunks) > 3
    assert engine.retrieve("nuclear weapons in orbit", k=2)


def test_an_edited_corpus_file_is_never_answered_from_the_old_index(scratch_corpus):
    build_index(scratch_corpus, FakeEmbedder())
    path = scratch_corpus.corpus_dir / "outer-space-treaty-1967.md"
    path.write_text(path.read_text(encoding="utf-8").replace("nuclear weapons", "zebra herds"), encoding="utf-8")
    with pytest.raises(IndexError_, match="stale"):
        Engine.load(scratch_corpus, rebuild=False, embedder=FakeEmbedder())
    engine = Engine.load(scratch_corpus, embedder=FakeEmbedder())
    article_iv = [c for c in engine.index.chunks if c.chunk_id.startswith("outer-space-treaty-1967/article-iv/")]
    assert article_iv and all("zebra herds" in c.text for c in article_iv[:1])
