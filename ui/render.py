"""HTML and Markdown for answers, sources, excerpts and documents. All corpus and user text is
escaped here: nothing a document or a question contains is ever interpreted as markup."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from rag.chunking import Chunk
from rag.citations import Answer, Citation
from rag.corpus import DocumentInfo
from rag.excerpts import Excerpt

_MARKER = re.compile(r"\[(\d+)\]")
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~=])")
_HEADING_LINE = re.compile(r"^#{1,6}[ \t]+")
_PINPOINT = re.compile(r"(?:\([^()]*\))+$|, para\. \S+$")  # "(2)", "(2)(a)", ", para. 3"
_URL = re.compile(r"https?://[^\s<>\"')]+")


def escape_markdown(text: str) -> str:
    """Text shown literally by a Markdown renderer (and by its HTML sanitiser). Leading
    indentation is dropped: it would turn a line into a code block."""
    text = "\n".join(line.lstrip() for line in text.splitlines())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))


def source_anchor(turn: int, n: int) -> str:
    return f"src-{turn}-{n}"


def describe_filters(documents: Sequence[str] = (), kinds: Sequence[str] = (),
                     years: Sequence[object] = ()) -> str:
    """"Searched only: guidelines, 2024", or "" when nothing is filtered."""
    parts = [*documents, *kinds, *(str(y) for y in years)]
    return f"Searched only: {', '.join(parts)}" if parts else ""


def strength(answer: Answer, weak_below: float) -> tuple[str, str] | None:
    """("Weak match" | "Partial answer", tooltip) when the answer deserves a warning, else None."""
    meaning = (f"Confidence {answer.confidence:.2f}: how likely these quotes answer the question, "
               f"from 0 to 1. Below {weak_below:.2f} the match is weak; read the sources.")
    if answer.abstained:
        return None
    if answer.partial:
        return "Partial answer", "The corpus answers only part of the question. " + meaning
    if answer.confidence < weak_below:
        return "Weak match", meaning
    return None


def answer_markdown(answer: Answer, turn: int, labels: dict[int, str] | None = None,
                    filters: str = "", weak_below: float = 0.0) -> str:
    """The chat message: the active filters, a weak-match marker, the escaped answer text whose
    [n] markers link to the Sources panel, and a row of source chips (``labels``: n -> label)."""
    lines = []
    if filters:
        lines.append(f'<span class="filters">{html.escape(filters)}</span>')
    flag = strength(answer, weak_below)
    if flag:
        lines.append(f'<span class="strength" title="{html.escape(flag[1])}">{flag[0]}</span>')
    if answer.abstained:
        reason = answer.text.removeprefix("Not found in the corpus: ")
        body = escape_markdown(reason[:1].upper() + reason[1:])
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
    lines.append(text)
    if answer.notice:
        lines.append(f"_{escape_markdown(answer.notice)}_")
    if labels and answer.citations:
        # One chip per cited passage, numbered with all the markers that quote it.
        groups = [[c.n for c in group if c.n in labels] for group in by_passage(answer.citations)]
        chips = " ".join(f'<a class="chip" href="#{source_anchor(turn, ns[0])}">'
                         f'{", ".join(map(str, ns))} · {html.escape(shared_label([labels[n] for n in ns]))}</a>'
                         for ns in groups if ns)
        lines.append(f'<span class="chips">{chips}</span>')
    return "\n\n".join(lines)


def passage_html(text: str, spans: Sequence[tuple[int, int]] = ()) -> str:
    """Escaped ``text`` with ``spans`` wrapped in <mark>; Markdown heading lines ("## Article
    11") are shown as headings, without their marks."""
    out = []
    offset = 0
    for line in text.splitlines(keepends=True):
        end = offset + len(line)
        heading = _HEADING_LINE.match(line)
        body_start = offset + (heading.end() if heading else 0)
        cuts = sorted((max(s, body_start), min(e, end)) for s, e in spans if s < end and e > body_start)
        pieces, cursor = [], body_start
        for s, e in cuts:
            s = max(s, cursor)
            if s >= e:
                continue
            pieces.append(html.escape(text[cursor:s]) + "<mark>" + html.escape(text[s:e]) + "</mark>")
            cursor = e
        pieces.append(html.escape(text[cursor:end]))
        body = "".join(pieces)
        out.append(f'<span class="heading">{body.rstrip()}</span>\n' if heading else body)
        offset = end
    return "".join(out)


def _card(cited: list[Citation], turn: int, answered: bool, full: str, label: str) -> str:
    """One passage and every quote taken from it: the markers of all of them, one anchor each
    (a marker's link lands on the card), each quote highlighted."""
    c = cited[0]
    spans = [(x.quote_start, x.quote_start + len(x.quote)) for x in cited] if answered else []
    passage = passage_html(c.text, spans) if answered else passage_html(c.quote)
    # The full section only when it holds more than the passage shown.
    more = (f"<details><summary>Full section</summary><div class='passage'>{passage_html(full)}</div></details>"
            if full.strip() != (c.text if answered else c.quote).strip() else "")
    markers = " ".join(f'<span class="marker">[{x.n}]</span>' for x in cited)
    anchors = "".join(f'<span class="anchor" id="{source_anchor(turn, x.n)}"></span>' for x in cited[1:])
    return (f'<div class="source" id="{source_anchor(turn, c.n)}">{anchors}'
            f'<div class="source-head">{markers} '
            f"<b>{html.escape(label)}</b> "
            f'<span class="score" title="Relevance: similarity of the passage to the question '
            f'(higher is closer)">relevance {max(x.score for x in cited):.2f}</span></div>'
            f'<div class="passage">{passage}</div>{more}</div>')


def by_passage(citations: Sequence[Citation]) -> list[list[Citation]]:
    """Citations grouped by the passage they quote, in the order of each passage's first one."""
    groups: dict[str, list[Citation]] = {}
    for c in citations:
        groups.setdefault(c.chunk_id, []).append(c)
    return list(groups.values())


def shared_label(labels: list[str]) -> str:
    """One label for the quotes of one passage: theirs when they agree, else the part they
    share without the paragraphs ("art. 19" for "art. 19(2)" and "art. 19(1)")."""
    if len(set(labels)) == 1:
        return labels[0]
    parts = {_PINPOINT.sub("", label) for label in labels}
    return parts.pop() if len(parts) == 1 else labels[0]


def sources_html(answer: Answer, turn: int, sections: dict[str, str],
                 labels: dict[int, str] | None = None, filters: str = "") -> str:
    """The sources of one answer (turn ``turn``): each cited passage once, its quotes
    highlighted, its score, and the full section to expand when it adds text."""
    listed = answer.citations or answer.related
    heading = "Sources" if answer.citations else "Related passages (not an answer)"
    items = [_card(group, turn, bool(answer.citations), sections.get(group[0].chunk_id, group[0].text),
                   shared_label([(labels or {}).get(c.n, c.label) for c in group])) for group in by_passage(listed)]
    if not items:
        heading = "No sources"
        where = f" the active filters. {html.escape(filters)}" if filters else ""
        items = [f'<p class="empty">No passage matched{where}.</p>']
    css_class = "answer-sources" if answer.citations else "answer-sources related"
    return (f'<section class="{css_class}" data-turn="{turn}"><h4><span class="turn">Answer {turn}</span> '
            f"{heading} for: {html.escape(answer.question)}</h4>" + "".join(items) + "</section>")


def sources_panel(turns: Sequence[str]) -> str:
    """The Sources panel: the latest answer's sources, earlier answers' folded below them
    (their markers still resolve: the click handler unfolds them)."""
    if not turns:
        return '<p class="empty">Sources of answers appear here.</p>'
    earlier = "".join(reversed(turns[:-1]))
    folded = (f'<details class="earlier"><summary>Sources of earlier answers ({len(turns) - 1})</summary>'
              f"{earlier}</details>") if earlier else ""
    return turns[-1] + folded


def excerpts_html(excerpts: Sequence[Excerpt], query: str) -> str:
    """Search results: ranked excerpts, matching words highlighted, each with a copy button."""
    if not excerpts:
        return '<p class="empty">No passage matches; try other words or fewer filters.</p>'
    cards = []
    for e in excerpts:
        cards.append(
            f'<div class="source excerpt" id="excerpt-{e.rank}">'
            f'<div class="source-head"><span class="marker">{e.rank}.</span> <b>{html.escape(e.citation)}</b> '
            f'<span class="score" title="Relevance: fused keyword and meaning score (higher is closer)">'
            f"score {e.score:.2f}</span></div>"
            f'<div class="passage">{passage_html(e.text, e.highlights)}</div>'
            f'<button class="copy-citation" type="button" data-copy="{html.escape(e.quotation)}">'
            "Copy citation</button></div>")
    return (f'<section class="excerpts"><h4>{len(excerpts)} excerpt(s) for: {html.escape(query)}</h4>'
            + "".join(cards) + "</section>")


def _linked(text: str) -> str:
    """Escaped text whose http(s) URLs are links that open in a new tab."""
    out, last = [], 0
    for match in _URL.finditer(text):
        url = match.group(0).rstrip(".,;")
        out.append(html.escape(text[last:match.start()]))
        out.append(f'<a href="{html.escape(url)}" target="_blank" rel="noopener noreferrer">{html.escape(url)}</a>')
        last = match.start() + len(url)
    out.append(html.escape(text[last:]))
    return "".join(out)


def document_html(doc: DocumentInfo, chunks: list[Chunk]) -> str:
    """A whole document, section by section, with anchors to jump to."""
    rows = (("Short title", doc.short_title), ("Year", doc.year), ("Kind", doc.kind),
            ("Source", doc.source), ("Completeness", doc.completeness), ("Licence", doc.licence_note))
    meta = (f"<h3>{html.escape(doc.title)}</h3><table class='doc-meta'>"
            + "".join(f"<tr><th>{html.escape(k)}</th><td>{_linked(str(v))}</td></tr>" for k, v in rows)
            + "</table>")
    parts = [meta]
    for chunk in chunks:
        label = chunk.section + (f" (part {chunk.part})" if chunk.part > 1 else "")
        first, _, rest = chunk.text.partition("\n")
        heading = _HEADING_LINE.match(first)
        text = rest.lstrip("\n") if heading and first[heading.end():].strip() == label else chunk.text
        parts.append(f'<div class="doc-section" id="{section_anchor(chunk.chunk_id)}">'
                     f"<h4>{html.escape(label)}</h4><div class='passage'>{passage_html(text)}</div></div>")
    return "".join(parts)


def section_anchor(chunk_id: str) -> str:
    return "sec-" + re.sub(r"[^a-z0-9]+", "-", chunk_id.lower())


def conversation_markdown(answers: list[Answer], corpus_version: str) -> str:
    """The conversation as a Markdown briefing with full references."""
    lines = ["# Space-security briefing", "", f"Corpus version: `{corpus_version}`", ""]
    for i, answer in enumerate(answers, 1):
        lines += [f"## {i}. {answer.question}", "", answer.to_markdown(), ""]
    return "\n".join(lines).strip() + "\n"
