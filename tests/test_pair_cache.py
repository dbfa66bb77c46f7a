"""Trained pair models kept on disk (rag.learn.pair_cache): read back exactly, keyed by what
they were trained on, and written whole or not at all."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import numpy as np
import pytest
from conftest import REAL_EMBEDDER

from rag.learn import pair_model
from rag.learn.pair_cache import PairModelCache, _running
from rag.learn.pair_model import PairTraining, score_pairs, train_pair_model

QUESTION = "Who pays when a falling satellite wrecks a house?"
SENTENCES = [("A launching State shall be absolutely liable to pay compensation for damage caused by its space "
              "object on the surface of the earth or to aircraft in flight."),
             "States shall not place in orbit around the Earth any objects carrying nuclear weapons."]
PAIRS = [(QUESTION, SENTENCES[0], 1.0), (QUESTION, SENTENCES[1], 0.0)] * 4
TINY = PairTraining(epochs=1, batch_size=4, lora_rank=2, max_length=48, min_spread=0.0)


def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("trained although the cache holds the model")

    monkeypatch.setattr(pair_model, "_train_one", refuse)


@pytest.mark.slow
def test_a_cached_pair_model_scores_exactly_like_the_one_trained(tmp_path, monkeypatch):
    cache = PairModelCache(tmp_path / "cache")
    config = replace(TINY, models=2)
    trained, tokenizer = train_pair_model(REAL_EMBEDDER, PAIRS, config, cache=cache)
    assert len(list(cache.folder.glob("*.safetensors"))) == 2  # one file a seed
    _no_training(monkeypatch)
    read, _ = train_pair_model(REAL_EMBEDDER, PAIRS, config, cache=cache)
    expected = score_pairs(trained, tokenizer, QUESTION, SENTENCES, config.max_length)
    assert np.array_equal(score_pairs(read, tokenizer, QUESTION, SENTENCES, config.max_length), expected)
    assert expected[0] != expected[1]  # a model that reads its input, not a constant
    assert sorted(p.suffix for p in cache.folder.iterdir()) == [".safetensors"] * 2  # no temporary file left


def test_the_key_follows_what_one_training_depends_on(tmp_path):
    cache = PairModelCache(tmp_path)
    key = cache.key(REAL_EMBEDDER, PAIRS, TINY, 0)
    changed = {
        "pairs": cache.key(REAL_EMBEDDER, PAIRS[:-1], TINY, 0),
        "seed": cache.key(REAL_EMBEDDER, PAIRS, TINY, 1),
        "learning rate": cache.key(REAL_EMBEDDER, PAIRS, replace(TINY, learning_rate=1e-4), 0),
        "rank": cache.key(REAL_EMBEDDER, PAIRS, replace(TINY, lora_rank=4), 0),
        "length": cache.key(REAL_EMBEDDER, PAIRS, replace(TINY, max_length=64), 0),
        "label": cache.key(REAL_EMBEDDER, [(q, s, 1.0 - y) for q, s, y in PAIRS], TINY, 0),
    }
    assert all(other != key for other in changed.values()), changed
    assert len(set(changed.values())) == len(changed)
    # How many models are averaged, and which are kept, do not change what one training learns.
    same = replace(TINY, models=3, min_spread=0.5, seed=7)
    assert cache.key(REAL_EMBEDDER, PAIRS, same, 0) == key


@pytest.mark.slow
def test_a_damaged_cached_model_is_trained_again_and_replaced(tmp_path, monkeypatch, caplog):
    cache = PairModelCache(tmp_path)
    path = cache.path(cache.key(REAL_EMBEDDER, PAIRS, TINY, TINY.seed))
    path.write_bytes(b"\x00" * 100)  # a file some other tool cut short
    calls = []
    train_one = pair_model._train_one
    monkeypatch.setattr(pair_model, "_train_one", lambda *args: calls.append(args[3]) or train_one(*args))
    with caplog.at_level(logging.WARNING):
        train_pair_model(REAL_EMBEDDER, PAIRS, TINY, cache=cache)
    assert calls == [0] and "cannot be read" in caplog.text
    assert cache.load(cache.key(REAL_EMBEDDER, PAIRS, TINY, 0), REAL_EMBEDDER, TINY) is not None
    # A file holding another rank's weights is not read as this model either.
    other = replace(TINY, lora_rank=4)
    path.rename(cache.path(cache.key(REAL_EMBEDDER, PAIRS, other, 0)))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert cache.load(cache.key(REAL_EMBEDDER, PAIRS, other, 0), REAL_EMBEDDER, other) is None
    assert "does not fit" in caplog.text or "holds other weights" in caplog.text


def test_a_failed_write_leaves_no_file_and_old_temporary_files_are_swept(tmp_path, monkeypatch, caplog):
    import safetensors.torch
    from peft import get_peft_model

    from rag.learn.pair_model import _base, _lora

    cache = PairModelCache(tmp_path)
    model = get_peft_model(_base(REAL_EMBEDDER)[0], _lora(2))
    gone = next(pid for pid in range(4_000_000, 4_001_000) if not _running(pid))
    (tmp_path / f"{'a' * 32}.{gone}.tmp").write_bytes(b"left by a killed tune")
    (tmp_path / f"{'b' * 32}.{os.getppid()}.tmp").write_bytes(b"another tune, still writing")

    def disk_full(state, filename, metadata=None):
        with open(filename, "wb") as out:
            out.write(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with caplog.at_level(logging.WARNING):
        cache.store("c" * 32, model)
    assert "could not keep the pair model" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{'b' * 32}.{os.getppid()}.tmp"]
    monkeypatch.undo()
    cache.store("c" * 32, model)
    assert cache.load("c" * 32, REAL_EMBEDDER, PairTraining(lora_rank=2)) is not None

