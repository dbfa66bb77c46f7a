"""The pair model: does this sentence answer this question? The installed MiniLM reads the
question and a candidate sentence together (a cross-encoder) and gives one log-odds.

The answer model's features read the question's wording and what the quotes contain, each on
its own; a near miss ("What fine does a State pay for...") and an answerable question look
alike to them. Reading both at once separates them. Trained on the question set alone it also
learned its wording habits; with other writers' questions beside it, it no longer hedges plain
questions, and the committed model has one (docs/ANSWERS.md, "The pair model"). Only LoRA
weights and the one-output head are trained and stored (1.3 MB a model).

One trained model is one draw: its seed alone moves single questions by several log-odds. With
``PairTraining.models`` above 1, that many models are trained with successive seeds and their
weights averaged into one: as fast as one model at serving, and its scores close to the models'
average score (docs/ANSWERS.md, "Averaging the pair model over seeds").

Training pairs come from the question set and the drafts the engine makes for its questions:
an answerable question with the candidate that holds its quote (1) and with the best candidate
that does not (0, every other question); an unanswerable question with its first
``PAIR_CANDIDATES`` candidates (0). At serving the answer model reads the best log-odds over
the first ``PAIR_CANDIDATES`` candidates (``rag.embedding.OnnxPairScorer``, the export kept with
the index; ``TorchPairScorer`` on the torch runtime).
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.embedding import resolve_model_path
from rag.learn.answerability import PAIR_CANDIDATES, best_pair_score, candidate_texts
from rag.learn.features import Draft
from rag.learn.query_model import LORA_TARGETS, warmup_then_decay
from rag.learn.questions import Question

if TYPE_CHECKING:
    from rag.learn.pair_cache import PairModelCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PairTraining:
    """How the pair model is trained (recorded with the model)."""

    epochs: int = 2
    learning_rate: float = 5e-4
    batch_size: int = 16
    lora_rank: int = 16
    #: Word pieces read per pair (question and sentence; longer sentences are cut).
    max_length: int = 160
    seed: int = 0
    #: Models trained (seeds ``seed``, ``seed + 1``, ...) whose weights are averaged into the pair model.
    models: int = 1
    #: Least standard deviation of a trained model's log-odds over its training pairs (``_learned``;
    #: 0 accepts any model, as for a few pairs, where a model barely moves from its start).
    min_spread: float = 0.01


def training_pairs(questions: list[Question], drafts: list[Draft], labels) -> list[tuple[str, str, float]]:
    """(question, sentence, 1 or 0) pairs; ``labels(draft, quote)`` marks the candidates that hold a quote."""
    pairs = []
    for n, (q, draft) in enumerate(zip(questions, drafts, strict=True)):
        texts = candidate_texts(draft, len(draft.candidates))
        if not texts:
            continue
        if not q.answerable:
            pairs += [(q.question, text, 0.0) for text in texts[:PAIR_CANDIDATES]]
            continue
        marks = labels(draft, q.quote)
        right = [t for t, m in zip(texts, marks) if m]
        wrong = [t for t, m in zip(texts, marks) if not m]
        if right:
            pairs.append((q.question, right[0], 1.0))
        if wrong and n % 2 == 0:  # half the questions: answerable pairs stay mostly positive
            pairs.append((q.question, wrong[0], 0.0))
    return pairs


def _base(embedder: str):
    """The installed MiniLM with a one-output classification head, and its tokenizer."""
    from rag.embedding import offline_environment

    offline_environment()
    import warnings

    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # "newly initialized: classifier" is expected: it is trained
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    path = str(resolve_model_path(embedder))
    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1), AutoTokenizer.from_pretrained(path)


#: Trainings that may fail to learn (``_learned``) before ``train_pair_model`` gives up.
FAILED_TRAININGS_ALLOWED = 2


def train_pair_model(embedder: str, pairs: list[tuple[str, str, float]], config: PairTraining,
                     progress: bool = False, cache: PairModelCache | None = None):
    """LoRA-tune ``config.models`` pair models on ``pairs`` and average them (``average_pair_models``);
    returns (model with LoRA layers, tokenizer). With ``cache``, a model trained before on the same
    pairs, settings and seed is read instead of trained again.

    A training can fail to learn: one seed of the question set's half gave every pair the same
    log-odds (docs/ANSWERS.md, "Averaging the pair model over seeds"). Such a model is set aside
    and the next seed trained in its place."""
    trained, failed, seed = [], 0, config.seed
    while len(trained) < config.models:
        model, tokenizer = _trained(embedder, pairs, config, seed, progress, cache)
        if _learned(model, tokenizer, pairs, config):
            trained.append(model)
        elif failed == FAILED_TRAININGS_ALLOWED:
            raise RuntimeError(f"the pair model did not learn from its {len(pairs)} training pairs with "
                               f"{FAILED_TRAININGS_ALLOWED + 1} seeds; try 'spacesec tune --seed' with another "
                               "seed, or '--no-pair-model'")
        else:
            failed += 1
            log.warning("the pair model trained with seed %d gives its training pairs all the same log-odds; "
                        "it is set aside and seed %d trained instead", seed, seed + 1)
        seed += 1
    return average_pair_models(embedder, trained, config), tokenizer


def _trained(embedder: str, pairs: list[tuple[str, str, float]], config: PairTraining, seed: int,
             progress: bool, cache: PairModelCache | None):
    """One seed's model: read from ``cache`` when it holds it, else trained (and kept there)."""
    key = cache.key(embedder, pairs, config, seed) if cache else None
    found = cache.load(key, embedder, config) if cache else None
    if found:
        return found
    model, tokenizer = _train_one(embedder, pairs, config, seed, progress)
    if cache:
        cache.store(key, model)
    return model, tokenizer


