"""Query understanding: which corpus documents and which of their parts a text names.

Document names come from the manifest (titles, short titles) plus the alias table in
``rag/data/aliases.json``; part references ("Article IX", "art. 4", "guideline B.6",
"principle 3", "paragraph 2") are parsed into normalised (kind, number) pairs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources

from rag.corpus import Corpus

_ROMAN = {"i": 1, "v": 5, "x": 10, "l": 50, "c": 100}
_PART = re.compile(
    r"\b(?:(article|art)s?\.?|(principle)s?|(guideline)s?|(paragraph|para)s?\.?|(section))\s+"
    r"([A-Da-d]\.\d{1,2}|\d{1,3}|[IVXLC]{1,7}|[ivxlc]{1,7})(?![\w.]\w)",
    re.IGNORECASE,
)
_KINDS = ("article", "article", "principle", "guideline", "paragraph", "paragraph", "section")


def _roman_to_int(numeral: str) -> int | None:
    values = [_ROMAN.get(c) for c in numeral.lower()]
    if None in values:
        return None
    total = 0
    for i, value in enumerate(values):
        total += -value if i + 1 < len(values) and values[i + 1] > value else value
    return total


@dataclass(frozen=True)
class PartRef:
    """A normalised reference to a part of an instrument: ("article", "4"), ("guideline", "b.6")."""

    kind: str
    number: str


def _normalise_number(raw: str) -> str | None:
    if raw.isdigit():
        return str(int(raw))
    if "." in raw:
        return raw.lower()
    value = _roman_to_int(raw)
    return str(value) if value else None


def part_refs(text: str) -> list[PartRef]:
    """Every part reference in ``text``, in order, without repeats."""
    refs: list[PartRef] = []
    for match in _PART.finditer(text):
        kind = next(k for k, g in zip(("article", "principle", "guideline", "paragraph", "section"),
                                      match.groups()[:5], strict=True) if g)
        number = _normalise_number(match.group(6))
        # A lone lower-case "i" or "v" is a list item more often than a reference.
        if number and not (match.group(6).islower() and len(match.group(6)) == 1):
            ref = PartRef(kind, number)
            if ref not in refs:
                refs.append(ref)
    return refs


def section_ref(label: str) -> PartRef | None:
    """The part a chunk's section label stands for ("Article IV" -> article 4)."""
    refs = part_refs(label)
    return refs[0] if refs and _PART.match(label) else None


#: Words of a question about a document as a whole: what it is, is for, covers, aims at,
#: including the loose and polite ways of asking ("What's ... really about?").
_OVERVIEW_WORDS = frozenset(["a", "about", "actually", "aim", "aims", "all", "an", "and", "are",
    "at", "basically", "brief", "briefly", "can", "contain", "contains", "content", "contents",
    "could", "cover", "covered", "covers", "deal", "deals", "describe", "did", "do", "document",
    "does", "essentially", "exactly", "explain", "for", "general", "gist", "give", "goal", "goals",
    "i", "in", "instrument", "intended", "is", "it", "its", "key", "main", "me", "mean", "means",
    "objective", "objectives", "of", "on", "outline", "over", "overall", "overview", "please",
    "point", "points", "precisely", "provisions", "purpose", "purposes", "really", "s", "say",
    "says", "scope", "short", "sum", "summarise", "summarize", "summary", "tell", "the", "this",
    "up", "what", "whole", "why", "with", "would", "you"])


@dataclass(frozen=True)
class QueryCues:
    """What a question names: documents (in order of mention) and parts."""

    doc_ids: tuple[str, ...] = ()
    parts: tuple[PartRef, ...] = ()


def _is_name(text: str) -> bool:
    """Whether a title or alias can name its document in a question. One ordinary word (a note
    titled "space") is a word questions use anyway, not a name; acronyms (OST, CSpO) and
    phrases are names."""
    return len(text) >= 3 and (len(text.split()) > 1 or sum(ch.isupper() for ch in text) >= 2)


class Catalogue:
    """Finds mentions of corpus documents by their titles and aliases."""

    def __init__(self, corpus: Corpus, aliases: dict[str, list[str]] | None = None) -> None:
        aliases = load_alias_table() if aliases is None else aliases
        names: list[tuple[str, str]] = []
        for doc in corpus.documents:
            candidates = {doc.title, doc.short_title, doc.title.split(" (")[0],
                          *aliases.get(doc.doc_id, [])}
            names.extend((name.strip(), doc.doc_id) for name in candidates if _is_name(name.strip()))
        names.sort(key=lambda item: (-len(item[0]), item[0]))
        self.names = [name for name, _ in names]
        self._patterns = [
            (re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])",
                        0 if name.isupper() else re.IGNORECASE), doc_id)
            for name, doc_id in names
        ]
        self.short_titles = {d.doc_id: d.short_title for d in corpus.documents}

    def _mentions(self, text: str) -> list[tuple[tuple[int, int], str]]:
        """(span, doc_id) of every document name in ``text``; longer names win overlaps."""
        taken: list[tuple[int, int]] = []
        found: list[tuple[tuple[int, int], str]] = []
        for pattern, doc_id in self._patterns:
            for match in pattern.finditer(text):
                span = match.span()
                if any(span[0] < end and start < span[1] for start, end in taken):
                    continue
                taken.append(span)
                found.append((span, doc_id))
        return sorted(found)

    def cross_references(self, text: str) -> list[tuple[str, PartRef]]:
        """(doc_id, part) for each "article 5 of the Agreement on the Rescue ..." in ``text``:
        a part reference directly followed by the name of another document."""
        found = []
        mentions = self._mentions(text)
        for match in _PART.finditer(text):
            refs = part_refs(match.group(0))
            after = text[match.end():match.end() + 12].lower()
            if not refs or not after.lstrip(" ,").startswith("of the"):
                continue
            named = next((doc for (start, _), doc in mentions
                          if 0 <= start - match.end() <= len("of the") + 4), None)
            if named:
                found.append((named, refs[0]))
        return found

    def documents_named(self, text: str) -> list[str]:
        """doc_ids named in ``text``, in order of first mention."""
        ordered: list[str] = []
        for _, doc_id in self._mentions(text):
            if doc_id not in ordered:
                ordered.append(doc_id)
        return ordered

    def without_names(self, text: str) -> str:
        """``text`` with document names cut out: they steer by boosting, not by word match
        (otherwise a preamble that repeats the title outranks the provision asked about)."""
        for (start, end), _ in reversed(self._mentions(text)):
            text = text[:start] + " " + text[end:]
        return " ".join(text.split()) or text

    def overview_of(self, text: str) -> str | None:
        """The document a question asks about as a whole ("What is the Rescue Agreement?",
        "What is the Moon Agreement for?"), or None: it names one document and asks nothing else."""
        named = self.documents_named(text)
        if len(named) != 1:
            return None
        rest = re.findall(r"[a-z]+", self.without_names(text).lower())
        return named[0] if all(w in _OVERVIEW_WORDS for w in rest) else None

    def cues(self, text: str) -> QueryCues:
        return QueryCues(tuple(self.documents_named(text)), tuple(part_refs(text)))


def load_alias_table() -> dict[str, list[str]]:
    raw = json.loads(resources.files("rag").joinpath("data/aliases.json").read_text(encoding="utf-8"))
    return {k: v for k, v in raw.items() if not k.startswith("_")}
