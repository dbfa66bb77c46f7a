"""`spacesec tune`: train what the engine learns from questions, and swap it into place.

Runs when the corpus or the questions change, not at set-up: the result is committed.
Documents without training questions are left out of the training softmax, so the model is
never taught to steer away from them (a document a user adds keeps, or improves on, the
search quality of the installed model).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from rag.engine import Engine
from rag.learn.features import Draft
from rag.learn.model_store import (
    ANSWERABILITY,
    MANIFEST_FILE,
    PAIR_LORA,
    QUERY_LORA,
    TunedModel,
    base_model_digest,
    file_digests,
    query_encoder_name,
    read_tuned_model,
    write_tuned_model,
)
from rag.learn.pair_cache import PairModelCache
from rag.learn.pair_model import PairTraining
from rag.learn.query_model import QueryTraining, save_lora, train_query_model, training_examples
from rag.learn.questions import Question, QuestionFileError, load_questions, split_keys
from rag.learn.term_links import TERM_LINKS_FILE, learn_term_links, write_term_links
from rag.learn.train_answerability import (
    OFF_TOPIC,
    collect_drafts,
    refit_topic,
    train_answerability,
)
from rag.settings import Settings

log = logging.getLogger(__name__)

#: Question encoders trained on all but one part of the provisions, for out-of-fold drafts.
OUT_OF_FOLD = 2
#: Percentile of answerable questions' best-sentence similarity taken as the off-topic floor.
OFF_TOPIC_PERCENTILE = 0.1
#: Percentile of off-topic questions' best-sentence similarity at or above which a question
#: escapes the topic model (``Engine.near_corpus``).
NEAR_CORPUS_PERCENTILE = 98


@dataclass(frozen=True)
class TuneReport:
    model: TunedModel
    questions: int
    examples: int
    documents: int
    seconds: float
    #: What ``train_answerability`` measured on held-out folds (None when it was not trained).
    answerability: dict | None = None


def questions_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def question_files(settings: Settings, extra: list[Path]) -> list[Path]:
    """The project's question files (the off-topic and other writers' sets when configured) and a user's."""
    configured = (settings.off_topic_questions_path, settings.other_writers_questions_path)
    return [settings.questions_path, *(p for p in configured if p), *extra]


def gather_questions(settings: Settings, extra: list[Path], known_docs: set[str]) -> list[Question]:
    """The project's question set plus a user's, checked against the corpus."""
    questions: list[Question] = []
    for path in question_files(settings, extra):
        batch = load_questions(path)
        unknown = sorted({q.doc for q in batch if q.answerable and q.doc not in known_docs})
        if unknown:
            raise QuestionFileError(f"{path}: questions about {', '.join(unknown)}, which the corpus "
                                    "does not hold; add the document first ('spacesec add').")
        questions.extend(batch)
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        duplicate = next(i for i in ids if ids.count(i) > 1)
        raise QuestionFileError(f"the question id {duplicate!r} is used by two question files; rename one.")
    return questions


