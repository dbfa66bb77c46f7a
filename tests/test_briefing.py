"""Briefings: structure, verbatim quotes that resolve to corpus passages, formats, determinism."""

from __future__ import annotations

import datetime as dt
import html
import io
import re

import pytest
from pypdf import PdfReader

from rag import briefing
from rag.cli import main

pytestmark = pytest.mark.slow

ISSUE_PRESETS = [
    "Outer Space Treaty essentials", "Liability and registration of space objects",
    "Space debris and long-term sustainability", "CSpO 2024 Florence commitments",
    "Nuclear power sources in space", "Anti-satellite missile testing norms",
    "Rescue and return of astronauts", "The Moon and celestial bodies",
]
DAY = dt.date(2026, 1, 15)


@pytest.fixture(scope="module")
def built(real_engine):
    title, questions = briefing.questions_for("Nuclear power sources in space")
    questions = questions + ["What is the capital of France?"]
    return briefing.build_briefing(real_engine, title, questions, DAY)


def test_presets_are_the_eight_topics_each_with_questions():
    presets = briefing.presets()
    assert list(presets) == ISSUE_PRESETS
    assert all(2 <= len(q) <= 10 and all(s.endswith("?") for s in q) for q in presets.values())


def test_topic_lookup_is_case_insensitive_and_files_work(tmp_path):
    assert briefing.questions_for("the moon and celestial bodies")[0] == "The Moon and celestial bodies"
    path = tmp_path / "my-questions.txt"
    path.write_text("# comment\nWhat is the Outer Space Treaty?\n\nWho is liable for damage?\n", encoding="utf-8")
    title, questions = briefing.questions_for(str(path))
    assert questions == ["What is the Outer Space Treaty?", "Who is liable for damage?"]
    assert "my questions" in title


@pytest.mark.parametrize("content", [b"", b"\n\n# only a comment\n", b"\xff\xfe\x00bad"])
def test_bad_question_files_are_rejected_with_the_file_name(tmp_path, content):
    path = tmp_path / "questions.txt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="questions.txt"):
        briefing.questions_for(str(path))


def test_unknown_topic_lists_the_presets():
    with pytest.raises(ValueError, match="Presets: Outer Space Treaty essentials"):
        briefing.questions_for("Quantum gravity")


def test_structure_and_not_covered(built, real_engine):
    assert built.date == "2026-01-15"
    assert built.corpus_version == real_engine.index.fingerprint
    assert [s.question for s in built.not_covered] == ["What is the capital of France?"]
    assert len(built.covered) >= 3
    md = briefing.to_markdown(built)
    for heading in ("# Nuclear power sources in space", "## Contents", "## References",
                    "## Not covered by the corpus"):
        assert heading in md
    for i, section in enumerate(built.covered, 1):
        assert f"## {i}. {section.question}" in md


def test_every_quote_resolves_to_a_verbatim_corpus_passage(built, real_engine):
    chunks = {c.chunk_id: c for c in real_engine.index.chunks}
    assert [r.n for r in built.references] == list(range(1, len(built.references) + 1))
    for section in built.covered:
        for quote in section.quotes:
            chunk = chunks[quote.citation.chunk_id]
            source = real_engine.corpus.text(real_engine.corpus.get(chunk.doc_id))
            assert source[chunk.start:chunk.end] == quote.citation.text
            assert quote.citation.quote in quote.citation.text
            assert quote.reference.source and quote.reference.licence_note
        markers = set(re.findall(r"\[\d+, [^\]]+\]", section.text))
        assert markers == {q.marker for q in section.quotes}


def test_references_list_each_document_once_and_citations_name_the_section(real_engine):
    """Defect 11: the Outer Space Treaty's full provenance was repeated for every quote."""
    questions = briefing.questions_for("Outer Space Treaty essentials")[1]
    b = briefing.build_briefing(real_engine, "OST", questions, DAY)
    quotes = [q for s in b.covered for q in s.quotes]
    ost = [q for q in quotes if q.citation.doc_id == "outer-space-treaty-1967"]
    assert len(ost) >= 3  # the case that used to repeat
    titles = [r.title for r in b.references]
    assert len(titles) == len(set(titles))
    assert {q.reference.n for q in ost} == {ost[0].reference.n}
    assert all(re.fullmatch(r"\[\d+, (art\.|Preamble)[^\]]*\]", q.marker) for q in ost), [q.marker for q in ost]
    md = briefing.to_markdown(b)
    references = md.split("## References")[1]
    assert references.count("Source: ") == len(b.references)
    assert references.count(real_engine.corpus.get("outer-space-treaty-1967").source) == 1
    page = briefing.to_html(b)
    assert page.count("<li id='ref") == len(b.references)
    assert f"<a href='#ref{ost[0].reference.n}'>{html.escape(ost[0].marker)}</a>" in page


def test_same_corpus_and_settings_give_the_same_briefing(built, real_engine):
    again = briefing.build_briefing(real_engine, built.title, [s.question for s in built.sections], DAY)
    assert briefing.to_markdown(again) == briefing.to_markdown(built)
    assert briefing.to_html(again) == briefing.to_html(built)
    assert briefing.to_pdf(again) == briefing.to_pdf(built)


def test_html_is_self_contained_printable_and_escaped(real_engine):
    b = briefing.build_briefing(real_engine, "Probe <script>alert(1)</script>",
                                ["What does the Outer Space Treaty say about nuclear weapons? <img src=x onerror=alert(1)>"], DAY)
    page = briefing.to_html(b)
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;" in page
    assert not re.search(r"<(link|script)[^>]+(href|src)=", page)
    assert "@media print" in page


def test_pdf_opens_and_has_the_headings_and_curly_quotes(built):
    reader = PdfReader(io.BytesIO(briefing.to_pdf(built)))
    text = " ".join(" ".join(page.extract_text().split()) for page in reader.pages)
    assert "Nuclear power sources in space" in text
    for section in built.covered:
        assert " ".join(section.question.split()) in text
    assert "References" in text and "Not covered by the corpus" in text
    assert "\u201c" in text  # curly quotes survive (Unicode font)


def test_cli_writes_each_format(real_engine, tmp_path, capsys):
    s = real_engine.settings
    outs = [tmp_path / "b.md", tmp_path / "b.html", tmp_path / "b.pdf"]
    args = ["--corpus-dir", str(s.corpus_dir), "--index-dir", str(s.index_dir), "brief",
            "Rescue and return of astronauts", "--quiet"]
    for out in outs:
        args += ["--out", str(out)]
    assert main(args) == 0
    assert all(o.is_file() and o.stat().st_size > 500 for o in outs)
    assert outs[0].read_text(encoding="utf-8").startswith("# Rescue and return of astronauts")


@pytest.mark.parametrize("extra, message", [(["Quantum gravity"], "neither a preset"),
                                            (["The Moon and celestial bodies", "--out", "x.docx"], ".md, .html or .pdf")])
def test_cli_rejects_bad_topics_and_formats(real_engine, tmp_path, capsys, extra, message):
    s = real_engine.settings
    code = main(["--corpus-dir", str(s.corpus_dir), "--index-dir", str(s.index_dir), "brief", *extra, "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
