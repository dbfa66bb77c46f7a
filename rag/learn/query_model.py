"""The tuned query encoder: MiniLM with LoRA weights trained so that questions land next to
the passages and sentences that answer them.

Only the query side is trained. Passages and sentences keep the vectors of the installed
model, so tuning never re-embeds the corpus, and a document added after tuning is still
embedded exactly as before. Training pulls each question toward every chunk and sentence
covering its quote, against all other chunks and sentences of the index (a softmax over the
whole corpus, which is small enough to score in full).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from rag.embedding import resolve_model_path
from rag.evaluation import covers, quote_grams
from rag.learn.questions import Question

log = logging.getLogger(__name__)

LORA_TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


@dataclass(frozen=True)
class QueryTraining:
    """How the query encoder is trained (recorded with the model)."""

    epochs: int = 3
    learning_rate: float = 5e-4
    batch_size: int = 32
    lora_rank: int = 16
    #: Softmax scale over cosine similarities (a temperature of 1/30): sharper than 20, it
    #: ranks the answering passage first more often (held-out provisions, two splits).
    scale: float = 30.0
    #: Weight of the sentence-level loss beside the passage-level one.
    sentence_weight: float = 1.0
    seed: int = 0


@dataclass(frozen=True)
class Example:
    text: str
    chunks: tuple[int, ...]
    sentences: tuple[int, ...]


def training_examples(questions: list[Question], chunk_texts: list[str], sentence_texts: list[str],
                      sentence_owner: np.ndarray, query_forms) -> list[Example]:
    """Each answerable question (in every form the engine embeds it) with the chunks that cover
    its quote and the sentences of those chunks that hold most of it."""
    sentence_grams = [quote_grams(t) for t in sentence_texts]
    covering: dict[str, tuple[int, ...]] = {}
    examples: list[Example] = []
    for q in questions:
        if not q.answerable:
            continue
        if q.quote not in covering:
            covering[q.quote] = tuple(i for i, text in enumerate(chunk_texts) if covers(text, q.quote))
        chunks = covering[q.quote]
        if not chunks:
            log.debug("no passage covers the quote of %s; skipped", q.id)
            continue
        wanted = quote_grams(q.quote)
        sentences = tuple(
            int(j) for j in np.flatnonzero(np.isin(sentence_owner, chunks))
            if sentence_grams[j] and (len(wanted & sentence_grams[j]) >= 0.6 * len(wanted)
                                      or len(wanted & sentence_grams[j]) >= 0.5 * len(sentence_grams[j])))
        for text in dict.fromkeys(query_forms(q.question)):
            examples.append(Example(text, chunks, sentences))
    return examples


def _encode(model, texts: list[str]):
    import torch

    features = model.preprocess(texts)
    return torch.nn.functional.normalize(model(features)["sentence_embedding"], dim=-1)


def _multi_positive_loss(queries, targets, positives: list[tuple[int, ...]], scale: float):
    """Mean over queries of -log(probability mass on the positives) under a softmax over all targets."""
    import torch

    log_probs = torch.log_softmax(scale * queries @ targets.T, dim=-1)
    losses = [-torch.logsumexp(log_probs[i, list(pos)], dim=0) for i, pos in enumerate(positives) if pos]
    return torch.stack(losses).mean() if losses else (queries.sum() * 0.0)


def load_base(embedder: str):
    """The installed sentence-transformers model, offline, on the CPU."""
    from rag.embedding import offline_environment

    offline_environment()
    import warnings

    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    return SentenceTransformer(str(resolve_model_path(embedder)), device="cpu")


def _batches(examples: list[Example], size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches of questions of similar length (less padding, so faster steps)."""
    order = list(examples)
    rng.shuffle(order)
    window = size * 8
    batches = []
    for start in range(0, len(order), window):
        group = sorted(order[start:start + window], key=lambda e: len(e.text))
        batches += [group[i:i + size] for i in range(0, len(group), size)]
    rng.shuffle(batches)
    return batches


def train_query_model(embedder: str, examples: list[Example], chunk_vectors: np.ndarray,
                      sentence_vectors: np.ndarray, config: QueryTraining, progress: bool = False):
    """LoRA-tune the query side of ``embedder`` on ``examples``; returns the sentence-transformers
    model with its LoRA layers (see ``save_lora``)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm import tqdm

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model = load_base(embedder)
    lora = LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, lora_dropout=0.0,
                      target_modules=LORA_TARGETS)
    model[0].model = get_peft_model(model[0].model, lora)
    chunks = torch.from_numpy(np.ascontiguousarray(chunk_vectors, dtype=np.float32))
    sentences = torch.from_numpy(np.ascontiguousarray(sentence_vectors, dtype=np.float32))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    plan = [batch for _ in range(config.epochs) for batch in _batches(examples, config.batch_size, rng)]
    schedule = warmup_then_decay(optimizer, len(plan))
    model.train()
    for batch in tqdm(plan, desc="tuning the query model", unit="step", disable=not progress):
        queries = _encode(model, [e.text for e in batch])
        loss = _multi_positive_loss(queries, chunks, [e.chunks for e in batch], config.scale)
        if config.sentence_weight:
            loss = loss + config.sentence_weight * _multi_positive_loss(
                queries, sentences, [e.sentences for e in batch], config.scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return model


def warmup_then_decay(optimizer, steps: int):
    """Learning rate rising over the first tenth of ``steps``, then falling linearly to zero."""
    import torch

    warmup = max(1, steps // 10)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, (steps - s) / steps))


def save_lora(model, folder: Path) -> None:
    """Write the LoRA weights (fp16 safetensors, ~1 MB) and their configuration to ``folder``."""
    import torch
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    model[0].model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's blank model card
    config = folder / "adapter_config.json"  # peft writes its module set in hash order
    settings = json.loads(config.read_text())
    settings["target_modules"] = sorted(settings["target_modules"])
    config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    weights = folder / "adapter_model.safetensors"
    save_file({k: v.to(torch.float16).contiguous() for k, v in sorted(load_file(str(weights)).items())},
              str(weights), metadata={"format": "pt"})


def load_tuned(embedder: str, folder: Path):
    """The installed model with the LoRA weights in ``folder`` merged in (a plain
    sentence-transformers model)."""
    import torch
    from peft import PeftModel

    model = load_base(embedder)
    tuned = PeftModel.from_pretrained(model[0].model, str(folder), torch_dtype=torch.float32)
    model[0].model = tuned.merge_and_unload().to(torch.float32)
    model.eval()
    return model


class TunedQueryEmbedder:
    """Embeds questions with the tuned encoder; the interface of ``rag.embedding.Embedder``."""

    def __init__(self, name: str, embedder: str, folder: Path | None, batch_size: int = 32,
                 model=None) -> None:
        """``model``: a trained sentence-transformers model in memory instead of ``folder``."""
        self.name = name
        self.batch_size = batch_size
        self.path = folder
        self._embedder = embedder
        if model is not None:
            self._model = model

    @cached_property
    def _model(self):
        log.info("loading the tuned query encoder from %s", self.path)
        return load_tuned(self._embedder, self.path)

    @property
    def dimension(self) -> int:
        return int(self._model.get_sentence_embedding_dimension())

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = self._model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                     convert_to_numpy=True, show_progress_bar=progress)
        return np.asarray(vectors, dtype=np.float32)
