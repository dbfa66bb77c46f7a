"""The persisted index: atomic builds, incremental re-embedding, damage detection, kills."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    CORPUS_DIR,
    ROOT,
    TESTS_DIR,
    FakeEmbedder,
    copy_corpus,
    copy_index,
    make_settings,
    tree_hashes,
)
from robustness.workers import wait_for_line

from rag.corpus import load_corpus, write_manifest
from rag.corpus import read_manifest as read_corpus_manifest
from rag.engine import Engine
from rag.index_store import (
    IndexError_,
    build_index,
    check_index,
    chunk_corpus,
    current_dir,
    expected_identity,
    fingerprint,
    load_index,
    read_manifest,
)

WORKER = TESTS_DIR / "build_worker.py"
OST = "outer-space-treaty-1967"


def identity_of(settings) -> dict:
    return expected_identity(load_corpus(settings.corpus_dir), settings)


def append_paragraph(settings, doc_id: str, sentence: str) -> None:
    path = settings.corpus_dir / f"{doc_id}.md"
    path.write_text(path.read_text(encoding="utf-8").rstrip("\n") + f"\n\n{sentence}\n", encoding="utf-8")


def data_files(index_dir: Path) -> dict[str, bytes]:
    folder = current_dir(index_dir)
    manifest = read_manifest(index_dir)
    return {name: (folder / name).read_bytes() for name in manifest["files"]}


# -- building ----------------------------------------------------------------------------
def test_build_creates_current_symlink_to_fingerprinted_build(scratch_corpus, fake_embedder):
    report = build_index(scratch_corpus, fake_embedder)
    index_dir = scratch_corpus.index_dir
    identity = identity_of(scratch_corpus)
    fp = fingerprint(identity)
    assert report.rebuilt and report.fingerprint == fp
    assert report.documents == 11
    current = index_dir / "current"
    assert current.is_symlink()
    assert os.readlink(current) == os.path.join("builds", fp)  # relative: the folder can move
    assert sorted(p.name for p in (index_dir / "builds").iterdir()) == [fp]
    assert not [p.name for p in index_dir.iterdir() if p.name.startswith((".current-", ".tmp"))]
    manifest = read_manifest(index_dir)
    assert manifest["fingerprint"] == fp and manifest["embedder"] == scratch_corpus.embedder
    assert check_index(index_dir, identity) is None
    loaded = load_index(index_dir, identity)
    assert len(loaded.chunks) == report.chunks == manifest["chunk_count"] == loaded.faiss_index.ntotal
    assert loaded.vectors.shape == (report.chunks, FakeEmbedder.DIM)
    assert report.embedded == len(set(fake_embedder.embedded_texts)) > report.chunks // 2


def test_unchanged_build_is_a_no_op(scratch_corpus, fake_embedder):
    first = build_index(scratch_corpus, fake_embedder)
    before = tree_hashes(scratch_corpus.index_dir)
    fake_embedder.reset()
    again = build_index(scratch_corpus, fake_embedder)
    assert not again.rebuilt and again.embedded == 0
    assert again.fingerprint == first.fingerprint and again.chunks == first.chunks
    assert fake_embedder.calls == []
    assert tree_hashes(scratch_corpus.index_dir) == before


def test_missing_index_reported_and_built_by_engine_load(scratch_corpus, fake_embedder):
    identity = identity_of(scratch_corpus)
    assert check_index(scratch_corpus.index_dir, identity) == "no index has been built"
    with pytest.raises(IndexError_, match="spacesec build"):
        Engine.load(scratch_corpus, rebuild=False, embedder=fake_embedder)
    engine = Engine.load(scratch_corpus, embedder=fake_embedder)
    assert check_index(scratch_corpus.index_dir, identity) is None
    assert engine.retrieve("registration of space objects", k=2)


def test_edit_makes_index_stale_and_rebuild_embeds_only_what_changed(scratch_corpus):
    first = FakeEmbedder()
    build_index(scratch_corpus, first)
    old_identity = identity_of(scratch_corpus)
    old_chunks = chunk_corpus(load_corpus(scratch_corpus.corpus_dir), first, scratch_corpus)
    old_vectors = {c.embed_text: v for c, v in
                   zip(old_chunks, load_index(scratch_corpus.index_dir, old_identity).vectors)}

    path = scratch_corpus.corpus_dir / f"{OST}.md"
    text = path.read_text(encoding="utf-8")
    old_sentence = "States Parties to the Treaty undertake not to place in orbit around the earth"
    assert text.count(old_sentence) == 1  # the first sentence of Article IV
    path.write_text(text.replace(old_sentence, old_sentence.replace("earth", "Earth")), encoding="utf-8")

    identity = identity_of(scratch_corpus)
    assert check_index(scratch_corpus.index_dir, identity) == "index is stale (documents changed)"
    with pytest.raises(IndexError_, match="stale"):
        load_index(scratch_corpus.index_dir, identity)

    second = FakeEmbedder()
    report = build_index(scratch_corpus, second)
    assert report.rebuilt
    embedded = set(second.embedded_texts)
    assert report.embedded == len(embedded) > 0
    # Nothing embedded in the first build is embedded again ...
    assert not embedded & set(first.embedded_texts)
    # ... the changed passages are, and everything embedded belongs to the edited document.
    new_chunks = chunk_corpus(load_corpus(scratch_corpus.corpus_dir), second, scratch_corpus)
    changed = [c for c in new_chunks if c.embed_text not in old_vectors]
    assert [c.chunk_id for c in changed] == [f"{OST}/article-iv/1"]
    assert {c.embed_text for c in changed} <= embedded
    assert all(t.startswith("Outer Space Treaty, ") for t in embedded), embedded
    assert len(embedded) < len(set(first.embedded_texts)) // 20
    # Unchanged passages keep their vectors bit for bit.
    loaded = load_index(scratch_corpus.index_dir, identity)
    for chunk, vector in zip(loaded.chunks, loaded.vectors):
        if chunk.embed_text in old_vectors:
            assert np.array_equal(vector, old_vectors[chunk.embed_text]), chunk.chunk_id
    assert sorted(p.name for p in (scratch_corpus.index_dir / "builds").iterdir()) == [report.fingerprint]


def test_manifest_metadata_change_makes_index_stale(scratch_corpus, fake_embedder):
    build_index(scratch_corpus, fake_embedder)
    entries = read_corpus_manifest(scratch_corpus.corpus_dir)
    next(e for e in entries if e["doc_id"] == OST)["licence_note"] += " (edited)"
    write_manifest(scratch_corpus.corpus_dir, entries)
    identity = identity_of(scratch_corpus)
    assert check_index(scratch_corpus.index_dir, identity) == "index is stale (catalogue changed)"
    fake_embedder.reset()
    report = build_index(scratch_corpus, fake_embedder)
    # The licence note is not embedded, so nothing needs embedding again.
    assert report.rebuilt and report.embedded == 0
    assert check_index(scratch_corpus.index_dir, identity) is None


def test_changing_the_embedder_setting_makes_index_stale(scratch_corpus):
    first = FakeEmbedder()
    build_index(scratch_corpus, first)
    other = scratch_corpus.model_copy(update={"embedder": "some-other-embedder"})
    assert check_index(other.index_dir, identity_of(other)) == "index is stale (embedder changed)"
    second = FakeEmbedder(name="some-other-embedder")
    report = build_index(other, second)
    # Vectors of another model are never reused.
    assert report.embedded == len(set(first.embedded_texts)) == len(set(second.embedded_texts))
    assert check_index(other.index_dir, identity_of(other)) is None


def test_changing_chunk_settings_makes_index_stale(scratch_corpus, fake_embedder):
    build_index(scratch_corpus, fake_embedder)
    other = scratch_corpus.model_copy(update={"chunk_max_tokens": 128})
    assert check_index(other.index_dir, identity_of(other)) == "index is stale (chunker changed)"


# -- damage ------------------------------------------------------------------------------
def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


DAMAGE = {
    "dense.faiss": (_flip_byte, "dense.faiss"),
    "chunks.jsonl": (_truncate, "chunks.jsonl"),
    "vectors.npy": (Path.unlink, "vectors.npy"),
    "manifest.json": (lambda p: p.write_text("{ garbage", encoding="utf-8"), "unreadable"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_damaged_index_is_detected_and_rebuilt(scratch_corpus, name):
    build_index(scratch_corpus, FakeEmbedder())
    identity = identity_of(scratch_corpus)
    original = data_files(scratch_corpus.index_dir)
    damage, expected_words = DAMAGE[name]
    damage(current_dir(scratch_corpus.index_dir) / name)

    problem = check_index(scratch_corpus.index_dir, identity)
    assert problem is not None and expected_words in problem
    with pytest.raises(IndexError_):
        load_index(scratch_corpus.index_dir, identity)
    with pytest.raises(IndexError_):
        Engine.load(scratch_corpus, rebuild=False, embedder=FakeEmbedder())

    engine = Engine.load(scratch_corpus, embedder=FakeEmbedder())
    assert check_index(scratch_corpus.index_dir, identity) is None
    assert data_files(scratch_corpus.index_dir) == original  # rebuilt to the same bytes
    assert engine.retrieve("nuclear weapons in orbit", k=3)


def test_dangling_current_symlink_is_rebuilt(scratch_corpus):
    report = build_index(scratch_corpus, FakeEmbedder())
    shutil.rmtree(scratch_corpus.index_dir / "builds" / report.fingerprint)
    identity = identity_of(scratch_corpus)
    assert check_index(scratch_corpus.index_dir, identity) is not None
    Engine.load(scratch_corpus, embedder=FakeEmbedder())
    assert check_index(scratch_corpus.index_dir, identity) is None


# -- determinism ---------------------------------------------------------------------------
def test_two_builds_from_scratch_are_byte_identical(tmp_path):
    corpus = copy_corpus(tmp_path / "corpus")
    a = make_settings(corpus, tmp_path / "index-a")
    b = make_settings(corpus, tmp_path / "index-b")
    build_index(a, FakeEmbedder())
    build_index(b, FakeEmbedder())
    files_a, files_b = data_files(a.index_dir), data_files(b.index_dir)
    assert {"chunks.jsonl", "vectors.npy", "dense.faiss"} <= set(files_a)
    assert files_a == files_b
    assert read_manifest(a.index_dir)["files"] == read_manifest(b.index_dir)["files"]


def _small_corpus(directory: Path, doc_ids: list[str]) -> Path:
    directory.mkdir()
    entries = [e for e in read_corpus_manifest(CORPUS_DIR) if e["doc_id"] in doc_ids]
    for entry in entries:
        shutil.copy(CORPUS_DIR / entry["file"], directory / entry["file"])
    write_manifest(directory, entries)
    return directory


@pytest.mark.slow
def test_real_embedder_builds_are_byte_identical(tmp_path, real_embedder):
    corpus = _small_corpus(tmp_path / "corpus", ["cspo-2024-florence-joint-statement"])
    a = make_settings(corpus, tmp_path / "index-a")
    b = make_settings(corpus, tmp_path / "index-b")
    build_index(a, real_embedder)
    build_index(b, real_embedder)
    files_a, files_b = data_files(a.index_dir), data_files(b.index_dir)
    assert files_a["chunks.jsonl"] == files_b["chunks.jsonl"]
    assert files_a["vectors.npy"] == files_b["vectors.npy"]
    assert files_a == files_b


# -- permissions -------------------------------------------------------------------------------
_LOAD_SCRIPT = """
import json, os, sys
sys.path.insert(0, {tests!r})
from conftest import FakeEmbedder, make_settings
from rag.engine import Engine
settings = make_settings({corpus!r}, {index!r})
out = {{"writable": os.access({index!r}, os.W_OK), "error": None}}
try:
    engine = Engine.load(settings, embedder=FakeEmbedder())
    out["chunks"] = len(engine.index.chunks)
