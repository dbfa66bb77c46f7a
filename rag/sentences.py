"""Sentence and clause boundaries as character spans, so quotes stay verbatim slices."""

from __future__ import annotations

import re

# Words after which a full stop does not end a sentence.
_ABBREVIATIONS = frozenset(
    ["art", "arts", "no", "nos", "mr", "mrs", "ms", "dr", "st", "para", "paras", "rev", "res", "e.g", "i.e", "u.s", "u.k", "u.n", "etc", "vol", "cf", "op", "inc", "ltd", "co", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec"]
)
_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s+[\"'“‘(\[]?[A-Z0-9])|\n")
_CLAUSE = re.compile(r";(?=\s)|:(?=\s*\n)")


def is_abbreviation(text: str, dot: int) -> bool:
    """Whether the full stop at ``dot`` ends an abbreviation or a reference, not a sentence."""
    start = dot
    while start > 0 and not text[start - 1].isspace() and text[start - 1] not in "(“\"":
        start -= 1
    word = text[start:dot].lower()
    # Single letters and dotted references ("A.", "B.6.") are not sentence ends; "2007." is.
    return word in _ABBREVIATIONS or len(word) == 1 or bool(re.fullmatch(r"[a-z]\.\d+(\.\d+)*", word))


def _spans(text: str, start: int, end: int, pattern: re.Pattern[str], check_abbrev: bool) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    cursor = start
    for match in pattern.finditer(text, start, end):
        if check_abbrev and text[match.start()] == "." and is_abbreviation(text, match.start()):
            continue
        cut = match.end()
        spans.append((cursor, cut))
        cursor = cut
    spans.append((cursor, end))
    return [_strip(text, a, b) for a, b in spans if text[a:b].strip()]


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the sentences (and separate lines) of ``text[start:end]``, whitespace trimmed."""
    return _spans(text, start, len(text) if end is None else end, _END, check_abbrev=True)


def clause_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Spans of the semicolon-separated clauses of one sentence."""
    return _spans(text, start, len(text) if end is None else end, _CLAUSE, check_abbrev=False)


_LIST_ITEM = re.compile(r"^\(?([a-z]|[ivx]+|\d+)\)\s")


def answer_units(text: str) -> list[tuple[int, int]]:
    """Sentences that can stand alone in an answer: headings dropped, and a lead-in ending in
    ':' kept together with the short list items that complete it."""
    units: list[tuple[int, int]] = []
    for start, end in sentence_spans(text):
        piece = text[start:end]
        if (piece.startswith("#") or re.fullmatch(r"[*_].+[*_]", piece)  # headings, subtitles
                or len(piece.split()) < 5 and not _LIST_ITEM.match(piece)):
            continue
        if units and _LIST_ITEM.match(piece) and len(piece.split()) <= 40:
            prev_start, prev_end = units[-1]
            if text[prev_start:prev_end].rstrip().endswith((":", ";")) and end - prev_start < 1200:
                units[-1] = (prev_start, end)
                continue
        units.append((start, end))
    return units
