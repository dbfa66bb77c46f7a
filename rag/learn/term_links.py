"""Links from the words questions use to the words provisions use, learned from the question set.

Plain questions avoid the text's terms ("Do private companies need permission?" for "non-
governmental entities ... shall require authorization"), so BM25 finds nothing or the wrong
provision. Each answerable question pairs its words with its quote's; a question word links to
the quote words that follow it far more often than chance. Retrieval adds the linked words to
the lexical query at a reduced weight (``Settings.term_link_weight``), so the words asked still
count most. Learned by ``spacesec tune`` with the query encoder, stored beside it.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

from rag.learn.questions import Question
from rag.lexical import tokenize

TERM_LINKS_FILE = "term-links.json"
#: A link needs this many questions behind it ...
MIN_QUESTIONS = 3
#: ... its provision word this many times more often after the question word than overall ...
MIN_LIFT = 5.0
#: ... and in this share of the quotes that follow the question word at all. Lift alone links a
#: common question word to any rare word a few of its quotes share ("UN" -> "previous", "forum"),
#: noise added to every query that uses it.
MIN_FOLLOWS = 0.1
#: Links kept per question word (the strongest by P(provision word | question word) x log lift).
PER_TERM = 2

TermLinks = dict[str, list[str]]


def learn_term_links(questions: list[Question]) -> TermLinks:
    """Question stem -> provision stems, from the answerable ``questions`` and their quotes.
    Words only: numbers and references ("1967", "b.10") name things, they do not paraphrase."""
    pairs = [(set(tokenize(q.question)), set(tokenize(q.quote or ""))) for q in questions if q.answerable]
    asked, quoted, together = Counter(), Counter(), Counter()
    for question_terms, quote_terms in pairs:
        asked.update(question_terms)
        quoted.update(quote_terms)
        together.update((q, a) for q in question_terms - quote_terms for a in quote_terms)
    scored: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for (q, a), count in together.items():
        if count < MIN_QUESTIONS or not (q.isalpha() and a.isalpha()):
            continue
        follows = count / asked[q]
        lift = follows / (quoted[a] / len(pairs))
        if lift >= MIN_LIFT and follows >= MIN_FOLLOWS:
            scored[q].append((follows * math.log(lift), a))
    return {q: [a for _, a in sorted(links, key=lambda x: (-x[0], x[1]))[:PER_TERM]]
            for q, links in sorted(scored.items())}


def write_term_links(links: TermLinks, path: Path) -> None:
    """Stored sorted, so the same questions give the same bytes."""
    path.write_text(json.dumps(links, indent=0, sort_keys=True) + "\n", encoding="utf-8")


def read_term_links(path: Path) -> TermLinks:
    """The stored links ({} when the model has none: it predates them)."""
    if not path.is_file():
        return {}
    return {str(k): [str(t) for t in v] for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
