"""A model reply is shown as a checked answer only when no sentence contradicts the passage it
cites (negation or modality flipped: "shall"/"shall not", "allows"/"prohibits", "shall"/"may"),
none carries a link or contact detail its passages do not have, and the reply is not huge.
Driven through the real OpenAI client against a scripted server."""

from __future__ import annotations

import pytest
from fake_openai_server import FakeOpenAIServer, Reply
from test_llm_mode import LIAB, OST, QUESTION, REG, S_LIAB, S_OST, S_REG, embed, make_chunk

from rag.citations import Answer, Citation
from rag.llm import llm_answer, make_chat_model
from rag.llm_checks import MAX_REPLY_CHARS, contradicts, unsupported_contact
from rag.retrieval import Hit
from rag.settings import Settings

CONTACT = ("States should report launches to the Office for Outer Space Affairs (www.unoosa.org, "
           "oosa-registry@un.org, +43 1 26060 4950) as soon as practicable.")


@pytest.fixture
def hits() -> list[Hit]:
    chunks = [make_chunk(1, "Outer Space Treaty", 1967, "Article IV", OST),
              make_chunk(2, "Liability Convention", 1972, "Article II", LIAB),
              make_chunk(3, "Registration Convention", 1975, "Article II", REG),
              make_chunk(4, "Registration practice", 2007, "Paragraph 2", CONTACT)]
    return [Hit(c, 0.9 - 0.1 * i, 0.5, 0.5) for i, c in enumerate(chunks)]


@pytest.fixture
def fallback(hits) -> Answer:
    return Answer(question=QUESTION, text=OST[:60] + " [1]",
                  citations=[Citation.from_chunk(1, hits[0].chunk, 0, 60, hits[0].score)], abstained=False)


@pytest.fixture(scope="module")
def server():
    with FakeOpenAIServer() as srv:
        yield srv


def ask(server, hits, fallback, reply: str, stream: bool = False) -> tuple[Answer, list[str]]:
    server.script(Reply(reply))
    model = make_chat_model(Settings(llm_provider="openai", llm_base_url=server.base_url,
                                     llm_model="fake", llm_timeout_s=20))
    tokens: list[str] = []
    answer = llm_answer(model, QUESTION, hits, embed, fallback, stream_callback=tokens.append if stream else None)
    return answer, tokens


def assert_refused(answer: Answer, fallback: Answer, bad: str) -> None:
    """The bad sentence is not shown; a notice says something was removed or the model failed."""
    assert bad.split(" [")[0] not in answer.text
    assert answer.notice, "a refused sentence must leave a notice"
    if answer.mode == "extractive":
        assert answer.text == fallback.text


CONTRADICTIONS = {
    "allows what the treaty bans": "The Outer Space Treaty allows States to place nuclear weapons in orbit [1].",
    "may place": "States Parties may place objects carrying nuclear weapons in orbit around the Earth [1].",
    "shall not be liable": "A launching State shall not be liable to pay compensation for damage caused by "
                           "its space object on the surface of the Earth [2].",
    "prohibited from registering": "The launching State is prohibited from registering the space object "
                                   "in an appropriate registry [3].",
    "shall becomes may": "When a space object is launched into earth orbit, the launching State may register "
                         "the space object in an appropriate registry [3].",
    "should becomes must": "States must report launches to the Office for Outer Space Affairs as soon as "
                           "practicable [4].",
}


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
@pytest.mark.parametrize("name", list(CONTRADICTIONS))
def test_a_sentence_that_contradicts_its_passage_is_not_shown(server, hits, fallback, name, stream):
    bad = CONTRADICTIONS[name]
    answer, _ = ask(server, hits, fallback, f"{S_REG} [3]. {bad}", stream)
    assert_refused(answer, fallback, bad)
    assert answer.mode == "llm" and S_REG in answer.text  # the faithful sentence stays
    assert "contradict" in answer.notice
    alone, _ = ask(server, hits, fallback, bad, stream)
    assert alone.mode == "extractive" and alone.text == fallback.text


