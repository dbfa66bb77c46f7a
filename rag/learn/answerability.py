"""Does the corpus answer the question? The learned check, at serving time (numpy only).

Three parts, trained by ``rag.learn.train_answerability`` on the question set:

1. a sentence model (logistic regression over ``FeatureReader.sentence_rows``): how well each
   candidate sentence answers the question; the best leads the answer (near ties: the composer's best);
2. a question model (logistic regression over the question's embedding): how much the
   question sounds like one the corpus cannot answer (asks for a forecast, today's facts...);
3. the answer model (gradient-boosted trees over ``FeatureReader.answer_row`` of the quotes
   in that order, plus the two scores above and, when it was trained with one, the pair model's
   best log-odds over the first ``PAIR_CANDIDATES`` candidates: ``rag.learn.pair_model``), calibrated
   by Platt scaling on held-out folds: ``confidence`` is the probability that the quotes answer
   the question.

Thresholds on the confidence, chosen on held-out folds, give the three outcomes: answered,
partial (quotes shown, with what the corpus does not state) and not found. A question that asks
for a figure or a date has a "not found" threshold of its own: the figures of answerable
questions are worded in many ways, so one threshold for all would be set by them alone.

Before them, a topic model (logistic regression over the question's embedding, trained on
off-topic questions against the question set) refuses questions outside the corpus's subject
that the similarity floor lets through ("Which planet has the most moons?").
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rag.answer import Pick
from rag.asked import Asked, asked_for
from rag.learn.features import Draft, FeatureReader

log = logging.getLogger(__name__)

ARTIFACT_VERSION = 1
WEIGHTS_FILE = "answerability.npz"
META_FILE = "answerability.json"
#: The held-out figures measured when the model was trained (not read at serving time).
REPORT_FILE = "answerability-report.json"
#: Each question's out-of-fold confidence, and the questions refused before the model: what the
#: thresholds were chosen on (not read at serving time). Thresholds can be chosen again from it
#: (``choose_thresholds``) without the hour of training that produced it.
HELD_OUT_FILE = "answerability-held-out.json"
#: Candidates the sentence model reads (the composer's best by its own score).
SENTENCE_CANDIDATES = 12

#: Candidates the pair model reads (the composer's order), and the answer feature it gives.
PAIR_CANDIDATES = 3
PAIR_FEATURE = "pair_best"

#: How much more likely to answer another sentence must be for it to lead instead of the composer's best.
LEAD_MARGIN = 0.1
#: A sentence scored below this is not quoted after the lead: on four question sets by other
#: writers, none of the 27 such quotes held the answer (docs/ANSWERS.md).
QUOTE_FLOOR = 0.03

ANSWERED, PARTIAL, NOT_FOUND = "answered", "partial", "not found"


@dataclass(frozen=True)
class Judgement:
    """The model's verdict on a draft answer."""

    confidence: float  # calibrated probability that the best quotes answer the question
    outcome: str  # ANSWERED, PARTIAL or NOT_FOUND
    asked: Asked  # what the question asks for, named in partial and not-found answers


@dataclass(frozen=True)
class Linear:
    """A standardised logistic regression: sigmoid(((x - mean) / scale) @ coef + intercept)."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale) @ self.coef + self.intercept


@dataclass(frozen=True)
class Forest:
    """Gradient-boosted trees in flat arrays: node ``i`` of tree ``t`` sits at ``roots[t] + i``."""

    feature: np.ndarray  # int, -1 at leaves
    threshold: np.ndarray
    left: np.ndarray  # tree-local child indices
    right: np.ndarray
    missing_left: np.ndarray  # bool: where a NaN goes
    value: np.ndarray  # leaf values
    roots: np.ndarray
    baseline: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Raw scores (log-odds) of the rows of ``x``. Every tree is walked at once, one level per
        step: a question is one row, and a loop over 150 trees cost it 7 ms of numpy overhead."""
        x = np.atleast_2d(x)
        rows = np.arange(len(x))[:, None]
        at = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()  # node of each (row, tree)
        while True:
            feature = self.feature[at]
            inner = feature >= 0
            if not inner.any():
                break
            values = x[rows, np.maximum(feature, 0)]
            go_left = np.where(np.isnan(values), self.missing_left[at], values <= self.threshold[at])
            at = np.where(inner, self.roots + np.where(go_left, self.left[at], self.right[at]), at)
        return self.baseline + self.value[at].sum(axis=1)