except Exception as exc:
    out["error"] = type(exc).__name__
    out["message"] = str(exc)
print(json.dumps(out))
"""


def _unprivileged_prefix() -> list[str]:
    """Root writes anywhere (CAP_DAC_OVERRIDE); run the check without that capability."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return []
    caps = "-dac_override,-dac_read_search"
    return ["setpriv", "--bounding-set", caps, "--inh-caps", caps, "--"]


def _load_in_subprocess(corpus: Path, index: Path) -> dict:
    script = _LOAD_SCRIPT.format(tests=str(TESTS_DIR), corpus=str(corpus), index=str(index))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run([*_unprivileged_prefix(), sys.executable, "-c", script], check=False,
                            capture_output=True, text=True, env=env, timeout=120, cwd="/")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def _set_writable(path: Path, writable: bool) -> None:
    for item in [path, *path.rglob("*")]:
        if item.is_symlink():
            continue
        mode = item.stat().st_mode
        os.chmod(item, mode | 0o200 if writable else mode & ~0o222)


@pytest.mark.slow
def test_read_only_index_loads_when_current_and_fails_clearly_when_stale(tmp_path):
    base = tmp_path
    index = base / "index"
    try:
        settings = make_settings(copy_corpus(base / "corpus"), index)
        report = build_index(settings, FakeEmbedder())
        _set_writable(index, False)
        before = tree_hashes(index)

        fresh = _load_in_subprocess(settings.corpus_dir, index)
        if fresh["writable"]:
            pytest.skip("this user can write a read-only folder")
        assert fresh["error"] is None, fresh
        assert fresh["chunks"] == report.chunks

        append_paragraph(settings, OST, "A new closing paragraph that makes the index stale.")
        stale = _load_in_subprocess(settings.corpus_dir, index)
        assert stale["error"] == "IndexError_", stale
        assert str(index) in stale["message"]
        assert "writable" in stale["message"] and "SPACESEC_INDEX_DIR" in stale["message"]
        assert tree_hashes(index) == before
    finally:
        _set_writable(base, True)


