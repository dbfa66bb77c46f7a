"""Standalone queries for follow-up questions, without an LLM.

A follow-up ("Who pays for returning it?") lacks what the conversation already
established. We carry over, from the previous user turns, the instruments and parts it
does not name itself and the key terms it does not use. A question that stands on its own
is searched as asked, whatever came before: history must not leak into a new topic.
"""

from __future__ import annotations

import re

from rag.instruments import Catalogue, part_refs
from rag.lexical import STOPWORDS, tokenize

Message = dict[str, str]

#: "And the Moon Agreement?", "What about registration?": only makes sense after another question.
_CONNECTIVE = re.compile(r"^\W*(?:and|but|also|same|what about|how about|what else)\b", re.IGNORECASE)
#: A demonstrative pointing back ("that regime", "under this provision"): at the start, or
#: after a preposition or an auxiliary, where "that" is a determiner, not a conjunction. "This
#: year" or "this summer" points at the calendar, not at the conversation.
_DEMONSTRATIVE = re.compile(
    r"(?:^|\b(?:of|for|in|on|under|about|with|by|from|to|at|does|did|do|is|was|are|were|has|have|"
    r"had|can|could|would|will|should|must)\s+)(?:that|this|these|those|such)\s+"
    r"(?!(?:is|was|are|were|means?|the|a|an|year|years|month|week|decade|century|summer|winter|"
    r"spring|autumn|time|days)\b)[a-z]+", re.IGNORECASE)
#: A question ending on a pronoun ("... returning it?") refers to something said before.
_TRAILING_PRONOUN = re.compile(r"\b(?:it|them|that|this|those|these)\s*\?\s*$", re.IGNORECASE)
#: A thing named before a later clause that the final pronoun stands in ("mine helium-3 on the
#: Moon and keep it?", "signed the treaty but never ratified it?"): its antecedent is the question's own.
_OWN_ANTECEDENT = re.compile(
    r"\b(?:satellites?|spacecraft|space objects?|objects?|astronauts?|personnel|moon|planets?|asteroids?|"
    r"celestial bod(?:y|ies)|stations?|rockets?|launch vehicles?|debris|reactors?|rocks?|samples?|resources?|"
    r"treat(?:y|ies)|agreements?|conventions?|statements?|guidelines|principles|commitments?|declarations?)\b"
    r".*(?:,|\b(?:and|but|or|then|who|which|if|when|so|because)\b)", re.IGNORECASE)
#: Longer questions, or several sentences, carry their own antecedents (scenario questions).
_MAX_FOLLOW_UP_WORDS = 12


def is_follow_up(question: str) -> bool:
    """Whether ``question`` leans on the conversation: it opens with a connective, or it is
    one short sentence that points back with a demonstrative or a final pronoun (unless a later
    clause of its own hangs that pronoun on a thing it names)."""
    if _CONNECTIVE.search(question):
        return True
    if len(question.split()) > _MAX_FOLLOW_UP_WORDS or len(re.findall(r"[.?!](?:\s|$)", question)) > 1:
        return False
    if _DEMONSTRATIVE.search(question):
        return True
    trailing = _TRAILING_PRONOUN.search(question)
    return bool(trailing) and not _OWN_ANTECEDENT.search(question, 0, trailing.start())


def _key_terms(text: str, exclude: set[str]) -> list[str]:
    terms: list[str] = []
    for word in text.replace("?", " ").split():
        word = word.strip(".,;:'\"()[]").strip()
        stems = tokenize(word)
        if len(word) > 3 and word.lower() not in STOPWORDS and stems and stems[0] not in exclude:
            exclude.add(stems[0])
            terms.append(word)
    return terms


def standalone_query(question: str, history: list[Message] | None, catalogue: Catalogue, turns: int = 2) -> str:
    """The question plus what it leaves implicit from the last ``turns`` user messages; a
    question that is not a follow-up, as asked."""
    previous = [m.get("content", "") for m in (history or []) if m.get("role") == "user"][-turns:]
    if not previous or not is_follow_up(question):
        return question
    context = " ".join(previous)
    cues = catalogue.cues(question)
    additions: list[str] = []
    if not cues.doc_ids:
        additions += [catalogue.short_titles[d] for d in catalogue.documents_named(context)]
        if not cues.parts:
            additions += [f"{p.kind} {p.number}" for p in part_refs(context)]
    seen = set(tokenize(question)) | set(tokenize(" ".join(additions)))
    additions += _key_terms(catalogue.without_names(context), seen)  # names were handled above
    return f"{question} {' '.join(additions)}".strip()