def _learned(model, tokenizer, pairs: list[tuple[str, str, float]], config: PairTraining, sample: int = 256) -> bool:
    """Whether ``model``'s log-odds vary over an even sample of its training pairs. A training that
    failed gave every pair the same log-odds (standard deviation 0.002, against 1.1 and more for
    trainings that learned)."""
    picked = pairs[::max(1, len(pairs) // sample)]
    scores = np.concatenate([score_pairs(model, tokenizer, question, [sentence], config.max_length)
                             for question, sentence, _ in picked] or [np.zeros(0)])
    return len(scores) < 2 or float(scores.std()) >= config.min_spread


def _lora(rank: int):
    from peft import LoraConfig, TaskType

    # alpha = 2 * rank: the same scale at every rank, so updates set side by side keep theirs.
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                      target_modules=LORA_TARGETS)


def _train_one(embedder: str, pairs: list[tuple[str, str, float]], config: PairTraining, seed: int,
               progress: bool):
    import torch
    from peft import get_peft_model
    from tqdm import tqdm

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model, tokenizer = _base(embedder)
    model = get_peft_model(model, _lora(config.lora_rank))
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=0.01)
    plan = []
    for _ in range(config.epochs):
        order = list(pairs)
        rng.shuffle(order)
        plan += [order[i:i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    schedule = warmup_then_decay(optimizer, len(plan))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    model.train()
    for batch in tqdm(plan, desc=f"tuning the pair model (seed {seed})", unit="step", disable=not progress):
        encoded = tokenizer([p[0] for p in batch], [p[1] for p in batch], truncation=True,
                            max_length=config.max_length, padding=True, return_tensors="pt")
        loss = loss_fn(model(**encoded).logits.squeeze(-1), torch.tensor([p[2] for p in batch]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return model, tokenizer


def average_pair_models(embedder: str, models: list, config: PairTraining):
    """One LoRA model whose merged weights are the mean of ``models``' (LoRA models of rank
    ``config.lora_rank`` on the same base). Their updates B·A sit side by side in a LoRA of that
    many times the rank, each B divided by their number, so merging gives exactly the mean update;
    the heads are averaged."""
    import torch
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    if len(models) == 1:
        return models[0]
    states = [get_peft_model_state_dict(model) for model in models]
    joined = {}
    for key in states[0]:
        parts = [state[key] for state in states]
        if ".lora_A." in key:
            joined[key] = torch.cat(parts, dim=0)
        elif ".lora_B." in key:
            joined[key] = torch.cat(parts, dim=1) / len(models)
        else:
            joined[key] = torch.stack(parts).mean(dim=0)
    model = get_peft_model(_base(embedder)[0], _lora(config.lora_rank * len(models)))
    loaded = set_peft_model_state_dict(model, joined)
    if loaded.unexpected_keys:
        raise ValueError(f"the pair models to average hold unexpected weights: {loaded.unexpected_keys[:3]}")
    return model.eval()


def score_pairs(model, tokenizer, question: str, sentences: list[str], max_length: int) -> np.ndarray:
    """Log-odds that each sentence answers ``question``, with a model in memory (training time)."""
    import torch

    if not sentences:
        return np.zeros(0)
    with torch.inference_mode():
        encoded = tokenizer([question] * len(sentences), sentences, truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
        return model(**encoded).logits.squeeze(-1).double().numpy()


def save_pair_lora(model, folder: Path, config: PairTraining) -> None:
    """Write the LoRA weights and the head (fp16 safetensors) and their configuration to ``folder``."""
    import torch
    from safetensors.torch import load_file, save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder))
    (folder / "README.md").unlink(missing_ok=True)  # peft's blank model card
    settings_path = folder / "adapter_config.json"  # peft writes its module sets in hash order
    settings = json.loads(settings_path.read_text())
    for key in ("target_modules", "modules_to_save"):
        if isinstance(settings.get(key), list):
            settings[key] = sorted(settings[key])
    settings_path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    (folder / "pair.json").write_text(json.dumps({"max_length": config.max_length}, indent=2) + "\n")
    weights = folder / "adapter_model.safetensors"
    save_file({k: v.to(torch.float16).contiguous() for k, v in sorted(load_file(str(weights)).items())},
              str(weights), metadata={"format": "pt"})


def load_pair_model(embedder: str, folder: Path):
    """(model with the LoRA weights of ``folder`` merged in, tokenizer, maximum length)."""
    import torch
    from peft import PeftModel

    model, tokenizer = _base(embedder)
    merged = PeftModel.from_pretrained(model, str(folder), torch_dtype=torch.float32).merge_and_unload()
    merged = merged.to(torch.float32).eval()
    max_length = int(json.loads((Path(folder) / "pair.json").read_text())["max_length"])
    return merged, tokenizer, max_length


def out_of_fold_pair_scores(embedder: str, questions: list[Question], drafts: list[Draft], labels,
                            parts: np.ndarray, config: PairTraining, progress: bool = False,
                            cache: PairModelCache | None = None) -> np.ndarray:
    """Each question's pair feature from a pair model trained on the other ``parts`` (provision
    groups), so the answer model learns from scores like a new question's."""
    scores = np.zeros(len(questions))
    for part in np.unique(parts):
        train = np.flatnonzero(parts != part)
        pairs = training_pairs([questions[i] for i in train], [drafts[i] for i in train], labels)
        model, tokenizer = train_pair_model(embedder, pairs, config, progress, cache)
        for i in np.flatnonzero(parts == part):
            scores[i] = best_pair_score(score_pairs(model, tokenizer, questions[i].question,
                                                    candidate_texts(drafts[i]), config.max_length))
    return scores


class TorchPairScorer:
    """The pair model with torch (the torch runtime; the ONNX runtime reads its export)."""

    def __init__(self, embedder: str, folder: Path) -> None:
        self.model, self.tokenizer, self.max_length = load_pair_model(embedder, folder)

    def score(self, question: str, sentences: list[str]) -> np.ndarray:
        return score_pairs(self.model, self.tokenizer, question, sentences, self.max_length)
