"""ui/handlers.py over the real engine: what each event returns, without a server."""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
from pathlib import Path

import gradio as gr
import pytest

from rag.citations import Answer
from ui.feedback import FeedbackLog
from ui.handlers import ERROR_MESSAGE, Handlers
from ui.render import answer_markdown, escape_markdown, section_anchor

pytestmark = pytest.mark.slow

RESCUE_Q = "What does the Rescue Agreement say about space objects that land in another country?"
RESCUE_FOLLOW_UP = "Who pays the expenses of recovering them?"
LIABILITY_Q = "Who is liable for damage caused by a space object on the ground?"
ASTRONAUTS_Q = "What does the Rescue Agreement say about astronauts in distress?"
OFF_TOPIC_Q = "What is the capital of France?"


@pytest.fixture
def handlers(ui_engine, tmp_path, monkeypatch) -> Handlers:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its export folder goes in tmp_path
    return Handlers(ui_engine, FeedbackLog(tmp_path / "feedback.jsonl"))


def ask(handlers: Handlers, question, chat=None, answers=None, doc_ids=None, kinds=None, years=None,
        mode="extractive", k=5):
    """The handler called as the Ask button calls it; the six outputs as a dict."""
    out = handlers.ask(question, chat if chat is not None else [], answers if answers is not None else [],
                       doc_ids, kinds, years, mode, k)
    assert isinstance(out, tuple) and len(out) == 6
    return dict(zip(("chat", "sources", "status", "answers", "question", "markdown"), out))


@pytest.fixture(scope="module")
def rescue_turn(ui_engine, tmp_path_factory):
    """One answered turn, shared by the tests that only read it."""
    base = tmp_path_factory.mktemp("rescue-turn")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tempfile, "tempdir", str(base))
        h = Handlers(ui_engine, FeedbackLog(base / "unused.jsonl"))
    return ask(h, RESCUE_Q)


def cited_docs(answer: Answer) -> set[str]:
    return {c.doc_id for c in answer.citations}


def listed_docs(answer: Answer) -> set[str]:
    return {c.doc_id for c in (answer.citations or answer.related)}


# --------------------------------------------------------------------------------------
# ask
# --------------------------------------------------------------------------------------
def test_ask_returns_chat_sources_status_state_and_markdown(rescue_turn):
    out = rescue_turn
    assert [m["role"] for m in out["chat"]] == ["user", "assistant"]
    assert out["chat"][0]["content"] == escape_markdown(RESCUE_Q)
    assert "](#src-1-1)" in out["chat"][1]["content"]
    assert 'id="src-1-1"' in out["sources"]
    assert len(out["answers"]) == 1
    answer = out["answers"][0]
    assert isinstance(answer, Answer) and answer.question == RESCUE_Q and not answer.abstained
    assert out["status"].startswith(f"Answered with {len(answer.citations)} cited passage(s).")
    assert out["question"] == ""  # the box is cleared for the next question
    assert "References:" in out["markdown"]
    assert out["markdown"] == answer.to_markdown()
    for c in answer.citations:
        assert f'id="src-1-{c.n}"' in out["sources"]


def test_ask_does_not_mutate_its_inputs(handlers):
    chat, answers = [], []
    out = ask(handlers, RESCUE_Q, chat, answers)
    assert chat == [] and answers == []
    assert len(out["chat"]) == 2 and len(out["answers"]) == 1


def test_second_turn_links_to_its_own_sources_and_keeps_the_first(handlers, rescue_turn):
    first = rescue_turn
    chat_before = copy.deepcopy(first["chat"])
    second = ask(handlers, LIABILITY_Q, first["chat"], first["answers"])
    assert first["chat"] == chat_before
    assert len(second["chat"]) == 4 and len(second["answers"]) == 2
    assert second["chat"][:2] == first["chat"]
    assert "](#src-2-1)" in second["chat"][3]["content"]
    assert "#src-1-" not in second["chat"][3]["content"]
    sources = second["sources"]
    assert 'id="src-2-1"' in sources and 'id="src-1-1"' in sources  # old markers still resolve
    assert sources.index('data-turn="2"') < sources.index('data-turn="1"')  # newest first


