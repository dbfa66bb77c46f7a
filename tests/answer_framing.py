"""The only text the extractive templates may write around the quotes (shared by the answer
tests and the robustness tests)."""

from __future__ import annotations

import re

from rag.citations import Answer
from rag.corpus import dated_name


def framing_pattern(answer: Answer) -> re.Pattern[str]:
    """The lead quote opens "According to <instrument>, <section>:"; the other quotes of the
    same instrument follow on their own lines with their section; each further instrument opens
    a paragraph with "In <instrument>, <section>:". A partial answer first says what the corpus
    does not state; an answer about what a document is first gives its catalogue entry."""
    parts = []
    for i, c in enumerate(answer.citations):
        quote = f"{re.escape(c.section)}: \u201c{re.escape(c.quote)}\u201d \\[{c.n}\\]"
        name = f"(?:the )?{re.escape(dated_name(c.short_title, c.year))}"
        if i == 0:
            parts.append(f"According to {name}, {quote}")
        elif answer.citations[i - 1].doc_id == c.doc_id:
            parts.append(f"\n{quote}")
        else:
            parts.append(f"\n\nIn {name}, {quote}")
    prefix = ("(?:The corpus does not state [^\n]+; the closest provisions say|These provisions may not answer "
              "exactly what was asked; the closest say):\n\n" if answer.partial else "")
    if answer.citations and not answer.partial:  # what a document is: its catalogue entry first
        lead = answer.citations[0]
        prefix = f"(?:{re.escape(lead.short_title)} \\({lead.year}, [a-z ]+\\): \u201c[^\u201d\n]+\u201d\\.\n\n)?"
    return re.compile(prefix + "".join(parts), re.DOTALL)