# -- killed builds -----------------------------------------------------------------------------
def _start_worker(settings, embedder: str, *, force: bool = False, pause: str | None = None,
                  log: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(WORKER), str(settings.corpus_dir), str(settings.index_dir), embedder]
    cmd += ["--force"] if force else []
    cmd += ["--pause", pause] if pause else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env)


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def _assert_loadable(index_dir: Path, allowed: dict[str, dict]) -> str:
    """The index that ``current`` names is complete and loads for the identity it claims."""
    manifest = read_manifest(index_dir)
    assert manifest is not None, "index/current/manifest.json is missing or unreadable"
    fp = manifest["fingerprint"]
    assert fp in allowed, f"current claims {fp}, neither the old nor the new corpus state"
    assert check_index(index_dir, allowed[fp]) is None
    loaded = load_index(index_dir, allowed[fp])
    assert len(loaded.chunks) == manifest["chunk_count"] > 0
    return fp


@pytest.mark.slow
def test_killed_real_build_never_leaves_a_half_written_index(tmp_path, real_engine, real_embedder):
    settings = make_settings(copy_corpus(tmp_path / "corpus"), tmp_path / "index")
    copy_index(real_engine.settings.index_dir, settings.index_dir)
    identity = identity_of(settings)
    assert check_index(settings.index_dir, identity) is None  # starts from a sound real index
    current = {fingerprint(identity): identity}
    survivors = []
    for n, delay in enumerate((0.5, 2.0, 4.0)):
        append_paragraph(settings, OST, f"Closing remark number {n} about orbital debris and lunar dust.")
        new = identity_of(settings)
        proc = _start_worker(settings, "real", log=tmp_path / f"worker-{n}.log")
        try:
            proc.wait(timeout=delay)  # a build that finishes sooner is simply not killed
        except subprocess.TimeoutExpired:
            pass
        _kill(proc)
        fp = _assert_loadable(settings.index_dir, {**current, fingerprint(new): new})
        survivors.append("new" if fp == fingerprint(new) else "old")
        current = {fp: new if fp == fingerprint(new) else next(iter(current.values()))}
    # After any of those kills, a complete build brings the index up to date and tidies up.
    report = build_index(settings, real_embedder)
    assert check_index(settings.index_dir, identity_of(settings)) is None
    if report.rebuilt:
        assert sorted(os.listdir(settings.index_dir / "builds")) == [report.fingerprint]
    print("survivors after kills at 0.5/2/4 s:", survivors)


