"""Deciding that the corpus does not answer a question, without guessing.

Similarity thresholds do not separate answerable from unanswerable questions here (plain
questions score lowest of all), so the checks look for evidence of absence instead:
a salient term of the question that the corpus never mentions, a question about the
present or the future (the corpus is a fixed set of texts), and a selected answer that
lacks what the question asks for (a number for "how many", a date for "when").
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

_CURRENT_STATE = re.compile(
    r"\b(currently|at present|presently|right now|nowadays|these days|as of (?:today|now|\d{4})|"
    r"to date|so far|up to date|latest|most recent|upcoming|next (?:meeting|year|session|summit)|"
    r"will (?:\w+ ){0,3}(?:take place|be held|meet|happen))\b",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"\b\d+(?:[./-]\d+)*\b")
_ACRONYM = re.compile(r"\b[A-Z][A-Z0-9-]{1,9}s?\b")
_CAPITALISED_RUN = re.compile(r"\b[A-Z][a-z'’]+(?:\s+[A-Z][a-z'’]+)+\b")
_SAFE_ACRONYMS = frozenset({"UN", "US", "USA", "UK", "EU", "OST", "LTS", "NPS", "CSPO", "ASAT", "DA-ASAT"})
_NUMBER_WORDS = ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve", "fifteen", "twenty", "thirty", "forty", "fifty", "sixty", "hundred", "thousand", "million", "first", "second", "third", "once", "twice", "annual", "annually", "daily", "monthly", "yearly"]
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december"]
_ASKS_NUMBER = re.compile(r"\b(how (?:many|much|long|far|high|soon)|what (?:altitude|height|distance|"
                          r"percentage|number|amount|dose|limit))\b", re.IGNORECASE)
_ASKS_DATE = re.compile(r"^\W*when\b|\b(?:what|which) (?:year|date)\b", re.IGNORECASE)


class Vocabulary:
    """Every word and number the corpus and its catalogue of titles and aliases contain."""

    def __init__(self, texts: Iterable[str]) -> None:
        joined = "\n".join(texts)
        self._lower = " ".join(joined.lower().split())
        self._tokens = set(re.findall(r"[a-z0-9]+(?:[./-][a-z0-9]+)*", self._lower))

    def save(self, text_file: Path, tokens_file: Path) -> None:
        """Write what ``load`` reads back, so a large corpus is not scanned at every start."""
        text_file.write_text(self._lower, encoding="utf-8")
        tokens_file.write_text(json.dumps(sorted(self._tokens)), encoding="utf-8")

    @classmethod
    def load(cls, text_file: Path, tokens_file: Path) -> Vocabulary:
        """The vocabulary ``save`` wrote."""
        vocabulary = cls.__new__(cls)
        vocabulary._lower = text_file.read_text(encoding="utf-8")
        vocabulary._tokens = set(json.loads(tokens_file.read_text(encoding="utf-8")))
        return vocabulary

    def extended(self, texts: Iterable[str]) -> Vocabulary:
        """This vocabulary with the words of ``texts``: the same as one built from all texts."""
        extra, combined = Vocabulary(texts), Vocabulary.__new__(Vocabulary)
        combined._lower = " ".join(t for t in (self._lower, extra._lower) if t)
        combined._tokens = self._tokens | extra._tokens
        return combined

    def mentions(self, term: str) -> bool:
        term = " ".join(term.lower().split())
        return term in self._tokens or f" {term}" in f" {self._lower}"


def salient_terms(question: str) -> list[str]:
    """Numbers, acronyms and multi-word proper names: terms whose absence means no answer.

    Pass the question with document names removed; its first word is capitalised anyway."""
    question = re.sub(r"^\W*\w+", lambda m: m.group(0).lower(), question)
    terms = _NUMBER.findall(question)
    terms += [a for a in _ACRONYM.findall(question) if a.upper().rstrip("S") not in _SAFE_ACRONYMS
              and a.upper() not in _SAFE_ACRONYMS]
    terms += [run.strip() for run in _CAPITALISED_RUN.findall(question)]
    return terms


def unanswerable_reason(question: str, vocabulary: Vocabulary) -> str | None:
    """Why the corpus cannot answer ``question`` before any passage is read, or None."""
    letters = [ch for ch in question if ch.isalpha()]
    if sum(ch.isascii() for ch in letters) < 0.5 * len(letters):
        return "the corpus is in English; please ask the question in English"
    if not re.search(r"[A-Za-z]{3,}", question):
        return "the question has no words the corpus could be searched for"
    match = _CURRENT_STATE.search(question)
    if match:
        return (f"the question asks about the present or the future (\u201c{match.group(0)}\u201d), "
                "and the corpus is a fixed set of texts with no current data")
    missing = [t for t in salient_terms(question) if not vocabulary.mentions(t)]
    if missing:
        term = missing[0] if len(missing[0]) <= 60 else missing[0][:57] + "..."
        return f"the corpus does not mention \u201c{term}\u201d"
    return None


def _has_number(text: str) -> bool:
    lower = text.lower()
    return bool(re.search(r"\d", text)) or any(re.search(rf"\b{w}\b", lower) for w in _NUMBER_WORDS)


def _has_date(text: str) -> bool:
    lower = text.lower()
    return (bool(re.search(r"\b(?:1[89]|20)\d\d\b", text)) or any(m in lower for m in _MONTHS)
            or bool(re.search(r"\b(before|after|prior to|upon|within|once)\b", lower)))


def expected_answer_type(question: str) -> str | None:
    """"number" or "date" when the question asks for one, else None."""
    if _ASKS_NUMBER.search(question):
        return "number"
    if _ASKS_DATE.search(question):
        return "date"
    return None


def has_answer_type(text: str, answer_type: str | None) -> bool:
    text = re.sub(r"(?m)^\s*(?:\d+\.|\([a-z0-9]+\))\s+", "", text)  # list numbering is no answer
    if answer_type == "number":
        return _has_number(text)
    if answer_type == "date":
        return _has_date(text)
    return True


def lacks_answer_type(question: str, answer_texts: list[str]) -> str | None:
    """When the question asks for a number or a date that no selected sentence contains."""
    wanted = expected_answer_type(question)
    if wanted and not has_answer_type(" ".join(answer_texts), wanted):
        return f"no passage gives the {'figure' if wanted == 'number' else 'date'} the question asks for"
    return None
