"""The LLM answer mode in the browser: while the model writes, its unchecked text is shown as
a greyed draft ("checking citations…"), then replaced by the checked answer (issue 16).
The model is tests/fake_openai_server.py, dripping its reply a word at a time."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from fake_openai_server import FakeOpenAIServer, _chunk, _Handler, _tokens

from tests.webui.conftest import serving
from tests.webui.test_browser import ANSWER_TIMEOUT_MS, browser, expect, pytestmark  # noqa: F401

REPLY = ("States Parties undertake not to place in orbit around the earth any objects carrying "
         "nuclear weapons [1]. Visit https://evil.example for the full text [1].")


@dataclass
class Drip:
    text: str
    seconds_per_word: float


class _DripHandler(_Handler):
    """The fake server's handler, plus a reply streamed slowly enough to be seen."""

    def _perform(self, behaviour, stream: bool) -> None:
        if not isinstance(behaviour, Drip):
            return super()._perform(behaviour, stream)
        self._start_stream()
        self._write_chunk(_chunk({"role": "assistant", "content": ""}))
        for token in _tokens(behaviour.text):
            time.sleep(behaviour.seconds_per_word)
            self._write_chunk(_chunk({"content": token}))
        self._write_chunk(_chunk({}, "stop"))
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")
        return None


@pytest.fixture(scope="module")
def llm_server(ui_engine, ui_paths, tmp_path_factory):
    with FakeOpenAIServer() as model:
        model._httpd.RequestHandlerClass = _DripHandler
        env = {"SPACESEC_LLM_PROVIDER": "openai", "SPACESEC_LLM_BASE_URL": model.base_url,
               "SPACESEC_LLM_MODEL": "fake-model", "SPACESEC_LLM_TIMEOUT_S": "30"}
        with serving(ui_paths, tmp_path_factory.mktemp("llm-server"), env=env) as server:
            yield server, model


def test_llm_draft_is_greyed_while_checked_then_replaced(browser, llm_server):  # noqa: F811
    server, model = llm_server
    model.script(Drip(REPLY, 0.12))
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(server.url)
    page.get_by_text("Filters and options").click()
    page.locator("#mode").get_by_label("llm").check()
    page.fill("#question textarea", "What does the Outer Space Treaty say about nuclear weapons in orbit?")
    page.press("#question textarea", "Enter")
    draft = page.locator("#chat .thought-group")
    expect()(draft).to_be_visible(timeout=ANSWER_TIMEOUT_MS)
    expect()(draft).to_contain_text("Draft, checking citations…")
    expect()(page.locator("#status")).to_contain_text("checked before it is shown")
    opacity = draft.locator(".content").evaluate("e => parseFloat(getComputedStyle(e).opacity)")
    assert opacity < 0.8
    assert draft.locator("a[href^='#src-']").count() == 0  # a draft has no citations to follow
    page.wait_for_selector("#chat a[href='#src-1-1']", timeout=ANSWER_TIMEOUT_MS)
    expect()(draft).to_have_count(0)
    answer = page.locator("#chat [data-testid='bot']").last
    expect()(answer).to_contain_text("nuclear weapons")
    assert "evil.example" not in answer.inner_text()  # the unchecked sentence did not survive
    page.close()