@pytest.mark.slow
@pytest.mark.parametrize("phase, survivor", [
    ("tmp-partial", "old"), ("before-rename", "old"), ("before-swap", "old"), ("after-swap", "new")])
def test_build_killed_at_each_write_phase(tmp_path, phase, survivor):
    settings = make_settings(copy_corpus(tmp_path / "corpus"), tmp_path / "index")
    build_index(settings, FakeEmbedder())
    old = identity_of(settings)
    append_paragraph(settings, OST, "A closing remark that changes the corpus.")
    new = identity_of(settings)
    proc = _start_worker(settings, "fake", pause=phase, log=tmp_path / "worker.log")
    try:
        wait_for_line(proc, f"PAUSED {phase}")
    finally:
        _kill(proc)
    fp = _assert_loadable(settings.index_dir, {fingerprint(old): old, fingerprint(new): new})
    assert fp == fingerprint(old if survivor == "old" else new)
    report = build_index(settings, FakeEmbedder())
    assert check_index(settings.index_dir, new) is None
    if report.rebuilt:
        assert sorted(os.listdir(settings.index_dir / "builds")) == [report.fingerprint]


@pytest.mark.slow
def test_force_rebuild_killed_before_rename_keeps_the_previous_index(tmp_path):
    settings = make_settings(copy_corpus(tmp_path / "corpus"), tmp_path / "index")
    build_index(settings, FakeEmbedder())
    identity = identity_of(settings)
    proc = _start_worker(settings, "fake", force=True, pause="before-rename", log=tmp_path / "worker.log")
    try:
        wait_for_line(proc, "PAUSED before-rename")
    finally:
        _kill(proc)
    _assert_loadable(settings.index_dir, {fingerprint(identity): identity})
