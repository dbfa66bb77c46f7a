"""ui/render.py: everything from the corpus or the user is shown as text, never as markup.

The Markdown the app puts in the chat is rendered here with markdown-it (CommonMark, raw HTML
allowed, as in the browser's renderer) and the result is parsed, so the tests check what a
browser would get, not only which characters were replaced.
"""

from __future__ import annotations

import dataclasses
import html
import re
from html.parser import HTMLParser

import pytest
from markdown_it import MarkdownIt

from rag.chunking import Chunk
from rag.citations import Answer, Citation
from rag.corpus import DocumentInfo
from rag.excerpts import Excerpt
from ui.render import (
    answer_markdown,
    conversation_markdown,
    describe_filters,
    document_html,
    escape_markdown,
    excerpts_html,
    passage_html,
    section_anchor,
    shared_label,
    sources_html,
    sources_panel,
)

MD = MarkdownIt("commonmark")  # html=True: raw HTML in the source would pass through


class Parsed(HTMLParser):
    """Tags (with attributes) and visible text of an HTML fragment."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict]] = []
        self.text_parts: list[str] = []
        self.feed(fragment)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text_parts.append(data)

    @property
    def tag_names(self) -> set[str]:
        return {t for t, _ in self.tags}

    @property
    def text(self) -> str:
        return "".join(self.text_parts)

    def all(self, tag: str) -> list[dict]:
        return [a for t, a in self.tags if t == tag]


def rendered(markdown: str) -> Parsed:
    return Parsed(MD.render(markdown))


# --------------------------------------------------------------------------------------
# escape_markdown
# --------------------------------------------------------------------------------------
HOSTILE = [
    "<img src=x onerror=alert(1)>",
    '<img src=x onerror="window.__xss=1">',
    "<script>alert(1)</script>",
    "<script>window.__xss=2</script> after",
    "[click me](javascript:alert(1))",
    "[site](https://evil.example/)",
    "![pixel](https://evil.example/p.png)",
    "<https://evil.example/autolink>",
    "<a href='https://evil.example'>x</a>",
    "*bold* _it_ `code` ~~del~~ # not a heading",
    "1. not a list",
    "- not a list either",
    "> not a quote",
    "| a | b |",
    "&lt;b&gt; stays literal &amp; so does this",
    "back\\slash \\[1\\] and [1] and a [ref]: https://evil.example",
    "Article IV (1) + VI.2 {x} !important",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_escape_markdown_renders_as_the_literal_text(text):
    out = rendered(escape_markdown(text))
    assert out.tag_names == {"p"}, f"markup leaked from {text!r}: {MD.render(escape_markdown(text))!r}"
    assert out.text.strip() == text


def test_escape_markdown_neutralises_img_onerror():
    escaped = escape_markdown("<img src=x onerror=alert(1)>")
    assert "<" not in escaped and ">" not in escaped
    assert escaped.startswith("&lt;img")
    page = MD.render(escaped)
    assert "<img" not in page and "onerror" in page  # shown, as text


def test_escape_markdown_neutralises_script():
    page = MD.render(escape_markdown("<script>alert(1)</script>"))
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_escape_markdown_neutralises_links_and_images():
    for text in ("[click](javascript:alert(1))", "![x](https://evil.example/x.png)",
                 "[a][b]\n\n[b]: https://evil.example"):
        out = rendered(escape_markdown(text))
        assert not out.all("a") and not out.all("img"), text


# --------------------------------------------------------------------------------------
# Answers and citations built by hand
# --------------------------------------------------------------------------------------
PASSAGE = ("## Article IX\n\nIn the exploration <script>alert(1)</script> of outer space, States "
           "shall avoid harmful contamination & adverse changes <b>in</b> the environment. "
           "Further text after the quote.")
QUOTE = "States shall avoid harmful contamination & adverse changes <b>in</b> the environment."
SECOND_PASSAGE = "## Article IV\n\nStates Parties undertake not to place nuclear weapons in orbit."
SECOND_QUOTE = "not to place nuclear weapons in orbit"


def citation(n: int = 1, text: str = PASSAGE, quote: str = QUOTE, **overrides) -> Citation:
    fields = {"n": n, "chunk_id": f"outer-space-treaty-1967/article-ix/{n}",
              "doc_id": "outer-space-treaty-1967", "title": "Treaty on Principles <Governing>",
              "section": "Article IX", "quote": quote, "text": text, "short_title": "Outer Space Treaty",
              "year": 1967, "score": 0.8123, "quote_start": text.index(quote)}
    fields.update(overrides)
    return Citation(**fields)


def answer(**overrides) -> Answer:
    fields = {
        "question": "What does <i>Article IX</i> say?",
        "text": (f"According to the Outer Space Treaty (1967), Article IX: \u201c{QUOTE}\u201d [1]. "
                 f"It also provides: \u201c{SECOND_QUOTE} *now*\u201d [2]."),
        "citations": [citation(1),
                      citation(2, SECOND_PASSAGE, SECOND_QUOTE, section="Article IV",
                               chunk_id="outer-space-treaty-1967/article-iv/1")],
        "abstained": False,
    }
    fields.update(overrides)
    return Answer(**fields)


def abstained_answer() -> Answer:
    related = [citation(1, quote=PASSAGE[:40], quote_start=0)]
    return Answer(question="What is the capital of <b>France</b>?",
                  text="Not found in the corpus: the question seems to be outside space law <and> "
                       "security. The passages below are related material, not an answer.",
                  citations=[], abstained=True, related=related)


# --------------------------------------------------------------------------------------
# answer_markdown
# --------------------------------------------------------------------------------------
def test_answer_markdown_links_markers_to_this_turns_sources():
    md = answer_markdown(answer(), turn=3)
    out = rendered(md)
    assert [a.get("href") for a in out.all("a")] == ["#src-3-1", "#src-3-2"]
    assert re.findall(r"<a [^>]*>(.*?)</a>", MD.render(md)) == ["[1]", "[2]"]


def test_answer_markdown_escapes_everything_but_the_markers():
    md = answer_markdown(answer(), turn=1)
    out = rendered(md)
    assert out.tag_names == {"p", "a"}  # no <b> from the quote, no <em> from *now*
    assert "<b>in</b>" in out.text and "*now*" in out.text
    assert out.text.strip() == answer().text


def test_answer_markdown_escapes_html_in_the_answer_text():
    hostile = answer(text="See <img src=x onerror=alert(1)> and <script>alert(2)</script> [1].")
    out = rendered(answer_markdown(hostile, turn=1))
    assert "img" not in out.tag_names and "script" not in out.tag_names
    assert "<img src=x onerror=alert(1)>" in out.text
    assert [a["href"] for a in out.all("a")] == ["#src-1-1"]


def test_abstained_answer_starts_with_not_found_in_bold():
    md = answer_markdown(abstained_answer(), turn=2)
    assert md.startswith("**Not found in the corpus.**")
    assert md.count("Not found in the corpus") == 1
    out = rendered(md)
    assert out.all("strong") and not out.all("a") and "b" not in out.tag_names
    assert "outside space law <and> security" in out.text


def test_notice_is_appended_escaped():
    md = answer_markdown(answer(notice="LLM mode <b>unavailable</b>; answered extractively."), turn=1)
    out = rendered(md)
    assert "b" not in out.tag_names and out.all("em")
    assert "LLM mode <b>unavailable</b>" in out.text


# --------------------------------------------------------------------------------------
# sources_html
# --------------------------------------------------------------------------------------
ALLOWED_SOURCE_TAGS = {"section", "h4", "div", "span", "b", "mark", "details", "summary", "p"}


def shown(fragment: str) -> str:
    """The text a reader sees in a rendered passage."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def test_sources_html_highlights_exactly_the_quote():
    page = sources_html(answer(), turn=1, sections={})
    marks = re.findall(r"<mark>(.*?)</mark>", page, flags=re.DOTALL)
    assert len(marks) == 2
    assert html.unescape(marks[0]) == QUOTE
    assert html.unescape(marks[1]) == SECOND_QUOTE
    first = re.search(r'<div class="passage">(.*?)</div>', page, flags=re.DOTALL).group(1)
    # the whole passage, once; its Markdown heading shown as a heading, without the "##"
    assert shown(first) == PASSAGE.replace("## ", "", 1)
    assert '<span class="heading">Article IX</span>' in first