FAITHFUL = [
    f"{S_OST} [1].",
    "The Outer Space Treaty prohibits placing objects carrying nuclear weapons in orbit around the Earth [1].",
    "States Parties must not place nuclear weapons or other weapons of mass destruction in orbit [1].",
    f"{S_LIAB} [2].",
    "The launching State must register the space object by an entry in an appropriate registry [3].",
    "States should report launches to the Office for Outer Space Affairs as soon as practicable [4].",
    "Launches should be reported at www.unoosa.org or to oosa-registry@un.org [4].",
]


@pytest.mark.parametrize("reply", FAITHFUL)
def test_faithful_paraphrases_are_kept(server, hits, fallback, reply):
    answer, _ = ask(server, hits, fallback, reply)
    assert answer.mode == "llm" and answer.notice == "", (answer.text, answer.notice)


INSERTED_CONTACTS = {
    "url": "Report it at https://unoosa-registry.example/login as soon as practicable",
    "bare domain": "Report it through secure-launch-registry.com as soon as practicable",
    "www": "Report it at www.space-registry-help.net as soon as practicable",
    "email": "Report it to registry-desk@unoosa-help.org as soon as practicable",
    "phone": "Report it by calling +1 202 555 0143 as soon as practicable",
    "markdown link": "Report it [here](http://evil.example/form) as soon as practicable",
}


@pytest.mark.parametrize("name", list(INSERTED_CONTACTS))
def test_links_and_contact_details_not_in_the_passages_are_not_shown(server, hits, fallback, name):
    bad = f"States should report launches to the Office for Outer Space Affairs. {INSERTED_CONTACTS[name]} [4]."
    answer, _ = ask(server, hits, fallback, f"{S_REG} [3]. {bad}")
    shown = answer.text + " ".join(c.quote for c in answer.citations)
    for marker in ("example", ".com", ".net", "help.org", "555", "evil"):
        assert marker not in shown, shown
    assert answer.notice


@pytest.mark.parametrize("stream", [False, True], ids=["invoke", "stream"])
def test_a_12_mb_reply_is_refused(server, hits, fallback, stream):
    word = "x" * 999 + " "
    answer, tokens = ask(server, hits, fallback, f"{S_OST} [1]. " + word * 12_000, stream)
    assert answer.mode == "extractive" and answer.text == fallback.text
    assert "too long" in answer.notice
    assert sum(map(len, tokens)) <= MAX_REPLY_CHARS + 1000  # streaming stopped at the cap


# -- the checks on their own ------------------------------------------------------------------
@pytest.mark.parametrize("claim, passage", [
    ("The use of military personnel for scientific research on celestial bodies is allowed.",
     ("The use of military personnel for scientific research or for any other peaceful purposes "
     "shall not be prohibited.")),
    ("Outer space is not subject to national appropriation by claim of sovereignty.",
     ("Outer space, including the moon and other celestial bodies, is not subject to national "
     "appropriation by claim of sovereignty, by means of use or occupation, or by any other means.")),
    ("Exploration of outer space may be carried out freely by all States.",
     "Outer space shall be free for exploration and use by all States without discrimination of any kind."),
    ("Astronauts are envoys of mankind.", "States Parties shall regard astronauts as envoys of mankind."),
])
def test_paraphrases_that_keep_the_meaning_pass(claim, passage):
    assert contradicts(claim, [passage]) is None


@pytest.mark.parametrize("claim, passage", [
    ("Military bases on celestial bodies are allowed.",
     "The establishment of military bases, installations and fortifications on celestial bodies shall be forbidden."),
    ("Outer space is subject to national appropriation by claim of sovereignty.",
     "Outer space is not subject to national appropriation by claim of sovereignty."),
    ("States shall not regard astronauts as envoys of mankind.",
     "States Parties shall regard astronauts as envoys of mankind."),
])
def test_inversions_are_caught(claim, passage):
    assert contradicts(claim, [passage])


def test_contact_details_already_in_the_passage_pass():
    assert unsupported_contact("Write to oosa-registry@un.org or call +43 1 26060 4950.", [CONTACT]) is None
    assert unsupported_contact("Write to someone@else.org.", [CONTACT])
