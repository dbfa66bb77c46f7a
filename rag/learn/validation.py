"""Validation that generalises: train on part of the question set, score on what was held out.

* provisions: 15% of the provisions (quotes) and all their questions are held out;
* documents: each document in turn is held out whole, as if a user had added it after
  tuning (its questions unseen, its passages never used in training).

Each run trains in a scratch folder with a scratch copy of the index, so the installed
model and index are never touched. Scores use the scoring rule of ``spacesec eval``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rag.engine import Engine
from rag.evaluation import Item, score_retrieval
from rag.learn.query_model import QueryTraining
from rag.learn.questions import (
    Question,
    load_questions,
    split_by_document,
    split_by_provision,
    write_questions,
)
from rag.learn.tune import tune
from rag.settings import Settings

log = logging.getLogger(__name__)

Report = dict[str, dict[str, dict[str, float]]]  # system -> row (all, style...) -> metric -> value


def as_items(questions: list[Question]) -> list[Item]:
    """Questions in the form ``spacesec eval`` scores (answerable ones only)."""
    return [Item(q.id, q.style, q.question, True, (q.quote,), (), (), ()) for q in questions
            if q.answerable]


def _scratch_settings(settings: Settings, scratch: Path, **changes) -> Settings:
    """``settings`` with an index of their own (a copy: only what differs is rebuilt)."""
    index = scratch / "index"
    if not index.exists() and (settings.index_dir / "current").exists():
        shutil.copytree(settings.index_dir, index, symlinks=True, ignore=shutil.ignore_patterns(".lock"))
    return settings.model_copy(update={"index_dir": index, **changes})


def compare(settings: Settings, train: list[Question], held_out: list[Question],
            config: QueryTraining, k: int = 10, progress: bool = False,
            untrained_weights: tuple[float, ...] = ()) -> Report:
    """Retrieval on ``held_out`` with the installed model and with a model tuned on ``train``
    (also with each of ``untrained_weights`` as ``tuned_weight_on_untrained``)."""
    items = as_items(held_out)
    with tempfile.TemporaryDirectory(prefix="spacesec-validate-") as tmp:
        scratch = Path(tmp)
        # Other writers' questions may ask about a held-out provision in other words: left out.
        tuned_settings = _scratch_settings(
            settings, scratch, questions_path=write_questions(train, scratch / "train.jsonl"),
            other_writers_questions_path=None, tuned_model_dir=scratch / "model", use_tuned_model=True)
        tune(tuned_settings, config=config, progress=progress)
        runs = [("untuned", tuned_settings.model_copy(update={"use_tuned_model": False})),
                ("tuned", tuned_settings)]
        runs += [(f"tuned, untrained weight {w:g}", tuned_settings.model_copy(update={"tuned_weight_on_untrained": w}))
                 for w in untrained_weights]
        report = {}
        for name, run_settings in runs:
            engine = Engine.load(run_settings)
            report[name] = score_retrieval(items, _retrieve(engine), k)
    return report


def _retrieve(engine: Engine) -> Callable[[str, list, int], list[str]]:
    def retrieve(question: str, history: list, k: int) -> list[str]:
        return [d.page_content for d in engine.retrieve(question, k=k, history=history)]
    return retrieve


def provision_split(settings: Settings, config: QueryTraining, progress: bool = False) -> Report:
    """Train on 85% of the provisions, score the other 15%."""
    train, held_out = split_by_provision(load_questions(settings.questions_path))
    return compare(settings, train, held_out, config, progress=progress)


def document_split(settings: Settings, doc_id: str, config: QueryTraining, progress: bool = False,
                   untrained_weights: tuple[float, ...] = ()) -> Report:
    """Train without ``doc_id`` (its questions and its passages), score its questions."""
    train, held_out = split_by_document(load_questions(settings.questions_path), doc_id)
    if not any(q.answerable for q in held_out):
        raise ValueError(f"no training question is about '{doc_id}'; nothing to score.")
    return compare(settings, train, held_out, config, progress=progress, untrained_weights=untrained_weights)


def format_comparison(title: str, report: Report, metrics: tuple[str, ...] = ("recall@5", "mrr@10")) -> str:
    """One row per question style: each metric untuned -> tuned."""
    base = report["untuned"]
    systems = list(report)
    lines = [title, "columns: " + ", ".join(systems)]
    lines.append(f"{'style':<12}{'n':>5}" + "".join(f"{m:>{8 * len(systems)}}" for m in metrics))
    for row in base:
        cells = "".join("".join(f"{report[s][row].get(m, 0):>8.3f}" for s in systems) for m in metrics)
        lines.append(f"{row:<12}{base[row]['n']:>5}{cells}")
    return "\n".join(lines)