def test_sources_html_escapes_passage_html():
    page = sources_html(answer(), turn=1, sections={})
    parsed = Parsed(page)
    assert parsed.tag_names <= ALLOWED_SOURCE_TAGS
    assert "<script>" not in page and "<b>in</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" in parsed.text  # shown as text
    assert "What does <i>Article IX</i> say?" in parsed.text  # the question, escaped


def test_sources_html_anchors_and_labels():
    page = sources_html(answer(), turn=4, sections={})
    parsed = Parsed(page)
    ids = [a["id"] for t, a in parsed.tags if "id" in a]
    assert ids == ["src-4-1", "src-4-2"]
    section = parsed.all("section")[0]
    assert section["class"] == "answer-sources" and section["data-turn"] == "4"
    assert "Outer Space Treaty (1967), Article IX" in parsed.text
    assert "relevance 0.81" in parsed.text


def test_sources_html_full_section_is_escaped():
    full = "## Article IX\n\n<img src=x onerror=alert(1)> The whole section, all its parts."
    page = sources_html(answer(), turn=1, sections={"outer-space-treaty-1967/article-ix/1": full})
    parsed = Parsed(page)
    assert "img" not in parsed.tag_names
    sections = re.findall(r"<details><summary>Full section</summary>(.*?)</details>", page, flags=re.DOTALL)
    assert [shown(x) for x in sections] == [full.replace("## ", "", 1)]


