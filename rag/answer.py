"""The extractive answer: pick the sentences of the top passages that answer the question
and quote them verbatim, each with its citation marker. Nothing is generated."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from rag.abstention import expected_answer_type, has_answer_type
from rag.chunking import Chunk
from rag.citations import Answer, Citation
from rag.index_store import LoadedIndex
from rag.instruments import QueryCues, section_ref
from rag.lexical import tokenize
from rag.retrieval import Hit
from rag.settings import Settings

_LEADING_NUMBER = re.compile(r"^(?:\d+\.\s+)")
#: Preamble recitals give context, not obligations: prefer operative text when both fit.
PREAMBLE_PENALTY = 0.05
#: A sentence from the instrument (or part) the question names beats a look-alike elsewhere.
NAMED_BONUS = 0.1
#: A sentence with what the question asks for (a figure for "how many", a date for "when").
ANSWER_TYPE_BONUS = 0.1


@dataclass(frozen=True)
class Pick:
    """A sentence chosen for the answer: where it is, and how well it answers."""

    hit: Hit
    row: int  # row in the index's sentence table
    start: int
    end: int
    score: float


class AnswerComposer:
    """Scores answer sentences against the question and writes the cited answer."""

    def __init__(self, index: LoadedIndex, settings: Settings) -> None:
        self.index = index
        self.settings = settings
        # Sentences are stored in chunk order: a chunk's rows are found by bisection.
        self._sentence_chunks = np.asarray(index.sentences[:, 0]) if len(index.sentences) else np.zeros(0, np.int32)
        self._chunk_no = {c.chunk_id: i for i, c in enumerate(index.chunks)}
        df = index.text_terms  # ``document_counts`` of the passages' texts, saved by the build
        total = max(len(index.chunks), 1)
        self._idf = {t: math.log(1 + total / n) for t, n in df.items()}
        self._default_idf = math.log(1 + total)

    def _overlap(self, question_terms: set[str], sentence: str) -> float:
        """idf-weighted share of the question's terms that the sentence uses."""
        if not question_terms:
            return 0.0
        found = question_terms & set(tokenize(sentence))
        weight = sum(self._idf.get(t, self._default_idf) for t in question_terms)
        return sum(self._idf.get(t, self._default_idf) for t in found) / weight

    def select(self, question_vector: np.ndarray, content_question: str, hits: list[Hit],
               cues: QueryCues) -> list[Pick]:
        """Up to ``max_answer_sentences`` non-redundant sentences, best first (MMR)."""
        if not hits:
            return []
        terms = set(tokenize(content_question))
        wanted = expected_answer_type(content_question)
        top = max(h.score for h in hits) or 1.0
        candidates: list[Pick] = []
        for hit in hits[: self.settings.answer_passages]:
            chunk_no = self._chunk_no[hit.chunk.chunk_id]
            for row in range(*np.searchsorted(self._sentence_chunks, [chunk_no, chunk_no + 1])):
                _, start, end = (int(x) for x in self.index.sentences[row])
                text = hit.chunk.text[start:end]
                score = (float(self.index.sentence_vectors[row] @ question_vector)
                         + 0.25 * self._overlap(terms, text) + 0.15 * hit.score / top)
                if hit.chunk.section == "Preamble":
                    score -= PREAMBLE_PENALTY
                if hit.chunk.doc_id in cues.doc_ids:
                    score += NAMED_BONUS
                if cues.parts and section_ref(hit.chunk.section) in cues.parts:
                    score += NAMED_BONUS
                if wanted and has_answer_type(text, wanted):
                    score += ANSWER_TYPE_BONUS
                candidates.append(Pick(hit, row, start, end, score))
        candidates.sort(key=lambda p: (-p.score, p.row))
        return self._mmr(candidates, cues)

    def _mmr(self, candidates: list[Pick], cues: QueryCues) -> list[Pick]:
        chosen: list[Pick] = []
        # A question that names several instruments gets the best sentence of each.
        for doc_id in cues.doc_ids[:4] if len(cues.doc_ids) > 1 else ():
            best = next((p for p in candidates if p.hit.chunk.doc_id == doc_id), None)
            if best and best not in chosen:
                chosen.append(best)
        if not candidates:
            return chosen
        floor = candidates[0].score - self.settings.answer_score_margin
        vectors = self.index.sentence_vectors
        lam = self.settings.mmr_lambda
        while len(chosen) < self.settings.max_answer_sentences:
            best, best_value = None, -math.inf
            for pick in candidates:
                if pick in chosen or pick.score < floor:
                    continue
                redundancy = max((float(vectors[pick.row] @ vectors[c.row]) for c in chosen), default=0.0)
                value = lam * pick.score - (1 - lam) * redundancy
                if value > best_value:
                    best, best_value = pick, value
            if best is None:
                break
            chosen.append(best)
        return chosen

    def write(self, question: str, picks: list[Pick]) -> Answer:
        """Template the picks into prose; each quote is a verbatim slice with its marker."""
        citations: list[Citation] = []
        parts: list[str] = []
        previous: tuple[str, str] | None = None
        # Quotes from one section stay together, sections in the order of their best quote.
        first = {}
        for i, pick in enumerate(picks):
            first.setdefault((pick.hit.chunk.doc_id, pick.hit.chunk.section), i)
        picks = sorted(picks, key=lambda p: first[(p.hit.chunk.doc_id, p.hit.chunk.section)])
        for n, pick in enumerate(picks, 1):
            chunk = pick.hit.chunk
            start, end = _trim(chunk.text, pick.start, pick.end)
            citations.append(Citation.from_chunk(n, chunk, start, end, pick.hit.dense))
            quote = f"\u201c{chunk.text[start:end]}\u201d [{n}]."
            where = (chunk.doc_id, chunk.section)
            if where == previous:
                parts.append(f"It also provides: {quote}")
            else:
                parts.append(f"According to {_name(chunk)}, {chunk.section}: {quote}")
            previous = where
        # Until the answerability model is trained: the best sentence's score, clipped to [0, 1].
        confidence = min(max(max(p.score for p in picks), 0.0), 1.0) if picks else 0.0
        return Answer(question=question, text=" ".join(parts), citations=citations, abstained=False,
                      confidence=round(confidence, 4))


def _name(chunk: Chunk) -> str:
    article = "" if chunk.short_title.split()[0].isupper() and chunk.kind == "statement" else "the "
    return f"{article}{chunk.short_title} ({chunk.year})"


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a leading paragraph number and trailing list punctuation; the rest stays verbatim."""
    match = _LEADING_NUMBER.match(text[start:end])
    if match:
        start += match.end()
    while end > start and text[end - 1] in ";,:":
        end -= 1
    return start, end
