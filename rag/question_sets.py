"""Checks on a question set (JSONL, the format of ``dev.jsonl``) before any question is run:
every problem is a ValueError naming the file and the line, so a long evaluation never
stops half way on a typo."""

from __future__ import annotations

import json
from pathlib import Path

_TEXT_FIELDS = ("id", "type", "question")


def _problem(row: object, seen: set[str]) -> str | None:
    """What is wrong with one parsed line, or None."""
    if not isinstance(row, dict):
        return "not a JSON object"
    for name in _TEXT_FIELDS:
        if not isinstance(row.get(name), str) or not row[name].strip():
            return f"'{name}' must be non-empty text"
    if row["id"] in seen:
        return f"id '{row['id']}' is used by an earlier line"
    if not isinstance(row.get("answerable"), bool):
        return f"'answerable' must be true or false, not {row.get('answerable')!r}"
    for name in ("gold", "alt"):
        quotes = row.get(name) or []
        if not isinstance(quotes, list) or not all(
                isinstance(q, dict) and isinstance(q.get("quote"), str) and q["quote"].strip() for q in quotes):
            return f"'{name}' must be a list of {{\"doc\", \"quote\"}} objects with non-empty quotes"
    if row["answerable"] and not row.get("gold"):
        return "an answerable question needs at least one 'gold' quote"
    keywords = row.get("answer_keywords") or []
    if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
        return "'answer_keywords' must be a list of text"
    history = row.get("history") or []
    if not isinstance(history, list) or not all(
            isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
            for m in history):
        return "'history' must be a list of {\"role\": \"user\"|\"assistant\", \"content\": text} messages"
    return None


def check_question_set(path: Path) -> None:
    """Raise ValueError ("FILE, line N: ...") for the first bad line, or when there is none."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: the question set is not UTF-8 text") from None
    seen: set[str] = set()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {n}: not valid JSON ({exc.msg})") from None
        problem = _problem(row, seen)
        if problem:
            raise ValueError(f"{path}, line {n}: {problem}")
        seen.add(row["id"])
    if not seen:
        raise ValueError(f"{path}: the question set has no questions (one JSON object a line)")
