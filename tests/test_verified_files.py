"""rag/verified_files.py: a build's files are hashed once, then trusted while unchanged."""

from __future__ import annotations

import json
import os

import pytest
from conftest import FakeEmbedder, copy_corpus, make_settings

from rag import verified_files
from rag.corpus import load_corpus
from rag.index_store import build_index, check_index, current_build, expected_identity
from rag.verified_files import VERIFIED_FILE, first_unsound, sha256_file


@pytest.fixture
def hashed(monkeypatch):
    """The names of the files hashed; files count as settled as soon as they are written."""
    names: list[str] = []

    def counting(path):
        names.append(path.name)
        return sha256_file(path)

    monkeypatch.setattr(verified_files, "sha256_file", counting)
    monkeypatch.setattr(verified_files, "RACY_NS", -10**12)
    return names


def folder_with(tmp_path, **texts):
    for name, text in texts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path, {name: sha256_file(tmp_path / name) for name in texts}


def test_sound_files_are_hashed_once_then_trusted_while_unchanged(tmp_path, hashed):
    folder, files = folder_with(tmp_path, a="alpha", b="beta")
    assert first_unsound(folder, files) is None and sorted(hashed) == ["a", "b"]
    hashed.clear()
    assert first_unsound(folder, files) is None and hashed == []
    assert set(json.loads((folder / VERIFIED_FILE).read_text())) == {"a", "b"}


def test_a_rewritten_file_is_hashed_again_and_found_corrupted(tmp_path, hashed):
    folder, files = folder_with(tmp_path, a="alpha", b="beta")
    assert first_unsound(folder, files) is None
    (folder / "b").write_text("bet!", encoding="utf-8")  # same size
    stat = (folder / "b").stat()
    os.utime(folder / "b", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # even within one clock tick
    hashed.clear()
    assert first_unsound(folder, files) == "b" and hashed == ["b"]


def test_a_file_changed_within_the_timestamp_granularity_is_still_caught(tmp_path):
    """Just-written files are not recorded: a same-size rewrite in the same clock tick would
    leave their times unchanged."""
    folder, files = folder_with(tmp_path, a="alpha")
    assert first_unsound(folder, files) is None
    assert not (folder / VERIFIED_FILE).exists()
    (folder / "a").write_text("alphA", encoding="utf-8")
    assert first_unsound(folder, files) == "a"


def test_missing_files_and_a_damaged_record_are_handled(tmp_path, hashed):
    folder, files = folder_with(tmp_path, a="alpha")
    (folder / VERIFIED_FILE).write_text("{not json", encoding="utf-8")
    assert first_unsound(folder, files) is None and hashed == ["a"]  # checked in full
    assert first_unsound(folder, files | {"gone": "0" * 64}) == "gone"
    assert first_unsound(folder, {"../a": files["a"]}) == "../a"


def test_loading_a_built_index_reads_no_file_in_full(tmp_path, hashed):
    settings = make_settings(copy_corpus(tmp_path / "corpus"), tmp_path / "index")
    build_index(settings, FakeEmbedder())
    identity = expected_identity(load_corpus(settings.corpus_dir), settings)
    assert len(hashed) > 5  # the build hashed its files, and recorded them
    hashed.clear()
    assert check_index(settings.index_dir, identity) is None and hashed == []
    (current_build(settings.index_dir) / VERIFIED_FILE).unlink()  # e.g. an index copied elsewhere
    assert check_index(settings.index_dir, identity) is None and len(hashed) > 5
    hashed.clear()
    assert check_index(settings.index_dir, identity) is None and hashed == []
    chunks = current_build(settings.index_dir) / "chunks.jsonl"
    chunks.write_bytes(chunks.read_bytes().replace(b"Outer", b"Inner", 1))
    assert check_index(settings.index_dir, identity) == "index file chunks.jsonl is missing or corrupted"
