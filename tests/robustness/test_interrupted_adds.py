"""``spacesec add`` interrupted (Ctrl-C, SIGKILL) at every step, alone or beside a second
add: the corpus stays loadable and holds either the whole add or none of it, a rollback
touches only its own files, and the next start cleans up whatever was left."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, FakeEmbedder, tree_hashes

from rag.corpus import load_corpus, manifest_bytes, read_manifest
from rag.corpus_writes import commit, corpus_lock, stage
from rag.engine import Engine
from rag.index_store import build_index, check_index, expected_identity
from rag.ingest import add_documents
from robustness.workers import wait_for_line

pytestmark = pytest.mark.slow

WORKER = Path(__file__).resolve().parent / "add_worker.py"
SHIPPED = 11


@pytest.fixture
def incoming(workspace) -> Path:
    folder = workspace.corpus_dir.parent / "incoming"
    folder.mkdir()
    (folder / "slow.txt").write_text("Zorblax slow accord on quasar beacons.\n" * 2000, encoding="utf-8")
    (folder / "other.txt").write_text("Quillian other accord on lunar lighthouses.\n", encoding="utf-8")
    (folder / "third.txt").write_text("Third accord about comet wardens.\n", encoding="utf-8")
    return folder


def _start(settings, name: str, log: Path, pause: str | None = None) -> subprocess.Popen:
    file = settings.corpus_dir.parent / "incoming" / name
    cmd = [sys.executable, str(WORKER), str(settings.corpus_dir), str(settings.index_dir), str(file)]
    cmd += ["--pause", pause] if pause else []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log.open("w"), text=True, env=env)


def _finish(proc: subprocess.Popen, timeout: float = 120) -> int:
    code = proc.wait(timeout=timeout)
    proc.stdout.close()
    return code


def _doc_ids(settings) -> set[str]:
    return {d.doc_id for d in load_corpus(settings.corpus_dir).documents}


def _hidden(settings) -> list[str]:
    return sorted(p.name for p in settings.corpus_dir.iterdir() if p.name.startswith("."))


def _assert_sound(settings) -> None:
    """What every later command does first: load the corpus, then the engine, then add."""
    corpus = load_corpus(settings.corpus_dir)
    assert _hidden(settings) == [], "an interrupted add left files behind"
    engine = Engine.load(settings, embedder=FakeEmbedder())
    assert check_index(settings.index_dir, expected_identity(corpus, settings)) is None
    assert engine.retrieve("nuclear weapons in orbit", k=2)
    third = settings.corpus_dir.parent / "incoming" / "third.txt"
    embedder = FakeEmbedder()
    assert add_documents([third], settings, rebuild=lambda staged=settings: build_index(staged, embedder)) == ["third"]


def test_ctrl_c_of_one_add_beside_a_second_add(workspace, incoming, tmp_path):
    first = _start(workspace, "slow.txt", tmp_path / "first.log", pause="rebuild")
    wait_for_line(first, "PAUSED rebuild")
    second = _start(workspace, "other.txt", tmp_path / "second.log")
    try:
        _finish(second, timeout=5)  # it must wait for the first: it should not finish now
    except subprocess.TimeoutExpired:
        pass
    first.send_signal(signal.SIGINT)
    assert _finish(first) == 130, (tmp_path / "first.log").read_text()
    assert _finish(second) == 0, (tmp_path / "second.log").read_text()
    assert _doc_ids(workspace) == _doc_ids_of_template(workspace) | {"other"}
    assert not (workspace.corpus_dir / "slow.txt").exists()
    _assert_sound(workspace)


def _doc_ids_of_template(settings) -> set[str]:
    manifest = json.loads((Path(__file__).resolve().parents[2] / "corpus" / "manifest.json").read_text())
    return {e["doc_id"] for e in manifest["documents"]}


@pytest.mark.parametrize("phase, survives", [
    ("rebuild", False), ("copy", False), ("before-manifest", False), ("after-manifest", True)])
def test_add_killed_at_each_step_is_all_or_nothing(workspace, incoming, tmp_path, phase, survives):
    before = tree_hashes(workspace.corpus_dir)
    proc = _start(workspace, "other.txt", tmp_path / "worker.log", pause=phase)
    try:
        wait_for_line(proc, f"PAUSED {phase}")
    finally:
        proc.send_signal(signal.SIGKILL)
        _finish(proc)
    ids = _doc_ids(workspace)  # the next start: loads, and cleans up what the add left
    assert len(ids) == SHIPPED + survives
    assert ("other" in ids) == survives
    if not survives:
        assert tree_hashes(workspace.corpus_dir) == before
    _assert_sound(workspace)


def test_sigint_during_the_build_rolls_back_only_its_own_files(workspace, incoming, tmp_path):
    before = tree_hashes(workspace.corpus_dir)
    proc = _start(workspace, "other.txt", tmp_path / "worker.log", pause="rebuild")
    wait_for_line(proc, "PAUSED rebuild")
    proc.send_signal(signal.SIGINT)
    assert _finish(proc) == 130
    assert tree_hashes(workspace.corpus_dir) == before
    _assert_sound(workspace)


def test_a_reader_during_a_commit_sees_the_corpus_before_it(workspace):
    """Between moving new files in and replacing the manifest (milliseconds), a command that
    loads the corpus neither fails on the unlisted new file nor removes a live add's work."""
    entry = {"doc_id": "other", "file": "other.txt", "title": "Other", "short_title": "Other", "year": 2024,
             "kind": "document", "source": "s", "licence_note": "l"}
    with corpus_lock(workspace.corpus_dir):
        staging = stage(workspace.corpus_dir, manifest_bytes(read_manifest(workspace.corpus_dir) + [entry]),
                        {"other.txt": "Quillian other accord.\n"})
        os.replace(staging / "other.txt", workspace.corpus_dir / "other.txt")  # half way through a commit
        (staging / "commit.json").write_text(json.dumps({"manifest": "not yet", "files": {
            "other.txt": hashlib.sha256(b"Quillian other accord.\n").hexdigest()}}))
        assert "other" not in _doc_ids(workspace)
        assert staging.is_dir() and (workspace.corpus_dir / "other.txt").is_file()
        os.replace(workspace.corpus_dir / "other.txt", staging / "other.txt")
        commit(workspace.corpus_dir, staging, ["other.txt"])
    assert "other" in _doc_ids(workspace) and _hidden(workspace) == []
