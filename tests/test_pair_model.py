"""The pair model: its training pairs, its stored weights, and its ONNX export read without torch."""

from __future__ import annotations

import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REAL_EMBEDDER

from rag.embedding import CONFIG_FILE, OnnxPairScorer, is_onnx_folder, resolve_model_path
from rag.learn.answerability import (
    PAIR_CANDIDATES,
    PAIR_FEATURE,
    best_pair_score,
    candidate_texts,
    load_answerability,
)
from rag.learn.pair_model import PairTraining, training_pairs

QUESTION = "Who pays when a falling satellite wrecks a house?"
SENTENCES = [("A launching State shall be absolutely liable to pay compensation for damage caused by its "
             "space object on the surface of the earth or to aircraft in flight."),
             "States shall not place in orbit around the Earth any objects carrying nuclear weapons.",
             ("A much longer sentence about the long-term sustainability of outer space activities, debris "
              "mitigation, the registration of space objects and consultations before harmful interference, "
              "long enough to be cut at the model's maximum length.")]


def _draft(texts: list[str]):
    """A draft as the pair model reads it: candidates whose span is the whole passage text."""
    picks = [SimpleNamespace(hit=SimpleNamespace(chunk=SimpleNamespace(text=t)), start=0, end=len(t)) for t in texts]
    return SimpleNamespace(candidates=picks)


def _question(answerable: bool, quote: str = "", text: str = QUESTION):
    return SimpleNamespace(question=text, answerable=answerable, quote=quote)


def test_pairs_hold_the_quoted_sentence_as_the_answer_and_near_misses_as_non_answers():
    texts = [f"sentence {i}" for i in range(6)]
    marks = lambda draft, quote: [int(quote in c.hit.chunk.text) for c in draft.candidates]
    pairs = training_pairs([_question(True, "sentence 3"), _question(True, "sentence 0"), _question(False)],
                           [_draft(texts)] * 3, marks)
    assert pairs[:2] == [(QUESTION, "sentence 3", 1.0), (QUESTION, "sentence 0", 0.0)]  # best wrong one
    assert pairs[2] == (QUESTION, "sentence 0", 1.0)  # the second question: no negative (every other one)
    assert pairs[3:] == [(QUESTION, t, 0.0) for t in texts[:PAIR_CANDIDATES]]
    assert training_pairs([_question(True, "x")], [_draft([])], marks) == []


def test_the_answer_feature_is_the_best_candidates_log_odds():
    assert candidate_texts(_draft(SENTENCES), 2) == SENTENCES[:2]
    assert best_pair_score(np.array([-2.0, 1.5, 0.3])) == 1.5
    assert best_pair_score(np.zeros(0)) < -5  # no candidate reads as no answer


@pytest.fixture(scope="module")
def tiny_pair_model(tmp_path_factory):
    """A two-layer BERT classifier with random weights and the real tokenizer."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-pair")
    source = resolve_model_path(REAL_EMBEDDER)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2,
                                                     intermediate_size=64, num_labels=1)).eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


@pytest.mark.slow
def test_the_onnx_export_scores_pairs_like_the_model(tiny_pair_model, tmp_path):
    from rag.learn.pair_model import score_pairs
    from rag.onnx_export import export_pair_onnx

    model, tokenizer = tiny_pair_model
    folder = export_pair_onnx(model, tokenizer, 24, tmp_path / "pair-onnx", name="tiny pair")
    assert is_onnx_folder(folder)
    assert json.loads((folder / CONFIG_FILE).read_text())["max_length"] == 24
    scorer = OnnxPairScorer(folder)
    expected = score_pairs(model, tokenizer, QUESTION, SENTENCES, 24)  # the long one is cut at 24 pieces
    np.testing.assert_allclose(scorer.score(QUESTION, SENTENCES), expected, atol=1e-5)
    assert scorer.score(QUESTION, []).shape == (0,)
    with pytest.raises(ValueError, match="not an ONNX pair-model folder"):
        OnnxPairScorer(tmp_path)


@pytest.mark.slow
def test_trained_weights_are_small_reproducible_and_load_back(tmp_path):
    from rag.learn.pair_model import load_pair_model, save_pair_lora, score_pairs, train_pair_model

    pairs = [(QUESTION, SENTENCES[0], 1.0), (QUESTION, SENTENCES[1], 0.0)] * 4
    config = PairTraining(epochs=1, batch_size=4, lora_rank=2, max_length=48)
    stored = []
    for name in ("a", "b"):
        model, tokenizer = train_pair_model(REAL_EMBEDDER, pairs, config)
        save_pair_lora(model, tmp_path / name, config)
        stored.append({p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())})
    assert stored[0] == stored[1]  # the same pairs and seed: the same bytes
    assert sum(len(b) for b in stored[0].values()) < 5_000_000
    merged, tokenizer, max_length = load_pair_model(REAL_EMBEDDER, tmp_path / "a")
    assert max_length == 48
    np.testing.assert_allclose(score_pairs(merged, tokenizer, QUESTION, SENTENCES, max_length),
                               score_pairs(model, tokenizer, QUESTION, SENTENCES, 48), atol=0.05)  # fp16 weights


def test_a_model_that_reads_the_pair_model_is_not_used_without_it(tmp_path, caplog):
    from rag.learn.train_answerability import write_artifacts

    meta = {"version": 1, "embedder": "some encoder", "answer_features": ["sentence_best", PAIR_FEATURE],
            "sentence_features": [], "thresholds": {"partial": 0.3, "answer": 0.8}}
    write_artifacts(tmp_path, meta, {"calibration": np.array([1.0, 0.0])})
    with caplog.at_level(logging.WARNING):
        assert load_answerability(tmp_path, "some encoder", reader=None) is None
    assert "reads the pair model" in caplog.text
