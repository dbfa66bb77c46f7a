"""Structure-aware chunking: split each document on its own headings and numbering.

Sections follow the texts' real structure (Article IV, Principle 3, Guideline B.6,
numbered paragraphs, preambles). A section longer than the embedder's window is packed
into parts at paragraph, then sentence boundaries. Every chunk's text is a verbatim slice
of the source file at its offsets.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from rag.corpus import DocumentInfo
from rag.sentences import clause_spans, sentence_spans

# Bump when chunking or answer-sentence splitting changes: it makes existing indexes stale.
CHUNKER_VERSION = "8"

TokenCounter = Callable[[str], int]

_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_STRUCTURAL = re.compile(
    r"^(Article|Principle|Guideline|Rule|Section|Chapter|Part)\s+"
    r"([A-Z]\.\d+|\d+|[IVXLC]+)\b[.:]?\s*(.*)$",
    re.IGNORECASE,
)
_NUMBERED_HEADING = re.compile(r"^(\d+|[IVXLC]+|[A-Z])\.\s+(.*)$")
_NUMBERED_PARAGRAPH = re.compile(r"^(\d+)\.\s+\S")


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage of one document, with where it sits in the document's structure (slots: a
    million of them are held while serving)."""

    chunk_id: str
    doc_id: str
    title: str
    short_title: str
    year: int
    kind: str
    section: str
    section_title: str
    start: int
    end: int
    text: str
    part: int = 1

    @property
    def embed_text(self) -> str:
        """What the embedder reads: the passage prefixed with its instrument and section."""
        return f"{self.header}\n{self.text}"

    @property
    def header(self) -> str:
        title = f": {self.section_title}" if self.section_title else ""
        return f"{self.short_title}, {self.section}{title}"

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Block:
    start: int
    end: int
    text: str
    heading_level: int = 0

    @property
    def heading_text(self) -> str:
        return _HEADING.match(self.text).group(2).strip() if self.heading_level else ""


@dataclass
class _Section:
    label: str
    title: str
    blocks: list[_Block] = field(default_factory=list)
    structural: bool = False


def _blocks(text: str) -> list[_Block]:
    """Runs of non-blank lines with their offsets; a heading line is a block of its own."""
    blocks: list[_Block] = []
    joinable = False  # whether the next line continues the previous block
    for line in re.finditer(r"[^\n]*", text):
        if not line.group(0).strip():
            joinable = False
            continue
        heading = _HEADING.match(line.group(0))
        if joinable and not heading:
            prev = blocks[-1]
            blocks[-1] = _Block(prev.start, line.end(), text[prev.start:line.end()])
        else:
            level = len(heading.group(1)) if heading else 0
            blocks.append(_Block(line.start(), line.end(), line.group(0), level))
        joinable = not heading
    return blocks


def _heading_label(heading: str, parent: _Section | None) -> tuple[str, str, bool]:
    """(label, title, structural) for a heading line's text."""
    match = _STRUCTURAL.match(heading)
    if match:
        word, number, rest = match.groups()
        return f"{word.capitalize()} {number.upper()}", rest.strip(" .:"), True
    match = _NUMBERED_HEADING.match(heading)
    if match and match.group(1).isdigit():
        number, rest = match.groups()
        if parent is not None:
            return f"{parent.label}, section {number}", rest.strip(), True
        return f"Section {number}", rest.strip(), True
    if match:  # "II. Guidelines ...", "A. Policy ...": a group heading
        return f"Part {match.group(1)}", match.group(2).strip(), False
    return heading.strip(), "", False


def _is_title(block: _Block, doc: DocumentInfo) -> bool:
    if block.heading_level == 1:
        return True
    first_line = block.text.splitlines()[0].strip()
    return first_line == doc.title or (
        len(first_line) < 200 and not first_line.endswith((".", ";", ",", ":"))
    )


