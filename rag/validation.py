"""Checks on user questions: every rejection is a ValueError with a sentence saying what to do."""

from __future__ import annotations

import re
import unicodedata


class InvalidQuestion(ValueError):
    """The question cannot be answered as given; the message says why."""


_ALLOWED_CONTROLS = {"\n", "\t", "\r"}


def clean_question(text: object, max_chars: int) -> str:
    """The question, trimmed, or InvalidQuestion for empty, over-long or garbled input."""
    if not isinstance(text, str):
        raise InvalidQuestion("The question must be text.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidQuestion("The question contains invalid characters (broken Unicode); "
                              "please retype it.") from None
    if any(unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROLS for ch in text):
        raise InvalidQuestion("The question contains control characters; please remove them and retype it.")
    text = text.strip()
    if not text:
        raise InvalidQuestion("The question is empty; type a question about the corpus.")
    if len(text) > max_chars:
        raise InvalidQuestion(f"The question is {len(text):,} characters long; "
                              f"please shorten it to at most {max_chars:,}.")
    return text


# A sentence addressed to the assistant rather than about the corpus ("Ignore previous
# instructions and ...", "SYSTEM: ...", "You are now ...", "Reply only with ...").
_INSTRUCTION = re.compile(
    r"^\W*(?:(?:ignore|disregard|forget|override)\b.*\b(?:instructions?|prompts?|rules)\b"
    r"|(?:system|assistant|developer)\s*:|you are now\b|(?:reply|respond|answer) only\b)",
    re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def without_instructions(question: str) -> str:
    """The question without sentences that instruct the assistant: they ask nothing of the
    corpus, and their words would steer the search and the answerability check. A question
    that is nothing but instructions is returned whole (and then refused as such)."""
    kept = [s for s in _SENTENCE_END.split(question) if not _INSTRUCTION.match(s)]
    return " ".join(kept) if kept else question


def clean_history(history: object) -> list[dict[str, str]]:
    """Chat history as a list of {"role", "content"} with text content; anything else is dropped."""
    if not history:
        return []
    if not isinstance(history, list):
        raise InvalidQuestion("History must be a list of {'role', 'content'} messages.")
    cleaned = []
    for message in history:
        if isinstance(message, dict) and message.get("role") in ("user", "assistant"):
            content = message.get("content")
            if isinstance(content, list):  # Gradio's message parts
                content = " ".join(p["text"] for p in content
                                   if isinstance(p, dict) and isinstance(p.get("text"), str))
            if isinstance(content, str):
                cleaned.append({"role": message["role"], "content": content[:4000]})
    return cleaned


_FILTER_NAMES = ("document", "kind", "year")


def _whole_year(value: object) -> int | None:
    """``value`` as a year when it is a whole number (1967, "1967", 1967.0), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        return int(value.strip())
    return None


def clean_filters(doc_ids: object, kinds: object, years: object,
                  known: dict[str, set]) -> tuple[list | None, list | None, list | None]:
    """Filters as lists of known values (``known`` maps "document", "kind", "year" to the values
    the corpus has); a single value is accepted, anything else is an InvalidQuestion."""
    checked: list[list | None] = []
    for name, values in zip(_FILTER_NAMES, (doc_ids, kinds, years), strict=True):
        if values is None or (isinstance(values, list | tuple) and not values):
            checked.append(None)
            continue
        values = list(values) if isinstance(values, list | tuple | set | frozenset) else [values]
        if name == "year":
            whole = [_whole_year(v) for v in values]
            if None in whole:
                bad = values[whole.index(None)]
                raise InvalidQuestion(f"Years must be whole numbers such as 1967, not {bad!r}.")
            values = whole
        elif not all(isinstance(v, str) for v in values):
            bad = next(v for v in values if not isinstance(v, str))
            raise InvalidQuestion(f"A {name} filter takes {name} names as text, not {bad!r}.")
        unknown = [v for v in values if v not in known[name]]
        if unknown:
            raise InvalidQuestion(f"Unknown {name} {unknown[0]!r}; choose from "
                                  f"{', '.join(map(str, sorted(known[name])))}.")
        checked.append(values)
    return checked[0], checked[1], checked[2]
