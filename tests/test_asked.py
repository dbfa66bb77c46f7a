"""What a question asks for (rag.asked) and the names whose absence refuses it (rag.abstention)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from rag.abstention import (
    OFF_TOPIC_REASON,
    Vocabulary,
    name_terms,
    off_topic_reason,
    unanswerable_reason,
)
from rag.asked import asked_for, evidence, focus_terms, has_figure, subject_asked_about


@pytest.mark.parametrize("question,flag,value", [
    ("How many days' notice must a State give before visiting a lunar station?", "unit", "time"),
    ("At what altitude in kilometres does outer space begin?", "unit", "distance"),
    ("How much does the UN charge to register a satellite?", "unit", "money"),
    ("What collision probability should trigger an avoidance manoeuvre?", "unit", "share"),
    ("How many Depositary Governments does the Liability Convention have?", "figure", True),
    ("When did the Moon Agreement enter into force?", "date", True),
    ("What penalties does the Outer Space Treaty set for nuclear weapons in orbit?", "penalty", True),
    ("Which court decides disputes over the Outer Space Treaty?", "court", True),
    ("Will the guidelines eventually become a binding convention?", "judgement", True),
    ("How effective have the debris guidelines been?", "judgement", True),
    ("Has any country ever withdrawn from the Outer Space Treaty?", "present", True),
    ("Did the CSpO statement say anything about Russia?", "present", False),  # the past a text states
    ("Which countries have ratified the Rescue Agreement?", "states", True),
    ("Who decides whether an intentional break-up is necessary?", "actor", True),
    ("What happens if a State forgets to send the annual update?", "consequence", True),
    ("Who is the current chair of the UN space committee?", "present", True),
    ("Should mining the Moon and asteroids be banned?", "judgement", True),
    ("Is the one-year deadline for filing a claim too short?", "judgement", True),
    ("What enrichment level, in percent, counts as highly enriched uranium?", "unit", "share"),
    ("How many square kilometres may a single lunar station take up?", "unit", "distance"),
])
def test_asked_for_reads_what_is_wanted(question, flag, value):
    assert getattr(asked_for(question), flag) == value


@pytest.mark.parametrize("question", [
    "What must a State do before an experiment that could harm others' activities?",
    "Can officials from another country visit a Moon base?",
    "liability damage surface of the earth",
    "A rover built by a defence contractor will only survey the Moon. Could it be banned?",
    "Who is in charge of a satellite once it is in orbit?",  # "charge" here asks for no fee
    "What shared goal does the registration treaty name?",  # nor "shared" for a share
])
def test_plain_questions_ask_for_no_special_kind(question):
    asked = asked_for(question)
    assert not (asked.figure or asked.date or asked.penalty or asked.court or asked.judgement or asked.present)
    assert asked.unit is None
    assert asked.wanted() == "exactly what the question asks"


def test_focus_terms_name_the_thing_asked_about():
    assert focus_terms("What documents have to be attached to a claim?") == ("document",)
    assert focus_terms("What does the treaty say about cyber attacks against satellites?")[:2] == ("cyber", "attack")
    assert focus_terms("What steps does the guideline require?") == ()  # "steps" names nothing in particular


def test_a_figure_in_the_asked_unit_is_evidence_and_list_numbering_is_not():
    assert has_figure("Such withdrawal shall take effect one year from the date of receipt.", "time")
    assert not has_figure("States shall give reasonable advance notice of a visit.", "time")
    assert not has_figure("(a) States should consult; (b) they should inform.")
    assert has_figure("a subsidiary dose limit of 5 mSv in a year", "dose")


def test_references_to_articles_and_resolutions_are_not_figures():
    assert not has_figure("bearing in mind the provisions of article VIII of the Treaty and paragraph 1 of this article")
    assert not has_figure("Recalling resolution 1962 (XVIII), as set out in guideline B.1")
    assert has_figure("The Claims Commission shall be composed of three members")


def test_articles_are_not_figures_and_ordinals_and_frequencies_are():
    assert not has_figure("States should take a view on an issue of common interest.")
    assert has_figure("This Agreement shall enter into force on the thirtieth day following the deposit.", "time")
    assert has_figure("the fifth instrument of ratification")
    assert has_figure("Subsequently, at annual intervals that State shall likewise inform the Secretary-General.")


def test_evidence_is_neutral_for_what_the_question_does_not_ask():
    asked = asked_for("How many days does a State have to return astronauts?")
    found = evidence(asked, "The astronauts shall be safely and promptly returned.")
    assert found["has_unit"] == 0.0 and found["has_figure"] == 0.0
    assert found["has_penalty"] == 0.5 and found["has_court"] == 0.5
    assert evidence(asked, "They shall be returned within thirty days.")["has_unit"] == 1.0


@pytest.mark.parametrize("question,instrument", [
    ("What does the Wassenaar Arrangement say about export controls?", "Wassenaar Arrangement"),
    ("What does ISO 24113 require for debris mitigation?", "24113"),
    ("What did resolution 77/41 call on States to do?", "77/41"),
    ("What does the UK Outer Space Act 1986 require?", "1986"),
    ("What does the FCC's five-year deorbit rule require?", "FCC"),
    ("How does the maritime search and rescue (SAR) convention apply to a capsule at sea?", "SAR"),
    ("What does the IAEA-COPUOS Safety Framework say about launch approval?", "IAEA-"),
    ("Which rules of the FCC apply to small satellites?", "FCC"),
    ("What does ISO 24113 require?", "ISO"),
])
def test_instrument_names_are_told_from_a_questions_own_story(question, instrument):
    instruments, _ = name_terms(question)
    assert instrument in instruments


@pytest.mark.parametrize("question", [
    "Country A asks Country B to return parts of its rocket. Can Country B ask for proof first?",
    "A capsule lands near Kenya. Can Kenya present a claim under the Liability Convention?",
    "A country deposits its instrument of accession on 1 June 2030. From what date is it bound?",
    "Is the European Space Agency treated like a State?",
    "What does Article 22 provide?",
    # An instrument noun farther off, or used as a verb, makes no acronym a text's name.
    "Who do I report GPS interference to?",
    "A mission run by the European Space Agency breaches an obligation under the treaty. Is only ESA responsible?",
    "Suppose four governments, including the UK, USSR and US, had ratified the treaty. Was that enough?",
])
def test_names_in_a_scenario_do_not_refuse_it(question):
    vocabulary = Vocabulary(["States Parties shall consult. The Liability Convention applies to claims."])
    assert unanswerable_reason(question, vocabulary) is None


def test_an_identifier_inside_a_document_symbol_is_mentioned():
    vocabulary = Vocabulary(["see the report (A/68/189) of the Group"])
    assert vocabulary.mentions("68/189")


def test_an_acronym_of_a_name_the_corpus_spells_out_is_mentioned():
    vocabulary = Vocabulary([("the report of the Group of Governmental Experts on Transparency and "
                              "Confidence-Building Measures in Outer Space Activities, and the standards of the "
                              "Consultative Committee for Space Data Systems")])
    assert all(vocabulary.mentions(a) for a in ("GGE", "TCBM", "CCSDS"))
    assert unanswerable_reason("What does the GGE report recommend?", vocabulary) is None
    # An acronym of no name the corpus holds still names a text it lacks.
    assert not vocabulary.mentions("FCC")
    assert unanswerable_reason("What does the FCC rule on deorbiting say?", vocabulary) == \
        "the corpus does not mention \u201cFCC\u201d"


def test_an_extended_vocabulary_mentions_what_either_part_holds_without_copying_it():
    corpus = Vocabulary(["Liability for damage caused by space objects"])
    extended = corpus.extended(["Outer Space Treaty", "OST"])
    assert all(extended.mentions(t) for t in ("liability for damage", "outer space treaty", "ost", "space objects"))
    assert not extended.mentions("objects outer")  # the parts are separate texts, not one run of words
    assert not extended.mentions("artemis accords")
    assert extended._texts[0] is corpus._texts[0]  # the corpus's text is shared (300 MB at 1M passages)


@pytest.mark.parametrize("question, quotes, unstated", [
    # A figure in the unit asked for: the answer may give it, so it is not denied.
    ("How many years had the CSpO initiative been running?",
     ["This year, the CSpO Initiative celebrates its ten-year anniversary."], "exactly what the question asks"),
    ("How many years had the CSpO initiative been running?",
     ["The Principals met in Florence."], "the figure asked for (in units of time)"),
    # A year is not a count, nor is "one of" a figure when no unit is asked for.
    ("How many pieces of debris did the November 2021 test create?",
     ["This addresses one of the most pressing threats, as Russia's November 2021 test showed."],
     "the figure asked for"),
    ("How much funding did the partners commit?",
     ["The Board met from December 3-5, 2024, and took note of report A/68/189."], "the figure asked for"),
    ("How many days must a country wait?",
     ["DONE at London, the twenty-second day of April, one thousand nine hundred and sixty-eight."],
     "the figure asked for (in units of time)"),
    ("How many pieces of debris did the test create?",
     ["The test created over 1,500 pieces of trackable orbital debris."], "exactly what the question asks"),
    # A date or a time limit, not any "before" or "following".
    ("When must the launching State inform the Secretary-General?",
     ["It shall inform the Secretary-General as soon as possible."], "exactly what the question asks"),
    ("When must the launching State inform the Secretary-General?",
     ["Following the launch, the State may inform the Secretary-General."], "the date or deadline asked for"),
    ("When must an operator move its satellite?",
     ["With due consideration to article VI of the 1967 Outer Space Treaty, States should encourage it."],
     "the date or deadline asked for"),
    ("When was the Rescue Agreement signed?",
     ["DONE at London, the twenty-second day of April, one thousand nine hundred and sixty-eight."],
     "exactly what the question asks"),
    ("Which countries attended the meeting?",
     ["Representatives from Australia, Canada and France attended."], "exactly what the question asks"),
    # Named before a figure, and never read loosely from a quote.
    ("What is the fine for an unregistered launch?",
     ["A launching State shall be absolutely liable to pay compensation."],
     "a penalty, sanction or means of enforcement"),
    ("How many countries have ratified the Moon Agreement so far?",
     ["This Agreement shall enter into force on the thirtieth day."],
     "the present state of affairs (it is a fixed set of texts, with no current data)"),
])
def test_a_partial_answer_denies_only_what_no_quote_holds(question, quotes, unstated):
    asked = asked_for(question)
    assert asked.unstated(quotes) == unstated
    assert asked.unstated([]) == asked.wanted()


def test_an_off_topic_question_about_today_is_refused_for_asking_about_the_present():
    reason = off_topic_reason("How many satellites are in orbit today?")
    assert reason.startswith("the question asks about the present or the future (\u201ctoday\u201d)")
    assert off_topic_reason("What is the weather like right now?").endswith("with no current data")
    assert off_topic_reason("Recommend a good science fiction novel") == OFF_TOPIC_REASON
    assert off_topic_reason("Is the knowledge of the crew important?") == OFF_TOPIC_REASON  # "now" as a word only


_OPINION_REASON = "the question asks for an opinion or a forecast"


@pytest.mark.parametrize("question, words", [
    ("Is the moon treaty basically a failure?", "basically a failure"),
    ("Are nuclear power sources in space too dangerous to allow?", "too dangerous"),
    ("We're planning a lunar base. Are nuclear reactors in space really worth the risk?", "worth the risk"),
    ("Do you think the major space powers will ever join the Moon Agreement?", "Do you think"),
    ("How likely is it that India will join the CSpO Initiative within the next decade?", "How likely"),
    ("Will debris collisions make low Earth orbit unusable by 2040?", "by 2040"),
    ("Should the Outer Space Treaty be amended to ban all weapons in orbit?", "Should \u2026 be amended"),
    ("should it be legal for billionaires to own parts of the moon", "should \u2026 be legal"),
    ("Which protects astronauts better, the OST or the rescue agreement?", "Which protects astronauts better"),
    ("Debate on a moon mining ban: who has the stronger argument under the Moon Agreement?",
     "who has the stronger argument"),
    ("Was it wise for the United States to announce its test pledge alone?", "wise"),
    ("Is the CSpO Initiative a success?", "a success"),
    ("Is the Liability Convention a fair deal for small states?", "a fair deal"),
    ("Will the debris guidelines be enough to stop collisions in low orbit?", "be enough to stop"),
    ("Would a claims commission be likely to rule for the smaller state?", "likely to rule"),
])
def test_a_question_asking_for_an_opinion_or_a_forecast_is_refused(question, words):
    reason = unanswerable_reason(question, Vocabulary(["Outer Space Treaty, Moon Agreement, CSpO Initiative"]))
    assert reason == (f"{_OPINION_REASON} (\u201c{words}\u201d), which the corpus does not give: "
                      "it holds the texts themselves")


@pytest.mark.parametrize("question", [
    "What should operators do with a satellite at the end of its mission?",  # what the texts recommend
    "Should very small satellites be made easier to track?",
    "Why did countries think compulsory logging of satellites was a good idea?",  # a reason a text gives
    "How likely may a truly serious radiation accident from a nuclear satellite be allowed to be?",
    "If a State has reason to believe an experiment is likely to cause harmful interference, what must it do?",
    "Would the Liability Convention cover damage a rocket does to citizens of the launching country?",
    "Are obsolete satellites counted as space debris?",  # an adjective of the thing asked about
    "Is it fair to say that the Outer Space Treaty bans nuclear weapons in orbit?",
    "Who has the stronger claim to compensation under the Liability Convention, a State or its citizens?",
    "What must a State do when a launch is a failure and debris falls abroad?",
])
def test_questions_about_what_the_texts_recommend_or_allow_are_not_opinions(question):
    reason = unanswerable_reason(question, Vocabulary(["Liability Convention"]))
    assert reason is None or not reason.startswith(_OPINION_REASON)


def test_the_opinion_rule_refuses_no_answerable_training_question():
    """The rule stays narrow: on every question file of ``training/`` it refuses no answerable
    question, and catches at least a third of the opinion-or-prediction near misses."""
    vocabulary = Vocabulary([""])
    rows = [json.loads(line) for path in sorted((ROOT / "training").glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines()]
    refused = [r for r in rows if (unanswerable_reason(r["question"], vocabulary) or "").startswith(_OPINION_REASON)]
    assert [r["question"] for r in refused if r.get("answerable")] == []
    opinions = [r for r in rows if r.get("kind") == "opinion-or-prediction"]
    assert len(opinions) > 200
    assert sum(r.get("kind") == "opinion-or-prediction" for r in refused) >= len(opinions) / 3


@pytest.mark.parametrize("question,subject", [
    ("What does the Florence statement say about China?", "China"),
    ("Does the 1963 Declaration say anything about protecting the Moon from contamination?",
     "protecting the Moon from contamination"),
    ("what do the debris guidelines say on mega-constellations", "mega-constellations"),
    ("Who pays for damage on the ground?", None),
    ("What does the treaty say about it when a crew lands abroad and the launching State cannot be found?", None)])
def test_the_subject_a_question_asks_about(question, subject):
    assert subject_asked_about(question) == subject