def _sections(text: str, doc: DocumentInfo) -> list[_Section]:
    """The document's sections, in order; headings without a body join the next section."""
    blocks = _blocks(text)
    has_structure = any(
        b.heading_level > 1 or _NUMBERED_PARAGRAPH.match(b.text) for b in blocks[1:]
    )
    sections: list[_Section] = []
    current: _Section | None = None
    parent: _Section | None = None  # the structural section that sub-headings belong to
    context = ""  # the last plain heading, titling the numbered paragraphs under it
    paragraph_no = 0
    for i, block in enumerate(blocks):
        if i == 0 and _is_title(block, doc):
            block.heading_level = block.heading_level or 1
            current = _Section("Preamble" if has_structure else "Title", "", [block])
            sections.append(current)
            continue
        if i == 1 and sections and re.fullmatch(r"[*_].+[*_]", block.text.strip()):
            block.heading_level = 6  # an italic subtitle belongs with the title
            sections[0].blocks.append(block)
            continue
        if block.heading_level:
            if block.heading_level <= 2:
                parent = None
            label, title, structural = _heading_label(block.heading_text, parent)
            current = _Section(label, title, [block], structural)
            sections.append(current)
            if structural and "," not in label:
                parent = current
            context = "" if structural else (title or label)
            continue
        numbered = _NUMBERED_PARAGRAPH.match(block.text)
        if not has_structure:
            paragraph_no += 1
            current = _Section(f"{doc.numbered_as} {paragraph_no}", "", [block])
            sections.append(current)
            continue
        if numbered and (current is None or not current.structural):
            current = _Section(f"{doc.numbered_as} {numbered.group(1)}", context, [block])
            sections.append(current)
            continue
        if current is None:
            current = _Section("Preamble", "", [])
            sections.append(current)
        current.blocks.append(block)
    return _merge_bodiless(sections)


def _merge_bodiless(sections: list[_Section]) -> list[_Section]:
    merged: list[_Section] = []
    carry: list[_Block] = []
    for section in sections:
        if all(b.heading_level for b in section.blocks):
            carry.extend(section.blocks)
            continue
        section.blocks[:0] = carry
        carry = []
        merged.append(section)
    if carry:
        if merged:
            merged[-1].blocks.extend(carry)
        else:
            merged.append(_Section("Text", "", carry))
    return merged


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "section"


def _fit(spans: list[tuple[int, int]], text: str, fits: Callable[[int, int], bool], splitters) -> list[tuple[int, int]]:
    """Pack consecutive spans into the fewest runs that fit, splitting a span that never fits."""
    runs: list[tuple[int, int]] = []
    for start, end in spans:
        if not fits(start, end):
            if splitters:
                pieces = splitters[0](text, start, end)
                if len(pieces) > 1:
                    # The last splitter (halving at a space) repeats until the pieces fit.
                    runs.extend(_fit(pieces, text, fits, splitters[1:] or splitters))
                    continue
                runs.extend(_fit([(start, end)], text, fits, splitters[1:]))
                continue
            runs.append((start, end))  # unsplittable: never happens on real text
            continue
        if runs and fits(runs[-1][0], end) and runs[-1][1] <= start:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((start, end))
    return runs


def _spans_with_headings(blocks: list[_Block]) -> list[tuple[int, int]]:
    """Block spans, each heading joined to the block that follows it."""
    spans: list[tuple[int, int]] = []
    heading_start: int | None = None
    for block in blocks:
        if block.heading_level:
            heading_start = block.start if heading_start is None else heading_start
            continue
        spans.append((block.start if heading_start is None else heading_start, block.end))
        heading_start = None
    if heading_start is not None:  # trailing headings join the last span
        last = spans.pop() if spans else (heading_start, heading_start)
        spans.append((min(last[0], heading_start), blocks[-1].end))
    return spans


def _words(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Last resort for one over-long clause: halves at a space."""
    mid = text.rfind(" ", start, (start + end) // 2 + 1)
    if mid <= start:
        return [(start, end)]
    return [(start, mid), (mid + 1, end)]


def chunk_document(text: str, doc: DocumentInfo, count_tokens: TokenCounter, max_tokens: int, target_words: int) -> list[Chunk]:
    """Split one document into chunks that follow its structure and fit the embedder."""
    chunks: list[Chunk] = []
    used: dict[str, int] = {}
    for section in _sections(text, doc):
        header = Chunk("", doc.doc_id, doc.title, doc.short_title, doc.year, doc.kind,
                       section.label, section.title, 0, 0, "").header

        def fits(start: int, end: int, header: str = header) -> bool:
            words = len(text[start:end].split())
            return words <= target_words and count_tokens(f"{header}\n{text[start:end]}") <= max_tokens

        def hard_fits(start: int, end: int, header: str = header) -> bool:
            return count_tokens(f"{header}\n{text[start:end]}") <= max_tokens

        spans = _spans_with_headings(section.blocks)
        runs = _fit(spans, text, fits, [sentence_spans, clause_spans, _words])
        runs = _fit(runs, text, hard_fits, [sentence_spans, clause_spans, _words])
        slug = _slug(section.label)
        used[slug] = used.get(slug, 0) + 1
        if used[slug] > 1:
            slug = f"{slug}-{used[slug]}"
        for part, (start, end) in enumerate(runs, 1):
            chunks.append(Chunk(f"{doc.doc_id}/{slug}/{part}", doc.doc_id, doc.title, doc.short_title,
                                doc.year, doc.kind, section.label, section.title, start, end,
                                text[start:end], part))
    return chunks
