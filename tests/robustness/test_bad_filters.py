"""Filters of the wrong type or value are refused with a ValueError that says what to send,
never a TypeError or OverflowError, and never silently changed into another value."""

from __future__ import annotations

import math

import pytest

from rag.validation import InvalidQuestion

QUESTION = "What does the Outer Space Treaty say about nuclear weapons?"

BAD_FILTERS = {
    "doc_ids float": ({"doc_ids": 5.5}, "document"),
    "doc_ids int": ({"doc_ids": [7]}, "document"),
    "doc_ids dict": ({"doc_ids": {"a": 1}}, "document"),
    "kinds dict item": ({"kinds": [{}]}, "kind"),
    "kinds list item": ({"kinds": [["treaty"]]}, "kind"),
    "kinds None item": ({"kinds": [None]}, "kind"),
    "years inf": ({"years": [math.inf]}, "year"),
    "years nan": ({"years": [math.nan]}, "year"),
    "years fraction": ({"years": [1967.9]}, "year"),
    "years huge": ({"years": [10**30]}, "year"),
    "years bool": ({"years": [True]}, "year"),
    "years dict": ({"years": [{}]}, "year"),
    "years word": ({"years": ["nineteen"]}, "year"),
    "years float alone": ({"years": 1967.5}, "year"),
}


@pytest.mark.parametrize("method", ["retrieve", "ask"])
@pytest.mark.parametrize("name", list(BAD_FILTERS))
def test_bad_filter_is_a_value_error_naming_the_filter(fake_engine, method, name):
    filters, field = BAD_FILTERS[name]
    with pytest.raises(ValueError) as info:
        getattr(fake_engine, method)(QUESTION, **filters)
    assert isinstance(info.value, InvalidQuestion)
    message = str(info.value)
    assert field in message.lower() and message.endswith("."), message


@pytest.mark.parametrize("years", [[1967], 1967, ["1967"], [1967.0]])
def test_whole_years_in_any_plain_form_are_accepted(fake_engine, years):
    docs = fake_engine.retrieve(QUESTION, k=3, years=years)
    assert docs and {d.metadata["year"] for d in docs} == {1967}


def test_a_fractional_year_is_not_rounded_to_a_real_one(fake_engine):
    with pytest.raises(InvalidQuestion, match="1967.9"):
        fake_engine.retrieve(QUESTION, years=[1967.9])


def test_single_text_values_are_accepted(fake_engine):
    docs = fake_engine.retrieve(QUESTION, k=2, doc_ids="outer-space-treaty-1967", kinds="treaty")
    assert docs and all(d.metadata["doc_id"] == "outer-space-treaty-1967" for d in docs)
