"""The pair model: its training pairs, its stored weights, and its ONNX export read without torch."""

from __future__ import annotations

import copy
import json
import logging
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REAL_EMBEDDER

from rag.answer import Pick
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
    picks = [Pick(SimpleNamespace(chunk=SimpleNamespace(text=t)), row, 0, len(t), 0.0) for row, t in enumerate(texts)]
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
    config = PairTraining(epochs=1, batch_size=4, lora_rank=2, max_length=48, min_spread=0.0)
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


@pytest.mark.slow
def test_averaged_pair_models_merge_to_the_mean_of_their_weights(tmp_path):
    torch = pytest.importorskip("torch")
    from peft import get_peft_model

    from rag.learn.pair_model import (
        _base,
        _lora,
        average_pair_models,
        load_pair_model,
        save_pair_lora,
    )

    config = PairTraining(lora_rank=2, max_length=48, models=3)
    models = []
    for seed in range(config.models):
        torch.manual_seed(seed)
        model = get_peft_model(_base(REAL_EMBEDDER)[0], _lora(config.lora_rank))
        with torch.no_grad():  # a fresh LoRA adds nothing (B = 0): give each model its own update and head
            for weight in model.parameters():
                if weight.requires_grad:
                    weight.normal_(0, 0.05)
        models.append(model)
    merged = [copy.deepcopy(model).merge_and_unload().state_dict() for model in models]
    save_pair_lora(average_pair_models(REAL_EMBEDDER, models, config), tmp_path, config)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["r"] == 6
    differing = 0
    for key, weight in load_pair_model(REAL_EMBEDDER, tmp_path)[0].state_dict().items():
        torch.testing.assert_close(weight, sum(m[key] for m in merged) / len(merged), atol=2e-3, rtol=0)  # fp16
        differing += not torch.equal(merged[0][key], merged[1][key])
    assert differing == 6 * 6 + 2  # every adapted matrix and the head differ between the models


def test_a_pair_model_that_learned_nothing_is_set_aside_for_the_next_seed(monkeypatch, caplog):
    from rag.learn import pair_model

    trained = []

    def train_one(embedder, pairs, config, seed, progress):
        trained.append(seed)
        return f"model {seed}", "tokenizer"

    monkeypatch.setattr(pair_model, "_train_one", train_one)
    monkeypatch.setattr(pair_model, "_learned", lambda model, *args: model != "model 4")
    monkeypatch.setattr(pair_model, "average_pair_models", lambda embedder, models, config: models)
    with caplog.at_level(logging.WARNING):
        models, _ = pair_model.train_pair_model("encoder", [], PairTraining(seed=3, models=2))
    assert models == ["model 3", "model 5"] and trained == [3, 4, 5]
    assert "seed 4 gives its training pairs all the same log-odds" in caplog.text
    monkeypatch.setattr(pair_model, "_learned", lambda model, *args: False)
    with pytest.raises(RuntimeError, match="did not learn from its 0 training pairs with 3 seeds"):
        pair_model.train_pair_model("encoder", [], PairTraining(models=2))


def test_a_model_that_gives_every_pair_the_same_log_odds_has_not_learned(monkeypatch):
    from rag.learn import pair_model

    pairs = [(QUESTION, s, float(i == 0)) for i, s in enumerate(SENTENCES)] * 200
    read = []

    def score(log_odds):
        def score_pairs(model, tokenizer, question, sentences, max_length):
            read.append(sentences[0])
            return np.array([log_odds[SENTENCES.index(sentences[0])]])
        return score_pairs

    monkeypatch.setattr(pair_model, "score_pairs", score([2.1, -1.3, 0.4]))
    assert pair_model._learned("model", "tokenizer", pairs, PairTraining())
    assert len(read) <= 300  # an even sample, not all 600 pairs
    monkeypatch.setattr(pair_model, "score_pairs", score([-0.523, -0.521, -0.525]))  # the failed training's
    assert not pair_model._learned("model", "tokenizer", pairs, PairTraining())
    assert pair_model._learned("model", "tokenizer", pairs, PairTraining(min_spread=0.0))
