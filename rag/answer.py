"""The extractive answer: pick the sentences of the top passages that answer the question
and quote them verbatim, each with its citation marker. Nothing is generated."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from rag.abstention import expected_answer_type, has_answer_type
from rag.asked import UNSPECIFIED, asked_for, lists_states
from rag.chunking import Chunk
from rag.citations import Answer, Citation
from rag.corpus import dated_name
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
#: Two quotes sharing this share of their words say the same thing (the LTS guidelines repeat the
#: debris guidelines word for word, and the treaties their final clauses): the second is not quoted.
SAME_WORDS = 0.9
#: A sentence with what the question asks for (a figure for "how many", a date for "when",
#: several states' names for "which countries").
ANSWER_TYPE_BONUS = 0.1
#: A sentence that opens by pointing back to the one before it ("If this is not possible, ...",
#: "Such design solutions ...") is quoted with that sentence; "This document" and "These
#: guidelines" name their document instead.
_POINTS_BACK = re.compile(
    r"(?:This|These|Those|Such|They|Thus|Therefore|If (?:this|that|so)|In (?:this|that|such)|"
    r"To (?:this|that) end|For (?:this|that))\b"
    r"(?! (?:Treaty|Agreement|Convention|Declaration|[Gg]uidelines?|[Pp]rinciples?|[Aa]rticle|[Pp]aragraph|"
    r"[Dd]ocument|commitment|statement)\b)")


@dataclass(frozen=True)
class Pick:
    """A sentence chosen for the answer: where it is, and how well it answers."""

    hit: Hit
    row: int  # row in the index's sentence table
    start: int
    end: int
    score: float

    @property
    def text(self) -> str:
        """The sentence, as it stands in its passage."""
        return self.hit.chunk.text[self.start:self.end]


class AnswerComposer:
    """Scores answer sentences against the question and writes the cited answer."""

    def __init__(self, index: LoadedIndex, settings: Settings) -> None:
        self.index = index
        self.settings = settings
        # Sentences are stored in chunk order: a chunk's rows are found by bisection.
        # int64 like the positions looked up: mixed types would convert the table at each lookup.
        self._sentence_chunks = (np.asarray(index.sentences[:, 0], dtype=np.int64) if len(index.sentences)
                                 else np.zeros(0, np.int64))
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

    def idf(self, term: str) -> float:
        """Inverse passage frequency of a stemmed term (highest for terms the corpus lacks)."""
        return self._idf.get(term, self._default_idf)

    def select(self, question_vector: np.ndarray, content_question: str, hits: list[Hit],
               cues: QueryCues) -> list[Pick]:
        """Up to ``max_answer_sentences`` non-redundant sentences, best first (MMR)."""
        return self.choose(self.candidates(question_vector, content_question, hits, cues), cues)

    def candidates(self, question_vector: np.ndarray, content_question: str, hits: list[Hit],
                   cues: QueryCues) -> list[Pick]:
        """Every sentence of the top passages, scored against the question, best first."""
        if not hits:
            return []
        terms = set(tokenize(content_question))
        wanted = expected_answer_type(content_question)
        asks_states = asked_for(content_question).states
        top = max(h.score for h in hits) or 1.0
        candidates: list[Pick] = []
        for hit in hits[: self.settings.answer_passages]:
            chunk_no = self._chunk_no[hit.chunk.chunk_id]
            first, last = (int(r) for r in np.searchsorted(self._sentence_chunks, [chunk_no, chunk_no + 1]))
            similarities = self.index.sentence_vectors[first:last] @ question_vector  # one read per passage
            for row in range(first, last):
                _, start, end = (int(x) for x in self.index.sentences[row])
                text = hit.chunk.text[start:end]
                score = (float(similarities[row - first])
                         + 0.25 * self._overlap(terms, text) + 0.15 * hit.score / top)
                if hit.chunk.section == "Preamble":
                    score -= PREAMBLE_PENALTY
                if hit.chunk.doc_id in cues.doc_ids:
                    score += NAMED_BONUS
                if cues.parts and section_ref(hit.chunk.section) in cues.parts:
                    score += NAMED_BONUS
                if (wanted and has_answer_type(text, wanted)) or (asks_states and lists_states(text)):
                    score += ANSWER_TYPE_BONUS
                candidates.append(Pick(hit, row, start, end, score))
        candidates.sort(key=lambda p: (-p.score, p.row))
        return candidates

    def choose(self, candidates: list[Pick], cues: QueryCues, first: Pick | None = None,
               left_out: frozenset[int] = frozenset()) -> list[Pick]:
        """Up to ``max_answer_sentences`` of ``candidates`` (best composer score first), without
        repeats (MMR); ``first``, the sentence that best answers when a model says so, leads.
        Candidates whose sentence row is ``left_out`` are not added for variety."""
        chosen: list[Pick] = [first] if first else []
        # A question that names several instruments gets the best sentence of each.
        for doc_id in cues.doc_ids[:4] if len(cues.doc_ids) > 1 else ():
            best = next((p for p in candidates if p.hit.chunk.doc_id == doc_id), None)
            if best and best.row not in {c.row for c in chosen} and not (first and first.hit.chunk.doc_id == doc_id):
                chosen.append(best)
        if not candidates:
            return chosen
        floor = candidates[0].score - self.settings.answer_score_margin
        rows = sorted({p.row for p in candidates if p.score >= floor} | {c.row for c in chosen})
        vectors = dict(zip(rows, self.index.sentence_vectors[rows], strict=True))  # read once
        words = {p.row: set(tokenize(p.text))
                 for p in [*chosen, *(c for c in candidates if c.score >= floor)]}
        lam = self.settings.mmr_lambda
        while len(chosen) < self.settings.max_answer_sentences:
            best, best_value = None, -math.inf
            taken = {c.row for c in chosen} | left_out
            for pick in candidates:
                if pick.row in taken or pick.score < floor:
                    continue
                if any(_same_words(words[pick.row], words[c.row]) for c in chosen):
                    continue  # the same words again, most often in another instrument
                redundancy = max((float(vectors[pick.row] @ vectors[c.row]) for c in chosen), default=0.0)
                value = lam * pick.score - (1 - lam) * redundancy
                if value > best_value:
                    best, best_value = pick, value
            if best is None:
                break
            chosen.append(best)
        return chosen

    def write(self, question: str, picks: list[Pick], confidence: float | None = None,
              not_stated: str | None = None) -> Answer:
        """Template the picks into prose; each quote is a verbatim slice with its marker.

        The first pick leads; the others follow grouped by instrument (the lead's first), each
        instrument named once. ``not_stated`` makes the answer partial: it opens by saying what
        the corpus does not state. Without ``confidence`` (no answerability model), the best
        sentence's score stands in for it."""
        order: dict[str, list[Pick]] = {}
        for pick in picks:
            order.setdefault(pick.hit.chunk.doc_id, []).append(pick)
        citations: list[Citation] = []
        blocks: list[str] = []
        for number, group in enumerate(order.values()):
            # Quotes of one section stay together, in the order of the section's first quote.
            sections = {}
            for pick in group:
                sections.setdefault(pick.hit.chunk.section, []).append(pick)
            lines = []
            for section, section_picks in sections.items():
                for pick in section_picks:
                    chunk = pick.hit.chunk
                    start, end = _trim(chunk.text, self._quote_start(pick, picks), pick.end)
                    citations.append(Citation.from_chunk(len(citations) + 1, chunk, start, end, pick.hit.dense))
                    quote = f"\u201c{chunk.text[start:end]}\u201d [{len(citations)}]"
                    if lines:
                        lines.append(f"{section}: {quote}")
                    else:
                        lead = "According to" if number == 0 else "In"
                        lines.append(f"{lead} {_name(chunk)}, {section}: {quote}")
            blocks.append("\n".join(lines))
        text = "\n\n".join(blocks)
        if not_stated == UNSPECIFIED:  # the model doubts the quotes, but nothing named is missing
            text = f"These provisions may not answer exactly what was asked; the closest say:\n\n{text}"
        elif not_stated:
            text = f"The corpus does not state {not_stated}; the closest provisions say:\n\n{text}"
        if confidence is None:
            confidence = min(max(max(p.score for p in picks), 0.0), 1.0) if picks else 0.0
        return Answer(question=question, text=text, citations=citations, abstained=False,
                      confidence=round(confidence, 4), partial=bool(not_stated))

    def _quote_start(self, pick: Pick, picks: list[Pick]) -> int:
        """Where the quote of ``pick`` starts: at the sentence before it, in the same paragraph,
        when the sentence points back to it and it is not quoted on its own."""
        text = pick.hit.chunk.text
        if not _POINTS_BACK.match(text, _trim(text, pick.start, pick.end)[0]):
            return pick.start
        row = pick.row - 1
        if row < 0 or self._sentence_chunks[row] != self._sentence_chunks[pick.row] or any(p.row == row for p in picks):
            return pick.start
        _, start, end = (int(x) for x in self.index.sentences[row])
        return pick.start if "\n" in text[end:pick.start] else start


def _same_words(a: set[str], b: set[str]) -> bool:
    """Whether two sentences' words overlap by at least ``SAME_WORDS`` (Jaccard)."""
    return len(a & b) >= SAME_WORDS * max(len(a | b), 1)


def _name(chunk: Chunk) -> str:
    article = "" if chunk.short_title.split()[0].isupper() and chunk.kind == "statement" else "the "
    return f"{article}{dated_name(chunk.short_title, chunk.year)}"


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Drop a leading paragraph number and trailing list punctuation; the rest stays verbatim."""
    match = _LEADING_NUMBER.match(text[start:end])
    if match:
        start += match.end()
    while end > start and text[end - 1] in ";,:":
        end -= 1
    return start, end
