"""Following a provision that applies another instrument's article."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.corpus import load_corpus
from rag.instruments import Catalogue, PartRef

CATALOGUE = Catalogue(load_corpus(Path(__file__).resolve().parent.parent / "corpus"))


@pytest.mark.parametrize("text, expected", [
    (("dealt with in accordance with article 5 of the Agreement on the Rescue of Astronauts, the Return "
      "of Astronauts and the Return of Objects Launched into Outer Space."),
     [("rescue-agreement-1968", PartRef("article", "5"))]),
    (("Pursuant to article XI of the Treaty on Principles Governing the Activities of States in the "
      "Exploration and Use of Outer Space, including the Moon and Other Celestial Bodies"),
     [("outer-space-treaty-1967", PartRef("article", "11"))]),
    ("in accordance with paragraph 1 of this article", []),
    ("the Outer Space Treaty and article IV", []),
])
def test_cross_references_are_parts_followed_by_another_document(text, expected):
    assert CATALOGUE.cross_references(text) == expected


@pytest.mark.slow
def test_the_provision_a_passage_applies_comes_second(real_engine):
    question = "Under the Moon Agreement, how are vehicles found away from their intended location handled?"
    docs = real_engine.retrieve(question, k=5)
    assert docs[0].metadata["chunk_id"].startswith("moon-agreement-1979/article-12/")
    assert (docs[1].metadata["doc_id"], docs[1].metadata["section"]) == ("rescue-agreement-1968", "Article 5")
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.slow
@pytest.mark.parametrize("filters, field, allowed", [
    ({"doc_ids": ["moon-agreement-1979"]}, "doc_id", {"moon-agreement-1979"}),
    ({"years": [1979]}, "year", {1979}),
    ({"kinds": ["treaty"], "years": [1979, 1972]}, "year", {1979, 1972}),
])
def test_filters_keep_referenced_instruments_out(real_engine, filters, field, allowed):
    question = "Under the Moon Agreement, how are vehicles found away from their intended location handled?"
    docs = real_engine.retrieve(question, k=5, **filters)
    assert docs and {d.metadata[field] for d in docs} <= allowed