@contextmanager
def _tune_lock(folder: Path) -> Iterator[None]:
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.parent / f".{folder.name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError("another 'spacesec tune' is running; wait for it to finish.") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _staging_folder(target: Path) -> Path:
    """An empty folder beside ``target`` to build the new model in. Called under the tune lock,
    so any other staging folder is a killed run's leftover (kill -9 skips the clean-up): removed."""
    for leftover in target.parent.glob(f".{target.name}-new-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    staged = target.parent / f".{target.name}-new-{os.getpid()}"
    staged.mkdir(parents=True)
    return staged


def train_query_encoder(engine: Engine, questions: list[Question], config: QueryTraining,
                        progress: bool = False):
    """LoRA-train the query encoder against the chunks and sentences of the documents the
    questions cover (and only those)."""
    index = engine.index
    covered = {q.doc for q in questions if q.answerable}
    keep = np.array([c.doc_id in covered for c in index.chunks])
    owners = index.sentences[:, 0].astype(np.int64)
    keep_sentence = keep[owners]
    chunk_rows = np.cumsum(keep) - 1  # old chunk number -> row among the kept ones
    chunks = [c for c, k in zip(index.chunks, keep, strict=True) if k]
    spans = index.sentences[keep_sentence].copy()
    spans[:, 0] = chunk_rows[spans[:, 0]]
    texts = [chunks[c].text[a:b] for c, a, b in spans]

    def forms(question: str) -> list[str]:  # the strings the engine embeds for a question
        return [engine.catalogue.without_names(question), question]

    examples = training_examples(questions, [c.text for c in chunks], texts, spans[:, 0], forms)
    model = train_query_model(engine.settings.embedder, examples, np.asarray(index.vectors)[keep],
                              np.asarray(index.sentence_vectors)[keep_sentence], config, progress)
    return model, examples, sorted(covered)


def _fold(key: str, seed: int) -> int:
    """Which of the ``OUT_OF_FOLD`` parts a question's split key (``split_keys``) falls in."""
    digest = hashlib.sha256(f"tune\x1f{seed}\x1f{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % OUT_OF_FOLD


def _encoder(engine: Engine, model, name: str, documents: list[str]) -> None:
    """Make the engine embed questions with ``model`` (trained on ``documents``)."""
    from rag.learn.query_model import TunedQueryEmbedder

    embedder = TunedQueryEmbedder(name, engine.settings.embedder, None, engine.settings.embed_batch_size, model)
    untrained = frozenset(d.doc_id for d in engine.corpus.documents) - set(documents)
    engine.retriever.use_query_encoder(embedder, untrained)


def out_of_fold_drafts(engine: Engine, questions: list[Question], config: QueryTraining,
                       progress: bool = False) -> list[Draft]:
    """Each question's draft (retrieval and scored sentences) made by a question encoder that
    never saw its provision: the answerability model must learn from what new questions look
    like, not from questions the encoder has learned by heart."""
    drafts: list[Draft | None] = [None] * len(questions)
    # As many steps as the final encoder takes: training moves similarities as a whole (they
    # fall as passages are pushed apart), and the answerability model reads their level.
    steps_matched = replace(config, epochs=config.epochs * OUT_OF_FOLD // (OUT_OF_FOLD - 1))
    lexical = engine.retriever.lexical
    folds = [_fold(key, config.seed) for key in split_keys(questions)]
    for part in range(OUT_OF_FOLD):
        held = [i for i, fold in enumerate(folds) if fold == part]
        trained = [q for q, fold in zip(questions, folds, strict=True) if fold != part]
        model, _, documents = train_query_encoder(engine, trained, steps_matched, progress)
        _encoder(engine, model, f"out-of-fold-{part}", documents)
        engine.retriever.lexical = lexical.with_links(learn_term_links(trained), engine.settings.term_link_weight)
        for i, draft in zip(held, collect_drafts(engine, [questions[i] for i in held]), strict=True):
            drafts[i] = draft
    engine.retriever.lexical = lexical
    return drafts


def off_topic_threshold(engine: Engine, questions: list[Question], drafts: list[Draft]) -> float:
    """The best-sentence similarity below which a question is off topic, for a tuned encoder:
    the 0.1th percentile over the answerable questions' out-of-fold drafts (the installed
    model's 0.27 would refuse about 1% of them)."""
    best = [engine.best_retrieved_sentence(d.vector, d.hits)
            for q, d in zip(questions, drafts, strict=True) if q.answerable and d.hits]
    return round(float(np.percentile(best, OFF_TOPIC_PERCENTILE)), 4)


def near_corpus_similarity(engine: Engine, questions: list[Question]) -> float | None:
    """The level of ``Engine.near_corpus`` for the engine's question encoder: the
    ``NEAR_CORPUS_PERCENTILE``th percentile of the off-topic questions' best-sentence similarity
    to their passages (None without off-topic questions). The encoder never trains on them."""
    best = [engine.best_retrieved_sentence(engine.retriever.embed_query(q.question),
                                           engine.search(q.question, engine.settings.answer_passages))
            for q in questions if q.kind == OFF_TOPIC]
    return round(float(np.percentile(best, NEAR_CORPUS_PERCENTILE)), 4) if best else None


def tune(settings: Settings, extra: list[Path] | None = None, config: QueryTraining | None = None,
         progress: bool = False, answerability: bool = True, pair: PairTraining | None = None,
         keep_pair_model: bool = False) -> TuneReport:
    """Train on the question set (and ``extra`` question files) and install the result in
    ``settings.tuned_model_dir``: the query encoder, then (unless ``answerability`` is off) the
    answerability model, on out-of-fold drafts, with a pair model trained as ``pair`` says when
    it is given (``spacesec tune`` gives one unless ``--no-pair-model``: docs/ANSWERS.md); pair
    models trained before on the same pairs are read from ``settings.pair_cache_dir``.
    ``keep_pair_model`` keeps the installed model's final pair model instead of training one: a
    pair model is one draw, which moves single answers end to end (docs/ANSWERS.md), so a retrain
    made for something else can leave the one users have."""
    if keep_pair_model and pair is None:
        raise ValueError("--keep-pair-model keeps the installed pair model; it does not go with --no-pair-model.")
    started = time.perf_counter()
    config = config or QueryTraining()
    extra = list(extra or [])
    engine = Engine.load(settings)
    corpus_docs = {d.doc_id for d in engine.corpus.documents}
    questions = gather_questions(settings, extra, corpus_docs)
    target = settings.tuned_model_dir
    with _tune_lock(target):
        kept = _installed_pair_model(settings) if keep_pair_model else None
        staged = _staging_folder(target)
        try:
            drafts = out_of_fold_drafts(engine, questions, config, progress) if answerability else None
            answerability_report = None
            model, examples, documents = train_query_encoder(engine, questions, config, progress)
            save_lora(model, staged / QUERY_LORA)
            write_term_links(learn_term_links(questions), staged / TERM_LINKS_FILE)
            checksums = engine.corpus.checksums()
            manifest = {
                "base_model": settings.embedder,
                "base_model_sha256": base_model_digest(settings.embedder),
                "questions_sha256": questions_digest(question_files(settings, extra)),
                "documents": {d: checksums[d] for d in documents},
                "query_training": asdict(config),
                "trained_on": {"questions": len(questions), "examples": len(examples)},
            }
            if drafts is not None:
                _encoder(engine, model, query_encoder_name(settings.embedder, file_digests(staged)), documents)
                engine.off_topic_similarity = manifest["off_topic_similarity"] = off_topic_threshold(
                    engine, questions, drafts)
                # Set before the answerability model is trained: the topic model's refusals it counts
                # against the false-refusal budget leave out the questions near the corpus.
                engine.near_corpus_similarity = manifest["near_corpus_similarity"] = near_corpus_similarity(
                    engine, questions)
                engine.answerability = None
                answerability_report = train_answerability(
                    engine, questions, staged / ANSWERABILITY, config.seed, drafts=drafts,
                    pair_dir=staged / PAIR_LORA if pair else None, pair_training=pair, progress=progress,
                    pair_cache=PairModelCache(settings.pair_cache_dir) if settings.pair_cache_dir else None,
                    kept_pair_dir=kept.folder / PAIR_LORA if kept else None)
                manifest["answerability"] = answerability_report["thresholds"]
                if kept:
                    manifest["pair_training"] = {**kept.manifest.get("pair_training", {}), "kept": True}
                elif pair:
                    manifest["pair_training"] = asdict(pair)
            installed = write_tuned_model(staged, target, manifest)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return TuneReport(installed, len(questions), len(examples), len(documents),
                      time.perf_counter() - started, answerability_report)


def _installed_pair_model(settings: Settings) -> TunedModel:
    """The installed tuned model, checked against its manifest, when it has a pair model to keep."""
    installed = read_tuned_model(settings.tuned_model_dir, settings.embedder)
    if installed is None or not (installed.folder / PAIR_LORA).is_dir():
        raise RuntimeError(f"{settings.tuned_model_dir} holds no tuned model with a pair model to keep; "
                           "run 'spacesec tune' without --keep-pair-model.")
    return installed


def tune_topic(settings: Settings, extra: list[Path] | None = None, config: QueryTraining | None = None,
               progress: bool = False) -> dict:
    """Fit only the topic model of the installed tuned model again on the question files
    (``spacesec tune --topic-only``), on out-of-fold drafts as ``tune`` makes them: about 13
    minutes instead of an hour or more. The query encoder, term links, pair model, answer model
    and its thresholds stay byte for byte. For questions that teach the topic model what is on
    topic (a place, an everyday word it only saw in off-topic questions) without retraining what
    answers them. Returns the off-topic figures on held-out folds."""
    config = config or QueryTraining()
    installed = read_tuned_model(settings.tuned_model_dir, settings.embedder)
    if installed is None or not (installed.folder / ANSWERABILITY).is_dir():
        raise RuntimeError("no tuned answerability model to refit: run 'spacesec tune' first.")
    engine = Engine.load(settings)
    questions = gather_questions(settings, list(extra or []), {d.doc_id for d in engine.corpus.documents})
    target = settings.tuned_model_dir
    with _tune_lock(target):
        staged = _staging_folder(target)
        try:
            shutil.copytree(target, staged, dirs_exist_ok=True)
            (staged / MANIFEST_FILE).unlink()
            drafts = out_of_fold_drafts(engine, questions, config, progress)
            figures = refit_topic(engine, questions, drafts, staged / ANSWERABILITY, config.seed)
            # What the query encoder was trained on stays in the manifest: it did not change.
            manifest = {k: v for k, v in installed.manifest.items() if k not in ("files", "format")}
            manifest["answerability"] = {**manifest.get("answerability", {}), "off_topic": figures["threshold"]}
            write_tuned_model(staged, target, manifest)
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return figures