def test_full_section_is_offered_only_when_it_adds_text():
    """Defect 9: a section of one chunk would repeat the passage under "Full section"."""
    same = sources_html(answer(), turn=1, sections={"outer-space-treaty-1967/article-ix/1": PASSAGE})
    assert "Full section" not in same
    longer = sources_html(answer(), turn=1,
                          sections={"outer-space-treaty-1967/article-ix/1": PASSAGE + "\n\nA second part."})
    assert same.count("<details>") == 0 and longer.count("<details>") == 1


def test_sources_html_for_an_abstention_lists_related_passages_unhighlighted():
    page = sources_html(abstained_answer(), turn=2, sections={})
    parsed = Parsed(page)
    assert "Related passages (not an answer)" in parsed.text
    assert "mark" not in parsed.tag_names
    assert parsed.all("section")[0]["class"] == "answer-sources related"
    assert [a["id"] for t, a in parsed.tags if "id" in a] == ["src-2-1"]
    assert "capital of <b>France</b>" in parsed.text and "b" in parsed.tag_names  # only the label's <b>
    assert "<b>France</b>" not in page


def test_sources_html_without_passages_says_so_and_names_the_filters():
    """Defect 3: an answer with nothing to list gets its own (empty) entry, so the previous
    answer's cards are not taken for its sources."""
    empty = Answer(question="q", text="Not found in the corpus: x.", citations=[], abstained=True)
    page = sources_html(empty, 2, {}, filters="Searched only: guidelines, 2024")
    assert 'data-turn="2"' in page and "No passage matched the active filters" in page
    assert "Searched only: guidelines, 2024" in page and 'class="source"' not in page


def test_sources_panel_shows_the_latest_answer_and_folds_the_earlier_ones():
    first = sources_html(answer(question="First?"), 1, {})
    second = sources_html(answer(question="Second?"), 2, {})
    panel = sources_panel([first, second])
    assert panel.index('data-turn="2"') < panel.index("<details class=\"earlier\">") < panel.index('data-turn="1"')
    assert "Sources of earlier answers (1)" in panel
    assert "Answer 2" in second and "Answer 1" in first  # each turn labelled with its number
    assert "appear here" in sources_panel([])


# --------------------------------------------------------------------------------------
# document_html
# --------------------------------------------------------------------------------------
def test_document_html_escapes_and_anchors_sections():
    doc = DocumentInfo(doc_id="evil-doc", file="evil.md", title="Evil <script>alert(1)</script> Treaty",
                       short_title="Evil <b>", year=2020, kind="treaty", source="https://x.example/?a=1&b=<2>",
                       licence_note="<img src=x onerror=alert(1)>", completeness="complete")
    text = "## Article 1\n\n<script>alert(2)</script> The parties agree & so on."
    chunks = [Chunk("evil-doc/article-1/1", "evil-doc", doc.title, doc.short_title, 2020, "treaty",
                    "Article 1", "", 0, len(text), text),
              Chunk("evil-doc/article-1/2", "evil-doc", doc.title, doc.short_title, 2020, "treaty",
                    "Article <1>", "", 0, 10, "continued", part=2)]
    page = document_html(doc, chunks)
    parsed = Parsed(page)
    assert parsed.tag_names <= {"h3", "table", "tr", "th", "td", "div", "h4", "a", "span"}
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    for literal in (doc.title, doc.source, doc.licence_note, text.split("\n\n")[1], "Article <1> (part 2)"):
        assert literal in parsed.text
    assert "##" not in parsed.text  # the section's heading is the h4, not a raw Markdown line
    assert [a["href"] for a in parsed.all("a")] == ["https://x.example/?a=1&b="]
    ids = [a["id"] for t, a in parsed.tags if "id" in a]
    assert ids == ["sec-evil-doc-article-1-1", "sec-evil-doc-article-1-2"]
    assert section_anchor("Outer-Space-Treaty-1967/Article-IV/1") == "sec-outer-space-treaty-1967-article-iv-1"