def test_follow_up_uses_the_conversation(handlers):
    first = ask(handlers, RESCUE_Q)
    second = ask(handlers, RESCUE_FOLLOW_UP, first["chat"], first["answers"])
    answer = second["answers"][-1]
    assert not answer.abstained, answer.text
    assert "rescue-agreement-1968" in cited_docs(answer)
    assert answer.citations[0].doc_id == "rescue-agreement-1968"


def test_follow_up_passes_the_earlier_turns_as_history(handlers, monkeypatch):
    first = ask(handlers, ASTRONAUTS_Q)
    seen = {}
    real_ask = handlers.engine.ask

    def spy(question, **kwargs):
        seen.update(kwargs, question=question)
        return real_ask(question, **kwargs)

    monkeypatch.setattr(handlers.engine, "ask", spy)
    second = ask(handlers, "Who pays the expenses of returning them?", first["chat"], first["answers"])
    assert seen["history"] == [{"role": "user", "content": ASTRONAUTS_Q},
                               {"role": "assistant", "content": first["answers"][0].text}]
    assert "rescue-agreement-1968" in cited_docs(second["answers"][-1])


def test_document_filter_restricts_citations(handlers, ui_engine):
    unfiltered = ui_engine.ask(ASTRONAUTS_Q)
    assert "rescue-agreement-1968" in cited_docs(unfiltered)  # so the filter has something to remove
    out = ask(handlers, ASTRONAUTS_Q, doc_ids=["liability-convention-1972"])
    answer = out["answers"][0]
    assert listed_docs(answer) == {"liability-convention-1972"}
    assert "Rescue Agreement (1968)" not in out["sources"]


def test_document_filter_on_a_liability_question(handlers):
    answer = ask(handlers, LIABILITY_Q, doc_ids=["liability-convention-1972"])["answers"][0]
    assert not answer.abstained
    assert cited_docs(answer) == {"liability-convention-1972"}


def test_kind_and_year_filters_restrict_citations(handlers, ui_engine):
    kinds = {d.doc_id: d.kind for d in ui_engine.corpus.documents}
    years = {d.doc_id: d.year for d in ui_engine.corpus.documents}
    assert {kinds[d] for d in cited_docs(ui_engine.ask(LIABILITY_Q))} == {"treaty"}  # what the filter removes
    by_kind = ask(handlers, LIABILITY_Q, kinds=["statement"])["answers"][0]
    assert listed_docs(by_kind) and {kinds[d] for d in listed_docs(by_kind)} == {"statement"}
    # the web client sends the checked years as strings
    by_year = ask(handlers, LIABILITY_Q, years=["1968"])["answers"][0]
    assert listed_docs(by_year) and {years[d] for d in listed_docs(by_year)} == {1968}


@pytest.mark.parametrize("question", ["x" * 2001, "What is\x00 Article IV?",
                                      "Article \x1b[31mIV\x1b[0m?", "bell\x07"], ids=[
    "2001-chars", "nul", "ansi-escape", "bell"])
def test_invalid_question_is_a_warning_and_changes_nothing(handlers, rescue_turn, question):
    chat, answers = copy.deepcopy(rescue_turn["chat"]), list(rescue_turn["answers"])
    out = ask(handlers, question, chat, answers)
    assert out["status"].startswith("⚠️"), out["status"]
    assert "Traceback" not in out["status"]
    assert out["chat"] == rescue_turn["chat"]
    assert out["answers"] == rescue_turn["answers"]
    assert out["sources"] == rescue_turn["sources"]
    assert out["question"] == question  # kept, to be corrected
    assert out["markdown"] == ""


@pytest.mark.parametrize("question", ["", "   \n "], ids=["empty", "blank"])
def test_empty_question_before_any_answer_is_a_warning(handlers, question):
    out = ask(handlers, question)
    assert out["status"].startswith("⚠️") and out["chat"] == [] and out["answers"] == []


