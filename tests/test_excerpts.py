"""Excerpt search (rag/excerpts.py) and `spacesec search`: ranked verbatim paragraphs with
formal citations and highlighted matches."""

from __future__ import annotations

import json

import pytest

from rag.cli import main
from rag.excerpts import ExcerptFinder, match_spans, section_citation

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def finder(real_engine) -> ExcerptFinder:
    return ExcerptFinder(real_engine)


def chunk(engine, chunk_id: str, phrase: str):
    """The part of the section ``chunk_id`` starts that holds ``phrase``."""
    prefix = chunk_id.rsplit("/", 1)[0] + "/"
    return next(c for c in engine.index.chunks if c.chunk_id.startswith(prefix) and phrase in c.text)


@pytest.mark.parametrize("section, cited", [("Article IV", "art. IV"), ("Paragraph 12", "para. 12"),
                                            ("Guideline B.6", "guideline B.6"), ("Preamble", "Preamble")])
def test_section_citation(section, cited):
    assert section_citation(section) == cited


@pytest.mark.parametrize("chunk_id, phrase, cited", [
    ("outer-space-treaty-1967/article-iv/1", "States Parties to the Treaty undertake",
     "Outer Space Treaty (1967), art. IV(1)"),
    ("outer-space-treaty-1967/article-iv/1", "The moon and other celestial bodies shall be used",
     "Outer Space Treaty (1967), art. IV(2)"),
    ("outer-space-treaty-1967/article-ii/1", "Outer space, including the moon", "Outer Space Treaty (1967), art. II"),
    ("liability-convention-1972/article-iv/1", "(b) If the damage has been caused to a space object",
     "Liability Convention (1972), art. IV(1)(b)"),
    ("liability-convention-1972/article-iv/1", "2. In all cases of joint and several liability",
     "Liability Convention (1972), art. IV(2)"),
    ("registration-convention-1975/article-i/1", "(i) A State which launches",
     "Registration Convention (1975), art. I(a)(i)"),
    ("us-da-asat-test-commitment-fact-sheet-2022/paragraph-1/1", "Today at Vandenberg",
     "US DA-ASAT test commitment fact sheet (2022), para. 1"),
    ("outer-space-treaty-1967/preamble/1", "Recognizing the common interest",
     "Outer Space Treaty (1967), Preamble, para. 3"),
    ("unga-declaration-of-legal-principles-1963/principle-9/1", "States shall regard astronauts",
     "Declaration of Legal Principles (1963), principle 9"),
    ("unga-nuclear-power-sources-principles-1992/principle-2/1", "2. For the purpose of principle 9",
     "NPS Principles (1992), principle 2(2)"),
])
def test_formal_citation_pinpoints_the_paragraph(real_engine, finder, chunk_id, phrase, cited):
    c = chunk(real_engine, chunk_id, phrase)
    assert finder.cite(c, c.text.index(phrase)) == cited


def test_search_returns_ranked_verbatim_paragraphs_with_citations(real_engine, finder):
    found = finder.search("nuclear weapons in orbit", k=3)
    assert [e.rank for e in found] == [1, 2, 3]
    best = found[0]
    assert best.citation == "Outer Space Treaty (1967), art. IV(1)"
    text = real_engine.corpus.text(real_engine.corpus.get(best.doc_id))
    for e in found:
        source = real_engine.corpus.text(real_engine.corpus.get(e.doc_id))
        assert source[e.start:e.start + len(e.text)] == e.text  # verbatim
    assert best.text.startswith("States Parties to the Treaty undertake not to place in orbit")
    assert text[best.start:].startswith(best.text)
    words = {best.text[s:t].lower() for s, t in best.highlights}
    assert {"nuclear", "weapons", "orbit"} <= words
    assert best.quotation == f"{best.citation}: \u201c{best.text}\u201d"


def test_search_filters_and_highlights_stems(finder):
    found = finder.search("launching damage", k=4, kinds=["treaty"], years=[1972])
    assert found and all(e.doc_id == "liability-convention-1972" for e in found)
    for e in found:
        assert all(e.text[s:t].lower().startswith(("launch", "damag")) for s, t in e.highlights)


def test_a_named_document_is_a_filter_cue_not_a_highlighted_match(finder):
    found = finder.search("Outer Space Treaty nuclear weapons", k=1)
    words = {found[0].text[s:t].lower() for s, t in found[0].highlights}
    assert "nuclear" in words and "treaty" not in words


def test_match_spans_ignores_stopwords():
    assert match_spans("The State of registry shall", "the of shall") == []
    assert match_spans("registers a registry", "registering") == [(0, 9)]


@pytest.mark.parametrize("bad", [{"doc_ids": ["no-such-doc"]}, {"k": 0}])
def test_search_rejects_bad_input_with_a_sentence(finder, bad):
    with pytest.raises(ValueError):
        finder.search("liability", **{"k": 3, **bad})


def cli(real_engine, *args: str) -> list[str]:
    s = real_engine.settings
    return ["--corpus-dir", str(s.corpus_dir), "--index-dir", str(s.index_dir), "search", *args]


def test_cli_search_prints_citations_and_verbatim_text(real_engine, capsys):
    assert main(cli(real_engine, "nuclear weapons in orbit", "--k", "2")) == 0
    out = capsys.readouterr().out
    assert out.startswith("[1] Outer Space Treaty (1967), art. IV(1)")
    assert "States Parties to the Treaty undertake not to place in orbit" in out
    assert "\033[" not in out  # not a terminal: no colour codes


def test_cli_search_highlights_with_color_always(real_engine, capsys):
    assert main(cli(real_engine, "nuclear weapons in orbit", "--k", "1", "--color", "always")) == 0
    assert "\033[1;33mnuclear\033[0m" in capsys.readouterr().out


def test_cli_search_json_and_filters(real_engine, capsys):
    assert main(cli(real_engine, "space debris", "--kind", "guidelines", "--year", "2007", "--json")) == 0
    items = json.loads(capsys.readouterr().out)
    assert items and all(i["doc_id"] == "copuos-space-debris-mitigation-guidelines-2007" for i in items)
    first = items[0]
    assert {"rank", "citation", "text", "highlights", "score"} <= set(first)
    assert all(first["text"][s:t].lower().startswith(("space", "debris")) for s, t in first["highlights"])


def test_cli_search_bad_filter_is_a_sentence(real_engine, capsys):
    assert main(cli(real_engine, "liability", "--doc", "nope")) == 2
    err = capsys.readouterr().err
    assert "Unknown document 'nope'" in err and "Traceback" not in err
