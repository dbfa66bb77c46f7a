"""The ``spacesec`` command: help, build, retrieve and its error handling."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, FakeEmbedder, copy_corpus, copy_index, make_settings

from rag import cli
from rag.corpus import load_corpus
from rag.index_store import expected_identity, load_index

SPACESEC = Path(sys.executable).parent / "spacesec"
SUMMARY = re.compile(r"^Index (built|up to date): (\d+) documents, (\d+) passages \((\d+) embedded\)", re.MULTILINE)


@pytest.fixture
def real_copy(tmp_path, real_engine):
    """A corpus copy with a copy of the session's real index (current, so nothing is rebuilt)."""
    corpus = copy_corpus(tmp_path / "corpus")
    index = copy_index(real_engine.settings.index_dir, tmp_path / "index")
    return make_settings(corpus, index)


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, check=False, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
def test_help_runs_quickly_in_a_subprocess():
    started = time.perf_counter()
    result = run([str(SPACESEC), "--help"])
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stderr
    for command in ("build", "retrieve", "add"):
        assert command in result.stdout
    assert elapsed < 5, f"--help took {elapsed:.1f} s"


@pytest.mark.slow
def test_help_imports_nothing_heavy():
    code = ("import sys\nfrom rag.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit as e:\n"
            "    code = e.code\nheavy = [m for m in ('torch', 'sentence_transformers', 'faiss', 'bm25s') "
            "if m in sys.modules]\nprint('RESULT', code, heavy)")
    result = run([sys.executable, "-c", code])
    assert result.stdout.strip().splitlines()[-1] == "RESULT 0 []", result.stdout + result.stderr


@pytest.mark.slow
def test_build_up_to_date_prints_summary(real_copy, real_engine, capsys):
    code = cli.main(["--corpus-dir", str(real_copy.corpus_dir), "--index-dir", str(real_copy.index_dir),
                     "build", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    match = SUMMARY.search(out)
    assert match, out
    state, documents, passages, embedded = match.groups()
    assert state == "up to date" and embedded == "0"
    assert int(documents) == len(load_corpus(real_copy.corpus_dir).documents) == 11
    assert int(passages) == len(real_engine.index.chunks)


def test_build_from_scratch_prints_summary(scratch_corpus, monkeypatch, capsys):
    monkeypatch.setattr("rag.embedding.Embedder", lambda name, batch_size=32: FakeEmbedder())
    argv = ["--corpus-dir", str(scratch_corpus.corpus_dir), "--index-dir", str(scratch_corpus.index_dir),
            "build", "--quiet"]
    assert cli.main(argv) == 0
    state, documents, passages, embedded = SUMMARY.search(capsys.readouterr().out).groups()
    loaded = load_index(scratch_corpus.index_dir,
                        expected_identity(load_corpus(scratch_corpus.corpus_dir), scratch_corpus))
    assert state == "built"
    assert int(documents) == 11 and int(passages) == len(loaded.chunks) and int(embedded) >= len(loaded.chunks)
    # Run again: nothing to do.
    assert cli.main(argv) == 0
    assert SUMMARY.search(capsys.readouterr().out).group(1) == "up to date"


@pytest.mark.slow
def test_retrieve_json(real_copy, real_embedder, monkeypatch, capsys):
    monkeypatch.setattr("rag.engine.Embedder", lambda name, batch_size=32: real_embedder)
    code = cli.main(["--corpus-dir", str(real_copy.corpus_dir), "--index-dir", str(real_copy.index_dir),
                     "retrieve", "What does the Outer Space Treaty say about nuclear weapons in orbit?",
                     "--k", "3", "--json"])
    assert code == 0
    items = json.loads(capsys.readouterr().out)
    assert len(items) == 3
    for item in items:
        assert {"chunk_id", "doc_id", "section", "score", "text"} <= set(item)
    assert items[0]["chunk_id"].startswith("outer-space-treaty-1967/article-iv/")


@pytest.mark.slow
def test_retrieve_json_with_doc_filter(real_copy, real_embedder, monkeypatch, capsys):
    monkeypatch.setattr("rag.engine.Embedder", lambda name, batch_size=32: real_embedder)
    code = cli.main(["--corpus-dir", str(real_copy.corpus_dir), "--index-dir", str(real_copy.index_dir),
                     "retrieve", "nuclear weapons", "--doc", "moon-agreement-1979", "--json"])
    assert code == 0
    items = json.loads(capsys.readouterr().out)
    assert items and {i["doc_id"] for i in items} == {"moon-agreement-1979"}


@pytest.mark.slow
def test_empty_question_exits_2_with_one_line_error_in_a_subprocess(real_copy):
    result = run([str(SPACESEC), "--corpus-dir", str(real_copy.corpus_dir),
                  "--index-dir", str(real_copy.index_dir), "retrieve", ""])
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "empty" in lines[0]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


@pytest.mark.slow
@pytest.mark.parametrize("args, words", [
    (["retrieve", "   "], "empty"),
    (["retrieve", "x" * 2001], "2,000"),
    (["retrieve", "nuclear", "--k", "0"], "k must be"),
])
def test_bad_input_exits_2_with_one_line_error(real_copy, real_embedder, monkeypatch, capsys, args, words):
    monkeypatch.setattr("rag.engine.Embedder", lambda name, batch_size=32: real_embedder)
    code = cli.main(["--corpus-dir", str(real_copy.corpus_dir), "--index-dir", str(real_copy.index_dir), *args])
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], captured.err
    assert captured.out == ""


def test_corpus_error_exits_2(tmp_path, capsys):
    corpus = copy_corpus(tmp_path / "corpus")
    (corpus / "stray.md").write_text("stray\n", encoding="utf-8")
    code = cli.main(["--corpus-dir", str(corpus), "--index-dir", str(tmp_path / "index"), "build", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: stray.md") and "Traceback" not in err