@pytest.mark.parametrize("question", ["", "   \n "], ids=["empty", "blank"])
def test_empty_question_after_an_answer_changes_nothing(handlers, rescue_turn, question):
    """Defect 2: a second quick click on Ask (the box is empty by then) replaced the answer's
    status with "The question is empty"."""
    out = handlers.ask(question, rescue_turn["chat"], rescue_turn["answers"], None, None, None,
                       "extractive", 5)
    assert all(value == gr.skip() for value in out)


def test_too_long_question_says_how_long(handlers):
    out = ask(handlers, "x" * 2001)
    assert out["status"].startswith("⚠️") and "2,001" in out["status"] and "2,000" in out["status"]
    assert out["chat"] == [] and out["answers"] == []


def test_question_of_exactly_the_limit_is_accepted(handlers):
    question = ("Who is liable for damage caused by a space object on the ground? " * 40)[:2000]
    out = ask(handlers, question)
    assert not out["status"].startswith("⚠️"), out["status"]
    assert len(out["answers"]) == 1


@pytest.mark.parametrize("kwargs", [{"mode": "llm"}, {"k": 101}], ids=["unavailable-mode", "k-too-big"])
def test_invalid_options_are_warnings(handlers, kwargs):
    out = ask(handlers, LIABILITY_Q, **kwargs)
    assert out["status"].startswith("⚠️") and out["chat"] == [] and out["answers"] == []


