"""Question files given to ``spacesec eval`` and ``spacesec brief`` are checked line by line
before any question is run: a bad line is named, a huge file is refused, a failed write leaves
no temporary file, and ``-v`` shows the traceback of a failure nobody foresaw."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from rag import briefing, cli

GOOD = {"id": "q1", "type": "direct", "question": "What does the Outer Space Treaty say about nuclear weapons?",
        "answerable": True, "gold": [{"doc": "outer-space-treaty-1967", "quote": "not to place in orbit"}],
        "answer_keywords": ["nuclear"], "history": []}


class CountingEngine:
    """Stands in for the engine: records that something tried to answer."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.asked: list[str] = []

    def __getattr__(self, name):
        return getattr(self.engine, name)

    def ask(self, question, *args, **kwargs):
        self.asked.append(question)
        return self.engine.ask(question, *args, **kwargs)

    def retrieve(self, question, *args, **kwargs):
        self.asked.append(question)
        return self.engine.retrieve(question, *args, **kwargs)


@pytest.fixture
def counting(fake_engine, monkeypatch) -> CountingEngine:
    engine = CountingEngine(fake_engine)
    monkeypatch.setattr(cli, "_engine", lambda args: engine)
    return engine


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


# -- spacesec eval ------------------------------------------------------------------------
BAD_EVAL_FILES = {
    "empty file": ([], "no questions"),
    "blank lines only": (["", "   "], "no questions"),
    "not json": ([GOOD, "{not json"], "line 2"),
    "not an object": ([GOOD, "[1, 2]"], "line 2"),
    "missing question": ([GOOD, {k: v for k, v in GOOD.items() if k != "question"} | {"id": "q2"}], "line 2"),
    "empty question": ([GOOD | {"id": "q2", "question": "  "}], "line 1"),
    "answerable as text": ([GOOD | {"answerable": "false"}], "line 1"),
    "answerable as number": ([GOOD | {"answerable": 0}], "line 1"),
    "gold empty for answerable": ([GOOD, GOOD | {"id": "q2", "gold": []}], "line 2"),
    "gold quote missing": ([GOOD | {"gold": [{"doc": "x"}]}], "line 1"),
    "gold not a list": ([GOOD | {"gold": "a quote"}], "line 1"),
    "keywords not text": ([GOOD | {"answer_keywords": [1, 2]}], "line 1"),
    "history not messages": ([GOOD | {"history": ["hello"]}], "line 1"),
    "duplicate id": ([GOOD, GOOD], "line 2"),
}


@pytest.mark.parametrize("name", list(BAD_EVAL_FILES))
def test_eval_refuses_a_bad_question_file_before_running_anything(tmp_path, counting, capsys, name):
    rows, words = BAD_EVAL_FILES[name]
    path = _jsonl(tmp_path / "questions.jsonl", rows)
    code = cli.main(["eval", "--qa", str(path), "--no-baselines"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "questions.jsonl" in err and words in err, err
    assert "Traceback" not in err
    assert counting.asked == []


def test_eval_with_only_unanswerable_items_scores_answers_only(tmp_path, counting, capsys):
    row = GOOD | {"answerable": False, "gold": [], "question": "What is the capital of France?"}
    path = _jsonl(tmp_path / "questions.jsonl", [row])
    code = cli.main(["eval", "--qa", str(path), "--no-baselines"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "no answerable questions" in out and "abstention_accuracy" in out


def test_eval_of_a_good_file_still_runs(tmp_path, counting, capsys):
    path = _jsonl(tmp_path / "questions.jsonl", [GOOD, GOOD | {"id": "q2", "answerable": False, "gold": []}])
    assert cli.main(["eval", "--qa", str(path), "--no-baselines", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["retrieval"]["space-security-rag"]["all"]["n"] == 1
    assert {"keyword_hit", "abstention_accuracy"} <= set(report["answers"]["all"])


_BROKEN_COMMAND = """
import sys
from rag import cli

def broken(args):
    raise ZeroDivisionError("something nobody foresaw")

cli.cmd_retrieve = broken
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_verbose_shows_the_traceback_of_an_unforeseen_failure(verbose):
    argv = (["-v"] if verbose else []) + ["retrieve", "anything"]
    result = subprocess.run([sys.executable, "-c", _BROKEN_COMMAND, *argv], capture_output=True, text=True,
                            timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stderr
    assert "error: unexpected failure (ZeroDivisionError: something nobody foresaw)" in result.stderr
    if verbose:
        assert "Traceback" in result.stderr and "in broken" in result.stderr, result.stderr
    else:
        assert "run with -v for details" in result.stderr and "Traceback" not in result.stderr


# -- spacesec brief -------------------------------------------------------------------------
def _questions(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("bad, words", [
    ("What about \x07 bells?", "control characters"),
    ("x" * 2001, "2,001 characters"),
])
def test_brief_names_the_bad_line_before_answering_anything(tmp_path, counting, capsys, bad, words):
    path = _questions(tmp_path / "questions.txt", [
        "# my questions", "What does the Outer Space Treaty say about nuclear weapons?", "", bad,
        "Who is liable for damage caused by a space object?"])
    code = cli.main(["brief", str(path), "--out", str(tmp_path / "out.md"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "questions.txt, line 4" in err and words in err, err
    assert counting.asked == []
    assert not (tmp_path / "out.md").exists()


def test_brief_refuses_too_many_questions_with_the_limit(tmp_path, counting, capsys):
    count = briefing.MAX_QUESTIONS + 1
    path = _questions(tmp_path / "many.txt", [f"Question number {n} about outer space?" for n in range(count)])
    code = cli.main(["brief", str(path), "--out", str(tmp_path / "out.md"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{count:,} questions" in err and f"at most {briefing.MAX_QUESTIONS}" in err, err
    assert counting.asked == []


def test_a_failed_briefing_write_leaves_no_temporary_file(tmp_path, counting, capsys):
    path = _questions(tmp_path / "questions.txt", ["What does the Outer Space Treaty say about nuclear weapons?"])
    out = tmp_path / "x.md"
    out.mkdir()  # the output name is taken by a folder: the final rename fails
    code = cli.main(["brief", str(path), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and "x.md" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["questions.txt", "x.md"]
    assert list(out.iterdir()) == []
