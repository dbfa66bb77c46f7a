"""What a build may delete, what it does when the disk is full, and what ``current`` and the
index manifest must be before anything is served: only the index's own build folders are
ever removed (never through a symbolic link), a failed build leaves no temporary folder and
says how much space it needs, and an index that cannot be checked is rebuilt, not trusted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import namedtuple

import numpy as np
import pytest
from conftest import FakeEmbedder, tree_hashes

from rag import index_store
from rag.corpus import load_corpus
from rag.engine import Engine
from rag.index_store import (
    IndexError_,
    build_index,
    check_index,
    current_dir,
    expected_identity,
    load_index,
)


def _identity(settings) -> dict:
    return expected_identity(load_corpus(settings.corpus_dir), settings)


def _change_corpus(settings, n: int = 0) -> None:
    path = settings.corpus_dir / "outer-space-treaty-1967.md"
    path.write_text(path.read_text(encoding="utf-8") + f"\n\nA closing remark number {n} on lunar dust.\n",
                    encoding="utf-8")


def _unrelated(folder) -> dict:
    folder.mkdir(parents=True)
    (folder / "notes.txt").write_text("precious user data\n", encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "more.bin").write_bytes(b"\x00\x01")
    return tree_hashes(folder)


# -- item 4: a build deletes only its own folders -------------------------------------------
@pytest.mark.parametrize("name", ["release-1.0", "0123456789abcdef0123", ".tmp-0123456789abcdef0123-1", "old"])
def test_a_build_keeps_folders_it_did_not_create(workspace, name):
    folder = workspace.index_dir / "builds" / name
    before = _unrelated(folder)
    _change_corpus(workspace)
    report = build_index(workspace, FakeEmbedder())
    assert report.rebuilt and tree_hashes(folder) == before
    assert check_index(workspace.index_dir, _identity(workspace)) is None
    # its own previous build is gone: only the new build and the user's folder remain
    assert sorted(os.listdir(workspace.index_dir / "builds")) == sorted([report.fingerprint, name])


def test_a_build_never_deletes_through_a_symbolic_link(workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    before = _unrelated(elsewhere / "release-1.0")
    (elsewhere / "0123456789abcdef0123").mkdir()
    (elsewhere / "0123456789abcdef0123" / "data").write_text("mine\n", encoding="utf-8")
    before = tree_hashes(elsewhere)
    (workspace.index_dir / "builds" / "linked").symlink_to(elsewhere)
    _change_corpus(workspace)
    build_index(workspace, FakeEmbedder())
    assert tree_hashes(elsewhere) == before
    assert (workspace.index_dir / "builds" / "linked").is_symlink()


def test_a_builds_folder_that_is_a_symbolic_link_is_refused(workspace, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    _unrelated(elsewhere / "release-1.0")
    shutil.copytree(workspace.index_dir / "builds", elsewhere, dirs_exist_ok=True, symlinks=True)
    shutil.rmtree(workspace.index_dir / "builds")
    (workspace.index_dir / "builds").symlink_to(elsewhere)
    before = tree_hashes(elsewhere)
    _change_corpus(workspace)
    with pytest.raises(IndexError_, match="symbolic link"):
        build_index(workspace, FakeEmbedder())
    assert tree_hashes(elsewhere) == before


# -- item 6: out of disk -----------------------------------------------------------------------
Usage = namedtuple("Usage", "total used free")


def _fill_disk(monkeypatch, free: int = 100_000) -> None:
    """Every .npy write stops part way, as numpy does on a full disk."""
    real_save = np.save

    def save(file, arr, *args, **kwargs):
        with open(file, "wb") as handle:
            handle.write(b"\x93NUMPY" + b"\0" * 100)
        raise OSError(f"{arr.nbytes} requested and 143328 written")

    monkeypatch.setattr(index_store.np, "save", save)
    monkeypatch.setattr(index_store.shutil, "disk_usage", lambda path: Usage(10**9, 10**9 - free, free))
    return real_save


def test_a_build_that_runs_out_of_disk_says_so_and_leaves_no_temporary_folder(workspace, monkeypatch):
    old = current_dir(workspace.index_dir).resolve()
    _change_corpus(workspace)
    _fill_disk(monkeypatch)
    for _ in range(3):  # every attempt fails the same way, and leaves nothing behind
        with pytest.raises(IndexError_) as info:
            build_index(workspace, FakeEmbedder())
        message = str(info.value)
        assert "no space left on the device holding the index" in message and "MB needed" in message, message
        assert sorted(os.listdir(workspace.index_dir / "builds")) == [old.name]
    monkeypatch.undo()  # space freed
    report = build_index(workspace, FakeEmbedder())
    assert report.rebuilt and check_index(workspace.index_dir, _identity(workspace)) is None
    assert sorted(os.listdir(workspace.index_dir / "builds")) == [report.fingerprint]


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs (mounting needs root; skipped elsewhere), unmounted afterwards."""
    folder = tmp_path / "small-disk"
    folder.mkdir()
    if not shutil.which("mount") or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True, check=False)