def test_engine_failure_shows_the_generic_message_only(handlers, rescue_turn, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("boom at /srv/secret/index.faiss")

    monkeypatch.setattr(handlers.engine, "ask", broken)
    with caplog.at_level(logging.ERROR, logger="ui.handlers"):
        out = ask(handlers, LIABILITY_Q, copy.deepcopy(rescue_turn["chat"]), list(rescue_turn["answers"]))
    assert out["status"] == f"⚠️ {ERROR_MESSAGE}"
    everything = json.dumps([out["status"], out["chat"], out["sources"], out["markdown"]])
    assert "boom" not in everything and "secret" not in everything and "Traceback" not in everything
    assert out["chat"] == rescue_turn["chat"] and out["answers"] == rescue_turn["answers"]
    assert out["question"] == LIABILITY_Q and out["markdown"] == ""
    # "Details are in the server log": the traceback is logged
    records = [r for r in caplog.records if r.exc_info and "boom" in str(r.exc_info[1])]
    assert records, "the failure was not logged with its traceback"


def test_abstention_is_reported(handlers):
    out = ask(handlers, OFF_TOPIC_Q)
    assert "Not found" in out["status"]
    answer = out["answers"][0]
    assert answer.abstained and not answer.citations
    assert out["chat"][1]["content"].startswith("**Not found in the corpus.**")
    assert "Related passages (not an answer)" in out["sources"]
    assert "References:" not in out["markdown"]


def test_conversation_follows_a_cleared_chat(handlers, rescue_turn, monkeypatch):
    """The chat's own trash button (or an API client) sends an empty chat with the old state:
    the conversation starts over instead of numbering from the cleared turns."""
    seen = {}
    real_ask = handlers.engine.ask

    def spy(question, **kwargs):
        seen.update(kwargs)
        return real_ask(question, **kwargs)

    monkeypatch.setattr(handlers.engine, "ask", spy)
    out = ask(handlers, LIABILITY_Q, [], rescue_turn["answers"])
    assert seen["history"] == []
    assert [a.question for a in out["answers"]] == [LIABILITY_Q]
    assert "](#src-1-1)" in out["chat"][1]["content"]
    assert 'data-turn="2"' not in out["sources"] and RESCUE_Q not in out["sources"]


def test_ask_stream_in_extractive_mode_yields_the_answer_once(handlers):
    outputs = list(handlers.ask_stream(LIABILITY_Q, [], [], None, None, None, "extractive", 5))
    assert len(outputs) == 1
    _chat, sources, status, answers, question, markdown = outputs[0]
    assert status.startswith("Answered with") and len(answers) == 1 and question == ""
    assert 'id="src-1-1"' in sources and "References:" in markdown


def test_ask_stream_with_an_unavailable_mode_is_a_warning(handlers):
    assert not handlers.engine.llm_available
    outputs = list(handlers.ask_stream(LIABILITY_Q, [], [], None, None, None, "llm", 5))
    assert len(outputs) == 1 and outputs[0][2].startswith("⚠️") and outputs[0][0] == []


# --------------------------------------------------------------------------------------
# clear, sources
# --------------------------------------------------------------------------------------
def test_the_export_folder_goes_with_the_handlers(ui_engine, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    handlers = Handlers(ui_engine, FeedbackLog(tmp_path / "feedback.jsonl"))
    folder = handlers._export_dir
    assert folder.is_dir()
    handlers.close()  # also run when the handlers are collected or the process exits
    assert not folder.exists()


def test_the_chat_trash_icon_resets_all_but_the_question_being_typed(handlers):
    *reset, download = handlers.clear_chat()
    cleared = handlers.clear()
    assert reset == [*cleared[:4], cleared[5]]  # all but the question box
    assert download.visible is False and download.value is None


def test_clear_resets_everything(handlers):
    chat, sources, status, answers, question, markdown, download = handlers.clear()
    assert chat == [] and answers == [] and status == "" and question == "" and markdown == ""
    assert sources == handlers.sources([]) and "src-" not in sources
    assert download.visible is False and download.value is None  # the old export goes too


# --------------------------------------------------------------------------------------
# vote
# --------------------------------------------------------------------------------------
def read_lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_vote_appends_a_jsonl_line(handlers, rescue_turn):
    path = handlers.feedback.path
    answers = rescue_turn["answers"]
    assert handlers.vote(answers, 1, True).startswith("Thank you")
    assert handlers.vote(answers, [1, 0], False).startswith("Thank you")  # (row, column) form
    lines = read_lines(path)
    assert len(lines) == 2
    up, down = lines
    answer = answers[0]
    assert up["question"] == RESCUE_Q and up["answer"] == answer.text and up["vote"] == "up"
    assert down["vote"] == "down"
    assert up["citations"] == [{"n": c.n, "chunk_id": c.chunk_id, "quote": c.quote} for c in answer.citations]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", up["time"])
    assert up["abstained"] is False


def test_vote_rates_the_answer_of_the_clicked_message(handlers, rescue_turn):
    second = ask(handlers, LIABILITY_Q, rescue_turn["chat"], rescue_turn["answers"])
    handlers.vote(second["answers"], 3, True)  # message 3 = the second answer
    assert [line["question"] for line in read_lines(handlers.feedback.path)] == [LIABILITY_Q]


@pytest.mark.parametrize("index", [4, -1, None, "1", [7, 0]])
def test_vote_on_a_message_without_answer_is_refused(handlers, rescue_turn, index):
    status = handlers.vote(rescue_turn["answers"], index, True)
    assert status.startswith("⚠️")
    assert read_lines(handlers.feedback.path) == []


def test_vote_without_answers_is_refused(handlers):
    assert handlers.vote([], 1, True).startswith("⚠️")
    assert not handlers.feedback.path.exists()


# --------------------------------------------------------------------------------------
# export
# --------------------------------------------------------------------------------------
def test_export_writes_the_conversation_as_markdown(handlers, rescue_turn, ui_engine):
    second = ask(handlers, LIABILITY_Q, rescue_turn["chat"], rescue_turn["answers"])
    exported, status = handlers.export(second["answers"])
    assert status.startswith("Exported 2 answer(s)")
    path = Path(exported)
    assert path.is_file() and path.suffix == ".md"
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Space-security briefing")
    assert f"## 1. {RESCUE_Q}" in text and f"## 2. {LIABILITY_Q}" in text
    assert text.count("References:") == 2
    assert ui_engine.index.fingerprint in text
    for answer in second["answers"]:
        for c in answer.citations:
            assert c.quote in text


def test_export_of_an_empty_conversation_says_so(handlers):
    """Defect 2: exporting nothing did nothing and said nothing."""
    assert handlers.export([]) == (None, "⚠️ Nothing to export yet: ask a question first.")


def test_exports_of_two_sessions_do_not_overwrite_each_other(handlers, rescue_turn):
    mine = handlers.export(rescue_turn["answers"])[0]
    my_text = Path(mine).read_text(encoding="utf-8")
    other = ask(handlers, OFF_TOPIC_Q)  # another session, also one answer long
    handlers.export(other["answers"])
    assert Path(mine).read_text(encoding="utf-8") == my_text


# --------------------------------------------------------------------------------------
# briefings
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset, custom, message", [
    (None, "", "Choose a preset topic"),
    (None, " \n \n", "Choose a preset topic"),
    (None, "\n".join(f"Question {i}?" for i in range(31)), "at most 30"),
])
def test_briefing_input_errors_are_warnings(handlers, preset, custom, message):
    preview, files, status = handlers.briefing(preset, custom)
    assert preview == "" and files == []
    assert status.startswith("⚠️") and message in status


