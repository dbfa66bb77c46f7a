"""Structure-aware chunking, checked on every shipped document with the real tokenizer."""

from __future__ import annotations

import re
from collections import defaultdict
from itertools import pairwise

import pytest
from conftest import CORPUS_DIR

from rag.chunking import chunk_document
from rag.corpus import DocumentInfo, load_corpus
from rag.sentences import sentence_spans
from rag.settings import Settings

SETTINGS = Settings()
CORPUS = load_corpus(CORPUS_DIR)
DOC_IDS = [d.doc_id for d in CORPUS.documents]


def roman(n: int) -> str:
    out = ""
    for value, numeral in ((10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):
        while n >= value:
            out += numeral
            n -= value
    return out


@pytest.fixture(scope="module")
def chunked(real_token_counter):
    """doc_id -> (source text, chunks), chunked with the shipped settings and the real tokenizer."""
    result = {}
    for doc in CORPUS.documents:
        text = CORPUS.text(doc)
        result[doc.doc_id] = (text, chunk_document(text, doc, real_token_counter,
                                                   SETTINGS.chunk_max_tokens, SETTINGS.chunk_target_words))
    return result


def sections(chunked, doc_id: str) -> list[str]:
    """Distinct section labels of a document, in order."""
    out: list[str] = []
    for chunk in chunked[doc_id][1]:
        if chunk.section not in out:
            out.append(chunk.section)
    return out


# -- properties over every document ----------------------------------------------------
@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_chunk_text_is_verbatim_slice(chunked, doc_id):
    text, chunks = chunked[doc_id]
    assert chunks
    for chunk in chunks:
        assert chunk.text == text[chunk.start:chunk.end]
        assert chunk.text.strip() == chunk.text, f"{chunk.chunk_id} has untrimmed whitespace"


@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_every_non_blank_character_is_in_a_chunk(chunked, doc_id):
    text, chunks = chunked[doc_id]
    covered = bytearray(len(text))
    for chunk in chunks:
        covered[chunk.start:chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missing, f"uncovered text at {missing[0]}: {text[missing[0]:missing[0] + 60]!r}"


@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_chunks_in_order_without_overlap(chunked, doc_id):
    _, chunks = chunked[doc_id]
    for a, b in pairwise(chunks):
        assert a.end <= b.start, f"{a.chunk_id} overlaps {b.chunk_id}"


@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_embed_text_fits_the_model_window(chunked, doc_id, real_token_counter):
    _, chunks = chunked[doc_id]
    for chunk in chunks:
        tokens = real_token_counter(chunk.embed_text)
        assert tokens <= SETTINGS.chunk_max_tokens, f"{chunk.chunk_id}: {tokens} tokens"
        assert chunk.embed_text.startswith(chunk.header + "\n")


@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_metadata_copied_from_manifest(chunked, doc_id):
    doc = CORPUS.get(doc_id)
    for chunk in chunked[doc_id][1]:
        assert (chunk.doc_id, chunk.title, chunk.short_title, chunk.year, chunk.kind) == (
            doc.doc_id, doc.title, doc.short_title, doc.year, doc.kind)


@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_parts_are_numbered_consecutively_per_section(chunked, doc_id):
    parts = defaultdict(list)
    for chunk in chunked[doc_id][1]:
        parts[chunk.chunk_id.rsplit("/", 1)[0]].append(chunk.part)
    for key, numbers in parts.items():
        assert numbers == list(range(1, len(numbers) + 1)), key


def test_chunk_ids_unique_and_well_formed(chunked):
    ids = [c.chunk_id for _, chunks in chunked.values() for c in chunks]
    assert len(ids) == len(set(ids))
    for chunk in (c for _, chunks in chunked.values() for c in chunks):
        assert re.fullmatch(r"[a-z0-9-]+/[a-z0-9-]+/\d+", chunk.chunk_id), chunk.chunk_id
        doc, slug, part = chunk.chunk_id.split("/")
        assert doc == chunk.doc_id and int(part) == chunk.part
        assert slug.startswith(re.sub(r"[^a-z0-9]+", "-", chunk.section.lower()).strip("-"))


def test_chunking_is_deterministic(chunked, real_token_counter):
    for doc in CORPUS.documents:
        again = chunk_document(CORPUS.text(doc), doc, real_token_counter,
                               SETTINGS.chunk_max_tokens, SETTINGS.chunk_target_words)
        assert [c.to_dict() for c in again] == [c.to_dict() for c in chunked[doc.doc_id][1]]


@pytest.mark.parametrize("doc_id", DOC_IDS)
def test_split_sections_break_at_sentence_or_paragraph_boundaries(chunked, doc_id):
    """A section packed into several parts starts and ends each part at a sentence (or line)."""
    text, chunks = chunked[doc_id]
    spans = sentence_spans(text)
    starts = {a for a, _ in spans}
    ends = {b for _, b in spans}
    split = 0
    for i, chunk in enumerate(chunks):
        following = chunks[i + 1] if i + 1 < len(chunks) else None
        is_split = chunk.part > 1 or (following is not None and following.section == chunk.section
                                      and following.part > 1)
        if not is_split:
            continue
        split += 1
        assert chunk.start in starts, f"{chunk.chunk_id} starts mid-sentence: {chunk.text[:60]!r}"
        assert chunk.end in ends, f"{chunk.chunk_id} ends mid-sentence: {chunk.text[-60:]!r}"
    if doc_id == "copuos-long-term-sustainability-guidelines-2019":
        assert split > 0  # the long guidelines really are split, so the check above ran


# -- the documents' own structure --------------------------------------------------------
def test_outer_space_treaty_sections(chunked):
    assert sections(chunked, "outer-space-treaty-1967") == ["Preamble"] + [f"Article {roman(n)}" for n in range(1, 18)]


def test_outer_space_treaty_article_iv_chunk(chunked):
    _, chunks = chunked["outer-space-treaty-1967"]
    by_id = {c.chunk_id: c for c in chunks}
    chunk = by_id["outer-space-treaty-1967/article-iv/1"]
    assert chunk.section == "Article IV"
    assert "nuclear weapons" in chunk.text
    assert chunk.text.startswith("## Article IV")  # the heading travels with its text


def test_lts_guidelines_sections(chunked):
    labels = sections(chunked, "copuos-long-term-sustainability-guidelines-2019")
    guidelines = [f"Guideline {g}" for g in
                  [f"A.{i}" for i in range(1, 6)] + [f"B.{i}" for i in range(1, 11)]
                  + [f"C.{i}" for i in range(1, 5)] + ["D.1", "D.2"]]
    assert len(guidelines) == 21
    paragraphs = [f"Paragraph {i}" for i in range(1, 25)]
    assert labels == paragraphs + guidelines


def test_lts_guideline_titles(chunked):
    _, chunks = chunked["copuos-long-term-sustainability-guidelines-2019"]
    b6 = next(c for c in chunks if c.section == "Guideline B.6")
    assert b6.section_title == "Share operational space weather data and forecasts"
    assert b6.header.startswith("LTS Guidelines, Guideline B.6: Share operational")
    # Context paragraphs carry the sub-heading they sit under as their title.
    p1 = next(c for c in chunks if c.section == "Paragraph 1")
    assert p1.section_title == "Background"


def test_declaration_1963_principles(chunked):
    assert sections(chunked, "unga-declaration-of-legal-principles-1963") == (
        ["Preamble"] + [f"Principle {i}" for i in range(1, 10)])


def test_nuclear_power_sources_principles(chunked):
    labels = sections(chunked, "unga-nuclear-power-sources-principles-1992")
    top = [s for s in labels if re.fullmatch(r"Principle \d+", s)]
    assert top == [f"Principle {i}" for i in range(1, 12)]
    # Principle 3's numbered sub-headings stay inside Principle 3.
    assert [s for s in labels if s.startswith("Principle 3,")] == [
        "Principle 3, section 1", "Principle 3, section 2", "Principle 3, section 3"]
    assert set(labels) - set(top) - {"Preamble"} == {
        "Principle 3, section 1", "Principle 3, section 2", "Principle 3, section 3"}


def test_debris_guidelines(chunked):
    labels = sections(chunked, "copuos-space-debris-mitigation-guidelines-2007")
    assert [s for s in labels if s.startswith("Guideline")] == [f"Guideline {i}" for i in range(1, 8)]
    _, chunks = chunked["copuos-space-debris-mitigation-guidelines-2007"]
    g4 = next(c for c in chunks if c.section == "Guideline 4")
    assert g4.section_title == "Avoid intentional destruction and other harmful activities"


def test_cspo_statement_numbered_paragraphs(chunked):
    labels = sections(chunked, "cspo-2024-florence-joint-statement")
    assert labels == [f"Paragraph {i}" for i in range(1, len(labels) + 1)]
    text = CORPUS.text(CORPUS.get("cspo-2024-florence-joint-statement"))
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    assert len(labels) == len(paragraphs) - 1  # the title line joins the first paragraph


def test_treaties_with_arabic_article_numbers(chunked):
    assert sections(chunked, "rescue-agreement-1968") == ["Preamble"] + [f"Article {i}" for i in range(1, 11)]
    assert sections(chunked, "moon-agreement-1979") == ["Preamble"] + [f"Article {i}" for i in range(1, 22)]
    assert sections(chunked, "liability-convention-1972") == ["Preamble"] + [f"Article {roman(i)}" for i in range(1, 29)]


# -- a tiny inline document ------------------------------------------------------------
TINY = DocumentInfo(doc_id="tiny-1999", file="tiny-1999.md", title="Tiny Treaty", short_title="Tiny",
                    year=1999, kind="treaty", source="test", licence_note="test")


def words(text: str) -> int:
    return len(text.split())


def test_long_section_splits_at_sentence_boundaries():
    sentences = [f"Sentence number {n} says that states shall do thing {n} carefully." for n in range(1, 13)]
    body = " ".join(sentences)
    text = f"# Tiny Treaty\n\n## Article 1\n\n{body}\n\n## Article 2\n\nShort article.\n"
    chunks = chunk_document(text, TINY, words, max_tokens=40, target_words=1000)
    art1 = [c for c in chunks if c.section == "Article 1"]
    assert len(art1) > 1, "a section far over max_tokens must be split"
    assert [c.part for c in art1] == list(range(1, len(art1) + 1))
    # The bodiless title joins the first section; the heading stays with its first sentences.
    assert art1[0].text.startswith("# Tiny Treaty\n\n## Article 1\n\nSentence number 1 ")
    for chunk in art1:
        assert words(chunk.embed_text) <= 40
        body_text = chunk.text.rsplit("\n\n", 1)[-1] if chunk.part == 1 else chunk.text
        assert body_text.startswith("Sentence number "), chunk.text
        assert body_text.endswith("carefully."), chunk.text
    # Every sentence lands whole in exactly one chunk.
    for sentence in sentences:
        assert sum(sentence in c.text for c in art1) == 1, sentence
    assert [c.chunk_id for c in art1] == [f"tiny-1999/article-1/{i}" for i in range(1, len(art1) + 1)]
    art2 = [c for c in chunks if c.section == "Article 2"]
    assert len(art2) == 1 and art2[0].text.endswith("Short article.")


def _assert_fits_and_covers(text, chunks, limit):
    covered = bytearray(len(text))
    for chunk in chunks:
        assert words(chunk.embed_text) <= limit, f"{chunk.chunk_id}: {words(chunk.embed_text)} > {limit}"
        assert chunk.text == text[chunk.start:chunk.end]
        covered[chunk.start:chunk.end] = b"\x01" * (chunk.end - chunk.start)
    assert all(covered[i] or ch.isspace() for i, ch in enumerate(text))


def test_over_long_sentence_falls_back_to_clauses():
    clauses = "; ".join(f"clause {n} obliges every party to report its activities" for n in range(1, 9))
    text = f"# Tiny Treaty\n\n## Article 1\n\nStates agree that {clauses}.\n"
    chunks = chunk_document(text, TINY, words, max_tokens=30, target_words=1000)
    _assert_fits_and_covers(text, chunks, 30)
    assert len(chunks) > 1
    for chunk in chunks[:-1]:
        assert chunk.text.endswith(";"), chunk.text  # split after a clause, not mid-clause
    assert chunks[-1].text.endswith("activities.")


def test_unpunctuated_run_falls_back_to_word_splits():
    runon = " ".join(f"word{n}" for n in range(1, 50))  # 49 words, no punctuation at all
    text = f"# Tiny Treaty\n\n## Article 2\n\n{runon}\n"
    chunks = chunk_document(text, TINY, words, max_tokens=30, target_words=1000)
    _assert_fits_and_covers(text, chunks, 30)
    pieces = [c.text for c in chunks if "word" in c.text]
    assert len(pieces) > 1
    assert " ".join(pieces).split() == runon.split()  # whole words, in order, none lost


def test_very_long_unpunctuated_run_still_fits():
    runon = " ".join(f"word{n}" for n in range(1, 120))  # 119 words, ~4x the 30-token limit
    text = f"# Tiny Treaty\n\n## Article 2\n\n{runon}\n"
    chunks = chunk_document(text, TINY, words, max_tokens=30, target_words=1000)
    _assert_fits_and_covers(text, chunks, 30)


def test_short_document_without_headings_is_one_chunk_per_paragraph():
    doc = DocumentInfo(doc_id="plain-2000", file="plain-2000.txt", title="Plain statement",
                       short_title="Plain", year=2000, kind="statement", source="t", licence_note="t")
    text = "Plain statement\n\nFirst paragraph here.\n\nSecond paragraph here.\n"
    chunks = chunk_document(text, doc, words, max_tokens=100, target_words=100)
    assert [c.section for c in chunks] == ["Paragraph 1", "Paragraph 2"]
    assert chunks[0].text.startswith("Plain statement")
    assert chunks[1].text == "Second paragraph here."


# -- sentence boundaries -----------------------------------------------------------------
def sentences_of(text: str) -> list[str]:
    return [text[a:b] for a, b in sentence_spans(text)]


@pytest.mark.parametrize("text, expected", [
    ("See art. 4 of the treaty. Then stop.", ["See art. 4 of the treaty.", "Then stop."]),
    ("The U.S. Government committed. Others followed.",
     ["The U.S. Government committed.", "Others followed."]),
    ("States should apply guideline B.6. Data should be shared. Next.",
     ["States should apply guideline B.6. Data should be shared.", "Next."]),
    ("As set out in arts. 3 and 4 of the treaty. States agree.",
     ["As set out in arts. 3 and 4 of the treaty.", "States agree."]),
    ("Cf. the U.N. Charter, e.g. its preamble. It applies.",
     ["Cf. the U.N. Charter, e.g. its preamble.", "It applies."]),
    ("See para. 12 and No. 5 above. Then act.", ["See para. 12 and No. 5 above.", "Then act."]),
])
def test_abbreviations_do_not_end_sentences(text, expected):
    assert sentences_of(text) == expected


def test_sentence_spans_trim_and_split_lines():
    text = "  First line.\nSecond line without stop\n\nThird? Yes! Done.  "
    assert sentences_of(text) == ["First line.", "Second line without stop", "Third?", "Yes!", "Done."]


def test_sentence_spans_respects_bounds():
    text = "Alpha one. Beta two. Gamma three."
    start = text.index("Beta")
    assert sentences_of_range(text, start, len(text)) == ["Beta two.", "Gamma three."]


def sentences_of_range(text, start, end):
    return [text[a:b] for a, b in sentence_spans(text, start, end)]


def test_sentence_ending_in_a_year_is_split():
    # The shipped fact sheet has exactly this: "... conducted a similar test in 2007. The destruction ..."
    text = "China conducted a similar test in 2007. The destruction of space debris followed."
    assert sentences_of(text) == ["China conducted a similar test in 2007.",
                                  "The destruction of space debris followed."]
