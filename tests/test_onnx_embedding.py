"""The ONNX embedder: export of a sentence-transformers model, parity with it, and a serving
path that never imports torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import REAL_EMBEDDER, ROOT

from rag.embedding import CONFIG_FILE, OnnxEmbedder, is_onnx_folder, resolve_model_path

TEXTS = ["States shall not place nuclear weapons in orbit around the Earth.",
         "Liability for damage caused by space objects",
         "What must a launching State register?",
         ("A much longer sentence about the long-term sustainability of outer space activities, debris "
          "mitigation, the registration of space objects and consultations before harmful interference.")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A two-layer BERT with random weights, the real tokenizer and a dense layer after the
    pooling (as a linear query adapter would be): a model unlike the bundled one."""
    torch = pytest.importorskip("torch")
    st_models = pytest.importorskip("sentence_transformers.models")
    from sentence_transformers import SentenceTransformer
    from transformers import BertConfig, BertModel

    folder = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    BertModel(BertConfig(num_hidden_layers=2, hidden_size=32, num_attention_heads=2, intermediate_size=64)
              ).save_pretrained(folder)
    source = resolve_model_path(REAL_EMBEDDER)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(source / name, folder / name)
    word = st_models.Transformer(str(folder), max_seq_length=64)
    modules = [word, st_models.Pooling(32, "mean"), st_models.Dense(32, 16), st_models.Normalize()]
    return SentenceTransformer(modules=modules, device="cpu")


@pytest.mark.slow
def test_export_gives_the_models_vectors(tiny_model, tmp_path):
    from rag.onnx_export import export_onnx

    folder = export_onnx(tiny_model, tmp_path / "tiny-onnx", name="tiny")
    assert is_onnx_folder(folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    assert (config["name"], config["dimension"], config["max_length"]) == ("tiny", 16, 64)
    embedder = OnnxEmbedder(folder, batch_size=2)
    expected = tiny_model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    vectors = embedder.embed(TEXTS)
    assert vectors.shape == (len(TEXTS), 16) and embedder.dimension == 16
    np.testing.assert_allclose(vectors, expected, atol=1e-5)
    np.testing.assert_allclose(embedder.embed(TEXTS[::-1])[::-1], vectors, atol=1e-6)  # order kept


@pytest.mark.slow
def test_export_is_deterministic_and_can_store_int8_weights(tiny_model, tmp_path):
    from rag.onnx_export import export_onnx

    a = export_onnx(tiny_model, tmp_path / "a")
    b = export_onnx(tiny_model, tmp_path / "b")
    assert (a / "model.onnx").read_bytes() == (b / "model.onnx").read_bytes()
    small = export_onnx(tiny_model, tmp_path / "int8", quantize=True)
    assert json.loads((small / CONFIG_FILE).read_text())["weights"] == "int8"
    cosine = (OnnxEmbedder(small).embed(TEXTS) * OnnxEmbedder(a).embed(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.9


def test_a_folder_without_an_export_is_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="export one with rag.onnx_export"):
        OnnxEmbedder(tmp_path)


@pytest.mark.slow
def test_serving_embeds_questions_with_the_index_export_like_the_model(real_engine):
    embedder = real_engine.retriever.embedder
    assert isinstance(embedder, OnnxEmbedder)
    assert embedder.path == real_engine.index.onnx_dir
    # Passages were embedded by the same export: a passage's own text is its nearest vector.
    chunk = real_engine.index.chunks[7]
    assert float(embedder.embed([chunk.embed_text])[0] @ real_engine.index.vectors[7]) > 0.9999
    assert embedder.count_tokens("outer space") == 4  # [CLS] outer space [SEP]


_SERVE = """
import sys
from pathlib import Path
import rag
from rag.settings import Settings
engine = rag.load(Settings(corpus_dir=Path(sys.argv[1]), index_dir=Path(sys.argv[2])), rebuild=False)
answer = engine.ask("Which weapons may not be placed in orbit around the Earth?")
heavy = [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules]
print(type(engine.retriever.embedder).__name__, answer.abstained, heavy)
"""


@pytest.mark.slow
def test_answering_from_a_built_index_never_imports_torch(real_engine):
    settings = real_engine.settings
    result = subprocess.run([sys.executable, "-c", _SERVE, str(settings.corpus_dir), str(settings.index_dir)],
                            capture_output=True, text=True, timeout=300, check=False,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[-2] == "OnnxEmbedder False []"