def test_briefing_from_typed_questions_is_escaped_and_downloadable(handlers):
    probe = "<img src=x onerror=alert(1)>"
    preview, files, status = handlers.briefing(None, f"Can a country claim the Moon? {probe}\n"
                                               "What is the capital of France?")
    assert status.startswith("Built "), status
    assert "<img" not in preview and "&lt;img src=x onerror=alert(1)&gt;" in preview
    assert "<script" not in preview.lower() and "<body" not in preview
    suffixes = sorted(Path(f).suffix for f in files)
    assert {".md", ".html"} <= set(suffixes)
    for f in files:
        assert Path(f).is_file() and Path(f).stat().st_size > 0


# --------------------------------------------------------------------------------------
# documents
# --------------------------------------------------------------------------------------
def test_document_shows_the_text_and_its_sections(handlers):
    page, choices = handlers.document("outer-space-treaty-1967")
    assert "Article IV" in page
    assert "Outer Space Treaty" in page
    assert ("Article IV", "outer-space-treaty-1967/article-iv/1") in choices
    assert len(choices) > 10
    for _, chunk_id in choices:
        assert chunk_id.startswith("outer-space-treaty-1967/")
        assert f'id="{section_anchor(chunk_id)}"' in page  # every choice has somewhere to jump to
    assert "States Parties to the Treaty undertake not to place in orbit around the earth" in page


@pytest.mark.parametrize("doc_id", [None, "", "no-such-document", "../corpus/manifest"])
def test_unknown_document_asks_to_choose_one(handlers, doc_id):
    assert handlers.document(doc_id) == ("<p>Choose a document.</p>", [])


# --------------------------------------------------------------------------------------
# filters named, stale sources cleared, chips, weak answers, LLM drafts
# --------------------------------------------------------------------------------------
def test_filters_that_exclude_everything_are_named_and_old_sources_go(handlers, rescue_turn):
    """Defect 3: "Not found in the corpus" without naming the filters, and the previous
    answer's cards left on top of the Sources panel."""
    out = ask(handlers, LIABILITY_Q, rescue_turn["chat"], rescue_turn["answers"],
              kinds=["guidelines"], years=["2024"])
    answer = out["answers"][-1]
    assert answer.abstained and not answer.related
    message = out["chat"][-1]["content"]
    assert message.index("Searched only: guidelines, 2024") < message.index("Not found in the corpus")
    latest = out["sources"].split('<details class="earlier">')[0]
    assert 'data-turn="2"' in latest and "No passage matched the active filters" in latest
    assert "Rescue Agreement" not in latest  # the first answer's cards are folded away, not on top


def test_document_filter_is_named_by_its_title(handlers):
    out = ask(handlers, LIABILITY_Q, doc_ids=["liability-convention-1972"])
    assert "Searched only: Liability Convention" in out["chat"][-1]["content"]


def test_abstention_from_the_engine_reads_as_sentences(handlers):
    """Defect 6, at its source: the reason after "Not found in the corpus:" starts with a capital."""
    answer = ask(handlers, OFF_TOPIC_Q)["answers"][0]
    reason = answer.text.removeprefix("Not found in the corpus: ")
    assert reason[0].isupper(), answer.text