# --------------------------------------------------------------------------------------
# conversation_markdown
# --------------------------------------------------------------------------------------
def test_conversation_markdown_has_a_section_per_answer_with_references():
    answers = [answer(question="First question?"),
               dataclasses.replace(abstained_answer(), question="What is the capital of France?")]
    md = conversation_markdown(answers, "abc123")
    assert md.startswith("# Space-security briefing\n")
    assert "Corpus version: `abc123`" in md
    headings = re.findall(r"^## (.*)$", md, flags=re.MULTILINE)
    assert headings == ["1. First question?", "2. What is the capital of France?"]
    first, second = md.split("\n## ")[1:]
    assert "References:" in first
    assert f"[1] Outer Space Treaty (1967), Article IX: \u201c{QUOTE}\u201d" in first
    assert f"[2] Outer Space Treaty (1967), Article IV: \u201c{SECOND_QUOTE}\u201d" in first
    assert "Related passages (not an answer):" in second and "References:" not in second
    assert md.endswith("\n") and not md.endswith("\n\n")


@pytest.mark.parametrize("text", ["What does Article IV say?\n===",
                                  "What does Article IV say?\n\n    Article IV.2 (see x.y)"])
def test_escape_markdown_keeps_multiline_questions_literal(text):
    out = rendered(escape_markdown(text))
    assert out.tag_names <= {"p", "br"}, MD.render(escape_markdown(text))
    assert out.text.split() == text.split()


# --------------------------------------------------------------------------------------
# What users of answer engines expect: filters named, weak answers flagged, source chips
# --------------------------------------------------------------------------------------
def test_abstention_reason_starts_a_sentence_with_a_capital():
    """Defect 6: "Not found in the corpus. no passage gives..." read as a typo."""
    md = answer_markdown(abstained_answer(), turn=1)
    assert "**Not found in the corpus.** The question seems" in md


def test_active_filters_are_named_above_the_answer():
    filters = describe_filters(["LTS Guidelines"], ["guidelines"], ["2024"])
    assert filters == "Searched only: LTS Guidelines, guidelines, 2024"
    md = answer_markdown(abstained_answer(), turn=1, filters=filters)
    assert md.index("Searched only: LTS Guidelines, guidelines, 2024") < md.index("Not found")
    assert describe_filters() == "" and "Searched only" not in answer_markdown(answer(), turn=1)


@pytest.mark.parametrize("confidence, partial, flag", [(0.2, False, "Weak match"), (0.9, True, "Partial answer"),
                                                      (0.9, False, None)])
def test_weak_and_partial_answers_are_flagged_with_what_the_number_means(confidence, partial, flag):
    md = answer_markdown(answer(confidence=confidence, partial=partial), turn=1, weak_below=0.5)
    spans = Parsed(MD.render(md)).all("span")
    flags = [a for a in spans if a.get("class") == "strength"]
    if flag is None:
        assert not flags
        return
    assert flag in md and len(flags) == 1
    assert f"Confidence {confidence:.2f}" in flags[0]["title"] and "from 0 to 1" in flags[0]["title"]


def test_abstentions_are_not_flagged_as_weak():
    assert "strength" not in answer_markdown(abstained_answer(), turn=1, weak_below=0.5)


def test_source_chips_under_the_answer_open_its_cards():
    labels = {1: "Outer Space Treaty (1967), art. IX", 2: "Outer Space Treaty (1967), art. IV(1)"}
    md = answer_markdown(answer(), turn=2, labels=labels)
    chips = [a for a in Parsed(MD.render(md)).all("a") if a.get("class") == "chip"]
    assert [c["href"] for c in chips] == ["#src-2-1", "#src-2-2"]
    assert "2 · Outer Space Treaty (1967), art. IV(1)" in md


