"""What users see: an answer whose every [n] marker resolves to a verbatim quote."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from rag.chunking import Chunk
from rag.corpus import dated_name


@dataclass(frozen=True)
class Citation:
    """One cited passage: ``quote`` is a verbatim substring of ``text``, which is a verbatim
    slice of the source document."""

    n: int
    chunk_id: str
    doc_id: str
    title: str
    section: str
    quote: str
    text: str
    short_title: str = ""
    year: int = 0
    score: float = 0.0  # relevance: cosine similarity of the passage to the question
    quote_start: int = 0

    @classmethod
    def from_chunk(cls, n: int, chunk: Chunk, start: int, end: int, score: float) -> Citation:
        return cls(n, chunk.chunk_id, chunk.doc_id, chunk.title, chunk.section, chunk.text[start:end],
                   chunk.text, chunk.short_title, chunk.year, round(score, 4), start)

    @property
    def label(self) -> str:
        """"Outer Space Treaty (1967), Article IV"."""
        return f"{dated_name(self.short_title, self.year)}, {self.section}"


@dataclass(frozen=True)
class Answer:
    """An answer with its citations; when ``abstained``, ``related`` holds the closest passages,
    which are not an answer."""

    question: str
    text: str
    citations: list[Citation]
    abstained: bool
    mode: str = "extractive"
    related: list[Citation] = field(default_factory=list)
    notice: str = ""
    #: How likely the citations answer the question, in [0, 1] (calibrated where a model is trained).
    confidence: float = 0.0
    #: The corpus answers only part of the question: the closest provisions are quoted, and
    #: the text says what the corpus does not state.
    partial: bool = False

    def markers(self) -> list[int]:
        return [int(m) for m in re.findall(r"\[(\d+)\]", self.text)]

    def to_dict(self) -> dict:
        return asdict(self)

    def to_markdown(self) -> str:
        """The answer followed by its numbered references, ready to paste."""
        lines = [self.text, ""]
        if self.notice:
            lines += [f"> {self.notice}", ""]
        listed = self.citations or self.related
        if listed:
            lines.append("References:" if self.citations else "Related passages (not an answer):")
            for c in listed:
                lines.append(f"[{c.n}] {c.label}: \u201c{c.quote}\u201d")
        return "\n".join(lines).strip() + "\n"