def test_a_build_on_a_really_full_disk(workspace, small_disk):
    settings = workspace.model_copy(update={"index_dir": small_disk / "index"})
    for _ in range(3):
        with pytest.raises(IndexError_, match="no space left on the device holding the index"):
            build_index(settings, FakeEmbedder())
        assert not any(p.name.startswith(".tmp-") for p in (settings.index_dir / "builds").iterdir())
    subprocess.run(["mount", "-o", "remount,size=16m", str(small_disk)], check=True)  # space freed
    report = build_index(settings, FakeEmbedder())
    assert report.rebuilt and sorted(os.listdir(settings.index_dir / "builds")) == [report.fingerprint]
    assert Engine.load(settings, rebuild=False, embedder=FakeEmbedder()).retrieve("nuclear weapons", k=1)


def test_temporary_folders_of_killed_builds_are_swept_at_the_next_build(workspace):
    builds = workspace.index_dir / "builds"
    for pid in (11, 12):
        stale = builds / f".tmp-0123456789abcdef0123-{pid}"
        stale.mkdir()
        (stale / index_store.BUILD_MARKER).write_text("", encoding="utf-8")
        (stale / "vectors.npy").write_bytes(b"\0" * 1000)
    (builds / ".tmp-0123456789abcdef0123-13").mkdir()  # killed before it held anything
    _change_corpus(workspace)
    report = build_index(workspace, FakeEmbedder())
    assert sorted(os.listdir(builds)) == [report.fingerprint]


# -- item 7: what is loaded must be checked, and read from one build --------------------------
def test_an_index_manifest_without_checksums_is_not_trusted(workspace):
    folder = current_dir(workspace.index_dir)
    chunks = folder / "chunks.jsonl"
    chunks.write_text(chunks.read_text(encoding="utf-8").replace("nuclear weapons", "garden gnomes"),
                      encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    del manifest["files"]
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert check_index(workspace.index_dir, _identity(workspace)) is not None
    with pytest.raises(IndexError_):
        Engine.load(workspace, rebuild=False, embedder=FakeEmbedder())
    engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert not any("garden gnomes" in c.text for c in engine.index.chunks)


def test_an_index_built_for_another_identity_is_stale(workspace):
    """A build whose recorded fingerprint is not this identity's (made by a version whose
    identity had fewer parts, say) is rebuilt, even when every part it records agrees."""
    path = current_dir(workspace.index_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["fingerprint"] = "0123456789abcdef0123"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    assert "stale" in check_index(workspace.index_dir, _identity(workspace))
    engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert engine.index.fingerprint == index_store.fingerprint(_identity(workspace))


@pytest.mark.parametrize("files", [{}, {"chunks.jsonl": "0" * 64}, "not a table"])
def test_an_index_manifest_with_an_incomplete_checksum_table_is_not_trusted(workspace, files):
    path = current_dir(workspace.index_dir) / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"] = files
    path.write_text(json.dumps(manifest), encoding="utf-8")
    assert check_index(workspace.index_dir, _identity(workspace)) is not None


@pytest.mark.parametrize("changed", [True, False], ids=["corpus changed", "corpus unchanged"])
@pytest.mark.parametrize("kind", ["loop to itself", "loop of two", "real folder copy", "real folder garbage"])
def test_a_broken_current_is_rebuilt_not_a_crash(workspace, kind, changed):
    index = workspace.index_dir
    current = current_dir(index)
    build = current.resolve()
    current.unlink()
    if kind == "loop to itself":
        current.symlink_to("current")
    elif kind == "loop of two":
        current.symlink_to("other")
        (index / "other").symlink_to("current")
    elif kind == "real folder copy":
        shutil.copytree(build, current)
    else:
        current.mkdir()
        (current / "manifest.json").write_text("{", encoding="utf-8")
    if changed:
        _change_corpus(workspace)
    engine = Engine.load(workspace, embedder=FakeEmbedder())
    assert current.is_symlink() and check_index(index, _identity(workspace)) is None
    assert any("lunar dust" in c.text for c in engine.index.chunks) == changed
    assert engine.retrieve("nuclear weapons in orbit", k=2)


def test_load_reads_every_part_from_the_build_current_named_at_the_start(workspace, monkeypatch, tmp_path):
    index = workspace.index_dir
    first = _identity(workspace)
    kept = tmp_path / "kept"
    shutil.copytree(current_dir(index).resolve(), kept)
    path = workspace.corpus_dir / "outer-space-treaty-1967.md"
    extra = "".join(f"\n\nArticle {n} remark: lunar dust number {n} settles on crater rim {n}." for n in range(60))
    path.write_text(path.read_text(encoding="utf-8") + "\n\n## Article XVIII" + extra + "\n", encoding="utf-8")
    build_index(workspace, FakeEmbedder())  # a second build, for a bigger corpus
    second = current_dir(index).resolve()
    shutil.copytree(kept, index / "builds" / kept.name)
    os.replace(_symlink(index, kept.name), current_dir(index))
    real_read = index_store.faiss.read_index

    def read_index(path, *args):
        # a concurrent build swaps `current` while this load is half way through
        os.replace(_symlink(index, second.name), current_dir(index))
        return real_read(path, *args)

    monkeypatch.setattr(index_store.faiss, "read_index", read_index)
    loaded = load_index(index, first)
    assert len(loaded.chunks) == len(loaded.vectors) == loaded.faiss_index.ntotal
    assert loaded.manifest["fingerprint"] == index_store.fingerprint(first)
    assert not any("lunar dust" in c.text for c in loaded.chunks)


def _symlink(index, name: str):
    link = index / f".test-link-{name}"
    link.symlink_to(os.path.join("builds", name))
    return link
