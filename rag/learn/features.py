"""Features of a question and the sentences the composer would quote for it.

Two readings of the same evidence: one row per answer (does this set of quotes answer the
question? the answerability model) and one row per candidate sentence (how well does this
sentence answer it? the order of the quotes). Everything is computed from what the engine
already has after retrieval (the question's vector, the scored sentences, the passages), so
features cost microseconds and need no model at serving time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rag.abstention import Vocabulary, name_terms
from rag.answer import AnswerComposer, Pick
from rag.asked import Asked, asked_for, evidence, flags
from rag.instruments import QueryCues
from rag.lexical import tokenize
from rag.retrieval import Hit

#: How many of the best candidate sentences stand for "what the composer would quote".
QUOTED = 3
#: Words that frame a question ("What does the treaty say about ...") rather than say what it is about.
FRAME_WORDS = frozenset(tokenize("say says said tell mention mentions describe explain cover covers address "
                                 "addresses discuss discusses talk"))


@dataclass(frozen=True)
class Draft:
    """A question after retrieval, before the answer is written."""

    question: str
    content: str  # the question without the names of documents
    vector: np.ndarray
    # The question's vector with states' names replaced (``rag.states``): what the question model reads.
    unnamed_vector: np.ndarray
    hits: list[Hit]
    candidates: list[Pick]  # every sentence of the top passages, best composer score first
    cues: QueryCues


def _question_terms(content: str) -> list[str]:
    """The terms of what a question is about, in order, once each."""
    return [t for t in dict.fromkeys(tokenize(content)) if t not in FRAME_WORDS]


class FeatureReader:
    """Turns drafts into feature rows; built once per loaded index."""

    def __init__(self, composer: AnswerComposer, vocabulary: Vocabulary) -> None:
        self.composer = composer
        self.vocabulary = vocabulary
        self.sentence_vectors = composer.index.sentence_vectors
        # Every term of the passages' texts: the build's document counts already list them.
        self._corpus_terms = frozenset(composer.index.text_terms)
        self._doc_terms: dict[str, frozenset[str]] = {}  # filled as questions name documents

    def _terms_of(self, doc_id: str) -> frozenset[str]:
        """The terms of one document's passages (read when a question first names it: at load
        this would tokenise the whole corpus)."""
        if doc_id not in self._doc_terms:
            self._doc_terms[doc_id] = frozenset(
                t for chunk in self.composer.index.chunks if chunk.doc_id == doc_id for t in tokenize(chunk.text))
        return self._doc_terms[doc_id]

    def _share(self, terms: list[str], found: set[str]) -> float:
        """idf-weighted share of ``terms`` in ``found``."""
        if not terms:
            return 1.0
        weight = sum(self.composer.idf(t) for t in terms)
        return sum(self.composer.idf(t) for t in terms if t in found) / weight

    def answer_row(self, draft: Draft, asked: Asked | None = None) -> dict[str, float]:
        """Features of the question and its best candidate sentences, as one row."""
        asked = asked or asked_for(draft.question)
        terms = _question_terms(draft.content)
        top = draft.candidates[:QUOTED]
        texts = [p.text for p in top]
        quoted_terms = set(tokenize(" ".join(texts)))
        first_terms = set(tokenize(texts[0])) if texts else set()
        passage_terms = set(tokenize(draft.hits[0].chunk.text)) if draft.hits else set()
        all_terms = set(tokenize(" ".join(h.chunk.text for h in draft.hits)))
        named_terms = set().union(*(self._terms_of(d) for d in draft.cues.doc_ids)) \
            if draft.cues.doc_ids else self._corpus_terms
        missing = [t for t in terms if t not in all_terms]
        unknown = [t for t in terms if t not in self._corpus_terms]
        instruments, names = name_terms(draft.content)
        cos = [float(self.sentence_vectors[p.row] @ draft.vector) for p in top]
        row = {
            "cos_first": cos[0] if cos else 0.0,
            "cos_mean": float(np.mean(cos)) if cos else 0.0,
            "score_first": top[0].score if top else 0.0,
            "score_gap": top[0].score - top[1].score if len(top) > 1 else 0.0,
            "dense_passage": draft.hits[0].dense if draft.hits else 0.0,
            "dense_gap": draft.hits[0].dense - max(h.dense for h in draft.hits[1:]) if len(draft.hits) > 1 else 0.0,
            "overlap_first": self._share(terms, first_terms),
            "overlap_quoted": self._share(terms, quoted_terms),
            "overlap_passage": self._share(terms, passage_terms),
            "overlap_passages": self._share(terms, all_terms),
            "overlap_named": self._share(terms, named_terms),
            "missing_idf_max": max((self.composer.idf(t) for t in missing), default=0.0),
            "missing_count": float(len(missing)),
            "unknown_count": float(len(unknown)),
            "terms": float(len(terms)),
            "names_missing": float(sum(not self.vocabulary.mentions(t) for t in names if not t.isdigit())),
            "numbers_missing": float(sum(not self.vocabulary.mentions(t) for t in names if t.isdigit())),
            "instruments_named": float(len(instruments)),
            "names_document": float(bool(draft.cues.doc_ids)),
            "names_part": float(bool(draft.cues.parts)),
            "keyword_style": float("?" not in draft.question and len(draft.question.split()) <= 7),
            "focus_named": (sum(w in named_terms for w in asked.focus) / len(asked.focus)) if asked.focus else 1.0,
            "focus_passages": (sum(w in all_terms for w in asked.focus) / len(asked.focus)) if asked.focus else 1.0,
        }
        row |= flags(asked)
        row |= {f"quoted_{k}": v for k, v in evidence(asked, " ".join(texts), quoted_terms).items()}
        row |= {f"first_{k}": v for k, v in evidence(asked, texts[0] if texts else "", first_terms).items()}
        return row

    def sentence_rows(self, draft: Draft, asked: Asked | None = None, limit: int = 12) -> list[dict[str, float]]:
        """Features of each of the ``limit`` best candidates as an answer to the question."""
        asked = asked or asked_for(draft.question)
        terms = _question_terms(draft.content)
        rows = []
        best = draft.candidates[0].score if draft.candidates else 0.0
        ranks = {h.chunk.chunk_id: r for r, h in enumerate(draft.hits)}
        for rank, pick in enumerate(draft.candidates[:limit]):
            text = pick.text
            own = set(tokenize(text))
            row = {
                "cos": float(self.sentence_vectors[pick.row] @ draft.vector),
                "score": pick.score,
                "score_below_best": best - pick.score,
                "rank": float(rank),
                "passage_rank": float(ranks.get(pick.hit.chunk.chunk_id, len(draft.hits))),
                "overlap": self._share(terms, own),
                "words": float(np.log1p(len(text.split()))),
                "preamble": float(pick.hit.chunk.section == "Preamble"),
            }
            row |= evidence(asked, text, own)
            rows.append(row)
        return rows

