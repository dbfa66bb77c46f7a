"""HTML and Markdown for answers, sources and documents. All corpus and user text is
escaped here: nothing a document or a question contains is ever interpreted as markup."""

from __future__ import annotations

import html
import re

from rag.chunking import Chunk
from rag.citations import Answer, Citation
from rag.corpus import DocumentInfo

_MARKER = re.compile(r"\[(\d+)\]")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~=])")


def escape_markdown(text: str) -> str:
    """Text shown literally by a Markdown renderer (and by its HTML sanitiser). Leading
    indentation is dropped: it would turn a line into a code block."""
    text = "\n".join(line.lstrip() for line in text.splitlines())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def source_anchor(turn: int, n: int) -> str:
    return f"src-{turn}-{n}"


def answer_markdown(answer: Answer, turn: int) -> str:
    """The chat message: escaped answer text whose [n] markers link to the Sources panel."""
    if answer.abstained:
        body = escape_markdown(answer.text.removeprefix("Not found in the corpus: "))
        text = f"**Not found in the corpus.** {body}"
    else:
        parts = []
        last = 0
        for match in _MARKER.finditer(answer.text):
            parts.append(escape_markdown(answer.text[last:match.start()]))
            n = int(match.group(1))
            parts.append(f"[\\[{n}\\]](#{source_anchor(turn, n)})")
            last = match.end()
        parts.append(escape_markdown(answer.text[last:]))
        text = "".join(parts)
    if answer.notice:
        text += f"\n\n_{escape_markdown(answer.notice)}_"
    return text


def _highlighted(citation: Citation) -> str:
    start = citation.quote_start
    end = start + len(citation.quote)
    text = citation.text
    return (html.escape(text[:start]) + "<mark>" + html.escape(text[start:end]) + "</mark>"
            + html.escape(text[end:]))


def sources_html(answer: Answer, turn: int, sections: dict[str, str]) -> str:
    """The Sources panel for one answer: each citation with its passage, the quote
    highlighted, its score, and the full section to expand."""
    listed = answer.citations or answer.related
    if not listed:
        return ""
    heading = "Sources" if answer.citations else "Related passages (not an answer)"
    question = html.escape(answer.question)
    items = []
    for c in listed:
        full = sections.get(c.chunk_id, c.text)
        items.append(
            f'<div class="source" id="{source_anchor(turn, c.n)}">'
            f'<div class="source-head"><span class="marker">[{c.n}]</span> '
            f"<b>{html.escape(c.label)}</b> "
            f'<span class="score">relevance {c.score:.2f}</span></div>'
            f'<div class="passage">{_highlighted(c) if answer.citations else html.escape(c.quote)}</div>'
            f"<details><summary>Full section</summary><pre>{html.escape(full)}</pre></details>"
            "</div>"
        )
    css_class = "answer-sources" if answer.citations else "answer-sources related"
    return (f'<section class="{css_class}" data-turn="{turn}"><h4>{heading} for: {question}</h4>'
            + "".join(items) + "</section>")


def document_html(doc: DocumentInfo, chunks: list[Chunk]) -> str:
    """A whole document, section by section, with anchors to jump to."""
    meta = (f"<h3>{html.escape(doc.title)}</h3><table class='doc-meta'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
                      for k, v in (("Short title", doc.short_title), ("Year", doc.year), ("Kind", doc.kind),
                                   ("Source", doc.source), ("Completeness", doc.completeness),
                                   ("Licence", doc.licence_note)))
            + "</table>")
    parts = [meta]
    for chunk in chunks:
        label = chunk.section + (f" (part {chunk.part})" if chunk.part > 1 else "")
        parts.append(f'<div class="doc-section" id="{section_anchor(chunk.chunk_id)}">'
                     f"<h4>{html.escape(label)}</h4><pre>{html.escape(chunk.text)}</pre></div>")
    return "".join(parts)


def section_anchor(chunk_id: str) -> str:
    return "sec-" + re.sub(r"[^a-z0-9]+", "-", chunk_id.lower())


def conversation_markdown(answers: list[Answer], corpus_version: str) -> str:
    """The conversation as a Markdown briefing with full references."""
    lines = ["# Space-security briefing", "", f"Corpus version: `{corpus_version}`", ""]
    for i, answer in enumerate(answers, 1):
        lines += [f"## {i}. {answer.question}", "", answer.to_markdown(), ""]
    return "\n".join(lines).strip() + "\n"
