"""Checks each sentence of a model's answer must pass against the passages it cites, besides
embedding similarity (which cannot see a "not"):

* ``contradicts``: the sentence flips the passage clause it restates: a negation added or
  dropped ("shall" / "shall not", "allows" / "prohibits"), or the modality changed ("shall"
  / "may", "should" / "must");
* ``unsupported_contact``: the sentence carries a link, e-mail address or telephone number
  that none of its passages has.

A check takes (sentence, cited passage texts) and returns why the sentence is refused, as a
phrase, or None. ``SENTENCE_CHECKS`` is the list ``rag.llm.verify`` runs; a new check (an
answerability model, say) is one more function appended to it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from rag.lexical import STOPWORDS
from rag.sentences import clause_spans, sentence_spans

SentenceCheck = Callable[[str, Sequence[str]], str | None]

#: A model asked for "a few sentences" that sends more than this is misbehaving; the reply
#: is refused whole, and a stream stops being read at this point.
MAX_REPLY_CHARS = 8_000

_NEGATION = re.compile(
    r"\b(?:not|no|never|nor|neither|none|nothing|nobody|cannot|prohibit\w*|forbid\w*|forbade|"
    r"ban|bans|banned|banning|barred|preclude\w*|refrain\w*)\b|n't\b", re.IGNORECASE)
_MODALITIES = {
    "obligation": re.compile(r"\b(?:shall|must|required?|requires|obliged|obligated|undertakes?|"
                             r"has to|have to)\b", re.IGNORECASE),
    "recommendation": re.compile(r"\b(?:should|encouraged?|recommend\w*|urged?)\b", re.IGNORECASE),
    "permission": re.compile(r"\b(?:may|can|could|allow\w*|permit\w*|entitled|free to|free for|"
                             r"right to|optional)\b", re.IGNORECASE),
}
_WORD = re.compile(r"[a-z0-9]+")
#: A clause restates the sentence when it holds at least this share of its content words.
_MIN_OVERLAP = 0.5


def _content(text: str) -> set[str]:
    words = set(_WORD.findall(text.lower())) - STOPWORDS
    return {w for w in words if len(w) > 2 and not _NEGATION.fullmatch(w)
            and not any(p.fullmatch(w) for p in _MODALITIES.values())}


def _clauses(passage: str) -> list[str]:
    return [passage[a:b] for s, e in sentence_spans(passage) for a, b in clause_spans(passage, s, e)]


def _modalities(text: str) -> set[str]:
    return {name for name, pattern in _MODALITIES.items() if pattern.search(text)}


def _flips(sentence: str, clause: str) -> bool:
    said, source = len(_NEGATION.findall(sentence)), len(_NEGATION.findall(clause))
    if said % 2 != source % 2:  # "shall not be prohibited" (two) is not negated
        return True
    if said or source:  # "may not" and "shall not" both forbid: modality says no more
        return False
    said_modes, source_modes = _modalities(sentence), _modalities(clause)
    return bool(said_modes and source_modes and not said_modes & source_modes)


def contradicts(sentence: str, passages: Sequence[str]) -> str | None:
    """Refuse a sentence whose closest passage clauses (by shared content words) all say the
    opposite: negation or modality flipped. A sentence no clause restates is left to the
    other checks."""
    words = _content(sentence)
    if len(words) < 2:
        return None
    scored = [(len(words & _content(clause)), clause) for passage in passages for clause in _clauses(passage)]
    best = max((n for n, _ in scored), default=0)
    if best < 2 or best < _MIN_OVERLAP * len(words):
        return None
    if all(_flips(sentence, clause) for n, clause in scored if n == best):
        return "contradicts its cited passage (negation or obligation reversed)"
    return None


_CONTACT = re.compile(
    r"(?:https?|ftp)://[^\s<>\"')\]]+"
    r"|\bwww\.[^\s<>\"')\]]+"
    r"|\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
    r"|\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|org|net|info|biz|io|xyz|top|ru|cn|example|app|site|"
    r"online|ly|me|co|uk|gov|int|edu)\b(?:/[^\s<>\"')\]]*)?"
    r"|(?:\+|\b00)\d[\d ()./-]{6,}\d|\(\d{2,5}\)\s?\d[\d .-]{4,}\d|\b\d{3}[-. ]\d{3}[-. ]\d{4}\b",
    re.IGNORECASE)


def _contacts(text: str) -> set[str]:
    """Links, addresses and numbers in ``text``, normalised (lower case; digits only for
    telephone numbers)."""
    found = set()
    for match in _CONTACT.finditer(text):
        item = match.group(0).lower().rstrip(".,;:!?")
        found.add(re.sub(r"\D", "", item) if not re.search(r"[a-z]", item) else item)
    return found


def unsupported_contact(sentence: str, passages: Sequence[str]) -> str | None:
    """Refuse a link, e-mail address or telephone number that no cited passage contains."""
    known = set().union(*(_contacts(p) for p in passages)) if passages else set()
    text = " ".join(passages).lower()
    for item in sorted(_contacts(sentence)):
        is_number = not re.search(r"[a-z]", item)
        if item in known or (not is_number and item in text):
            continue
        return f"gives a link or contact detail ({item}) its passages do not"
    return None


SENTENCE_CHECKS: list[SentenceCheck] = [contradicts, unsupported_contact]
