"""The training question set: validation with line numbers, and splits that never share a provision."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from rag.learn.questions import (
    QuestionFileError,
    load_questions,
    split_by_document,
    split_by_provision,
    split_keys,
)

QUESTIONS = ROOT / "training" / "questions.jsonl"


@pytest.fixture(scope="module")
def questions():
    return load_questions(QUESTIONS)


def test_the_shipped_set_loads_whole(questions):
    assert len(questions) == 3384
    assert sum(not q.answerable for q in questions) == 384


def test_provision_split_keeps_each_provision_on_one_side(questions):
    train, held_out = split_by_provision(questions)
    assert not {q.provision for q in train} & {q.provision for q in held_out}
    share = len({q.provision for q in held_out}) / len({q.provision for q in questions})
    assert 0.10 < share < 0.20
    assert split_by_provision(questions) == (train, held_out)  # deterministic
    assert split_by_provision(questions, seed=1) != (train, held_out)


def test_provision_split_is_stable_when_questions_are_added(questions):
    _, held_out = split_by_provision(questions)
    _, held_out_of_fewer = split_by_provision(questions[::2])
    assert set(held_out_of_fewer) <= set(held_out)


def test_document_split_holds_out_the_document_and_its_near_misses(questions):
    doc = "liability-convention-1972"
    train, held_out = split_by_document(questions, doc)
    assert held_out and all(q.document == doc for q in held_out)
    assert not any(q.document == doc for q in train)
    assert any(not q.answerable for q in held_out)


def _write(tmp_path, rows):
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


GOOD = {"id": "u1", "style": "plain", "question": "Who registers satellites?", "answerable": True,
        "doc": "registration-convention-1975", "quote": "shall register the space object"}


@pytest.mark.parametrize("bad, message", [
    ("not json", "line 2: not a JSON object"),
    ([1, 2], "line 2: not a JSON object"),
    ({**GOOD, "id": "u2", "answerable": "false"}, "line 2: 'answerable' must be true or false"),
    ({**GOOD, "id": "u2", "quote": ""}, "line 2: an answerable question needs 'quote'"),
    ({**GOOD, "id": "u2", "style": "chatty"}, "line 2: unknown style 'chatty'"),
    ({**GOOD, "id": "u2", "question": "  "}, "line 2: 'question' must be a non-empty string"),
    (GOOD, "line 2: the id 'u1' is used twice"),
    ({**GOOD, "id": "u2", "twin_of": 7}, "line 2: 'twin_of' names the near miss"),
    ({"id": "u2", "question": "What fine applies?", "answerable": False, "twin_of": "u1"},
     "line 2: 'twin_of' names the near miss an answerable question mirrors"),
])
def test_bad_lines_are_named(tmp_path, bad, message):
    with pytest.raises(QuestionFileError, match=message):
        load_questions(_write(tmp_path, [GOOD, bad]))


def test_an_empty_file_is_refused(tmp_path):
    with pytest.raises(QuestionFileError, match="holds no questions"):
        load_questions(_write(tmp_path, [""]))


@pytest.fixture(scope="module")
def other_writers():
    return load_questions(ROOT / "training" / "other_writers.jsonl")


def test_other_writers_cover_both_halves_and_every_kind(other_writers):
    answerable = [q for q in other_writers if q.answerable]
    # Both halves, every near-miss kind: wording alone must not tell them apart.
    assert len(answerable) >= 300 and len(other_writers) - len(answerable) >= 200
    assert {q.kind for q in other_writers if not q.answerable} >= {
        "figure-not-given", "current-state", "not-regulated", "opinion-or-prediction", "near-miss", "other-instrument"}


@pytest.mark.parametrize("name", ["other_writers", "legality_writers", "near_miss_twins", "scenario_writers"])
def test_other_writers_quotes_are_verbatim_in_their_documents(name, corpus_texts):
    # Quotes train answer selection: one that the document does not hold teaches nothing.
    questions = load_questions(ROOT / "training" / f"{name}.jsonl")
    missing = [q.id for q in questions if q.answerable and " ".join(q.quote.split()) not in corpus_texts[q.doc]]
    assert not missing
    assert all(q.near in corpus_texts for q in questions if not q.answerable)


def _near_misses_and_twins():
    near_misses = [q for name in ("questions", "other_writers", "legality_writers")
                   for q in load_questions(ROOT / "training" / f"{name}.jsonl")
                   if not q.answerable and q.kind == "near-miss"]
    return near_misses, load_questions(ROOT / "training" / "near_miss_twins.jsonl")


def test_each_twin_pairs_with_a_near_miss_about_the_same_document():
    # A twin is the answerable half of a minimal pair: twin_of names the near miss it mirrors.
    near_misses, twins = _near_misses_and_twins()
    by_id = {q.id: q for q in near_misses}
    assert twins and all(q.answerable and q.twin_of for q in twins)
    assert not [q.id for q in twins if q.twin_of not in by_id or by_id[q.twin_of].near != q.doc]


def test_a_near_miss_is_split_with_its_twin_and_the_twins_provision(questions):
    near_misses, twins = _near_misses_and_twins()
    twin = twins[0]
    near = next(q for q in near_misses if q.id == twin.twin_of)
    mates = [q for q in questions if q.answerable and q.provision == twin.provision]
    alone = split_keys([near, *mates])
    together = split_keys([near, twin, *mates])
    assert alone[0] == near.provision != twin.provision  # without its twin, a near miss keeps its own key
    assert set(together) == {twin.provision}
    assert split_keys(questions) == [q.provision for q in questions]  # no twins: folds as before


def test_provision_split_never_parts_a_near_miss_from_its_twin(questions):
    near_misses, twins = _near_misses_and_twins()
    known = {q.id for q in questions}
    train, held_out = split_by_provision([*questions, *(q for q in near_misses if q.id not in known), *twins],
                                         share=0.3)
    held_ids = {q.id for q in held_out}
    assert held_ids and {q.id for q in train}
    parted = [t.id for t in twins if (t.id in held_ids) != (t.twin_of in held_ids)]
    assert not parted


def test_the_everyday_off_topic_questions_load_as_off_topic_and_extend_the_first_file():
    # Passed with --qa next to training/off_topic.jsonl: same kind, no id of the first file.
    first = load_questions(ROOT / "training" / "off_topic.jsonl")
    everyday = load_questions(ROOT / "training" / "off_topic_everyday.jsonl")
    assert len(everyday) >= 150
    assert all(q.kind == "off-topic" and not q.answerable for q in everyday)
    assert not {q.id for q in first} & {q.id for q in everyday}
