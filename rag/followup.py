"""Standalone queries for follow-up questions, without an LLM.

A follow-up ("Who pays for returning it?") lacks what the conversation already
established. We carry over, from the previous user turns, the instruments and parts it
does not name itself and the key terms it does not use.
"""

from __future__ import annotations

from rag.instruments import Catalogue, part_refs
from rag.lexical import STOPWORDS, tokenize

Message = dict[str, str]


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
    """The question plus what it leaves implicit from the last ``turns`` user messages."""
    previous = [m.get("content", "") for m in (history or []) if m.get("role") == "user"][-turns:]
    if not previous:
        return question
    context = " ".join(previous)
    cues = catalogue.cues(question)
    additions: list[str] = []
    if not cues.doc_ids:
        additions += [catalogue.short_titles[d] for d in catalogue.documents_named(context)]
        if not cues.parts:
            additions += [f"{p.kind} {p.number}" for p in part_refs(context)]
    seen = set(tokenize(question)) | set(tokenize(" ".join(additions)))
    additions += _key_terms(context, seen)
    return f"{question} {' '.join(additions)}".strip()