def sigmoid(z: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


class AnswerabilityModel:
    """Judges drafts; loaded once with the engine (``load_answerability``)."""

    def __init__(self, meta: dict, weights: dict[str, np.ndarray], reader: FeatureReader, pair=None) -> None:
        """``pair``: the pair model's scorer (``score(question, sentences)`` -> log-odds), when
        the answer model reads it."""
        self.meta = meta
        self.reader = reader
        self.pair = pair
        self.answer_features: list[str] = meta["answer_features"]
        self.sentence_features: list[str] = meta["sentence_features"]
        self.sentence = _linear(weights, "sentence")
        self.question = _linear(weights, "question")
        self.forest = Forest(weights["forest_feature"], weights["forest_threshold"], weights["forest_left"],
                             weights["forest_right"], weights["forest_missing_left"].astype(bool),
                             weights["forest_value"], weights["forest_roots"], float(np.ravel(weights["forest_baseline"])[0]))
        self.calibration = weights["calibration"]  # Platt scaling: (slope, intercept) of the log-odds
        self.thresholds = {k: float(v) for k, v in meta["thresholds"].items()}
        self.thresholds.setdefault("partial_quantity", self.thresholds["partial"])
        self.answer_threshold = self.thresholds["answer"]
        self.topic = _linear(weights, "topic") if "topic_coef" in weights else None
        self.off_topic_threshold = self.thresholds.get("off_topic", 1.0)

    def partial_threshold(self, question: str) -> float:
        """The confidence below which the corpus is taken not to answer ``question``."""
        return not_found_below(self.thresholds, asked_for(question).quantity)

    def sentence_scores(self, draft: Draft) -> np.ndarray:
        """How well each of the first ``SENTENCE_CANDIDATES`` candidates answers the question."""
        rows = self.reader.sentence_rows(draft, limit=SENTENCE_CANDIDATES)
        if not rows:
            return np.zeros(0)
        x = np.array([[row[name] for name in self.sentence_features] for row in rows])
        return sigmoid(self.sentence.logit(x))

    def choose_quotes(self, draft: Draft, scores: np.ndarray) -> tuple[Pick, frozenset[int]]:
        """(the candidate that opens the answer, the sentence rows not to quote after it), from
        the draft's ``sentence_scores``.

        The lead is the composer's best unless the sentence model clearly prefers another (near
        ties go to the composer, whose score the model also reads); a question that names
        instruments is answered from them first, when they have a candidate. Left out: what the
        sentence model gives less than ``QUOTE_FLOOR``, which the composer's diversity would
        otherwise pick ("These services also underpin national security" for "Is China a member
        of CSpO?")."""
        if not scores.size:
            return draft.candidates[0], frozenset()
        named = set(draft.cues.doc_ids)
        pool = [i for i in range(len(scores)) if draft.candidates[i].hit.chunk.doc_id in named] or list(range(len(scores)))
        best = max(pool, key=lambda i: (scores[i], -i))
        lead = best if scores[best] - scores[pool[0]] >= LEAD_MARGIN else pool[0]
        return draft.candidates[lead], frozenset(draft.candidates[i].row for i in np.flatnonzero(scores < QUOTE_FLOOR)
                                                 if i != lead)

    @staticmethod
    def best_first(draft: Draft, scores: np.ndarray, picks: list[Pick]) -> list[Pick]:
        """``picks`` with the lead kept first and the others in the order of the draft's
        ``sentence_scores``: the composer's diversity decides which quotes support the lead, not
        their order (it put Liability Art. VIII's "claim ... territory" before the Outer Space
        Treaty's "not subject to national appropriation" because the latter repeats the lead).
        Quotes beyond the scored candidates follow in the composer's order."""
        strength = {c.row: float(s) for c, s in zip(draft.candidates, scores)}
        return picks[:1] + sorted(picks[1:], key=lambda p: -strength.get(p.row, -np.inf))

    def raw(self, draft: Draft, scores: np.ndarray) -> float:
        """Uncalibrated log-odds that the draft's quotes, best-answering first (by its
        ``sentence_scores``), answer it."""
        order = np.argsort(-scores, kind="stable")
        ordered = replace(draft, candidates=[draft.candidates[i] for i in order])
        row = self.reader.answer_row(ordered)
        row["sentence_best"] = float(scores.max()) if scores.size else 0.0
        row["question_logit"] = float(self.question.logit(draft.unnamed_vector[None, :].astype(np.float64))[0])
        if self.pair is not None:
            row[PAIR_FEATURE] = best_pair_score(self.pair.score(draft.question, candidate_texts(draft)))
        x = np.array([[row[name] for name in self.answer_features]])
        return float(self.forest.logit(x)[0])

    def off_topic(self, draft: Draft) -> bool:
        """Whether the question is outside the corpus's subject altogether. A question that names
        a document of the corpus is about the corpus, whatever the topic model reads."""
        if self.topic is None or draft.cues.doc_ids:
            return False
        return self.topic_probability(draft) > self.off_topic_threshold

    def topic_probability(self, draft: Draft) -> float:
        """The topic model's probability that the question is off topic (0 without a topic model)."""
        if self.topic is None:
            return 0.0
        return float(sigmoid(self.topic.logit(draft.vector[None, :].astype(np.float64))[0]))

    def calibrate(self, logit: float) -> float:
        return float(sigmoid(self.calibration[0] * logit + self.calibration[1]))

    def judge(self, draft: Draft, scores: np.ndarray) -> Judgement:
        """Confidence and outcome for ``draft`` (which must have candidates), from its
        ``sentence_scores``."""
        confidence = self.calibrate(self.raw(draft, scores))
        asked = asked_for(draft.question)
        return Judgement(round(confidence, 4), outcome(confidence, asked.quantity, self.thresholds), asked)


def candidate_texts(draft: Draft, limit: int = PAIR_CANDIDATES) -> list[str]:
    """The sentences of the first ``limit`` candidates of ``draft``."""
    return [pick.text for pick in draft.candidates[:limit]]


def best_pair_score(scores: np.ndarray) -> float:
    """The answer feature from the pair model's log-odds of a draft's candidates."""
    return float(np.max(scores)) if len(scores) else -10.0


def not_found_below(thresholds: dict[str, float], quantity: bool) -> float:
    """The "not found" threshold of a question (``quantity``: it asks for a figure or a date,
    which has a threshold of its own)."""
    return thresholds["partial_quantity" if quantity else "partial"]


def outcome(confidence: float, quantity: bool, thresholds: dict[str, float]) -> str:
    """ANSWERED, PARTIAL or NOT_FOUND under ``thresholds``."""
    if confidence >= thresholds["answer"]:
        return ANSWERED
    return PARTIAL if confidence >= not_found_below(thresholds, quantity) else NOT_FOUND


def _linear(weights: dict[str, np.ndarray], name: str) -> Linear:
    return Linear(weights[f"{name}_mean"], weights[f"{name}_scale"], weights[f"{name}_coef"],
                  float(np.ravel(weights[f"{name}_intercept"])[0]))


def load_answerability(folder: Path | None, embedder_name: str, reader: FeatureReader,
                       pair=None) -> AnswerabilityModel | None:
    """The model stored in ``folder``, or None (the rule-based checks then decide alone) when
    there is none, it was trained for another embedder, whose similarities it cannot read, or it
    reads the pair model and ``pair`` (its scorer) is None."""
    if folder is None:
        return None
    meta_path, weights_path = Path(folder) / META_FILE, Path(folder) / WEIGHTS_FILE
    if not meta_path.is_file() or not weights_path.is_file():
        log.info("no answerability model in %s; rule-based abstention only", folder)
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(weights_path) as stored:
            weights = {name: stored[name] for name in stored.files}
    except (OSError, ValueError) as exc:
        log.warning("answerability model in %s unreadable (%s); rule-based abstention only", folder, exc)
        return None
    if meta.get("version") != ARTIFACT_VERSION or meta.get("embedder") != embedder_name:
        log.warning("answerability model in %s was trained for %s (version %s); rule-based abstention only",
                    folder, meta.get("embedder"), meta.get("version"))
        return None
    if PAIR_FEATURE in meta["answer_features"] and pair is None:
        log.warning("the answerability model in %s reads the pair model, which the index does not hold "
                    "(run 'spacesec build'); rule-based abstention only", folder)
        return None
    return AnswerabilityModel(meta, weights, reader, pair if PAIR_FEATURE in meta["answer_features"] else None)
