"""Fixtures of the robustness tests that change the corpus or the index.

* ``workspace``: a private corpus copy with a current fake-embedder index, copied afresh for
  every test from one build per module.
"""

from __future__ import annotations

import shutil

import pytest
from conftest import FakeEmbedder, copy_corpus, copy_index, make_settings

from rag.index_store import build_index


@pytest.fixture(scope="module")
def _indexed_template(tmp_path_factory):
    base = tmp_path_factory.mktemp("robustness-template")
    settings = make_settings(copy_corpus(base / "corpus"), base / "index")
    build_index(settings, FakeEmbedder())
    return settings


@pytest.fixture
def workspace(_indexed_template, tmp_path):
    """Settings over a fresh copy of the corpus and of its current (fake-embedder) index."""
    settings = make_settings(tmp_path / "corpus", tmp_path / "index")
    shutil.copytree(_indexed_template.corpus_dir, settings.corpus_dir)
    copy_index(_indexed_template.index_dir, settings.index_dir)
    return settings
