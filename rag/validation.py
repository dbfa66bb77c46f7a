"""Checks on user questions: every rejection is a ValueError with a sentence saying what to do."""

from __future__ import annotations

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