def test_answers_carry_chips_with_formal_citations(rescue_turn):
    message = rescue_turn["chat"][1]["content"]
    chips = re.findall(r'<a class="chip" href="#src-1-(\d+)">(.*?)</a>', message)
    answer = rescue_turn["answers"][0]
    firsts = {}  # one chip per cited passage, linked to its first marker, naming them all
    for c in answer.citations:
        firsts.setdefault(c.chunk_id, []).append(c.n)
    assert [int(n) for n, _ in chips] == [ns[0] for ns in firsts.values()]
    assert [label.split(" · ")[0] for _, label in chips] == [", ".join(map(str, ns)) for ns in firsts.values()]
    assert all(re.search(r"\(\d{4}\), art\. \d+", label) for _, label in chips), chips
    assert 'id="src-1-1"' in rescue_turn["sources"]


def test_weak_match_marker_follows_the_settings_threshold(handlers, monkeypatch):
    answer = handlers.engine.ask(LIABILITY_Q)
    threshold = {"weak_answer_confidence": answer.confidence + 0.01}
    monkeypatch.setattr(handlers.engine, "settings", handlers.engine.settings.model_copy(update=threshold))
    weak = ask(handlers, LIABILITY_Q)
    assert "Weak match" in weak["chat"][-1]["content"]
    assert weak["status"].endswith("Weak match: read the sources before relying on it.")
    threshold = {"weak_answer_confidence": answer.confidence - 0.01}
    monkeypatch.setattr(handlers.engine, "settings", handlers.engine.settings.model_copy(update=threshold))
    assert "Weak match" not in ask(handlers, LIABILITY_Q)["chat"][-1]["content"]


def test_search_handler_returns_excerpts_and_names_filters(handlers):
    page, status = handlers.search("nuclear weapons in orbit", None, ["treaty"], None, 3)
    assert "Outer Space Treaty (1967), art. IV(1)" in page and "<mark>nuclear</mark>" in page
    assert status == "3 excerpt(s). Searched only: treaty."
    page, status = handlers.search("", None, None, None, 3)
    assert page == "" and status.startswith("⚠️")


def test_llm_draft_is_shown_as_a_draft_and_replaced_by_the_checked_answer(ui_engine, tmp_path, monkeypatch):
    """Issue 16: while the model streams, its unchecked text was shown as if it were the answer."""
    import dataclasses

    from fake_openai_server import FakeOpenAIServer, Reply

    from rag.llm import make_chat_model

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    reply = ("States Parties undertake not to place nuclear weapons in orbit around the Earth [1]. "
             "Visit https://evil.example for the full text [1].")
    with FakeOpenAIServer(Reply(reply)) as server:
        settings = ui_engine.settings.model_copy(update={
            "llm_provider": "openai", "llm_base_url": server.base_url, "llm_model": "fake", "llm_timeout_s": 10})
        engine = dataclasses.replace(ui_engine, settings=settings, chat_model=make_chat_model(settings))
        h = Handlers(engine, FeedbackLog(tmp_path / "feedback.jsonl"))
        outputs = list(h.ask_stream("What does the Outer Space Treaty say about nuclear weapons in orbit?",
                                    [], [], None, None, None, "llm", 5))
    drafts, final = outputs[:-1], outputs[-1]
    assert drafts, "the reply was not streamed"
    for chat, *_rest in drafts:
        message = chat[-1]
        assert message["metadata"] == {"title": "Draft, checking citations…", "status": "pending"}
        assert "](#src-" not in message["content"]  # a draft has no citation links yet
        assert _rest[1].startswith("Writing the answer")
    assert "evil\\.example" in drafts[-1][0][-1]["content"]  # the unchecked text, while it is a draft
    chat, _sources, status, answers, _question, _markdown = final
    assert "metadata" not in chat[-1] and len(chat) == 2
    assert status.startswith("Answered with") or "language model failed" in chat[-1]["content"]
    assert chat[-1]["content"] == answer_markdown(answers[-1], 1, h.labels(answers[-1]), "",
                                                  settings.weak_answer_confidence)
