"""benchmarks/held_out_documents.py: the split of the documents and the summary it prints
(the tuning itself is what `spacesec tune` tests cover)."""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import ROOT, load_benchmark

from rag.learn.questions import Question, load_questions, write_questions


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("held_out_documents")


@pytest.fixture(scope="module")
def questions():
    return (load_questions(ROOT / "training" / "questions.jsonl")
            + load_questions(ROOT / "training" / "other_writers.jsonl"))


def test_the_halves_split_every_document_once_with_balanced_questions(bench, questions):
    first, second = bench.document_halves(questions)
    counts = Counter(q.document for q in questions)
    assert set(first).isdisjoint(second)
    assert set(first) | set(second) == set(counts)
    sizes = [sum(counts[d] for d in half) for half in (first, second)]
    # Greedy by size: the halves differ by less than the smallest document.
    assert abs(sizes[0] - sizes[1]) < min(counts.values())
    assert bench.document_halves(list(reversed(questions))) == (first, second)


def test_near_misses_go_with_their_document(bench):
    qs = [Question("a", "plain", "q?", True, "doc-a", "x"), Question("b", "plain", "q?", True, "doc-b", "y"),
          Question("c", "unanswerable", "q?", False, near="doc-b", kind="near-miss")]
    first, second = bench.document_halves(qs)
    assert (first, second) == (["doc-b"], ["doc-a"])


def test_the_summary_counts_outcomes_per_style_and_kind(bench):
    def record(kind, answerable, abstained, partial, confidence, hit=False):
        return {"type": kind, "answerable": answerable, "abstained": abstained, "partial": partial,
                "confidence": confidence, "first_citation_hit": hit}
    records = [record("plain", True, False, False, 0.9, True), record("plain", True, False, True, 0.4),
               record("unanswerable: near-miss", False, True, False, 0.1),
               record("unanswerable: near-miss", False, False, False, 0.95)]
    text = bench.summary(records)
    assert "| plain | 2 | 0.000 | 0.500 | 0.500 |" in text
    assert "| unanswerable: near-miss | 2 | 0.500 | 0.000 | - |" in text
    assert "AUROC of confidence: 0.500 (4 questions)" in text


def test_written_questions_read_back_the_same(tmp_path, questions):
    sample = questions[:50] + [q for q in questions if not q.answerable][:50]
    assert load_questions(write_questions(sample, tmp_path / "q.jsonl")) == sample
