"""Excerpt search: ranked verbatim paragraphs for a query, each with a formal citation
("Outer Space Treaty (1967), art. IV(1)") and the spans of the words that match the query.

The CLI (`spacesec search`), the web app's Search tab and its MCP tool all use it; it runs
retrieval only, never the answer composer.

    finder = ExcerptFinder(engine)
    for excerpt in finder.search("nuclear weapons in orbit", k=3):
        print(excerpt.citation, excerpt.text)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.chunking import Chunk
from rag.corpus import dated_name
from rag.lexical import tokenize

_WORD = re.compile(r"[A-Za-z][a-z]*\.\d+|[A-Za-z0-9]+")
_HEADING = re.compile(r"#{1,6}\s+")
_NUMBERED = re.compile(r"(\d{1,3})\.\s")
_ITEM = re.compile(r"\(([a-z]{1,2}|[ivx]{1,5})\)\s")
_ROMAN_ITEMS = frozenset({"i", "ii", "iii", "iv", "v", "vi", "vii", "viii", "ix", "x"})
# How a section label is cited: "Article IV" -> "art. IV", "Paragraph 12" -> "para. 12".
_ABBREVIATIONS = (("Article ", "art. "), ("Paragraph ", "para. "), ("Principle ", "principle "),
                  ("Guideline ", "guideline "))


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of a section: its offsets in the document and its pinpoint, "(1)(a)" or ""."""

    start: int
    end: int
    pinpoint: str


@dataclass(frozen=True)
class Excerpt:
    """One ranked paragraph: verbatim ``text`` (a slice of the document at ``start``), the
    ``citation`` that locates it, and ``highlights``: (start, end) spans of ``text`` whose
    words match the query."""

    rank: int
    chunk_id: str
    doc_id: str
    citation: str
    text: str
    start: int
    score: float
    highlights: list[tuple[int, int]] = field(default_factory=list)

    @property
    def quotation(self) -> str:
        """The citation and the verbatim text, ready to paste."""
        return f"{self.citation}: \u201c{self.text}\u201d"

    def to_dict(self) -> dict:
        return {"rank": self.rank, "citation": self.citation, "text": self.text,
                "chunk_id": self.chunk_id, "doc_id": self.doc_id, "score": self.score,
                "highlights": [list(span) for span in self.highlights]}


def section_citation(section: str) -> str:
    """"Article IV" -> "art. IV"; labels without a usual abbreviation stay as they are."""
    for long, short in _ABBREVIATIONS:
        if section.startswith(long):
            return short + section[len(long):]
    return section


def match_spans(text: str, query: str) -> list[tuple[int, int]]:
    """Spans of the words of ``text`` whose stems are content words of ``query``."""
    wanted = set(tokenize(query))
    if not wanted:
        return []
    return [m.span() for m in _WORD.finditer(text) if set(tokenize(m.group(0))) & wanted]


