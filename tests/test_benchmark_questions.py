"""The question sets written by other people (`benchmarks/*questions*.jsonl`, and the everyday
probe `benchmarks/everyday_probe.jsonl`): they load as evaluation items, their quotes are in the
documents, and the states set names a state in every question (what it measures)."""

from __future__ import annotations

import json

import pytest

from rag.evaluation import load_items
from rag.settings import ROOT
from rag.states import without_state_names

SETS = sorted([*(ROOT / "benchmarks").glob("*questions*.jsonl"), ROOT / "benchmarks" / "everyday_probe.jsonl"])


@pytest.mark.parametrize("path", SETS, ids=lambda p: p.name)
def test_each_set_has_both_halves_and_verbatim_quotes(path, corpus_texts):
    items = load_items(path)
    answerable = [i for i in items if i.answerable]
    assert len(answerable) >= 30 and len(items) - len(answerable) >= 30
    assert all(i.gold for i in answerable)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    missing = [(r["id"], g["doc"]) for r in rows for g in r["gold"] if " ".join(g["quote"].split()) not in corpus_texts[g["doc"]]]
    assert not missing


def test_every_question_of_the_states_set_names_a_state():
    items = load_items(ROOT / "benchmarks" / "state_questions.jsonl")
    assert [i.id for i in items if without_state_names(i.question) == i.question] == []
