"""Term links: question words tied to provision words by the question set, and the lexical
scores that use them."""

from __future__ import annotations

import numpy as np
import pytest

from rag.learn.questions import Question
from rag.learn.term_links import (
    MIN_QUESTIONS,
    TERM_LINKS_FILE,
    learn_term_links,
    read_term_links,
    write_term_links,
)
from rag.lexical import LexicalIndex, tokenize

QUOTE = "The activities of non-governmental entities shall require authorization by the appropriate State."
OTHER = "A launching State shall be absolutely liable to pay compensation for damage on the surface of the earth."


def _questions(n_company: int) -> list[Question]:
    asked = [Question(f"c{i}", "plain", f"Do private companies number {i} need a permit {1990 + i}?", True,
                      "ost", QUOTE) for i in range(n_company)]
    other = [Question(f"o{i}", "plain", f"Who pays when wreckage lands on a house, case {i}?", True, "liab", OTHER)
             for i in range(40)]
    return asked + other + [Question("u1", "unanswerable", "Do companies pay taxes on the Moon?", False)]


def test_question_words_link_to_the_provision_words_that_follow_them():
    links = learn_term_links(_questions(MIN_QUESTIONS))
    company, = tokenize("companies")
    assert set(links[company]) <= set(tokenize(QUOTE)) and len(links[company]) == 2
    assert tokenize("wreckage")[0] not in links  # its provision's words follow most questions: no lift
    assert not any(k.isdigit() or any(t.isdigit() for t in v) for k, v in links.items())  # words only


def test_too_few_questions_make_no_link():
    assert tokenize("companies")[0] not in learn_term_links(_questions(MIN_QUESTIONS - 1))


def test_a_common_question_word_is_not_linked_to_a_rare_word_a_few_of_its_quotes_share():
    rare = "Previous forum decisions are kept."
    asked = [Question(f"u{i}", "plain", f"What does the UN say, case {i}?", True, "ost", rare if i < 3 else QUOTE)
             for i in range(40)]
    filler = [Question(f"f{i}", "plain", f"Who registers object {i}?", True, "reg", QUOTE) for i in range(300)]
    un, = tokenize("UN")
    assert not set(tokenize(rare)) & set(learn_term_links(asked + filler).get(un, []))


def test_links_are_stored_in_a_stable_order(tmp_path):
    links = learn_term_links(_questions(5))
    write_term_links(links, tmp_path / "a.json")
    write_term_links(learn_term_links(list(reversed(_questions(5)))), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert read_term_links(tmp_path / "a.json") == links
    assert read_term_links(tmp_path / TERM_LINKS_FILE) == {}  # a model from before links


@pytest.fixture(scope="module")
def lexical():
    return LexicalIndex([QUOTE, OTHER, "States shall register space objects in a registry."])


def test_linked_words_score_at_their_weight_and_the_index_is_not_changed(lexical):
    links = {tokenize("companies")[0]: tokenize("entities authorization")}
    question = "Do private companies need a permit?"
    assert not lexical.scores(question).any()
    linked = lexical.with_links(links, 0.3)
    scores = linked.scores(question)
    assert scores[0] > 0 and scores[1] == scores[2] == 0
    assert scores[0] == pytest.approx(0.3 * lexical.scores("entities authorization")[0])
    assert np.allclose(linked.scores_of(question, np.array([0, 1, 2])), scores)
    assert list(linked.top(question, 5)) == [0]
    assert not lexical.scores(question).any()
    assert not lexical.with_links(links, 0.0).scores(question).any()


def test_a_word_already_asked_is_not_counted_twice(lexical):
    links = {tokenize("companies")[0]: tokenize("entities")}
    question = "companies entities"
    assert lexical.with_links(links, 0.5).scores(question)[0] == pytest.approx(lexical.scores(question)[0])


@pytest.mark.slow
def test_the_engine_searches_with_the_shipped_links(real_engine):
    if real_engine.retriever.query_embedder is real_engine.retriever.embedder:
        pytest.skip("the tuned model is not in use here")
    folder = real_engine.settings.tuned_model_dir
    links = read_term_links(folder / TERM_LINKS_FILE)
    assert links and real_engine.retriever.lexical._links
    question = "Do private companies need government permission to launch satellites?"
    plain = real_engine.index.lexical.scores(question)
    assert (real_engine.retriever.lexical.scores(question) >= plain).all()