class ExcerptFinder:
    """Paragraph structure of every section, computed once from the loaded index; then
    ``search`` and ``cite`` are cheap."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self._texts = {d.doc_id: engine.corpus.text(d) for d in engine.corpus.documents}
        self._numbered_as = {d.doc_id: d.numbered_as for d in engine.corpus.documents}
        spans: dict[tuple[str, str], tuple[int, int]] = {}
        for c in engine.index.chunks:
            start, end = spans.get((c.doc_id, c.section), (c.start, c.end))
            spans[(c.doc_id, c.section)] = (min(start, c.start), max(end, c.end))
        self._spans = spans
        self._paragraphs = {key: _paragraphs(self._texts[key[0]], *span) for key, span in spans.items()}

    def full_section(self, chunk: Chunk) -> str:
        """The whole section ``chunk`` belongs to (all its parts), verbatim."""
        return self._texts[chunk.doc_id][slice(*self._spans[(chunk.doc_id, chunk.section)])]

    def paragraphs(self, chunk: Chunk) -> list[Paragraph]:
        """The paragraphs of ``chunk`` (headings left out), in order."""
        return [p for p in self._paragraphs[(chunk.doc_id, chunk.section)]
                if p.start < chunk.end and p.end > chunk.start]

    def locate(self, chunk: Chunk, offset: int = 0) -> str:
        """Where the paragraph at ``offset`` of ``chunk``'s text sits in its document:
        "art. IV(1)", "guideline B.6(3)", "Preamble, para. 2"."""
        where = chunk.start + offset
        pinpoint = next((p.pinpoint for p in self._paragraphs[(chunk.doc_id, chunk.section)]
                         if p.start <= where < p.end), "")
        part = section_citation(chunk.section)
        if chunk.section.startswith(f"{self._numbered_as[chunk.doc_id]} ") and re.fullmatch(r"\(\d+\)", pinpoint):
            # The section is the numbered paragraph ("principle 9", not "principle 9(9)"; a subtitle
            # line is not a paragraph of its own).
            pinpoint = ""
        if pinpoint and part == chunk.section:  # "Preamble, para. 3", not "Preamble(3)"
            number, _, rest = pinpoint[1:].partition(")")
            pinpoint = f", para. {number}{rest}"
        return part + pinpoint

    def cite(self, chunk: Chunk, offset: int = 0) -> str:
        """The formal citation of the paragraph at ``offset`` of ``chunk``'s text:
        "Outer Space Treaty (1967), art. IV(1)"."""
        return f"{dated_name(chunk.short_title, chunk.year)}, {self.locate(chunk, offset)}"

    def search(self, query: str, k: int = 5, doc_ids=None, kinds=None, years=None) -> list[Excerpt]:
        """The ``k`` best passages for ``query``, each narrowed to its paragraph with the most
        query words (filters as in ``Engine.search``; raises ValueError on bad input)."""
        hits = self.engine.search(query, k, None, doc_ids, kinds, years)
        terms = self.engine.catalogue.without_names(query)  # a named document is not a match
        excerpts = []
        for rank, hit in enumerate(hits, 1):
            chunk = hit.chunk
            text = self._texts[chunk.doc_id]
            best = max(self.paragraphs(chunk) or [Paragraph(chunk.start, chunk.end, "")],
                       key=lambda p: (len({text[s:e].lower() for s, e in match_spans(text[p.start:p.end], terms)}),
                                      -p.start))
            start, end = max(best.start, chunk.start), min(best.end, chunk.end)
            passage = text[start:end]
            excerpts.append(Excerpt(rank, chunk.chunk_id, chunk.doc_id, self.cite(chunk, start - chunk.start),
                                    passage, start, round(hit.score, 4), match_spans(passage, terms)))
        return excerpts


def _paragraphs(text: str, start: int, end: int) -> list[Paragraph]:
    """Paragraphs (blank-line separated, headings excluded) of ``text[start:end]`` with their
    pinpoints: "1." starts paragraph (1), "(a)" an item of the current paragraph, "(i)" an item
    of (a); unnumbered paragraphs are counted when they are all the section has."""
    found: list[tuple[int, int, str | None, str | None]] = []
    for match in re.finditer(r"[^\n]+(?:\n(?!\s*\n)[^\n]+)*", text[start:end]):
        body = match.group(0).strip()
        if not body or _HEADING.match(body):
            continue
        number = _NUMBERED.match(body)
        item = _ITEM.match(body)
        found.append((start + match.start(), start + match.end(),
                      number.group(1) if number else None, item.group(1) if item else None))
    numbered = any(n for _, _, n, _ in found)
    items = any(i for _, _, _, i in found)
    # Unnumbered paragraphs are counted only where they are the section's only structure.
    counted = not numbered and not items and len(found) > 1
    out: list[Paragraph] = []
    current, letter, count = "", "", 0
    for s, e, number, item in found:
        if item is not None:
            # "(i)" after "(a)" is a sub-item of (a); after "(h)" it is the letter i.
            if item in _ROMAN_ITEMS and letter and not (item == "i" and letter == "h"):
                out.append(Paragraph(s, e, _pinpoint(current, letter, item)))
            else:
                letter = item
                out.append(Paragraph(s, e, _pinpoint(current, item)))
            continue
        count += 1
        letter = ""
        current = number or (str(count) if counted else current)
        out.append(Paragraph(s, e, _pinpoint(current)))
    return out


def _pinpoint(*parts: str) -> str:
    return "".join(f"({p})" for p in parts if p)