def test_passage_html_marks_spans_and_renders_headings_without_their_marks():
    text = "## Article 11\n\n### Background\nThe moon <b>is</b> not subject to appropriation."
    start = text.index("moon")
    page = passage_html(text, [(start, start + 4), (text.index("appropriation"), len(text) - 1)])
    assert "#" not in shown(page) and '<span class="heading">Article 11</span>' in page
    assert '<span class="heading">Background</span>' in page
    assert re.findall(r"<mark>(.*?)</mark>", page) == ["moon", "appropriation"]
    assert "&lt;b&gt;is&lt;/b&gt;" in page


def test_excerpts_html_highlights_matches_and_carries_the_citation_to_copy():
    text = "States shall not place <nuclear> weapons in orbit."
    excerpt = Excerpt(1, "ost/article-iv/1", "ost", "Outer Space Treaty (1967), art. IV(1)", text, 0, 0.91,
                      [(text.index("nuclear"), text.index("nuclear") + 7), (text.index("orbit"), len(text) - 1)])
    page = excerpts_html([excerpt], "nuclear <orbit>")
    parsed = Parsed(page)
    assert re.findall(r"<mark>(.*?)</mark>", page) == ["nuclear", "orbit"]
    button = parsed.all("button")[0]
    assert button["data-copy"] == f"Outer Space Treaty (1967), art. IV(1): \u201c{text}\u201d"
    assert "nuclear <orbit>" in parsed.text and "<orbit>" not in page
    assert "No passage matches" in excerpts_html([], "x")


def two_quotes_from_one_passage() -> Answer:
    later = "Further text after the quote."
    return answer(text=f"\u201c{QUOTE}\u201d [1] \u201c{later}\u201d [2]",
                  citations=[citation(1), citation(2, quote=later, chunk_id=citation(1).chunk_id, score=0.5)])


def test_a_passage_quoted_twice_has_one_card_with_both_quotes_and_both_anchors():
    page = sources_html(two_quotes_from_one_passage(), turn=3, sections={})
    parsed = Parsed(page)
    assert page.count('class="source"') == 1
    assert [html.unescape(m) for m in re.findall(r"<mark>(.*?)</mark>", page, flags=re.DOTALL)] == [
        QUOTE, "Further text after the quote."]
    assert [a["id"] for t, a in parsed.tags if "id" in a] == ["src-3-1", "src-3-2"]
    assert "[1] [2]" in parsed.text and "relevance 0.81" in parsed.text
    assert shown(page).count("In the exploration") == 1


def test_a_passage_quoted_twice_has_one_chip_with_both_numbers():
    labels = {1: "Outer Space Treaty (1967), art. IX", 2: "Outer Space Treaty (1967), art. IX"}
    md = answer_markdown(two_quotes_from_one_passage(), turn=2, labels=labels)
    chips = [a for a in Parsed(MD.render(md)).all("a") if a.get("class") == "chip"]
    assert [c["href"] for c in chips] == ["#src-2-1"]
    assert "1, 2 · Outer Space Treaty (1967), art. IX" in md


def test_quotes_of_one_passage_share_the_label_of_the_part_they_come_from():
    assert shared_label(["Moon Agreement (1979), art. 19(2)", "Moon Agreement (1979), art. 19(1)"]) == \
        "Moon Agreement (1979), art. 19"
    preamble = "Outer Space Treaty (1967), Preamble"
    assert shared_label([f"{preamble}, para. 2", f"{preamble}, para. 5"]) == preamble
    assert shared_label(["LTS Guidelines (2019), guideline B.6(3)"] * 2) == "LTS Guidelines (2019), guideline B.6(3)"
    labels = {1: "Moon Agreement (1979), art. 19(2)", 2: "Moon Agreement (1979), art. 19(1)"}
    md = answer_markdown(two_quotes_from_one_passage(), turn=1, labels=labels)
    assert "1, 2 · Moon Agreement (1979), art. 19</a>" in md
    assert "<b>Moon Agreement (1979), art. 19</b>" in sources_html(two_quotes_from_one_passage(), 1, {}, labels)
